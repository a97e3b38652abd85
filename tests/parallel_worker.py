"""Subprocess side of tests/test_parallel.py: device counts must be fixed before jax loads.

  python tests/parallel_worker.py drivers OUT.json CONFIG
      3 steps of CONFIG (the VAE, the DCGAN with BatchNorm, WGAN-GP with n_critic 2 and
      spectral norm, the class-conditional diffusion model with label dropout and
      EMA, the class-conditional Gated PixelCNN, Glow, or the centered PCD RBM with its
      persistent chains and offsets) under every driver on 4 simulated devices, in float64 and, for the
      VAE, also in float32; writes the relative difference of each state component from
      the one-device state, the trace counts and whether the devices agree bitwise
      (CONFIG+shared, CONFIG+simultaneous: that gan_update; CONFIG+minibatch: minibatch
      discrimination).
  python tests/parallel_worker.py collectives OUT.json CONFIG...
      each CONFIG's step compiled under pmap and mesh on 4 simulated devices: the
      collectives in its HLO text (opcode, elements) and its parameter count.
  python tests/parallel_worker.py members OUT.json CONFIG K[:map]...
      a population of K seeds of CONFIG on the member mesh of 4 simulated devices against
      the population on one device, in float64.
  python tests/parallel_worker.py vae OUT.npz DRIVER [PROCESS_ID NUM_PROCESSES PORT]
      3 VAE steps on 2 simulated devices per process (mesh driver across processes, or
      one device), saving this process's copy of the final state.

Why float64: a driver changes the order of float32 reductions (per-replica sums, then
an all-reduce), and some steps amplify that roundoff far beyond float32's 6e-8. Measured
in float32: WGAN-GP's critic Adam moments 1.2e-3 apart between pmap and one device after
one step (the penalty's gradient, through a generator whose BatchNorm statistics are
all-reduced, moves ~1e-3 per 1e-6 change of the fakes, and Adam's first updates,
lr * g / |g|, flip sign wherever |g| is below the roundoff), the DCGAN's generator
moments 2e-3 apart after three steps (BatchNorm's backward subtracts batch means of
nearly equal per-example gradients). Which CPU kernels XLA picks (AVX2 or AVX-512) moves
those figures by orders of magnitude, so no float32 tolerance both passes everywhere and
catches a wrong driver. In float64 the same amplification of 1.1e-16 roundoff stays
below 1e-11, while a driver that computes something else (a replica without the
all-reduce, noise not sliced from the one-device draw, per-replica BatchNorm) moves the
state by 1e-3 or more (measured: pmap without its axis name, 0.27 after three steps).
"""

import os
import sys

# One XLA:CPU dot library for every driver, XLA's default (the flag overrides the
# drivers' choice, which follows what each step contains). LLVM at -O0, as in the
# rest of the suite (tests/conftest.py): the drivers' arithmetic is XLA's, not LLVM's, and
# compiling is most of a worker's time (measured alone on 2 cores: WGAN-GP 253 -> 67 s,
# DCGAN 127 -> 49 s, with the same differences from one device).
os.environ["XLA_FLAGS"] = "--xla_cpu_experimental_ynn_fusion_type=individual_dot " \
    "--xla_backend_optimization_level=0 " \
    "--xla_force_host_platform_device_count=" + ("2" if sys.argv[1] == "vae" else "4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import functools  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

from genjax import parallel  # noqa: E402
from tests.equivalence import batches, flat, in_float64, relative_differences  # noqa: E402

STEPS = 3


def config(name: str, driver: str):
    """The ``:test`` config ``name``; ``name+shared`` and ``name+simultaneous`` set
    ``gan_update``, ``name+minibatch`` minibatch discrimination."""
    import importlib

    name, _, variant = name.partition("+")
    c = importlib.import_module(f"genjax.configs.{name}").get_config("test")
    c.parallel = driver
    # 4 rows per device; the diffusion U-Net's unoptimised float64 convolutions (emitted
    # loops, ~0.5 s per row and step) get 2.
    c.batch_size = 8 if name == "ddpm_mnist_cond" else 16
    if name == "wgan_gp_mnist":
        # Two critic updates per step test the interleaved split of the real batches as
        # five do, at a fraction of the float64 compile (the suite's longest).
        c.spectral_norm, c.n_critic = True, 2
    if variant in ("shared", "simultaneous"):
        c.gan_update = variant
    if variant == "minibatch":  # the critic compares each example with the whole batch
        c.minibatch = "discrimination"
    return c


def run(name: str, driver: str, rows: slice | None = None, steps_per_call: int = 1,
        float64: bool = False):
    """(final state as a local copy, traces of the step, replicas-identical flag); with
    ``steps_per_call`` = `STEPS` the steps run as one multi-step call on stacked batches;
    ``float64``: the initial state and the batches in float64, with x64 enabled."""
    from genjax.tasks import TASKS

    c = config(name, driver)
    task = TASKS[c.task](c, (28, 28, 1), parallel.step_axis(driver))
    traces = []

    def counted(state, batch):
        traces.append(1)
        return task.train_step(state, batch)

    cast = in_float64 if float64 else lambda tree: tree
    with jax.enable_x64(float64):
        d = parallel.make_driver(driver, counted, steps_per_call=steps_per_call)
        state = d.place(cast(initial_state(name, float64)))
        host = batches(c.preprocess, task.examples_per_step, STEPS)
        if rows is not None:
            host = [{k: v[rows] for k, v in batch.items()} for batch in host]
        if steps_per_call > 1:
            host = [{k: np.stack([b[k] for b in host]) for k in host[0]}]
        d.compile(state, d.put_batch(cast(host[0])))  # as the loop does: it must not trace again
        for batch in host:
            state, _ = d.step(state, d.put_batch(cast(batch)))
        return d.local(state), len(traces), replicas_identical(driver, state)


def replicas_identical(driver: str, state) -> bool:
    """Whether every device holds the same state, bitwise: pmap's copies along the leading
    axis; under mesh, the shards of each global array declared replicated."""
    keys_as_data = lambda x: jax.random.key_data(x) if jax.dtypes.issubdtype(
        x.dtype, jax.dtypes.prng_key) else x
    leaves = [keys_as_data(x) for x in jax.tree.leaves(state)]
    if driver == "pmap":
        return all(bool(np.all(np.asarray(x) == np.asarray(x)[:1])) for x in leaves)
    return all(np.array_equal(np.asarray(s.data), np.asarray(x.addressable_shards[0].data))
               for x in leaves for s in x.addressable_shards)


@functools.cache
def initial_state(name: str, float64: bool):
    """The one-device task's ``init(key 0)`` of config ``name``, compiled once per worker
    and precision (a U-Net's init compiles for 8-17 s); every driver starts from it.
    ``float64`` keys the cache: called under ``jax.enable_x64``, some leaves come out
    float64, which a float32 run must not start from."""
    from genjax.tasks import TASKS

    c = config(name, "none")
    return jax.jit(TASKS[c.task](c, (28, 28, 1)).init)(jax.random.key(0))


def drivers(out: str, name: str) -> None:
    """Every driver against one device, in float64 (every config) and float32 (the VAE,
    whose step is well conditioned: the precision users train in)."""
    result = {}
    for float64 in (True, False) if name == "vae_mnist" else (True,):
        reference, traces, _ = run(name, "none", float64=float64)
        by_driver = {"none": {"traces": traces}}
        runs = [("pmap", 1), ("mesh", 1)]
        if name == "vae_mnist":  # multi-step calls: each driver's stacked-batch placement
            runs += [("none", STEPS), ("pmap", STEPS), ("mesh", STEPS)]
        for driver, k in runs:
            state, traces, same = run(name, driver, steps_per_call=k, float64=float64)
            by_driver[driver if k == 1 else f"{driver}/{k} steps per call"] = {
                "traces": traces, "replicas_identical": same,
                "relative_difference": relative_differences(state, reference)}
        result["float64" if float64 else "float32"] = by_driver
    with open(out, "w") as f:
        json.dump(result, f, indent=1)


# An HLO instruction that communicates between devices, e.g.
# ``%all-reduce.3 = (f32[64]{0}, f32[]) all-reduce(...)``: its opcode and result shapes.
_COLLECTIVE = re.compile(r"^\s*(?:ROOT )?%[\w.-]+ = (.+?) (all-reduce|all-gather|all-to-all|"
                         r"collective-permute|reduce-scatter)(?:-start)?\(", re.M)


def collectives_of(hlo: str) -> list[list]:
    """The compiled program's collectives as sorted [opcode, elements] pairs (the element
    count over the instruction's result shapes: a combined all-reduce counts all it sums)."""
    found = []
    for shapes, op in _COLLECTIVE.findall(hlo):
        dims = re.findall(r"[a-z]+\d*\[([\d,]*)\]", shapes)
        found.append([op, sum(int(np.prod([int(d) for d in ds.split(",") if d])) for ds in dims)])
    return sorted(found)


def collectives(out: str, *names: str) -> None:
    """Each config's compiled pmap and mesh steps (4 devices, one step per call): their
    collectives (`collectives_of`) and the parameter count the gradients all-reduce."""
    from genjax.tasks import TASKS

    result = {}
    for name in names:
        c = config(name, "mesh")
        init = initial_state(name, False)
        host = batches(c.preprocess, TASKS[c.task](c, (28, 28, 1)).examples_per_step, 1)[0]
        by_driver = {"params": sum(int(np.size(x)) for net in init.nets.values()
                                   for x in jax.tree.leaves(net.params))}
        for driver in ("pmap", "mesh"):
            task = TASKS[c.task](c, (28, 28, 1), parallel.step_axis(driver))
            d = parallel.make_driver(driver, task.train_step, cpu_dots="eigen")
            state = d.place(init)
            by_driver[driver] = collectives_of(d.compile(state, d.put_batch(host)).as_text())
        result[name] = by_driver
    with open(out, "w") as f:
        json.dump(result, f, indent=1)


def members(out: str, name: str, *ks: str) -> None:
    """A population of K seeds of ``name`` (each K of ``ks``; ``K:map`` for lax.map) on the
    member mesh of 4 devices (gcd(K, 4) groups, each member's rows over the rest), in
    float64, against the population on one device: the relative difference of each state
    component and of the metrics after `STEPS` steps, one step per call and `STEPS` per
    call, and whether the devices holding a member agree on it bitwise."""
    from genjax import population, rng
    from genjax.tasks import TASKS

    result = {}
    for spec in ks:
        k, _, strategy = spec.partition(":")
        k, strategy = int(k), strategy or "vmap"
        c = config(name, "none")
        c.population.seeds, c.population.strategy = k, strategy
        roster, shape = population.roster(c), (28, 28, 1)
        task = TASKS[c.task](population.member_config(c, roster[0]), shape)
        n = task.examples_per_step
        host = [{key: v.reshape(k, n, *v.shape[1:]) for key, v in b.items()}
                for b in batches(c.preprocess, k * n, STEPS)]
        with jax.enable_x64(True):
            init = jax.jit(task.init)
            fresh = in_float64(population.stack([init(rng.stream(m.seed, "init"))
                                                 for m in roster], roster))
            reference, summed = fresh, {}
            one = jax.jit(population.make_step(c, roster, shape, strategy))
            for b in host:
                reference, last = one(reference, in_float64(b))
                summed = {key: summed.get(key, 0) + v for key, v in last.items()}
            update = population.member_updates(c, roster, shape, strategy, parallel.AXIS)
            mesh = parallel.member_mesh(k, c.batch_size)
            for per_call in (1, STEPS):
                d = parallel.make_member_driver(update, population.named, mesh,
                                                steps_per_call=per_call)
                state = d.place(fresh)
                feed = host if per_call == 1 else [
                    {key: np.stack([b[key] for b in host]) for key in host[0]}]
                for b in feed:
                    state, metrics = d.step(state, d.put_batch(in_float64(b)))
                expected = last if per_call == 1 else summed
                got = d.local(metrics)
                result[f"{spec}, {per_call} per call"] = {
                    "mesh": dict(mesh.shape), "metrics": sorted(got),
                    "metrics_difference": max(
                        abs(float(got[key]) - float(v)) / max(abs(float(v)), 1.0)
                        for key, v in expected.items()),
                    "shards_agree": shards_agree(state),
                    "relative_difference": relative_differences(d.local(state), reference)}
    with open(out, "w") as f:
        json.dump(result, f, indent=1)


def shards_agree(state) -> bool:
    """Whether the devices holding the same part of each leaf hold it bitwise alike (a
    member's copies on the devices of its group; the step count everywhere)."""
    for x in jax.tree.leaves(state):
        copies = {}
        for shard in x.addressable_shards:
            data = shard.data
            if jax.dtypes.issubdtype(data.dtype, jax.dtypes.prng_key):
                data = jax.random.key_data(data)
            copies.setdefault(str(shard.index), []).append(np.asarray(data))
        if any(not np.array_equal(c[0], other) for c in copies.values() for other in c[1:]):
            return False
    return True


def vae(out: str, driver: str, process_id: int = 0, num_processes: int = 1, port: int = 0) -> None:
    if num_processes > 1:
        parallel.initialize(f"127.0.0.1:{port}", num_processes, process_id)
    rows = None
    if num_processes > 1:  # each process feeds its own contiguous share of the global batch
        share = 16 // num_processes
        rows = slice(process_id * share, (process_id + 1) * share)
    state, _, _ = run("vae_mnist", driver, rows)
    np.savez(out, *flat(state), devices=jax.device_count())


if __name__ == "__main__":
    if sys.argv[1] == "drivers":
        drivers(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "collectives":
        collectives(sys.argv[2], *sys.argv[3:])
    elif sys.argv[1] == "members":
        members(sys.argv[2], *sys.argv[3:])
    else:
        vae(sys.argv[2], sys.argv[3], *map(int, sys.argv[4:]))
