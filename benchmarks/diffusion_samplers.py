"""Sample quality against sampling steps: one trained diffusion run, every sampler.

  python -m benchmarks.diffusion_samplers --run=runs/ddpm_mnist \
      [--grid=ddim:10,ddim:20,ddim:50,dpm++2m:10,dpm++2m:20,ddpm:100,ddpm:100:small]
      [--samples=1000]
      [--scales=0,1,3] [--out=benchmarks/results/diffusion_samplers.json]

Each entry of ``--grid`` (``sampler:steps``, and for the ancestral sampler optionally
``:large`` or ``:small``, its σ²) draws ``--samples`` samples from the
run's newest checkpoint (EMA weights, the same key for every entry) through
`genjax-evaluate` and scores them with the shipped mnist5k classifier (FID, IS,
KID, precision/recall, the rarest class's share; for a conditional run also the class
accuracy of the same samples); ``--scales`` repeats the grid for each guidance scale of
a conditional run. The wall time of each entry (sampling and scoring) is
recorded with the machine. Results are appended to ``evaluations.jsonl`` of the run too.
"""

from __future__ import annotations

import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from benchmarks import machine  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_grid(grid: list[str]) -> list[tuple[str, int, str | None]]:
    """``["ddim:10", "ddpm:50:small", ...]`` -> ``[("ddim", 10, None), ("ddpm", 50,
    "small"), ...]`` (the third field: the ancestral sampler's variance, else the run's),
    with a clear error for a bad entry."""
    out = []
    for entry in grid:
        name, _, rest = entry.partition(":")
        steps, *variance = rest.split(":")
        bad_variance = variance and (name != "ddpm" or variance[0] not in ("large", "small"))
        if not steps.isdigit() or int(steps) < 1 or len(variance) > 1 or bad_variance:
            raise ValueError(f"--grid entry {entry!r} must be sampler:steps, or ddpm:steps:"
                             "large|small, e.g. ddim:50 or ddpm:50:small.")
        out.append((name, int(steps), variance[0] if variance else None))
    return out


def sweep(workdir: str, grid: list[tuple[str, int, str | None]], guidance: list[float | None],
          num_samples: int) -> list[dict]:
    """One row per (guidance, sampler, steps): the domain metrics and the wall time."""
    from genjax.cli import evaluate
    from genjax import record, runs

    rows = []
    for w in guidance:
        for name, steps, variance in grid:
            sampling = {"sampler": name, "sample_steps": steps, "variance": variance,
                        "eta": 0.0 if name == "ddim" else None, "guidance": w}
            start = time.time()
            scores = evaluate.evaluate_run(workdir, num_samples, sampling=sampling)
            # The keys are test/domain_<how the samples were drawn>_<metric>.
            config = runs.with_sampling(record.run_config(workdir), sampling)
            prefix = f"test/domain_{runs.metric_tag(config, num_samples)}"
            rows.append({"sampler": name, "steps": steps, "guidance": w,
                         "variance": config.variance if name == "ddpm" else None,
                         "wall_s": round(time.time() - start, 1),
                         **{k[len(prefix):]: v for k, v in scores.items()
                            if k.startswith(prefix)}})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv):
    del argv
    from genjax.cli import launch

    launch.quiet_logging()
    f = flags.FLAGS
    guidance = [float(w) for w in f.scales] if f.scales else [None]
    rows = sweep(f.run, parse_grid(f.grid), guidance, f.samples)
    out = {"machine": machine.describe(), "run": f.run, "samples": f.samples,
           "command": "python -m benchmarks.diffusion_samplers " + " ".join(
               f"--{k}={v}" for k, v in (("run", f.run), ("grid", ",".join(f.grid)),
                                         ("scales", ",".join(f.scales)), ("samples", f.samples))
               if v != ""),
           "rows": rows}
    with open(f.out, "w") as fh:
        json.dump(out, fh, indent=1)


if __name__ == "__main__":  # names apart from genjax.cli.evaluate's flags, which it defines
    flags.DEFINE_string("run", None, "A trained diffusion run's workdir.", required=True)
    flags.DEFINE_list("grid", ["ddim:10", "ddim:20", "ddim:50", "dpm++2m:10", "dpm++2m:20",
                               "ddpm:100"], "sampler:steps entries.")
    flags.DEFINE_list("scales", [], "Guidance scales w (conditional runs).")
    flags.DEFINE_integer("samples", 1000, "Samples per entry.")
    flags.DEFINE_string("out", os.path.join(ROOT, "benchmarks", "results",
                                            "diffusion_samplers.json"), "Result file.")
    app.run(main)
