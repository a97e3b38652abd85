"""A run's record and checkpoints survive damage, resumes and a concurrent evaluator.

Each test copies one finished 20-step VAE run (checkpoints at steps 10 and 20) and
damages or resumes the copy: nothing is lost, overwritten or silently started over.
"""

import gc
import glob
import hashlib
import json
import os
import re
import shutil
import sys

import chex
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from genjax.cli import evaluate as evaluate_cli
from genjax import assembly, checkpoint, loop, record
from genjax.checkpoint import Checkpointer, CheckpointMismatchError, CheckpointsUnreadableError
from conftest import ROOT, run_command, stderr_lines, train_unfinished
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
    assert _rows(run, record.EVALUATIONS)[-1]["step"] == 20  # scored the newest usable step


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

    monkeypatch.setattr(assembly, "evaluate", broken)
    with pytest.raises(ValueError, match="a metric failed"):
        loop.train_and_evaluate(_config(data_dir), run)  # resumes at 20: only the final part
    for name in ("samples.png", "reconstructions.png", "curves.png"):
        assert os.path.getsize(os.path.join(run, name)) > 0


def test_a_non_finite_final_metric_is_flagged(run, data_dir, monkeypatch, capsys):
    _drop_final_rows(run)
    monkeypatch.setattr(assembly, "evaluate", lambda *a, **k: {"test/x": float("nan"), "test/y": 1.0})
    loop.train_and_evaluate(_config(data_dir), run)
    last = _rows(run)[-1]
    assert last == {"step": 20, "test/x": None, "test/y": 1.0, "nonfinite": ["test/x"],
                    "final": True}
    assert "non-finite final metric(s) test/x" in capsys.readouterr().err


# --- The whole state is checked before it is saved -------------------------------------------

def test_a_non_finite_optimizer_state_is_never_written(data_dir, tmp_path, monkeypatch):
    """Adam's second moments overflow while the parameters and losses stay finite (as
    under a learning rate of 1e6): the run stops naming the leaf, and the newest
    checkpoint is the last finite one."""
    import jax.numpy as jnp

    real = assembly.TASKS["vae"]

    def poisoned(*args, **kwargs):
        task = real(*args, **kwargs)

        def step(state, batch):
            state, metrics = task.train_step(state, batch)
            net = state.nets["model"]
            bad = jax.tree_util.tree_map_with_path(  # Adam's nu: updates m/sqrt(nu) become 0
                lambda path, x: jnp.where(state.step >= 12, jnp.inf, x)
                if "nu" in checkpoint.leaf_path(path).split("/") else x, net.opt_state)
            return state.replace(nets={"model": net.replace(opt_state=bad)}), metrics

        return task._replace(train_step=step)

    monkeypatch.setitem(assembly.TASKS, "vae", poisoned)
    with pytest.raises(loop.NonFiniteError, match=r"steps 11-15, seen at step 15: state leaf "
                                                  r"nets/model/opt_state/0/nu/.*the last good "
                                                  r"checkpoint \(step 10\) is kept"):
        loop.train_and_evaluate(_config(data_dir), str(tmp_path))
    assert Checkpointer(str(tmp_path / "checkpoints"), read_only=True).all_steps() == [10]


# --- One run per workdir --------------------------------------------------------------------

def _hold_lock(workdir: str):
    """A process that holds ``workdir``'s lock until killed (waits until it does)."""
    import subprocess

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from genjax import runlock; "
         "runlock.acquire(sys.argv[1]); print('held', flush=True); time.sleep(120)", workdir],
        stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_launcher_stops_at_once_and_a_dead_run_blocks_nothing(data_dir, tmp_path):
    from genjax import runlock

    workdir = tmp_path / "run"
    workdir.mkdir()
    holder = _hold_lock(str(workdir))
    try:
        done = run_command(_vae_command(str(workdir), data_dir))
    finally:
        holder.kill()
        holder.wait(timeout=30)
    lines = stderr_lines(done)
    assert done.returncode == 1 and len(lines) == 1, lines
    assert re.match(rf"error: WorkdirInUseError: {workdir} is in use by pid {holder.pid} on host "
                    rf"\S+ since \d{{4}}-\d\d-\d\d .*choose another --workdir", lines[0]), lines[0]
    assert os.listdir(workdir) == [runlock.LOCK]  # nothing written
    runlock.release(runlock.acquire(str(workdir)))  # the killed holder's lock went with it


# --- The record holds only what ran ---------------------------------------------------------

def test_a_resume_that_fails_before_its_first_step_records_nothing(run, data_dir, monkeypatch):
    before = _snapshot(run)

    def unreadable(*args, **kwargs):
        raise OSError("the data disk went away")

    monkeypatch.setattr(loop.gdata, "train_iterator", unreadable)
    with pytest.raises(OSError, match="the data disk went away"):
        loop.train_and_evaluate(_config(data_dir, num_steps=30, learning_rate=2e-3), run)
    assert not os.path.exists(os.path.join(run, record.RESUMES))
    assert record.run_config(run).learning_rate == 1e-3
    after = _snapshot(run)  # the lock file names its last holder; the rest is as it was
    assert {k: v for k, v in after.items() if k != "run.lock"} == {
        k: v for k, v in before.items() if k != "run.lock"}


def test_a_resume_that_changes_what_the_model_means_writes_nothing(run, data_dir):
    before = _snapshot(run)
    with pytest.raises(record.ResumeRefusedError,
                       match=r"Cannot resume .* with batch_size 32 -> 100000, beta 1.0 -> 0.5: "
                             r"these fields change what the trained model means. Fields that may "
                             r"change on resume: .*learning_rate.*num_steps.*another --workdir"):
        loop.train_and_evaluate(_config(data_dir, batch_size=100000, beta=0.5), run)
    assert _snapshot(run) == before


@pytest.mark.parametrize("module,changed,refused", [
    ("ddpm_mnist", {"prediction": "v"}, True),
    ("ddpm_mnist", {"timesteps": 50}, True),
    ("ddpm_mnist", {"schedule": "cosine"}, True),
    ("ddpm_mnist", {"sampler": "ddim", "sample_steps": 20, "learning_rate": 5e-4}, False),
    ("rbm_pcd_mnist", {"persistent": False}, True),
    ("rbm_pcd_mnist", {"ais_runs": 50, "num_steps": 100, "train_minutes": 1.0}, False),
    ("dcgan_mnist", {"ema_decay": 0.9}, True),
    ("dcgan_mnist", {"g_learning_rate": 1e-3, "parallel": "pmap", "steps_per_call": 4}, False),
], ids=lambda v: str(v) if not isinstance(v, bool) else ("refused" if v else "allowed"))
def test_the_resume_registry(module, changed, refused, tmp_path):
    import importlib

    from genjax.tasks import RESUMABLE

    c = importlib.import_module(f"genjax.configs.{module}").get_config("test")
    (tmp_path / record.CONFIG).write_text(json.dumps(record.plain(c)))
    c.update(changed)
    check = lambda: record.check_resumable(str(tmp_path), c, RESUMABLE[c.task])  # noqa: E731
    if refused:
        (field,) = changed
        with pytest.raises(record.ResumeRefusedError, match=rf"with {field} .*this field changes"):
            check()
    else:
        assert set(check()) == set(changed)


# --- A checksum cannot be deleted away ------------------------------------------------------

@pytest.mark.parametrize("removed", [("checksum",), ("checksum", "_CHECKPOINT_METADATA")],
                         ids=["checksum", "checksum and step metadata"])
def test_a_step_that_lost_its_checksum_is_damaged(removed, run, data_dir, finished, caplog):
    for name in removed:
        path = os.path.join(run, "checkpoints", "20", name)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    state = train_unfinished(_config(data_dir), run)
    chex.assert_trees_all_equal(jax.device_get(state), finished[1])  # resumed from step 10
    (warning,) = [r.getMessage() for r in caplog.records if "unusable" in r.getMessage()]
    assert "step 20" in warning and "checksum is missing" in warning
    assert [n.split("-")[0] for n in os.listdir(os.path.join(run, "corrupt_checkpoints"))] == ["20"]


def test_a_step_of_the_older_format_loads_unverified(tmp_path, caplog):
    tree = {"w": np.arange(3.0, dtype=np.float32)}
    with ocp.CheckpointManager(str(tmp_path / "checkpoints")) as manager:  # as before checksums
        manager.save(5, args=ocp.args.Composite(**{checkpoint.STATE: ocp.args.StandardSave(tree)}))
    restored = Checkpointer(str(tmp_path / "checkpoints"), read_only=True).restore(tree)
    chex.assert_trees_all_equal(restored, tree)
    assert any("no checksum (an older format)" in r.getMessage() for r in caplog.records)


# --- The evaluator and the trainer's rotation -----------------------------------------------

def test_a_step_rotated_away_while_read_is_retried_on_the_newest(run, finished, monkeypatch):
    shutil.rmtree(os.path.join(run, "checkpoints", "10"))  # keep_checkpoints=1: no older step
    ckpts, real, calls = os.path.join(run, "checkpoints"), Checkpointer._read, []

    def rotating(self, step, abstract):
        calls.append(step)
        if len(calls) == 1:  # the trainer writes step 30 and deletes step 20 mid-read
            os.rename(os.path.join(ckpts, "20"), os.path.join(ckpts, "30"))
            raise FileNotFoundError(f"{ckpts}/20/default/manifest.ocdbt")
        return real(self, step, abstract)

    monkeypatch.setattr(Checkpointer, "_read", rotating)
    restored = Checkpointer(ckpts, read_only=True).restore(finished[1])
    chex.assert_trees_all_equal(jax.device_get(restored), finished[1])
    assert calls == [20, 30]


def test_a_run_rotating_faster_than_reads_is_said_so(run, finished, monkeypatch):
    listed = Checkpointer.all_steps
    monkeypatch.setattr(Checkpointer, "all_steps", lambda self: listed(self) + [99])  # never there
    with pytest.raises(checkpoint.CheckpointsRotatingError,
                       match=r"6 checkpoints in .* were deleted while being read .*rotating "
                             r"checkpoints faster than they can be read"):
        Checkpointer(os.path.join(run, "checkpoints"), read_only=True).restore(finished[1])


@pytest.mark.slow(seconds=90)
def test_evaluations_beside_a_run_that_keeps_one_checkpoint_never_fail(data_dir, tmp_path):
    """Real processes: a trainer writing a checkpoint every step and keeping one, and the
    evaluator reading it over and over meanwhile."""
    import subprocess
    import time

    workdir = str(tmp_path / "run")
    trainer = subprocess.Popen(
        _vae_command(workdir, data_dir, "--config.num_steps=400", "--config.checkpoint_every=1",
                     "--config.keep_checkpoints=1", "--config.log_every=50"),
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True).all_steps():
            assert time.monotonic() < deadline and trainer.poll() is None, trainer.stderr.read()
            time.sleep(0.2)
        scored = [evaluate_cli.evaluate_run(workdir, 50) for _ in range(3)]
        overlapped = trainer.poll() is None
        assert trainer.wait(timeout=300) == 0, trainer.stderr.read()
    finally:
        trainer.kill()
    assert overlapped and len(scored) == 3


# --- One line per damage, whatever the damage -----------------------------------------------

def _damage(workdir: str, how: str) -> None:
    """Damage step 20 of ``workdir`` as a disk or a person might."""
    step = os.path.join(workdir, "checkpoints", "20", checkpoint.STATE)
    files = {"truncated data": glob.glob(f"{step}/**/d/*", recursive=True),
             "flipped array metadata": glob.glob(f"{step}/array_metadatas/*"),
             "flipped manifest": glob.glob(f"{step}/**/manifest.ocdbt", recursive=True),
             "flipped data": glob.glob(f"{step}/**/d/*", recursive=True)}[how]
    for path in files:
        data = bytearray(open(path, "rb").read())
        if how == "truncated data":
            data = data[:len(data) // 2]
        else:
            data[len(data) // 2] ^= 0xFF
        open(path, "wb").write(bytes(data))


def _vae_command(workdir: str, data_dir: str, *flags: str) -> list[str]:
    """The `vae_mnist:test` training command on ``workdir``."""
    return [sys.executable, "-m", "experiments.vae",
            "--config=vae_mnist:test", f"--workdir={workdir}",
            f"--config.data_dir={data_dir}", *flags]


@pytest.mark.parametrize("how", [
    "truncated data",
    pytest.param("flipped array metadata", marks=pytest.mark.slow(seconds=30)),
    pytest.param("flipped manifest", marks=pytest.mark.slow(seconds=30)),
    pytest.param("flipped data", marks=pytest.mark.slow(seconds=30)),
])
def test_a_damaged_step_costs_one_warning_line(how, run, data_dir):
    _damage(run, how)
    done = run_command(_vae_command(run, data_dir))
    lines = stderr_lines(done)
    assert done.returncode == 0 and len(lines) == 1, lines[:20]
    assert "Checkpoint step 20 is unusable" in lines[0] and "trying an older one" in lines[0]
    assert re.search(r"Resumed from .* at step 10\b", done.stdout)


@pytest.mark.slow(seconds=30)
def test_a_full_disk_costs_one_error_line(run, data_dir):
    import shlex

    train = shlex.join(_vae_command(run, data_dir, "--config.num_steps=30"))
    # Files past 300 kB fail with EFBIG, as on a full disk (SIGXFSZ ignored, not fatal).
    done = run_command(["bash", "-c", f"trap '' XFSZ; ulimit -f 293; exec {train}"])
    lines = stderr_lines(done)
    assert done.returncode == 1 and len(lines) == 1, lines[:20]
    assert re.match(r"error: CheckpointWriteError: .*step 30 .*File too large \[errno 27\]. The "
                    r"previous checkpoint \(step 20\) is intact", lines[0]), lines[0]


# --- The final-row rule ---------------------------------------------------------------------

def test_a_finished_run_run_again_touches_nothing(run, data_dir, finished, capsys):
    before = _snapshot(run)
    state = loop.train_and_evaluate(_config(data_dir), run)
    chex.assert_trees_all_equal(jax.device_get(state), finished[1])
    assert _snapshot(run) == before
    assert f"The run in {run} is finished at step 20" in capsys.readouterr().out


def test_a_final_evaluation_run_again_supersedes_the_old_final_row(run, data_dir):
    old = [r for r in _rows(run) if r.get("final")]
    loop.train_and_evaluate(_config(data_dir, eval_samples=100), run)
    finals = [r for r in _rows(run) if r.get("final")]
    assert len(old) == len(finals) == 1 and finals[0]["step"] == 20 and finals != old
    assert [r for r in _rows(run, record.SUPERSEDED) if r.get("final")] == old
    (entry,) = _rows(run, record.RESUMES)
    assert entry["changed"] == {"eval_samples": {"from": 200, "to": 100}}
