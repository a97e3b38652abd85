"""Evaluate a trained run: sample-quality metrics from its latest checkpoint.

  genjax-evaluate --workdir=runs/gan_mlp
  genjax-evaluate --workdir=runs/gan_mlp --num_samples=1000 --save_samples=s.npy
  genjax-evaluate --workdir=runs/ddpm --sampler=dpm++2m --sample_steps=20

Reads the run's config (``config.json`` with the changes of ``resumes.jsonl``), restores
the newest usable checkpoint read-only (safe next to a live trainer: nothing in its
checkpoint folder is created, moved or deleted, and a step that vanishes or is damaged
is skipped for the next older one), refuses in one line a run whose data changed since
it started (``dataset.json``, as a resume is refused), draws ``--num_samples`` samples
(EMA weights when the run keeps them) with a fixed key, and scores them against as
many test images with the domain classifier of the run's dataset and image shape (FID,
IS, KID, precision/recall, mode coverage; data without one is skipped with one line
saying how to train one), or with the FID InceptionV3 (``--extractor=inception
--inception_weights=inception_fid.npz``); for a conditional run also the class accuracy
of the same samples (how often the domain classifier names the class each was asked
for). The metrics are appended to ``<workdir>/evaluations.jsonl`` at the checkpoint's
step (apart from the run's own ``metrics.jsonl``, whose final row stays its last:
docs/reliability.md's final-row rule), shown in TensorBoard beside the run's, and
printed as a table.
Diffusion runs sample with their config's sampler unless ``--sampler``,
``--sample_steps``, ``--eta``, ``--variance`` or ``--guidance`` say otherwise, an
autoregressive run trained with label dropout takes ``--guidance`` too, and a flow run
``--temperature``; their metric keys name how the samples were drawn
(``test/domain_ddim50_eta0_fid``, ``test/domain_w2_fid``, ``test/domain_T1_fid``),
and any run's keys carry ``n<count>_`` when ``--num_samples`` differs from the config's
``eval_samples``. ``--save_samples`` writes the samples as float32 NHWC in [0, 1]
(``.npy``) for any outside tool; ``--real_baseline`` scores real training images instead
(printed only), the floor these numbers have with this protocol. A population run
(docs/usage.md) is evaluated one member at a time, ``--member=i`` or ``--member=all``;
its rows in ``evaluations.jsonl`` carry the member (``test/domain_fid/m3``). From Python,
`genjax.runs.load` gives the same run, its samples and these metrics.
"""

from __future__ import annotations

import collections
import os
from typing import TYPE_CHECKING, Iterable, Iterator

from absl import app, flags

from genjax.cli import launch

if TYPE_CHECKING:
    import numpy as np

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run's directory.", required=True)
_NUM = flags.DEFINE_integer("num_samples", None, "Samples to draw (and test images to use); "
                            "default: the run's config.eval_samples.")
_SAVE = flags.DEFINE_string("save_samples", None, "Also write the samples to this .npy file.")
_EXTRACTOR = flags.DEFINE_enum("extractor", "domain", ["domain", "inception"],
                                "domain: the classifier of the run's dataset (offline; "
                                "genjax-train classifier trains one); "
                                "inception: the FID InceptionV3 (needs --inception_weights).")
_WEIGHTS = flags.DEFINE_string("inception_weights", None, "The converted Inception .npz "
                               "(see python -m genjax.cli.convert_inception).")
_SAMPLER = flags.DEFINE_enum("sampler", None, ["ddpm", "ddim", "dpm++2m"],
                              "Diffusion runs: the sampler (default: the run's config.sampler).")
_STEPS = flags.DEFINE_integer("sample_steps", None, "Diffusion runs: sampling steps.")
_ETA = flags.DEFINE_float("eta", None, "Diffusion runs: DDIM's η in [0, 1].")
_VARIANCE = flags.DEFINE_enum("variance", None, ["large", "small"], "Diffusion runs: the "
                               "ancestral sampler's σ² (large: β, small: the posterior's β̃).")
_GUIDANCE = flags.DEFINE_float("guidance", None, "Conditional diffusion runs, and "
                               "autoregressive ones trained with label dropout: the "
                               "classifier-free guidance scale w.")
_TEMPERATURE = flags.DEFINE_float("temperature", None, "Flow runs: the latent's scale T "
                                  "(z ~ N(0, T^2 I); default the run's config.temperature).")
_MEMBER = flags.DEFINE_string("member", None, "A population run's member to evaluate: its "
                              "index, or 'all' (each in turn, keys ending in /m<i>).")
_FLOOR = flags.DEFINE_bool("real_baseline", False, "Score real training images instead of "
                           "samples: what a perfect generator would reach with this protocol.")


def evaluate_run(workdir: str, num_samples: int | None = None, save_samples: str | None = None,
                 real_baseline: bool = False, extractor: str = "domain",
                 inception_weights: str | None = None,
                 sampling: dict | None = None, member: int | None = None) -> dict[str, float]:
    """Metrics of the newest checkpoint in ``workdir`` (see the module docstring) from
    ``num_samples`` samples (default: the run's ``eval_samples``); ``sampling`` overrides
    the sampler fields of the run's config (`genjax.runs.SAMPLING`); ``member``: of a
    population run, that member. Every argument is checked before anything is sampled,
    the flags' before the checkpoint is read; `genjax.runs.Run.evaluate` scores."""
    from genjax import runs

    if num_samples is not None and num_samples < 2:
        raise ValueError(f"--num_samples must be at least 2, got {num_samples}.")
    if save_samples:
        _check_writable(save_samples)
    if extractor not in runs.EXTRACTORS:
        raise ValueError(f"Unknown extractor {extractor!r}; valid: {', '.join(runs.EXTRACTORS)}.")
    scorer = None  # the domain classifier
    if extractor == "inception":  # load (or fail clearly) before any sampling
        from genjax.metrics import inception
        scorer = inception.make_extractor(inception_weights)
    run = runs.load(workdir, sampling=sampling, member=member)
    if run.setup.task.sample is None:
        raise ValueError(f"Task {run.config.task!r} (deterministic="
                         f"{run.config.get('deterministic')}) does not generate samples; "
                         f"nothing to evaluate.")
    n = run.config.eval_samples if num_samples is None else num_samples
    source = run.real_batches(n) if real_baseline else run.batches(n)
    fake = _saved(source, save_samples, n, run.setup.image_shape) if save_samples else None
    results = run.evaluate(n, extractor=scorer, name=extractor, samples=fake,
                           real_baseline=real_baseline)
    if fake is not None:  # draw and write the samples that scoring did not read
        collections.deque(fake, maxlen=0)
    return results


def _check_writable(path: str) -> None:
    """Fail before any sampling when ``path`` cannot be written."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK) or os.path.isdir(path):
        raise PermissionError(f"--save_samples={path}: cannot write there (no such folder, "
                              f"not writable, or a folder).")


def _saved(batches: Iterable[np.ndarray], path: str, num: int, image_shape: tuple[int, ...]
           ) -> Iterator[np.ndarray]:
    """Pass ``batches`` through, writing them into a float32 .npy of ``num`` images on the
    way (the file is made when the first batch is asked for)."""
    import numpy as np

    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(num, *image_shape))
    i = 0
    for b in batches:
        out[i:i + len(b)] = b
        i += len(b)
        yield b
    out.flush()


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    launch.quiet_logging()
    sampling = {"sampler": _SAMPLER.value, "sample_steps": _STEPS.value, "eta": _ETA.value,
                "variance": _VARIANCE.value, "guidance": _GUIDANCE.value,
                "temperature": _TEMPERATURE.value}
    if _MEMBER.value == "all" and _SAVE.value:
        raise ValueError("--save_samples with --member=all would write every member's samples "
                         "to one file; save one member's at a time (--member=i).")
    results = {}
    for member in _members(_WORKDIR.value, _MEMBER.value):
        found = evaluate_run(_WORKDIR.value, _NUM.value, _SAVE.value, _FLOOR.value,
                             _EXTRACTOR.value, _WEIGHTS.value, sampling, member)
        results.update(found if member is None or _MEMBER.value != "all" else
                       {f"{k}/m{member}": v for k, v in found.items()})
    if results:  # {} when the run's data has no domain classifier (said in one line)
        width = max(map(len, results))
        print("\n".join(f"{k:<{width}}  {v:.4f}" for k, v in results.items()))


def _members(workdir: str, member: str | None) -> list[int | None]:
    """The members ``--member`` names: [None] without it, [i], or every member for 'all'."""
    if member is None:
        return [None]
    if member == "all":
        from genjax import runs

        return [m.index for m in runs.members(workdir)] or [None]
    if not member.isdigit():
        raise ValueError(f"--member must be a member's index or 'all', got {member!r}.")
    return [int(member)]


def console() -> None:
    """``genjax-evaluate``: `main` with every mistake in one line."""
    launch.help_text(__doc__)
    launch.run(main)


if __name__ == "__main__":
    console()
