"""A run's record in its workdir: the config that wrote it and what every resume changed.

``config.json`` is written once, when a run starts from step 0, and never rewritten
by a resume: it is the config that wrote the first checkpoints. A resume whose config
differs (a longer schedule, a new learning rate) appends one line to ``resumes.jsonl``
(step, time, and each changed field's old and new value); `run_config` replays those
lines to give the config the newest checkpoints were trained with. Metric rows that a
resume re-runs (logged past the step it resumes from, before a kill) are moved from
``metrics.jsonl`` to ``metrics.superseded.jsonl``: nothing is deleted, and the curves
show each step once.

Only settings may change on resume, never what the trained model means: `RESUMABLE`
lists the fields every family may change (learning rates, the schedule's length,
cadences, drivers, where the data comes from), and each family adds its sampler and
evaluation fields (`genjax.tasks.RESUMABLE`); `check_resumable` refuses any other
changed field before anything is written.

The final-row rule: the run's final evaluation writes one row marked ``"final": true``
at its step. A later final evaluation at the same step (a resume whose evaluation
settings changed) moves the earlier final row to ``metrics.superseded.jsonl``
(`supersede_final`), so ``metrics.jsonl`` holds at most one final row per step; a
finished run run again with the same config does nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from typing import IO, Any, Callable, Iterator, Mapping

import ml_collections

from genjax.hparams import population_defaults

CONFIG, RESUMES = "config.json", "resumes.jsonl"
METRICS, SUPERSEDED = "metrics.jsonl", "metrics.superseded.jsonl"
DATASET = "dataset.json"  # the identity of the data the run started on
EVALUATIONS = "evaluations.jsonl"  # genjax-evaluate's rows, apart from the run's own
FINAL = "final"  # the key that marks a final-evaluation row of metrics.jsonl

# Fields any run may change on resume: they change how long and how a run trains or is
# watched, not what its networks and objective are (a family adds its own, see
# `check_resumable`). Not the noise schedule, the prediction target, the batch size...
RESUMABLE = frozenset({
    "learning_rate", "g_learning_rate", "d_learning_rate", "lr_decay",
    "num_steps", "train_minutes",
    "log_every", "sample_every", "eval_every", "checkpoint_every", "keep_checkpoints",
    "keep_best",
    "eval_samples", "eval_batch_size",
    "parallel", "steps_per_call", "cpu_dots", "population.strategy",
    "data_source", "data_dir", "download", "bad_images",
    "skip_nonfinite_steps", "max_skipped_fraction", "start_over",
    "wandb_project", "wandb_entity", "wandb_mode",
})


# Fields that joined the shared config after runs were recorded, with the value that a
# run recorded without them had in effect: where the new config has such a field, a
# record without it reads as that value, so that a run from before the field still
# resumes (and is still seen as finished). A field that may change on resume anyway
# (`RESUMABLE`) needs no entry.
ADDED_FIELDS: dict[str, Any] = {"image_channels": None, "upscale": False,
                                "population": population_defaults()}

# Fields that replaced older ones: new field -> (the old fields, the new value a record
# of them reads as). A run recorded with the older fields resumes under the new one.
# ``reuse_fakes`` (one generator forward per step) is ``gan_update="shared"``, whose
# joint critic call scores as two calls do; ``joint_critic`` alone changed no update.
REPLACED_FIELDS: dict[str, tuple[tuple[str, ...], Callable[[dict], Any]]] = {
    "gan_update": (("reuse_fakes", "joint_critic"),
                   lambda old: "shared" if old.get("reuse_fakes") else "alternating"),
}


class RecordError(ValueError):
    """A record file in the workdir is missing or unreadable."""


class ResumeRefusedError(ValueError):
    """A resume changes a field that changes what the trained model means."""


class DataChangedError(ValueError):
    """A run is evaluated on data that changed since it started (`check_evaluation_data`)."""


def plain(config: ml_collections.ConfigDict | Mapping) -> dict:
    """The config as JSON would store it (tuples as lists, unknown types as strings)."""
    tree = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    return json.loads(json.dumps(tree, sort_keys=True, default=str))


def _flat(tree: Mapping, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, Mapping) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def changes(old: Mapping, new: Mapping) -> dict[str, dict]:
    """Field -> {"from": old, "to": new} for every field that differs (a side is left
    out where the field does not exist)."""
    a, b = _flat(old), _flat(new)
    out = {}
    for k in sorted(a.keys() | b.keys()):
        if a.get(k, ...) != b.get(k, ...):
            out[k] = {**({"from": a[k]} if k in a else {}), **({"to": b[k]} if k in b else {})}
    return out


def _apply(tree: dict, changed: Mapping[str, Mapping]) -> dict:
    for field, change in changed.items():
        *parents, leaf = field.split(".")
        node = tree
        for p in parents:
            node = node.setdefault(p, {})
        if "to" in change:
            node[leaf] = change["to"]
        else:
            node.pop(leaf, None)
    return tree


def read_json(path: str) -> Any:
    """A JSON file's content; a missing file raises FileNotFoundError, a damaged one
    `RecordError`, each naming the file."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"No {os.path.basename(path)} in {os.path.dirname(path)}: not "
                                f"a genjax training run.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RecordError(f"{path} is not valid JSON ({e}); restore it from a copy, or write "
                          f"the run's config there.") from None


def _resumes(workdir: str) -> list[dict]:
    path = os.path.join(workdir, RESUMES)
    if not os.path.exists(path):
        return []
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RecordError(f"{path} is not valid JSON lines ({e}).") from None


def run_config(workdir: str) -> ml_collections.ConfigDict:
    """The config the run's newest checkpoints were trained with: ``config.json`` with
    every resume's changes applied in order.

    Raises:
      FileNotFoundError: no ``config.json`` (not a run's workdir).
      RecordError: ``config.json`` or ``resumes.jsonl`` is not JSON (the file is named).
    """
    tree = read_json(os.path.join(workdir, CONFIG))
    if not isinstance(tree, dict):
        raise RecordError(f"{os.path.join(workdir, CONFIG)} holds a {type(tree).__name__}, "
                          f"not a config.")
    for entry in _resumes(workdir):
        _apply(tree, entry.get("changed", {}))
    return ml_collections.ConfigDict(tree)


def recorded(workdir: str, new: Mapping) -> dict:
    """The run's record (`run_config`, plain) as it compares with the plain config
    ``new``: a field of `ADDED_FIELDS` that ``new`` has and the record lacks reads as its
    value there, and the older fields of `REPLACED_FIELDS` as the field that replaced them."""
    tree = plain(run_config(workdir))
    tree.update({k: v for k, v in ADDED_FIELDS.items() if k in new and k not in tree})
    for field, (old_fields, value) in REPLACED_FIELDS.items():
        if field in new and field not in tree and any(k in tree for k in old_fields):
            old = {k: tree.pop(k) for k in old_fields if k in tree}
            tree[field] = value(old)
    return tree


def check_resumable(workdir: str, config: ml_collections.ConfigDict,
                    family: frozenset[str] | tuple[str, ...] = ()) -> dict[str, dict]:
    """The changes of a resume with ``config`` against the run's record (`run_config`);
    raise `ResumeRefusedError` when a changed field is neither in `RESUMABLE` nor in the
    family's own ``family`` fields. Writes nothing.

    Raises:
      ResumeRefusedError: the refused fields, with what may change and the way out.
    """
    new = plain(config)
    before = recorded(workdir, new)
    changed = changes(before, new)
    allowed = RESUMABLE | set(family)
    refused = {k: v for k, v in changed.items() if k not in allowed}
    allowed &= _flat(before).keys()  # those this run has, to list
    if refused:
        raise ResumeRefusedError(
            f"Cannot resume {workdir} with {describe(refused)}: "
            f"{'this field changes' if len(refused) == 1 else 'these fields change'} what the "
            f"trained model means. Fields that may change on resume: "
            f"{', '.join(sorted(allowed))}. To train with the new value, use another "
            f"--workdir (config.start_over only acts when no checkpoint is usable).")
    return changed


def record_dataset(workdir: str, dataset: str, identity: str, step: int) -> None:
    """Record the identity of the run's data (`genjax.data.dataset_id`: for own data a
    content fingerprint) in ``dataset.json``: when the run starts (``step`` 0), or on a
    resume of a run that has no such record yet."""
    path = os.path.join(workdir, DATASET)
    if step == 0 or not os.path.exists(path):
        _write_atomic(path, json.dumps({"dataset": dataset, "id": identity}, indent=2) + "\n")


def _data_change(workdir: str, dataset: str, identity: str) -> str | None:
    """What changed in the run's data (``its data ... (dataset id old -> new)``) when
    ``identity`` is not the one ``dataset.json`` records; None when it is, or when the
    run has no such record."""
    path = os.path.join(workdir, DATASET)
    if not os.path.exists(path):
        return None
    entry = read_json(path)
    old = entry.get("id") if isinstance(entry, dict) else None
    if old == identity:
        return None
    return (f"its data {dataset} changed since the run started (dataset id {old} -> "
            f"{identity}): the checkpoints were trained on other examples")


def check_dataset(workdir: str, dataset: str, identity: str) -> None:
    """Refuse (`ResumeRefusedError`) a resume whose data's identity is not the recorded
    one: the files of the run's own data changed since it started. Writes nothing; a run
    without ``dataset.json`` passes."""
    change = _data_change(workdir, dataset, identity)
    if change:
        raise ResumeRefusedError(f"Cannot resume {workdir}: {change}. Restore the data, or to "
                                 f"train on the new data use another --workdir.")


def check_evaluation_data(workdir: str, dataset: str, identity: str) -> None:
    """Refuse (`DataChangedError`) to evaluate a run on data whose identity is not the
    recorded one, as `check_dataset` refuses a resume: its scores would compare the
    samples with other examples than the run trained on. A run without ``dataset.json``
    passes."""
    change = _data_change(workdir, dataset, identity)
    if change:
        raise DataChangedError(f"Cannot evaluate {workdir}: {change}. Restore the data the "
                               f"run trained on to score it.")


@contextlib.contextmanager
def atomic_file(path: str, mode: str = "w") -> Iterator[IO]:
    """A file opened with ``mode`` beside ``path`` whose content replaces ``path`` at once
    when the block ends without an error (removed when it raises): a kill or a full disk
    never leaves half a file at ``path``."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, mode) as f:
            yield f
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _write_atomic(path: str, text: str) -> None:
    with atomic_file(path) as f:
        f.write(text)


def record_start(workdir: str, config: ml_collections.ConfigDict, step: int) -> dict[str, dict]:
    """Record that a run starts (``step`` 0) or resumes at ``step`` with ``config``.

    From step 0 ``config.json`` is (re)written; the record of an earlier start that left
    no usable checkpoint is kept as ``config.<time>.json`` (and ``resumes.<time>.jsonl``).
    On a resume, the fields that differ from `run_config` are appended to ``resumes.jsonl``.

    Returns:
      The changed fields of a resume ({} when none, and for a start).
    """
    new, path = plain(config), os.path.join(workdir, CONFIG)
    known = os.path.exists(path)
    if step > 0 and known:
        changed = changes(recorded(workdir, new), new)
        if changed:
            with open(os.path.join(workdir, RESUMES), "a") as f:
                f.write(json.dumps({"step": step, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                    "changed": changed}) + "\n")
        return changed
    if known and _differs(workdir, new):
        stamp, resumes = int(time.time()), os.path.join(workdir, RESUMES)
        os.replace(path, os.path.join(workdir, f"config.{stamp}.json"))
        if os.path.exists(resumes):
            os.replace(resumes, os.path.join(workdir, f"resumes.{stamp}.jsonl"))
    _write_atomic(path, json.dumps(new, indent=2, sort_keys=True))
    return {}


def _differs(workdir: str, new: dict) -> bool:
    try:
        return bool(changes(recorded(workdir, new), new))
    except RecordError:  # an unreadable record is kept aside too
        return True


def _move_rows(workdir: str, moved: Callable[[dict], bool]) -> int:
    """Move the rows of ``metrics.jsonl`` for which ``moved(row)`` holds to
    ``metrics.superseded.jsonl`` (appended first, so a kill loses nothing); returns how
    many were moved. An unreadable row is kept where it is."""
    lines = _metric_lines(workdir)
    flags = [moved(_row(line)) for line in lines]
    late = [line for line, m in zip(lines, flags) if m]
    if late:
        with open(os.path.join(workdir, SUPERSEDED), "a") as f:
            f.writelines(late)
        _write_atomic(os.path.join(workdir, METRICS),
                      "".join(line for line, m in zip(lines, flags) if not m))
    return len(late)


def supersede_metrics(workdir: str, step: int) -> int:
    """Move the rows of ``metrics.jsonl`` logged past ``step`` (a resume re-runs those
    steps) to ``metrics.superseded.jsonl``; returns how many were moved."""
    return _move_rows(workdir, lambda row: row.get("step", 0) > step)


def supersede_final(workdir: str, step: int) -> int:
    """Move the final-evaluation rows at ``step`` to ``metrics.superseded.jsonl`` (a new
    final evaluation of that step replaces them); returns how many were moved."""
    return _move_rows(workdir, lambda row: row.get("step") == step and row.get(FINAL) is True)


def final_row(workdir: str, step: int) -> dict | None:
    """The final-evaluation row of ``metrics.jsonl`` at ``step``, or None."""
    found = [r for r in map(_row, _metric_lines(workdir))
             if r.get("step") == step and r.get(FINAL) is True]
    return found[-1] if found else None


def final_metrics(workdir: str) -> dict[str, float]:
    """The metrics of the newest final-evaluation row of the run in ``workdir`` ({}
    without one)."""
    rows = [r for r in read_rows(os.path.join(workdir, METRICS)) if r.get(FINAL)]
    return {k: v for k, v in (rows[-1] if rows else {}).items()
            if k not in ("step", FINAL, "nonfinite")}


def _metric_lines(workdir: str) -> list[str]:
    """The non-empty lines of ``metrics.jsonl`` ([] when there is none yet)."""
    return _lines(os.path.join(workdir, METRICS))


def _lines(path: str) -> list[str]:
    """The non-empty lines of the file at ``path`` ([] when there is none)."""
    try:
        with open(path) as f:
            return [line for line in f if line.strip()]
    except FileNotFoundError:
        return []


def read_rows(path: str) -> list[dict]:
    """The readable rows of a metrics JSON-lines file (``metrics.jsonl``,
    ``evaluations.jsonl``; [] when there is none), each with an int ``step``: a line that
    is not a JSON object (one cut short by a kill) is passed over."""
    return [row for row in map(_row, _lines(path)) if row]


def _row(line: str) -> dict:
    """A metrics row ({} when unreadable; a step that is not a number reads as 0)."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return {}
    if not isinstance(row, dict):
        return {}
    try:
        return {**row, "step": int(row.get("step", 0))}
    except (TypeError, ValueError):
        return {**row, "step": 0}


def describe(changed: Mapping[str, Mapping], limit: int = 6) -> str:
    """``lr 0.001 -> 0.002, num_steps 3000 -> 3200`` (the first ``limit`` fields)."""
    parts = [f"{k} {c.get('from', '(none)')} -> {c.get('to', '(none)')}"
             for k, c in list(changed.items())[:limit]]
    more = len(changed) - limit
    return ", ".join(parts) + (f" and {more} more" if more > 0 else "")
