"""What a run shows a person: metrics (JSON lines + TensorBoard), image grids, curves, progress.

TensorBoard events are written with tensorboardX: a small pure-Python writer that
needs neither the TensorBoard server package nor TF summary ops in the train loop.
Only process 0 writes (multi-host runs otherwise race on the same files).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from typing import Mapping

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
    """Plot every scalar logged more than once in a metrics JSONL file against ``step``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, tuple[list, list]] = {}
    with open(jsonl_path) as f:
        for line in f:
            rec = json.loads(line)
            for k, v in rec.items():
                if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                    xs, ys = series.setdefault(k, ([], []))
                    xs.append(rec["step"])
                    ys.append(v)
    series = {k: xy for k, xy in series.items() if len(xy[0]) > 1}  # curves, not final values
    if not series:
        return None
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


def info(message: str) -> None:
    """Print a run-level message (resume, final metrics) on process 0 only."""
    if jax.process_index() == 0:
        print(message, flush=True)


def warn(message: str) -> None:
    """Print a one-line warning to stderr on process 0 only."""
    if jax.process_index() == 0:
        print(f"WARNING: {message}", file=sys.stderr, flush=True)


class MetricWriter:
    """Append scalars to ``jsonl`` (``metrics.jsonl``: the run's own rows) and TensorBoard;
    images to TensorBoard and PNG."""

    def __init__(self, workdir: str, jsonl: str = "metrics.jsonl"):
        self.workdir = workdir
        self.active = jax.process_index() == 0
        self.jsonl_path = os.path.join(workdir, jsonl)
        self._writer = None

    @property
    def _tb(self):
        """The TensorBoard writer, made at the first write (a run that fails before it
        has logged anything leaves no empty events file)."""
        if self._writer is None:
            from tensorboardX import SummaryWriter
            self._writer = SummaryWriter(os.path.join(self.workdir, "tensorboard"))
        return self._writer

    def scalars(self, step: int, values: Mapping[str, float], final: bool = False) -> list[str]:
        """Append one row; a non-finite value is written as null and its name listed under
        ``"nonfinite"`` (JSON has no NaN). ``final``: the run's final evaluation, marked
        ``"final": true`` (see `genjax.record` for the final-row rule). Returns the
        non-finite names."""
        values = {k: float(v) for k, v in values.items()}
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if not self.active:
            return bad
        row = {"step": int(step), **{k: None if k in bad else v for k, v in values.items()}}
        with open(self.jsonl_path, "a") as f:
            f.write(json.dumps({**row, **({"nonfinite": bad} if bad else {}),
                                **({record.FINAL: True} if final else {})}) + "\n")
        for k, v in values.items():
            self._tb.add_scalar(k, v, step)
        self._tb.flush()
        return bad

    def images(self, step: int, grids: Mapping[str, np.ndarray], png_dir: str | None = None) -> None:
        """Write [N, H, W, C] image batches in [0, 1] as grids (TensorBoard and, if given, PNG)."""
        if not self.active:
            return
        for name, imgs in grids.items():
            grid = image_grid(imgs)
            self._tb.add_image(name, grid, step, dataformats="HWC")
            if png_dir is not None:
                os.makedirs(png_dir, exist_ok=True)
                save_grid(os.path.join(png_dir, f"{name}_{step:07d}.png"), imgs)
        self._tb.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


class TrainClock:
    """Minutes of training since the clock started, compile and checkpoints included and
    the time spent inside `excluded` (evaluations) left out: the clock that
    ``config.train_minutes`` and the logged ``train/minutes`` read."""

    def __init__(self):
        self._start, self._excluded = time.perf_counter(), 0.0

    def minutes(self) -> float:
        return (time.perf_counter() - self._start - self._excluded) / 60

    @contextlib.contextmanager
    def excluded(self):
        """Leave the time spent in this block off the clock."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self._excluded += time.perf_counter() - start


class Progress:
    """Progress with loss and examples/s: a tqdm bar on a terminal, plain lines otherwise."""

    def __init__(self, start: int, total: int, examples_per_step: int):
        self.total, self.examples_per_step = total, examples_per_step
        self._last_step, self._last_time = start, time.perf_counter()
        self._bar = None
        if sys.stderr.isatty() and jax.process_index() == 0:
            from tqdm import tqdm
            self._bar = tqdm(total=total, initial=start, dynamic_ncols=True)

    def update(self, step: int, metrics: Mapping[str, float]) -> float:
        """Report progress at ``step``; returns examples/s since the previous update."""
        now = time.perf_counter()
        rate = (step - self._last_step) * self.examples_per_step / max(now - self._last_time, 1e-9)
        self._last_step, self._last_time = step, now
        shown = {k: f"{v:.4g}" for k, v in list(metrics.items())[:6]}
        if self._bar is not None:
            self._bar.set_postfix({**shown, "ex/s": f"{rate:,.0f}"}, refresh=False)
            self._bar.update(step - self._bar.n)
        elif jax.process_index() == 0:
            items = " | ".join(f"{k} {v}" for k, v in shown.items())
            print(f"step {step}/{self.total} | {items} | {rate:,.0f} ex/s", flush=True)
        return rate

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
