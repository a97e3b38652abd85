"""Where the textbook conv GAN steps spend their time: each piece jitted alone.

  python benchmarks/conv_profile.py [--batch_size=64]

Times (best of 8 calls) the conv generator's forward and parameter gradient, the
critic's parameter gradient and WGAN-GP's penalty gradient (the double backward), with
fast and stock Flax layers, under each XLA:CPU dot library (YNNPACK, Eigen). Prints
milliseconds and achieved GFLOP/s (XLA's cost analysis).
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

_BATCH = flags.DEFINE_integer("batch_size", 64, "Batch size.")


def best_ms(f, *args, calls: int = 8) -> float:
    import jax

    jax.block_until_ready(f(*args))
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        jax.block_until_ready(f(*args))
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def main(_):
    import jax
    import jax.numpy as jnp

    from genjax import nn as gnn
    from genjax.losses import penalties

    b = _BATCH.value
    z, x = jnp.ones((b, 100)), jax.random.normal(jax.random.key(0), (b, 28, 28, 1))
    for fast in (True, False):
        gen, disc = gnn.ConvGenerator(fast=fast), gnn.ConvDiscriminator(fast=fast)
        g_vars = jax.jit(gen.init)(jax.random.key(1), z)
        d_vars = jax.jit(disc.init)(jax.random.key(2), x)
        g_out = lambda v: gen.apply(v, z, mutable=["batch_stats"])[0]
        score = lambda v: lambda y: disc.apply(v, y)
        pieces = {
            "G forward": (g_out, g_vars),
            "G gradient": (jax.grad(lambda v: jnp.sum(g_out(v) ** 2)), g_vars),
            "D gradient": (jax.grad(lambda v: jnp.mean(score(v)(x))), d_vars),
            "D penalty gradient": (jax.grad(lambda v: penalties.gradient_penalty(
                score(v), x, x[::-1], jax.random.key(3))), d_vars)}
        for dots, options in (("ynnpack", None),
                              ("eigen", {"xla_cpu_experimental_ynn_fusion_type": ""})):
            for name, (f, args) in pieces.items():
                jitted = jax.jit(f, compiler_options=options)
                flops = jitted.lower(args).cost_analysis().get("flops", 0)
                ms = best_ms(jitted, args)
                print(f"{'fast' if fast else 'stock':5s} {dots:7s} {name:20s} {ms:8.1f} ms "
                      f"{flops / ms / 1e6:6.1f} GFLOP/s", flush=True)


if __name__ == "__main__":
    app.run(main)
