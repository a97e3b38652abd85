"""What a run shows a person: the progress bar and lines, the steady rate, the writers."""

import io
import json
import math
import re
import sys
import time

import numpy as np
import pytest

from genjax import report

from conftest import wandb_offline_run


def _progress(bar_file=None, ncols=None):
    clock = report.TrainClock()
    return report.Progress(0, 100_000, 64, clock, bar_file=bar_file, ncols=ncols), clock


def test_bar_stays_readable_at_80_columns(capsys):
    """The bar, drawn at 80 columns with long metric names and big numbers, never passes
    80 characters and still shows the step, a loss and the examples/s; every log step
    also gets one line on stdout."""
    buf = io.StringIO()
    progress, _ = _progress(buf, ncols=80)
    progress.compiled(12.3)
    metrics = {"train/generator_loss_non_saturating": 123456.789,
               "train/discriminator_loss": 0.5, "train/gradient_penalty": 3.0}
    for step in range(1000, 100_001, 1000):
        progress.advance(step)
        if step % 10_000 == 0:
            progress.update(step, metrics)
    progress.close()
    frames = [f for f in re.split(r"[\r\n]", buf.getvalue()) if f.strip()]
    assert frames and max(map(len, frames)) <= 80, max(frames, key=len)
    assert re.search(r"100000/100000 \[.*, [\d,]+ ex/s, generator_loss", frames[-1]), frames[-1]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "... compiled in 12.3 s" and len(lines) == 11
    assert re.fullmatch(r"step 10000/100000 \| generator_loss_non_saturating 1\.235e\+05, "
                        r"discriminator_loss 0\.5 \| [\d,]+ ex/s \| \d+:\d\d elapsed, "
                        r"ETA \d+:\d\d", lines[1]), lines[1]


def test_eta_ends_at_the_time_budget(capsys):
    """With a time budget (``config.train_minutes``) far shorter than the steps, the ETA is
    the budget's end, not the last step's."""
    clock = report.TrainClock()
    progress = report.Progress(0, 10**9, 64, clock, budget_minutes=2.0)
    progress.compiled(0.1)
    time.sleep(0.05)
    progress.update(10, {"train/loss": 1.0})
    eta = capsys.readouterr().out.splitlines()[-1].rsplit("ETA ", 1)[1]
    assert eta in ("2:00", "1:59"), eta


def test_without_a_terminal_there_are_lines_and_no_bar(capsys):
    """Under pytest stderr is no terminal, as in CI logs and pipes: no bar is drawn, so
    no carriage returns; the lines come on stdout."""
    assert not sys.stderr.isatty()
    progress, _ = _progress()
    progress.compiling("none")
    progress.compiled(1.0)
    progress.advance(10)
    progress.update(10, {"train/loss": 2.0})
    progress.close()
    out = capsys.readouterr()
    assert "\r" not in out.out + out.err and out.err == ""
    assert out.out.splitlines()[0] == "Compiling the train step (none) ..."
    assert out.out.splitlines()[2].startswith("step 10/100000 | loss 2 | ")


def test_steady_rate_leaves_the_phases_out():
    """A window of 10 steps x 64 examples that spent 0.5 s in an evaluation and 0.3 s in
    a checkpoint: counted, the rate could not pass 640 / 0.8 = 800 examples/s; left out,
    the window is the microseconds around them. The clock keeps each phase's time, and
    ``minutes()`` (config.train_minutes) leaves only the evaluation out."""
    progress, clock = _progress()
    progress.compiled(0.0)
    with clock.phase("evaluation"):
        time.sleep(0.5)
    with clock.phase("checkpoints"):
        time.sleep(0.3)
    rate = progress.update(10, {"train/loss": 1.0})
    assert rate > 100 * 800, rate
    assert clock.spent["evaluation"] >= 0.5 and clock.spent["checkpoints"] >= 0.3
    assert clock.steady_examples == 640
    assert 0.3 / 60 <= clock.minutes() < (0.3 + 0.4) / 60
    assert re.fullmatch(r"Time: 0:01 in all; training 0:00 at [\d,]+ examples/s; compile 0\.0 s, "
                        r"evaluation 0\.5 s, pictures 0\.0 s, checkpoints 0\.3 s\.",
                        clock.summary()), clock.summary()


def test_every_writer_gets_the_same_calls_and_keeps_them(tmp_path, monkeypatch):
    """One sequence of calls through `MetricWriter` reaches the JSONL file (PNGs beside),
    TensorBoard (read back by TensorBoard's own reader) and an offline W&B run (read
    back from its file), each `Writer` keeping every value, the NaN included."""
    from tensorboard.backend.event_processing import event_accumulator

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "wb").mkdir()
    config = {"wandb_project": "genjax-tests", "num_steps": 20}
    writer = report.MetricWriter(str(tmp_path), png_dir=str(tmp_path / "samples"), config=config)
    assert [type(w).__name__ for w in writer.writers] == ["JsonlWriter", "TensorBoardWriter",
                                                           "WandbWriter"]
    assert all(isinstance(w, report.Writer) for w in writer.writers)
    rows = [(5, {"train/loss": 2.5, "train/kl": 0.25}, False),
            (10, {"train/loss": float("nan"), "train/kl": 0.125}, False),
            (10, {"test/nll": 90.5}, True)]
    grid = np.linspace(0, 1, 4 * 3 * 3).reshape(4, 3, 3, 1)
    for step, values, final in rows:
        assert writer.scalars(step, values, final) == [k for k, v in values.items() if v != v]
    writer.images(10, {"samples": grid})
    writer.close()

    jsonl = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert jsonl == [{"step": 5, "train/loss": 2.5, "train/kl": 0.25},
                     {"step": 10, "train/loss": None, "train/kl": 0.125, "nonfinite": ["train/loss"]},
                     {"step": 10, "test/nll": 90.5, "final": True}]
    assert (tmp_path / "samples" / "samples_0000010.png").stat().st_size > 0

    events = event_accumulator.EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={
        event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0})
    events.Reload()
    tb = {(e.step, tag): e.value for tag in events.Tags()["scalars"] for e in events.Scalars(tag)}
    assert tb.pop((10, "train/loss")) != tb.get((10, "train/loss"), 0)  # NaN kept as NaN
    assert tb == {(5, "train/loss"): 2.5, (5, "train/kl"): 0.25, (10, "train/kl"): 0.125,
                  (10, "test/nll"): 90.5}
    [image] = events.Images("samples")
    assert (image.step, image.width, image.height) == (10, 9, 9)  # 2 x 2 tiles of 3 + borders

    history, summary = wandb_offline_run(tmp_path / "wb")
    logged = [{k: v for k, v in row.items() if k.startswith(("train/", "test/"))}
              for row in history]
    assert math.isnan(logged[1].pop("train/loss"))
    assert logged == [{"train/loss": 2.5, "train/kl": 0.25}, {"train/kl": 0.125, "test/nll": 90.5}]
    assert [row["_step"] for row in history] == [5, 10]
    assert summary["test/nll"] == 90.5 and summary["train/kl"] == 0.125
    assert json.load(open(tmp_path / report.WANDB_RUN))["id"] in str(list((tmp_path / "wb"
                                                                            / "wandb").iterdir()))


def test_wandb_settings_are_checked_before_any_work(data_dir, monkeypatch, tmp_path):
    """A W&B project without the wandb package, and an unknown mode, stop the run in one
    line before the workdir is written or anything compiles."""
    from genjax.configs import vae_mnist
    from genjax import loop

    c = vae_mnist.get_config("test")
    c.data_dir, c.wandb_project = data_dir, "p"
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    with pytest.raises(report.WriterUnavailableError,
                       match=r"^config\.wandb_project='p' needs the wandb package, which is not "
                             r"installed: pip install wandb"):
        loop.train_and_evaluate(c, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match=r"config\.wandb_mode must be one of online, offline, "
                                         r"disabled, shared .* got 'offlin'\."):
        report.check_writers({"wandb_mode": "offlin"})


@pytest.mark.slow(seconds=60)
def test_launcher_with_wandb_offline_reaches_no_network_and_prints_plain_lines(
        data_dir, tmp_path, monkeypatch):
    """A `:test` run from the launcher, piped (no terminal) and logging to W&B offline,
    traced with strace: no process of it (W&B's core included) connects to anything but
    local sockets, its output has no carriage return, and the W&B run holds the final
    metrics of ``metrics.jsonl``."""
    import shutil

    from conftest import ROOT, run_command

    if shutil.which("strace") is None:
        pytest.skip("needs strace")
    trace, workdir = tmp_path / "connect.trace", tmp_path / "run"
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    done = run_command(["strace", "-f", "-qq", "-e", "trace=connect", "-o", str(trace),
                        sys.executable, "-m", "experiments.vae",
                        f"--config={ROOT}/genjax/configs/vae_mnist.py:test",
                        f"--config.data_dir={data_dir}", "--config.num_steps=4",
                        "--config.wandb_project=genjax-tests", f"--workdir={workdir}"])
    assert done.returncode == 0, done.stderr[-3000:]
    families = set(re.findall(r"connect\(\d+, \{sa_family=(\w+)", trace.read_text()))
    assert "AF_UNIX" in families <= {"AF_UNIX", "AF_NETLINK"}, families  # W&B's core: a unix socket
    assert "\r" not in done.stdout + done.stderr
    assert done.stdout.startswith("Compiling the train step (none) ...\n... compiled in ")
    final = [json.loads(line) for line in open(workdir / "metrics.jsonl")][-1]
    _, summary = wandb_offline_run(tmp_path)
    assert {k: summary[k] for k in final if k not in ("step", "final")} == \
        {k: v for k, v in final.items() if k not in ("step", "final")}


def test_curves_pass_over_a_line_cut_short(tmp_path):
    """A metrics line cut short by a kill (then appended to by the resume) is passed over:
    the curves of the readable rows are drawn, where the end of the run used to fail."""
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 5, "train/loss": 2.5}\n{"step": 10, "train/lo'
                    '{"step": 10, "train/loss": 2.0}\n[1]\n{"step": 15, "train/loss": 1.5, '
                    '"final": true}\n')
    assert report._curves(str(path)) == {"train/loss": ([5, 15], [2.5, 1.5])}
    png = str(tmp_path / "curves.png")
    assert report.plot_curves(str(path), png) == png and (tmp_path / "curves.png").stat().st_size
    path.write_text('{"step": 5, "train/loss": 2.5}\n{"ste\n')  # one point: no curve
    assert report.plot_curves(str(path), str(tmp_path / "none.png")) is None
    assert not (tmp_path / "none.png").exists()
