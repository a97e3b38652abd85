"""One-step-scale end-to-end runs of the real loop: outputs, exact resume, failure handling."""

import json
import os
import re
import shutil
import signal
import time

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.configs import vae_mnist
from genjax import loop, record
from genjax.checkpoint import Checkpointer, CheckpointWriteError

from conftest import train_unfinished, wandb_offline_run


def _config(data_dir, **overrides):
    c = vae_mnist.get_config("test")
    c.data_dir = data_dir
    c.update(overrides)
    return c


@pytest.fixture(scope="module")
def straight(data_dir, tmp_path_factory):
    """A 20-step run without interruption: the reference for every resume test."""
    workdir = str(tmp_path_factory.mktemp("straight"))
    return workdir, loop.train_and_evaluate(_config(data_dir), workdir)


def test_run_leaves_every_output(straight):
    workdir, state = straight
    assert int(state.step) == 20
    for name in ("config.json", "metrics.jsonl", "samples.png", "reconstructions.png",
                 "curves.png"):
        assert os.path.getsize(os.path.join(workdir, name)) > 0, name
    assert any(f.startswith("events") for f in os.listdir(os.path.join(workdir, "tensorboard")))
    assert sorted(os.listdir(os.path.join(workdir, "samples")))[0].endswith(".png")
    records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    final = records[-1]
    assert final["step"] == 20 and 0 < final["test/iwae_nll_k10"] <= final["test/neg_elbo"] + 5
    assert [r["step"] for r in records if "train/loss" in r] == [5, 10, 15, 20]
    assert Checkpointer(os.path.join(workdir, "checkpoints"), every=10).latest_step() == 20
    assert json.load(open(os.path.join(workdir, "config.json")))["num_steps"] == 20


def test_corrupted_latest_checkpoint_falls_back(straight, data_dir, tmp_path):
    train_unfinished(_config(data_dir, num_steps=10), tmp_path)
    ckpts = tmp_path / "checkpoints"
    (ckpts / "15" / "default").mkdir(parents=True)  # a step folder with garbage in it
    (ckpts / "15" / "default" / "manifest.ocdbt").write_bytes(b"\x00truncated")
    (ckpts / "17.orbax-checkpoint-tmp-99").mkdir()  # an interrupted write
    resumed = train_unfinished(_config(data_dir), tmp_path)
    chex.assert_trees_all_equal(jax.device_get(resumed), jax.device_get(straight[1]))
    assert os.listdir(tmp_path / "corrupt_checkpoints")[0].startswith("15-")  # kept, not deleted


def _nan_images_at(monkeypatch, bad_steps):
    """Make the train iterator hand NaN images to the given (1-based) steps."""
    real = loop.gdata.train_iterator

    def poisoned(*args, start_step=0, **kwargs):
        for step, batch in enumerate(real(*args, start_step=start_step, **kwargs),
                                     start_step + 1):
            if step in bad_steps:
                batch = {**batch, "image": np.full_like(batch["image"], np.nan)}
            yield batch

    monkeypatch.setattr(loop.gdata, "train_iterator", poisoned)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(data_dir, tmp_path,
                                                                  monkeypatch):
    train_unfinished(_config(data_dir, num_steps=10), tmp_path)
    _nan_images_at(monkeypatch, {13})
    with pytest.raises(loop.NonFiniteError, match=r"steps 11-15, seen at step 15: .*train/loss"
                                                  r".*last good checkpoint \(step 10\)"):
        loop.train_and_evaluate(_config(data_dir), str(tmp_path))
    ckpt = Checkpointer(str(tmp_path / "checkpoints"), every=10)
    assert ckpt.latest_step() == 10
    good = ckpt.restore(jax.eval_shape(lambda: _init_state(data_dir)))
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(good.nets["model"].params))


def test_skip_nonfinite_steps_drops_and_counts_the_bad_updates(data_dir, tmp_path, monkeypatch):
    _nan_images_at(monkeypatch, {12, 13, 18})
    state = train_unfinished(_config(data_dir, skip_nonfinite_steps=True), tmp_path)
    assert int(state.step) == 20
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state.nets))
    logged = {r["step"]: r["train/nonfinite_skipped"]
              for r in map(json.loads, open(tmp_path / "metrics.jsonl"))
              if "train/nonfinite_skipped" in r}
    assert logged == {5: 0, 10: 0, 15: 2, 20: 1}


@pytest.fixture
def file_size_limit():
    """``limit(n)``: files this process writes fail past n bytes, as on a full disk
    (RLIMIT_FSIZE; SIGXFSZ ignored so the write returns EFBIG instead of killing us)."""
    import resource

    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    yield lambda n: resource.setrlimit(resource.RLIMIT_FSIZE, (n, old_limit[1]))
    resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
    signal.signal(signal.SIGXFSZ, old_handler)


def test_failed_checkpoint_write_is_clear_and_the_previous_one_resumes(
        straight, data_dir, tmp_path, file_size_limit):
    train_unfinished(_config(data_dir, num_steps=10), tmp_path)
    file_size_limit(200_000)  # the VAE's checkpoint files are larger: its next write fails
    with pytest.raises(CheckpointWriteError, match=r"checkpoint of step 20 .*File too large "
                                                   r"\[errno 27\]\. The previous checkpoint "
                                                   r"\(step 10\) is intact"):
        loop.train_and_evaluate(_config(data_dir), str(tmp_path))
    file_size_limit(-1)  # RLIM_INFINITY: the disk has room again
    resumed = train_unfinished(_config(data_dir), tmp_path)
    chex.assert_trees_all_equal(jax.device_get(resumed), jax.device_get(straight[1]))


def _init_state(data_dir):
    from genjax.tasks import TASKS
    return TASKS["vae"](_config(data_dir), (28, 28, 1)).init(jax.random.key(0))


def test_unknown_task_is_a_clear_error(data_dir, tmp_path):
    with pytest.raises(ValueError, match="Unknown task 'gan_x'; valid: vae"):
        loop.train_and_evaluate(_config(data_dir, task="gan_x"), str(tmp_path))


@pytest.mark.slow(seconds=130)  # on 2 cores: five launches
def test_chaos_short_form_three_kills_end_bitwise_equal(data_dir, tmp_path):
    """`benchmarks.chaos` with R = 3 on the SNGAN (BatchNorm, spectral norm and EMA in the
    state): one kill lands in a checkpoint write, and the final state equals an
    uninterrupted run's. (The VAE's run, a subset of this state, is the benchmark's.)"""
    from benchmarks import chaos

    r = chaos.chaos("sngan_mnist:test", kills=3, steps=16, every=2, seed=0,
                    root=str(tmp_path), data_dir=data_dir)
    assert r["kills"] == 3 and r["kills_during_a_write"] >= 1, r
    assert len(r["resumed_at"]) == 3, r  # every restart resumed from a checkpoint
    assert r["identical"], r["differing_leaves"]


def test_checkpoint_of_another_model_is_a_clear_error_and_stays(tmp_path):
    from genjax.checkpoint import CheckpointMismatchError

    ckpt = Checkpointer(str(tmp_path), every=1, asynchronous=False)
    ckpt.save(1, {"params": {"a": jnp.zeros(3), "b": jnp.ones((2, 2))}, "rng": jax.random.key(0)})
    with pytest.raises(CheckpointMismatchError,
                       match=r"Shape differs \(checkpoint vs model\): 1 \(params/a \(3,\) vs \(4,\)\)\. "
                             r"In the checkpoint, not in this model: 1 \(params/b\)\."):
        ckpt.restore({"params": {"a": jnp.zeros(4)}, "rng": jax.random.key(1)})
    assert (tmp_path / "1").is_dir()  # not mistaken for a corrupt checkpoint and moved aside


def test_several_steps_per_call_equal_one_per_call(straight, data_dir, tmp_path, capsys,
                                                  monkeypatch):
    """``steps_per_call=3`` (one ``lax.scan`` per call, cut short at every log and
    checkpoint step: calls of 3 and 2) ends bitwise equal and logs the same losses (up to
    the float32 order of the sums over a log window). The run says it compiles, and its
    evaluation at step 10, made 2 s slower, stays out of the steady examples/s of steps
    11-15: counted, they could not pass 5 x 32 / 2 = 80 examples/s."""
    evaluate = loop.Setup.evaluate

    def slow(self, state, final=False):
        time.sleep(2.0)
        return evaluate(self, state, final)

    monkeypatch.setattr(loop.Setup, "evaluate", slow)
    state = train_unfinished(_config(data_dir, steps_per_call=3, eval_every=10), tmp_path)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Compiling the train step (none, 3 steps per call) ..."
    assert re.fullmatch(r"\.\.\. compiled in \d+\.\d s", out[1]), out[1]
    assert [line.split(" |")[0] for line in out[2:6]] == [f"step {s}/20" for s in (5, 10, 15, 20)]
    assert float(re.search(r", evaluation ([\d.]+) s,", out[6]).group(1)) >= 2.0, out[6]
    rates = {r["step"]: r["train/examples_per_sec"] for r in map(json.loads,
             open(tmp_path / "metrics.jsonl")) if "train/examples_per_sec" in r}
    assert rates[15] > 3 * 80, rates
    chex.assert_trees_all_equal(jax.device_get(state), jax.device_get(straight[1]))
    logged = lambda path: [(r["step"], r["train/loss"]) for r in map(json.loads, open(path))
                           if "train/loss" in r]
    mine = logged(tmp_path / "metrics.jsonl")
    reference = logged(os.path.join(straight[0], "metrics.jsonl"))
    assert [s for s, _ in mine] == [s for s, _ in reference] == [5, 10, 15, 20]
    np.testing.assert_allclose([v for _, v in mine], [v for _, v in reference], rtol=1e-6)


def test_train_minutes_stops_with_a_checkpoint_and_a_rerun_continues(
        straight, data_dir, tmp_path, capsys, monkeypatch):
    """A spent ``train_minutes`` stops after the first step with a checkpoint, a final
    evaluation and the clock logged; running again without the budget ends bitwise equal
    to the uninterrupted run. Both runs also log to W&B (offline): the first run's W&B
    files hold its final metrics, and the resumed run compiles with its line and
    continues the same W&B run."""
    wandb_dirs = tmp_path / "wandb1", tmp_path / "wandb2"
    for d in wandb_dirs:
        d.mkdir()
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(wandb_dirs[0]))
    workdir = tmp_path / "run"
    stopped = loop.train_and_evaluate(_config(data_dir, train_minutes=1e-9,
                                              wandb_project="genjax-tests"), str(workdir))
    assert int(stopped.step) == 1
    assert Checkpointer(str(workdir / "checkpoints"), every=10).latest_step() == 1
    rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
    assert rows[0]["step"] == 1 and rows[0]["train/minutes"] > 0
    assert rows[-1]["step"] == 1 and "test/neg_elbo" in rows[-1]
    history, summary = wandb_offline_run(wandb_dirs[0])
    assert {k: summary[k] for k in rows[-1] if k not in ("step", "final")} == \
        {k: v for k, v in rows[-1].items() if k not in ("step", "final")}
    assert history[0]["_step"] == 1 and history[0]["train/loss"] == rows[0]["train/loss"]
    run_id = json.load(open(workdir / "wandb_run.json"))["id"]
    capsys.readouterr()
    monkeypatch.setenv("WANDB_DIR", str(wandb_dirs[1]))
    state = train_unfinished(_config(data_dir, wandb_project="genjax-tests"), workdir)
    chex.assert_trees_all_equal(jax.device_get(state), jax.device_get(straight[1]))
    out = capsys.readouterr().out
    assert re.search(r"^Compiling the train step \(none\) \.\.\.\n\.\.\. compiled in [\d.]+ s\n"
                     r"Resumed from .* at step 1\b", out, re.M), out
    assert json.load(open(workdir / "wandb_run.json"))["id"] == run_id
    history, _ = wandb_offline_run(wandb_dirs[1])
    assert [r["_step"] for r in history if "train/loss" in r] == [5, 10, 15, 20]
    assert any(d.endswith(f"-{run_id}") for d in os.listdir(wandb_dirs[1] / "wandb"))


@pytest.mark.slow
def test_gaussian_vae_ends_with_scored_samples(data_dir, tmp_path):
    """A Gaussian decoder's means are unbounded; the images drawn from them are clipped
    to [0, 1] before the domain metrics (which refuse anything outside)."""
    c = _config(data_dir, likelihood="gaussian", preprocess="unit", num_steps=2,
                log_every=1, checkpoint_every=2, sample_every=2)
    loop.train_and_evaluate(c, str(tmp_path))
    final = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")][-1]
    assert np.isfinite(final["test/domain_fid"]) and np.isfinite(final["test/neg_elbo"])


def test_a_run_recorded_before_a_field_existed_still_resumes(straight, data_dir, tmp_path):
    """A record without a field of `record.ADDED_FIELDS` reads as the value such a run had:
    the run is still finished with today's config, and resumes with its default; another
    value of the field is refused as a change."""
    workdir = str(tmp_path / "run")
    shutil.copytree(straight[0], workdir)
    path = os.path.join(workdir, record.CONFIG)
    old = json.load(open(path))
    for field in record.ADDED_FIELDS:
        del old[field]
    json.dump(old, open(path, "w"))
    assert loop._finished(loop.setup(_config(data_dir)), Checkpointer(
        os.path.join(workdir, "checkpoints"), read_only=True), workdir) is not None
    assert record.check_resumable(workdir, _config(data_dir, num_steps=30)) == {
        "num_steps": {"from": 20, "to": 30}}
    with pytest.raises(record.ResumeRefusedError, match=r"image_channels"):
        record.check_resumable(workdir, _config(data_dir, image_channels=3))


@pytest.mark.parametrize("reuse_fakes, update", [(True, "shared"), (False, "alternating")])
def test_a_gan_run_recorded_with_the_older_update_flags_resumes(tmp_path, reuse_fakes, update):
    """A record from before ``gan_update`` (``reuse_fakes``, ``joint_critic``) reads as the
    update it ran (`record.REPLACED_FIELDS`): it resumes with that update, and another is
    refused as a change."""
    from genjax.configs import gan_mlp_mnist

    c = gan_mlp_mnist.get_config("test")
    old = record.plain(c)
    del old["gan_update"]
    old.update(reuse_fakes=reuse_fakes, joint_critic=True)
    (tmp_path / record.CONFIG).write_text(json.dumps(old))
    c.gan_update = update
    assert record.check_resumable(str(tmp_path), c) == {}
    c.gan_update = "simultaneous"
    with pytest.raises(record.ResumeRefusedError, match=r"gan_update"):
        record.check_resumable(str(tmp_path), c)
