"""What a run shows a person: metrics, image grids, curves, progress lines and time.

Metrics and grids go through one small interface, `Writer` (``scalars``, ``images``,
``close``), implemented by `JsonlWriter` (``metrics.jsonl``, PNG grids),
`TensorBoardWriter` and `WandbWriter` (optional: needs ``wandb``); `MetricWriter` is
the run's set of them, on process 0 only (multi-host runs otherwise race on the same
files). TensorBoard events are written with tensorboardX: a small pure-Python writer
that needs neither the TensorBoard server package nor TF summary ops in the train loop.

`TrainClock` splits a run's time into steady training and the phases around it
(compile, evaluation, pictures, checkpoints); `Progress` prints what a person reads.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from typing import Any, Iterator, Mapping, Protocol, TextIO, runtime_checkable

import jax
import numpy as np
from PIL import Image

from genjax import record


def image_grid(images: np.ndarray, ncols: int | None = None) -> np.ndarray:
    """Tile [N, H, W, C] images with values in [0, 1] into one uint8 [H', W', C] grid
    (``ncols`` columns, by default about sqrt(N)); [R, K, H, W, C] images are R rows of
    K columns, whatever R and K (a trajectory: one row per image)."""
    images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
    if images.ndim == 5:
        ncols, images = images.shape[1], images.reshape(-1, *images.shape[2:])
    n, h, w, c = images.shape
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    grid = np.ones((nrows * (h + 1) + 1, ncols * (w + 1) + 1, c), np.float32)
    for i, img in enumerate(images):
        r, q = divmod(i, ncols)
        grid[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + q * (w + 1):1 + q * (w + 1) + w] = img
    return (grid * 255).round().astype(np.uint8)


def save_grid(path: str, images: np.ndarray, ncols: int | None = None, scale: int = 2) -> str:
    """Write an image grid as PNG (nearest-neighbour upscaled by ``scale``); returns the path."""
    grid = image_grid(images, ncols)
    pil = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST).save(path)
    return path


def plot_curves(jsonl_path: str, png_path: str) -> str | None:
    """Plot every scalar logged more than once in a metrics JSONL file against ``step``
    into ``png_path``; returns it, or None (nothing written) when no scalar has two
    points. Rows that cannot be read (a line cut short by a kill) are passed over."""
    series = _curves(jsonl_path)
    if not series:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(series), 1, figsize=(7, 2.2 * len(series)), squeeze=False)
    for ax, (k, (xs, ys)) in zip(axes[:, 0], sorted(series.items())):
        ax.plot(xs, ys, marker="." if len(xs) < 30 else None)
        ax.set_ylabel(k, fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path


def _curves(jsonl_path: str) -> dict[str, tuple[list, list]]:
    """Name -> (steps, values) of every number logged more than once in the file (its
    readable rows, `genjax.record.read_rows`)."""
    series: dict[str, tuple[list, list]] = {}
    for row in record.read_rows(jsonl_path):
        for k, v in row.items():
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                xs, ys = series.setdefault(k, ([], []))
                xs.append(row["step"])
                ys.append(v)
    return {k: xy for k, xy in series.items() if len(xy[0]) > 1}  # curves, not final values


def info(message: str) -> None:
    """Print a run-level message (resume, final metrics) on process 0 only."""
    if jax.process_index() == 0:
        print(message, flush=True)


def warn(message: str) -> None:
    """Print a one-line warning to stderr on process 0 only."""
    if jax.process_index() == 0:
        print(f"WARNING: {message}", file=sys.stderr, flush=True)


class WriterUnavailableError(ValueError):
    """A configured metric writer needs a package that is not installed."""


@runtime_checkable
class Writer(Protocol):
    """Where a run's metrics go: one small interface that every writer implements.

    ``scalars`` takes one row of named values at ``step`` (``final``: the run's final
    evaluation); ``images`` takes [N, H, W, C] image batches in [0, 1] by name, each
    shown as one grid; ``close`` flushes and releases the writer. Values may be
    non-finite: each writer stores them as its format allows.
    """

    def scalars(self, step: int, metrics: Mapping[str, float], final: bool = False) -> None: ...

    def images(self, step: int, grids: Mapping[str, np.ndarray]) -> None: ...

    def close(self) -> None: ...


def nonfinite(values: Mapping[str, float]) -> list[str]:
    """The names of the non-finite values of ``values``."""
    return [k for k, v in values.items() if not math.isfinite(v)]


class JsonlWriter:
    """Scalars as JSON lines (``metrics.jsonl``, ``evaluations.jsonl``): one object per
    row, ``{"step": ..., name: value, ...}``; a non-finite value is written as null and
    its name listed under ``"nonfinite"`` (JSON has no NaN); a final row is marked
    ``"final": true`` (see `genjax.record` for the final-row rule). Images as PNG grids
    ``<png_dir>/<name>_<step>.png`` when ``png_dir`` is given."""

    def __init__(self, path: str, png_dir: str | None = None):
        self.path, self.png_dir = path, png_dir

    def scalars(self, step: int, metrics: Mapping[str, float], final: bool = False) -> None:
        bad = nonfinite(metrics)
        row = {"step": int(step), **{k: None if k in bad else float(v) for k, v in metrics.items()},
               **({"nonfinite": bad} if bad else {}), **({record.FINAL: True} if final else {})}
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")

    def images(self, step: int, grids: Mapping[str, np.ndarray]) -> None:
        if self.png_dir is None:
            return
        os.makedirs(self.png_dir, exist_ok=True)
        for name, imgs in grids.items():
            save_grid(os.path.join(self.png_dir, f"{name}_{step:07d}.png"), imgs)

    def close(self) -> None:
        pass


class TensorBoardWriter:
    """Scalars and image grids as TensorBoard events in ``directory``, written with
    tensorboardX; the events file is made at the first write (a run that fails before
    it has logged anything leaves no empty one). tensorboardX is imported here, not at
    the first write: its import takes seconds, which a run's first log would count."""

    def __init__(self, directory: str):
        from tensorboardX import SummaryWriter

        self.directory, self._writer, self._make = directory, None, SummaryWriter

    @property
    def _tb(self):
        if self._writer is None:
            self._writer = self._make(self.directory)
        return self._writer

    def scalars(self, step: int, metrics: Mapping[str, float], final: bool = False) -> None:
        for k, v in metrics.items():
            self._tb.add_scalar(k, float(v), step)
        self._tb.flush()

    def images(self, step: int, grids: Mapping[str, np.ndarray]) -> None:
        for name, imgs in grids.items():
            self._tb.add_image(name, image_grid(imgs), step, dataformats="HWC")
        self._tb.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


WANDB_RUN = "wandb_run.json"  # the workdir's W&B run id, so that a resume continues that run
WANDB_MODES = ("online", "offline", "disabled", "shared")


def check_writers(config: Mapping) -> None:
    """Refuse, before anything compiles, a config whose writers cannot be made: a W&B
    project without the wandb package, or an unknown ``wandb_mode``."""
    mode = config.get("wandb_mode")
    if mode is not None and mode not in WANDB_MODES:
        raise ValueError(f"config.wandb_mode must be one of {', '.join(WANDB_MODES)} (or None: "
                         f"WANDB_MODE decides), got {mode!r}.")
    project = config.get("wandb_project")
    if project:
        try:
            import wandb  # noqa: F401
        except ImportError as e:
            raise WriterUnavailableError(
                f"config.wandb_project={project!r} needs the wandb package, which is not "
                f"installed: pip install wandb (or pip install -e '.[wandb]').") from e


class WandbWriter:
    """Scalars and image grids to a Weights & Biases run (``config.wandb_project``, with
    ``wandb_entity`` and ``wandb_mode``; the run's config is the run's config).

    The run id is kept in ``<workdir>/wandb_run.json``: a resumed genjax run continues
    the same W&B run. W&B's history only grows (its steps must increase), so rows of
    steps a resume runs again are not sent a second time (``metrics.jsonl`` keeps
    them); a final evaluation also goes to the run's summary. W&B's own files go to
    ``$WANDB_DIR`` if set, else to ``<workdir>/wandb/``.
    """

    def __init__(self, workdir: str, config: Mapping):
        import wandb

        self._wandb = wandb
        path, run_id = os.path.join(workdir, WANDB_RUN), None
        if os.path.exists(path):
            with open(path) as f:
                run_id = json.load(f)["id"]
        self.run = wandb.init(project=config["wandb_project"], entity=config.get("wandb_entity"),
                              mode=config.get("wandb_mode"), id=run_id, resume="allow",
                              name=os.path.basename(workdir),
                              dir=os.environ.get("WANDB_DIR") or workdir)
        self.run.config.update(record.plain(config), allow_val_change=True)
        if run_id is None:
            with open(path, "w") as f:
                json.dump({"id": self.run.id}, f)

    def _log(self, step: int, row: dict) -> None:
        if step >= self.run.step:  # W&B drops (and warns about) steps below its current one
            self.run.log(row, step=step)

    def scalars(self, step: int, metrics: Mapping[str, float], final: bool = False) -> None:
        row = {k: float(v) for k, v in metrics.items()}
        self._log(step, row)
        if final:
            self.run.summary.update(row)

    def images(self, step: int, grids: Mapping[str, np.ndarray]) -> None:
        self._log(step, {name: self._wandb.Image(image_grid(imgs)) for name, imgs in grids.items()})

    def close(self) -> None:
        self.run.finish()


class MetricWriter:
    """The run's writers behind the one `Writer` interface, on process 0 only (multi-host
    runs would otherwise race on the same files): rows to ``<workdir>/<jsonl>`` and
    TensorBoard's ``<workdir>/tensorboard/``, grids to TensorBoard and to PNGs in
    ``png_dir``, and both to W&B when ``config.wandb_project`` names a project."""

    def __init__(self, workdir: str, jsonl: str = record.METRICS, png_dir: str | None = None,
                 config: Mapping | None = None):
        self.workdir = workdir
        self.jsonl_path = os.path.join(workdir, jsonl)
        self.writers: list[Writer] = []
        if jax.process_index() == 0:
            self.writers = [JsonlWriter(self.jsonl_path, png_dir),
                            TensorBoardWriter(os.path.join(workdir, "tensorboard"))]
            if config is not None and config.get("wandb_project"):
                self.writers.append(WandbWriter(workdir, config))

    def scalars(self, step: int, metrics: Mapping[str, float], final: bool = False) -> list[str]:
        """Write one row to every writer; returns the names of its non-finite values."""
        metrics = {k: float(v) for k, v in metrics.items()}
        for w in self.writers:
            w.scalars(step, metrics, final)
        return nonfinite(metrics)

    def images(self, step: int, grids: Mapping[str, np.ndarray]) -> None:
        for w in self.writers:
            w.images(step, grids)

    def close(self) -> None:
        for w in self.writers:
            w.close()


PHASES = ("compile", "evaluation", "pictures", "checkpoints")  # time off the steady rate


def duration(seconds: float) -> str:
    """``seconds`` as ``m:ss``, or ``h:mm:ss`` from an hour on."""
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class TrainClock:
    """A run's time: since the clock started, spent in each of `PHASES`, and spent on
    steady training.

    ``minutes()`` is what ``config.train_minutes`` and the logged ``train/minutes`` read:
    compile, pictures and checkpoints included, evaluations left out. The steady
    examples/s (the logs, ``train/examples_per_sec``) leave every phase out.
    """

    def __init__(self):
        self._start = time.perf_counter()
        self.spent = dict.fromkeys(PHASES, 0.0)
        self.steady_seconds, self.steady_examples = 0.0, 0

    def elapsed(self) -> float:
        """Seconds since the clock started."""
        return time.perf_counter() - self._start

    def minutes(self) -> float:
        """Minutes since the clock started, evaluations left out."""
        return (self.elapsed() - self.spent["evaluation"]) / 60

    def off_train(self) -> float:
        """Seconds spent in all phases so far."""
        return sum(self.spent.values())

    @contextlib.contextmanager
    def phase(self, name: str, sync: Any = None) -> Iterator[None]:
        """Count the time spent in this block as ``name`` (one of `PHASES`). ``sync``: a
        pytree of arrays to wait for first (not counted), so that train steps still
        queued by asynchronous dispatch count as training, not as this phase."""
        if sync is not None:
            jax.block_until_ready(sync)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.spent[name] += time.perf_counter() - start

    def excluded(self) -> contextlib.AbstractContextManager[None]:
        """Leave the time spent in this block off ``minutes()`` (an evaluation)."""
        return self.phase("evaluation")

    def summary(self) -> str:
        """One line: the time in all, the steady training time and rate, each phase."""
        rate = self.steady_examples / self.steady_seconds if self.steady_seconds else 0.0
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in self.spent.items())
        return (f"Time: {duration(self.elapsed())} in all; training {duration(self.steady_seconds)} "
                f"at {rate:,.0f} examples/s; {phases}.")


def headline(metrics: Mapping[str, float], n: int = 3) -> dict[str, float]:
    """Up to ``n`` values a person watches, names without their ``train/`` prefix: the
    losses (names with ``loss``), else the first metrics."""
    named = {k.removeprefix("train/"): v for k, v in metrics.items()}
    losses = {k: v for k, v in named.items() if "loss" in k}
    return dict(list((losses or named).items())[:n])


class Progress:
    """What a person reads while a run trains: the compile line and one line per log step
    (step, headline losses, steady examples/s, elapsed time and ETA) on stdout, and, on a
    terminal, a progress bar on stderr that fits its width. Output that is not a terminal
    (CI logs, pipes) gets the lines only, never a bar's carriage returns. Process 0 only.

    Args:
      start, total: the first and the last step of this invocation.
      examples_per_step: training examples per step (the global batch).
      clock: the run's clock; the steady rate leaves its phases out.
      budget_minutes: the invocation's time budget (``config.train_minutes``; 0: none):
        the ETA is the sooner of the last step and the budget's end.
      bar_file: where to draw the bar (default: stderr when it is a terminal; None there
        otherwise). ``ncols``: the bar's width (default: the terminal's, as it changes).
    """

    def __init__(self, start: int, total: int, examples_per_step: int, clock: TrainClock,
                 bar_file: TextIO | None = None, ncols: int | None = None,
                 budget_minutes: float = 0.0):
        self.total, self.examples_per_step, self.clock = total, examples_per_step, clock
        self.budget_minutes = budget_minutes
        self.active = jax.process_index() == 0
        self._first = self._last_step = start
        self._last_time, self._last_off = time.perf_counter(), clock.off_train()
        self._since, self._compile_before = self._last_time, clock.spent["compile"]
        if bar_file is None and sys.stderr.isatty():
            bar_file = sys.stderr
        self._bar_file, self._ncols, self._bar = bar_file, ncols, None

    def compiling(self, driver: str) -> None:
        """Say that the step compiles (before the first step)."""
        if self.active:
            print(f"Compiling the train step ({driver}) ...", flush=True)

    def compiled(self, seconds: float) -> None:
        """Say how long it took; the bar and the steady window start now."""
        self._last_time, self._last_off = time.perf_counter(), self.clock.off_train()
        self._since, self._compile_before = self._last_time, self.clock.spent["compile"]
        if not self.active:
            return
        print(f"... compiled in {seconds:.1f} s", flush=True)
        if self._bar_file is not None:
            from tqdm import tqdm
            self._bar = tqdm(total=self.total, initial=self._last_step, file=self._bar_file,
                             ncols=self._ncols, dynamic_ncols=self._ncols is None,
                             bar_format="{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                                        "[{elapsed}<{remaining}{postfix}]")

    def advance(self, step: int) -> None:
        """Move the bar to ``step`` (cheap: tqdm redraws at most ten times a second)."""
        if self._bar is not None:
            self._bar.update(step - self._bar.n)

    def update(self, step: int, metrics: Mapping[str, float]) -> float:
        """Report the log step ``step``; returns the steady examples/s since the previous
        one: its examples over its time less the time spent in the clock's phases
        (compile, evaluation, pictures, checkpoints)."""
        now, off = time.perf_counter(), self.clock.off_train()
        seconds = max(now - self._last_time - (off - self._last_off), 1e-9)
        examples = (step - self._last_step) * self.examples_per_step
        rate = examples / seconds
        self.clock.steady_seconds += seconds
        self.clock.steady_examples += examples
        self._last_step, self._last_time, self._last_off = step, now, off
        if self.active:
            self._show(step, metrics, rate, self._eta(step, now))
        return rate

    def _eta(self, step: int, now: float) -> float:
        """Seconds to ``total`` at this invocation's pace so far (compile left out;
        evaluations, pictures and checkpoints in; the final evaluation not counted), or
        to the end of the time budget when that comes first."""
        done = step - self._first
        taken = now - self._since - (self.clock.spent["compile"] - self._compile_before)
        eta = (self.total - step) * taken / done if done else 0.0
        if self.budget_minutes:
            eta = min(eta, max(0.0, 60 * (self.budget_minutes - self.clock.minutes())))
        return eta

    def _show(self, step: int, metrics: Mapping[str, float], rate: float, eta: float) -> None:
        shown = headline(metrics)
        losses = ", ".join(f"{k} {v:.4g}" for k, v in shown.items())
        line = (f"step {step}/{self.total} | {losses} | {rate:,.0f} ex/s | "
                f"{duration(self.clock.elapsed())} elapsed, ETA {duration(eta)}")
        if self._bar is None:
            print(line, flush=True)
            return
        from tqdm import tqdm
        tqdm.write(line, file=sys.stdout)
        first = next(iter(shown.items()), None)
        self._bar.set_postfix_str(", ".join(  # the rate first: a narrow bar cuts the end
            [f"{rate:,.0f} ex/s"] + ([f"{first[0]} {first[1]:.4g}"] if first else [])),
            refresh=False)
        self.advance(step)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
