"""A run's record and checkpoints survive damage, resumes and a concurrent evaluator.

Each test copies one finished 20-step VAE run (checkpoints at steps 10 and 20) and
damages or resumes the copy: nothing is lost, overwritten or silently started over.
"""

import gc
import glob
import hashlib
import json
import os
import shutil
import sys

import chex
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from experiments import evaluate as evaluate_cli
from genjax import checkpoint, loop, record
from genjax.checkpoint import Checkpointer, CheckpointMismatchError, CheckpointsUnreadableError
from conftest import train_unfinished
from test_loop import _config, straight  # noqa: F401  (the 20-step run every test copies)


@pytest.fixture(scope="module")
def finished(straight):
    """(workdir, final state) of `test_loop.straight`'s finished 20-step run; tests copy it."""
    return straight[0], jax.device_get(straight[1])


@pytest.fixture
def run(finished, tmp_path):
    shutil.copytree(finished[0], tmp_path / "run")
    return str(tmp_path / "run")


def _snapshot(root: str) -> dict[str, str]:
    """Every file under ``root`` -> SHA-256 of its bytes."""
    return {os.path.relpath(p, root): hashlib.sha256(open(p, "rb").read()).hexdigest()
            for p in glob.glob(f"{root}/**/*", recursive=True) if os.path.isfile(p)}


def _rows(workdir, name=record.METRICS):
    path = os.path.join(workdir, name)
    return [json.loads(line) for line in open(path)] if os.path.exists(path) else []


def _data_files(workdir, step):
    return sorted(glob.glob(f"{workdir}/checkpoints/{step}/default/**/d/*", recursive=True),
                  key=os.path.getsize)


def test_resume_with_other_networks_writes_nothing(run, data_dir):
    before = _snapshot(run)
    with pytest.raises(CheckpointMismatchError, match="written by a different model"):
        loop.train_and_evaluate(_config(data_dir, num_steps=30, hidden=(128,)), run)
    assert _snapshot(run) == before  # config.json, metrics, checkpoints: all as they were
    assert record.run_config(run).hidden == [64]


def test_resume_with_a_new_learning_rate_is_recorded_not_overwritten(run, data_dir, capsys):
    original = open(os.path.join(run, record.CONFIG)).read()
    new = _config(data_dir, num_steps=30, learning_rate=2e-3)
    train_unfinished(new, run)
    assert open(os.path.join(run, record.CONFIG)).read() == original
    (entry,) = _rows(run, record.RESUMES)
    assert entry["step"] == 20 and entry["changed"] == {
        "learning_rate": {"from": 0.001, "to": 0.002}, "num_steps": {"from": 20, "to": 30}}
    assert record.plain(record.run_config(run)) == record.plain(new)
    (said,) = [line for line in capsys.readouterr().out.splitlines() if "Resumed" in line]
    assert said.endswith("at step 20; config changed since it started: learning_rate 0.001 -> "
                         "0.002, num_steps 20 -> 30 (recorded in resumes.jsonl).")


def test_every_checkpoint_damaged_stops_and_starting_over_is_explicit(run, data_dir, finished,
                                                                     monkeypatch):
    rows = _rows(run)
    for step in (10, 20):
        for path in _data_files(run, step):
            os.truncate(path, os.path.getsize(path) // 2)
    leftovers = []  # orbax's failed reads, printed (60 lines each) when collected
    monkeypatch.setattr(sys, "unraisablehook", leftovers.append)
    with pytest.raises(CheckpointsUnreadableError,
                       match=r"No usable checkpoint .*: step 20 \(.*\); step 10 \(.*\)\. The damaged "
                             r"ones are kept in .*corrupt_checkpoints.*--config.start_over=True"):
        loop.train_and_evaluate(_config(data_dir), run)
    gc.collect()
    reads = [u.exc_value for u in leftovers if "TensorStore" in str(u.exc_value)]
    assert not reads, reads[0]
    assert _rows(run) == rows  # no history duplicated
    assert len(os.listdir(os.path.join(run, "corrupt_checkpoints"))) == 2
    with pytest.raises(CheckpointsUnreadableError, match=r"earlier runs set aside 10-\d+, 20-\d+"):
        loop.train_and_evaluate(_config(data_dir), run)  # the same command, again
    state = train_unfinished(_config(data_dir, start_over=True), run)
    chex.assert_trees_all_equal(jax.device_get(state), finished[1])
    assert [r["step"] for r in _rows(run) if "train/loss" in r] == [5, 10, 15, 20]
    assert len(_rows(run, record.SUPERSEDED)) == len(rows)


def _plain_read(step_dir: str) -> str | None:
    """Digest of a step's state read by orbax alone (no checksum check); None if it fails."""
    try:
        with checkpoint._collect_failed_reads():
            tree = ocp.StandardCheckpointer().restore(os.path.join(step_dir, checkpoint.STATE))
    except Exception:  # noqa: BLE001  (any decode failure: this byte is not the one we want)
        return None
    return checkpoint.state_digest(tree)


def _flip_a_byte_that_still_decodes(workdir: str, step: int) -> None:
    """Flip one bit in the largest data file such that orbax still decodes the step, to
    different values. The arrays are compressed, so whether a given flip decodes depends
    on where it lands (and the layout varies between writes): try offsets until one does."""
    step_dir = os.path.join(workdir, "checkpoints", str(step))
    largest = _data_files(workdir, step)[-1]
    original = open(largest, "rb").read()
    clean = _plain_read(step_dir)
    for offset in range(len(original) // 2, len(original), 4099):
        data = bytearray(original)
        data[offset] ^= 0x01
        open(largest, "wb").write(bytes(data))
        if _plain_read(step_dir) not in (None, clean):
            return
    open(largest, "wb").write(original)
    pytest.fail("no single-bit flip in the second half of the file decoded to new values")


def test_a_flipped_byte_fails_the_checksum_and_the_older_step_resumes(run, data_dir, finished,
                                                                       caplog):
    _flip_a_byte_that_still_decodes(run, 20)
    state = train_unfinished(_config(data_dir), run)
    chex.assert_trees_all_equal(jax.device_get(state), finished[1])
    (warning,) = [r.getMessage() for r in caplog.records if "unusable" in r.getMessage()]
    assert "step 20" in warning and "checksum" in warning and "\n" not in warning
    # The re-run steps 11-20 replace the rows the damaged run had logged for them.
    assert [r["step"] for r in _rows(run) if "train/loss" in r] == [5, 10, 15, 20]
    assert {r["step"] for r in _rows(run, record.SUPERSEDED)} == {15, 20}


def test_a_checkpoint_whose_content_differs_from_its_checksum_is_set_aside(tmp_path, monkeypatch):
    ckpt = Checkpointer(str(tmp_path / "checkpoints"), asynchronous=False)
    good = {"w": np.arange(4.0, dtype=np.float32), "rng": jax.random.key(0)}
    ckpt.save(1, good)
    monkeypatch.setattr(checkpoint, "state_digest", lambda tree: "0" * 64)  # a wrong record
    ckpt.save(2, {**good, "w": good["w"] + 1})
    monkeypatch.undo()
    restored = ckpt.restore(good)
    chex.assert_trees_all_equal(jax.device_get(restored), good)
    assert [name.split("-")[0] for name in ckpt.set_aside()] == ["2"]
    ckpt.close()


def test_the_evaluator_never_touches_the_checkpoint_folder(run, monkeypatch):
    ckpts = os.path.join(run, "checkpoints")
    os.makedirs(os.path.join(ckpts, "30.orbax-checkpoint-tmp-7", "default"))  # a live write
    open(os.path.join(ckpts, "30.orbax-checkpoint-tmp-7", "default", "x"), "w").write("...")
    os.makedirs(os.path.join(ckpts, "25", "default"))  # a damaged step
    open(os.path.join(ckpts, "25", "default", "manifest.ocdbt"), "wb").write(b"\0garbage")
    listed, calls = Checkpointer.all_steps, []

    def vanishing(self):  # step 40 is listed once, then gone (rotated away)
        calls.append(1)
        return listed(self) + ([40] if len(calls) == 1 else [])

    monkeypatch.setattr(Checkpointer, "all_steps", vanishing)
    before = _snapshot(ckpts)
    evaluate_cli.evaluate_run(run, 50)
    assert _snapshot(ckpts) == before
    assert not os.path.exists(os.path.join(run, "corrupt_checkpoints"))
    assert _rows(run)[-1]["step"] == 20  # scored the newest usable step


@pytest.mark.parametrize("skip,bad_from,pattern", [
    (False, 3, r"steps 1-5, seen at step 5: .*Training stopped; no checkpoint had been written "
               r"yet \(the first is due at step 10\)"),
    (True, 6, r"5 of 5 updates in steps 6-10 were non-finite and skipped, more than "
              r"config.max_skipped_fraction=0.5: the run is diverging"),
], ids=["fresh run", "skipping a diverging run"])
def test_non_finite_stops_say_what_is_kept(skip, bad_from, pattern, data_dir, tmp_path,
                                           monkeypatch):
    real = loop.gdata.train_iterator

    def poisoned(*args, start_step=0, **kwargs):
        for step, batch in enumerate(real(*args, start_step=start_step, **kwargs), start_step + 1):
            yield {**batch, "image": batch["image"] * (np.nan if step >= bad_from else 1.0)}

    monkeypatch.setattr(loop.gdata, "train_iterator", poisoned)
    with pytest.raises(loop.NonFiniteError, match=pattern):
        loop.train_and_evaluate(_config(data_dir, skip_nonfinite_steps=skip), str(tmp_path))


def _drop_final_rows(workdir: str) -> None:
    """As if the run had been killed before its final evaluation row was written."""
    rows = [r for r in _rows(workdir) if not r.get("final")]
    with open(os.path.join(workdir, record.METRICS), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def test_a_failing_final_evaluation_keeps_the_pictures(run, data_dir, monkeypatch):
    _drop_final_rows(run)
    for name in ("samples.png", "reconstructions.png", "curves.png"):
        os.remove(os.path.join(run, name))

    def broken(*args, **kwargs):
        raise ValueError("a metric failed")

    monkeypatch.setattr(loop, "evaluate", broken)
    with pytest.raises(ValueError, match="a metric failed"):
        loop.train_and_evaluate(_config(data_dir), run)  # resumes at 20: only the final part
    for name in ("samples.png", "reconstructions.png", "curves.png"):
        assert os.path.getsize(os.path.join(run, name)) > 0


def test_a_non_finite_final_metric_is_flagged(run, data_dir, monkeypatch, capsys):
    _drop_final_rows(run)
    monkeypatch.setattr(loop, "evaluate", lambda *a, **k: {"test/x": float("nan"), "test/y": 1.0})
    loop.train_and_evaluate(_config(data_dir), run)
    last = _rows(run)[-1]
    assert last == {"step": 20, "test/x": None, "test/y": 1.0, "nonfinite": ["test/x"],
                    "final": True}
    assert "non-finite final metric(s) test/x" in capsys.readouterr().err
