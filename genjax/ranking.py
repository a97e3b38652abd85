"""Which evaluation metric values are better, for ``config.keep_best``.

`DIRECTIONS` is the one table of metric directions: a metric's key (as in
``metrics.jsonl``, ``test/domain_fid``) is matched by the part after its last ``/``,
the first pattern that matches the whole of it deciding. Spreads (``*_stderr``,
``*_std``) and quantities that are no quality on their own (a free energy, a log Z)
have no direction and cannot be kept by. `check_keep_best` refuses a bad
``keep_best`` before anything is read or compiled; `check_produced` refuses, at the
first evaluation, a metric the run's evaluation does not produce.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Callable, Mapping

if TYPE_CHECKING:
    import ml_collections

LOWER, HIGHER = "lower", "higher"

# (pattern on the name after the last "/", direction): first full match wins; None: no
# direction (a spread, or a value that is no quality by itself).
DIRECTIONS: tuple[tuple[str, str | None], ...] = (
    (r".*_(stderr|std)", None),
    (r"(.*_)?(train_)?free_energy|(.*_)?ais_log_z", None),
    (r"(.*_)?(fid|kid|class_kl_from_uniform)", LOWER),
    (r"(.*_)?(is|precision|recall|coverage|classes_covered|min_class_share)", HIGHER),
    (r"(.*_)?class_accuracy(_\d+)?|accuracy", HIGHER),
    (r"(.*_)?(nll|nll_bound|recon_nll|neg_elbo|bits_per_dim)|iwae_nll_k\d+", LOWER),
    (r"(.*_)?(elbo|log_likelihood(_low|_high)?|pseudo_likelihood)", HIGHER),
    (r"(.*_)?(loss|reconstruction_error|inversion_error|free_energy_gap)", LOWER),
    (r"modes_covered|modes_reached|high_quality", HIGHER),
)


class KeepBestError(ValueError):
    """``config.keep_best`` names a metric that cannot rank this run's checkpoints."""


def metric_key(name: str) -> str:
    """``name`` as a key of the evaluation's results: ``fid`` -> ``test/fid``; a name with a
    ``/`` is taken as it is."""
    return name if "/" in name else f"test/{name}"


def direction(name: str) -> str | None:
    """`LOWER` or `HIGHER` for the metric ``name`` (None: it has no direction).

    Raises:
      KeyError: no pattern of `DIRECTIONS` matches it.
    """
    short = metric_key(name).rsplit("/", 1)[-1]
    for pattern, way in DIRECTIONS:
        if re.fullmatch(pattern, short):
            return way
    raise KeyError(name)


def goodness(name: str) -> Callable[[Mapping], float]:
    """``score(metrics)``: the metric ``name`` of a step's metrics oriented so that higher
    is better; -inf when the step lacks it or it is not finite (never the best)."""
    key, sign = metric_key(name), (1.0 if direction(name) == HIGHER else -1.0)

    def score(metrics: Mapping) -> float:
        value = (metrics or {}).get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            return -math.inf
        return sign * float(value)

    return score


def check_keep_best(config: ml_collections.ConfigDict) -> None:
    """Refuse, in one line, a ``config.keep_best`` with no known direction, or one that
    evaluations at non-checkpoint steps would leave without a checkpoint to keep: every
    evaluation step must be a checkpoint step (``eval_every`` a positive multiple of
    ``checkpoint_every``; the final evaluation is always at a checkpoint)."""
    name = config.get("keep_best")
    if name is None:
        return
    if not isinstance(name, str) or not name.strip():
        raise KeepBestError(f"config.keep_best must be a metric name (e.g. 'domain_fid', "
                            f"'test/nll'), got {name!r}.")
    try:
        way = direction(name)
    except KeyError:
        raise KeepBestError(f"config.keep_best={name!r}: no known direction for this metric "
                            f"(genjax.ranking.DIRECTIONS knows FID, KID, IS, precision, recall, "
                            f"coverage, accuracy, NLL, bits/dim, ELBO, log-likelihood, "
                            f"losses, ...).") from None
    if way is None:
        raise KeepBestError(f"config.keep_best={name!r} is a spread or a value that is no "
                            f"quality by itself; name a metric (e.g. 'domain_fid', 'nll').")
    every, ckpt = config.get("eval_every", 0), config.get("checkpoint_every", 1)
    if not every or every % ckpt:
        raise KeepBestError(f"config.keep_best needs every evaluation at a checkpoint step: "
                            f"config.eval_every ({every}) must be a positive multiple of "
                            f"config.checkpoint_every ({ckpt}).")


def check_produced(config: ml_collections.ConfigDict, results: Mapping | None, step: int
                   ) -> None:
    """Raise `KeepBestError` when the evaluation ``results`` of ``step`` lack
    ``config.keep_best`` (nothing to check without results or ``keep_best``)."""
    name = config.get("keep_best")
    if name is None or results is None or metric_key(name) in results:
        return
    raise KeepBestError(f"config.keep_best={name!r}: the evaluation at step {step} produced no "
                        f"{metric_key(name)} (it produces {', '.join(sorted(results))}); its "
                        f"checkpoint is saved: resume with one of these (keep_best may change "
                        f"on resume).")
