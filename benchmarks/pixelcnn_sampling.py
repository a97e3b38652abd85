"""What pixel-by-pixel sampling costs: seconds for 100 images of a PixelCNN config, with
the sampler the task uses (the context once per row for the Gated PixelCNN and PixelCNN++,
a pass over the rows each pixel sees for the plain PixelCNN) and with a whole network pass
per pixel, on the config's freshly initialised weights
(the cost does not depend on them).

  python -m benchmarks.pixelcnn_sampling [--configs=gated_pixelcnn_mnist,...] [--images=100]

Each sampler is compiled first (reported apart), then timed once per key for 2 keys (the
best is kept). Writes ``--out`` (JSON, with the machine) and prints the rows.
"""

from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from benchmarks import machine  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sampling_row(name: str, images: int, task_sampler: bool) -> dict:
    """Compile and time one sampler of config ``name`` for ``images`` images."""
    import importlib

    import jax
    import jax.numpy as jnp

    from genjax.steps import pixelcnn as psteps
    from genjax.tasks import pixelcnn as tasks

    config = importlib.import_module(f"genjax.configs.{name}").get_config()
    shape = (28, 28, 1)
    model = tasks.build_model(config, shape[-1])
    labels = jnp.arange(images) % config.num_classes if config.num_classes else None
    params = model.init(jax.random.key(0), jnp.zeros((1, *shape)),
                        labels[:1] if labels is not None else None)["params"]
    draw = (tasks.make_sampler(model, config, shape) if task_sampler else
            psteps.make_sampler(tasks._apply(model, config), config.likelihood, shape,
                                config.num_mixtures))
    run = jax.jit(lambda p, k: draw(p, k, jnp.zeros((images, *shape)), labels))
    start = time.perf_counter()
    compiled = run.lower(params, jax.random.key(0)).compile()
    compile_s = time.perf_counter() - start
    times = []
    for seed in (1, 2):
        start = time.perf_counter()
        jax.block_until_ready(compiled(params, jax.random.key(seed)))
        times.append(time.perf_counter() - start)
    return {"config": name, "images": images,
            "sampler": ("whole network per pixel" if not task_sampler else
                        "window of the rows each pixel sees" if config.model == "pixelcnn"
                        else "key/value cache, a position per step"
                        if config.model == "transformer" else "context once per row"),
            "seconds": round(min(times), 2), "compile_seconds": round(compile_s, 1)}


def main(argv):
    del argv
    f = flags.FLAGS
    rows = []
    for name in f.configs:
        for task_sampler in (True, False):
            rows.append(sampling_row(name, f.images, task_sampler))
            print(json.dumps(rows[-1]), flush=True)
    result = {"machine": machine.describe(), "command": "python -m benchmarks.pixelcnn_sampling "
              + " ".join(sys.argv[1:]), "rows": rows}
    with open(f.out, "w") as out:
        json.dump(result, out, indent=1)


if __name__ == "__main__":  # flags only when run: tests import this module beside others
    flags.DEFINE_list("configs", ["gated_pixelcnn_mnist", "pixelcnn_pp_mnist", "pixelcnn_mnist"],
                      "PixelCNN configs (genjax/configs).")
    flags.DEFINE_integer("images", 100, "Images per sampling call.")
    flags.DEFINE_string("out", os.path.join(ROOT, "benchmarks", "results", "pixelcnn_sampling.json"),
                        "Result file.")
    app.run(main)
