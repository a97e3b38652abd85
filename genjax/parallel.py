"""Data-parallel drivers: one per-device train step compiled three ways, and multi-host start-up.

Drivers (``config.parallel``):
  ``"none"``: plain ``jax.jit`` on one device; the step is built without an axis name.
  ``"pmap"``: ``jax.pmap`` over this host's devices, the state replicated with a leading
    device axis.
  ``"mesh"``: ``jax.jit`` of `per_device` (``jax.shard_map``) over a 1-D
    `jax.sharding.Mesh` of every device of every host, the batch on
    ``NamedSharding(mesh, P(AXIS))``, the state one replicated global array. This is
    the path JAX recommends, and the multi-host one.

Under both multi-device drivers each device runs the same explicit per-device program:
the step built with ``axis_name=AXIS`` (`step_axis`), its gradients, metrics and
BatchNorm statistics averaged with ``lax.pmean`` over `AXIS`, and nothing else
communicated unless a model gathers across replicas by design (minibatch
discrimination, the RBM's persistent chains). In JAX 0.10 ``jax.pmap`` lowers to the
same SPMD program; the drivers differ in where the state lives. The alternative,
``jax.jit`` of the one-device step with shardings alone, leaves the partitioning to XLA,
whose program communicates otherwise than pmap's (`tests/test_parallel.py` counts the
collectives). Both drivers compile with the ``cpu_dots`` choice.

Every driver computes what one device computes on the global batch, because random
draws are made at global size and sliced per replica (`genjax.replica.shard_draw`),
BatchNorm uses global-batch statistics (cross-replica over `AXIS`), and losses
are means over equal shards averaged with ``pmean``. Spectral-norm vectors depend on
the replicated weights only, so they stay identical on every replica. The GAN step's
``n_critic`` real batches are interleaved (update i takes rows i, i + n, ...) so that
any contiguous split over devices and hosts gives each replica its share of each.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from genjax.replica import AXIS
from genjax.steps.common import multi_step
from genjax.xla_cpu import CPU_DOTS, jit_on_first_call, pmap_on_first_call

DRIVERS = ("none", "pmap", "mesh")
MEMBER = "member"  # a population's member axis on its mesh (`member_mesh`)


def check_driver(name: str) -> None:
    """Raise a clear ValueError for an unknown driver name."""
    if name not in DRIVERS:
        raise ValueError(f"Unknown parallel driver {name!r}; valid: {', '.join(DRIVERS)}.")


def step_axis(name: str) -> str | None:
    """The axis name a step and its BatchNorm layers must be built with for driver ``name``:
    `AXIS` for "pmap" and "mesh", which both run the per-device step; None for "none"."""
    check_driver(name)
    return None if name == "none" else AXIS


def num_devices(name: str) -> int:
    """Devices the global batch is split over: 1, this host's devices (pmap), all (mesh)."""
    check_driver(name)
    return {"none": 1, "pmap": jax.local_device_count() * jax.process_count(),
            "mesh": jax.device_count()}[name]


def check_batch(name: str, batch_size: int) -> int:
    """Check that a global batch of ``batch_size`` splits evenly over driver ``name``'s
    devices and hosts, before anything compiles; returns the device count."""
    n = num_devices(name)
    if batch_size <= 0:
        raise ValueError(f"Batch size must be positive, got {batch_size}.")
    if batch_size % n:
        raise ValueError(
            f"Global batch size {batch_size} is not divisible by the number of devices "
            f"({n}) of the {name!r} driver; choose a multiple of {n}.")
    if name == "none" and jax.process_count() > 1:
        raise ValueError(f"The 'none' driver runs on one device, but this is one of "
                         f"{jax.process_count()} processes: use --config.parallel=mesh.")
    return n


@dataclasses.dataclass(frozen=True)
class Driver:
    """A compiled step and the placement helpers that go with it.

    Attributes:
      name: the driver name.
      num_devices: devices the global batch is split over.
      step: compiled ``(placed state, placed batch) -> (placed state, placed metrics)``;
        with ``steps_per_call`` k > 1 the batch is k stacked step batches and the metrics
        are summed over the k steps (`genjax.steps.multi_step`).
      place: a state (anywhere) -> the driver's placement (replicated, committed).
      put_batch: this host's numpy batch ([k, B, ...] when k > 1) -> the driver's placement.
      local: the driver's placement of a state or metrics -> one copy on this host's first
        device (for evaluation, sampling and logging).
      saveable: placed state -> what checkpoints hold: the replicated global arrays for
        "none"/"mesh" (orbax writes each once, from any host), one copy for "pmap".
      compile: ``(placed state, placed batch) -> executable``: compiles ``step`` for
        arguments like these ahead of time without running it; the first call with such
        arguments then runs that executable, so timing this call times compilation
        alone, and nothing compiles twice.
    """

    name: str
    num_devices: int
    step: Callable[[Any, Any], tuple[Any, Any]]
    place: Callable[[Any], Any]
    put_batch: Callable[[dict], Any]
    local: Callable[[Any], Any]
    saveable: Callable[[Any], Any]
    steps_per_call: int = 1
    compile: Callable[[Any, Any], Any] = lambda state, batch: None

    def describe(self) -> str:
        """The driver in words, for logs: ``none``, ``mesh over 4 devices, 3 steps per call``."""
        parts = [self.name if self.name == "none" else
                 f"{self.name} over {self.num_devices} device{'s' * (self.num_devices > 1)}"]
        if self.steps_per_call > 1:
            parts.append(f"{self.steps_per_call} steps per call")
        return ", ".join(parts)


def make_driver(name: str, step_fn: Callable, *, donate: bool = False,
                steps_per_call: int = 1, cpu_dots: str = "auto") -> Driver:
    """Compile ``step_fn`` (built with ``axis_name=step_axis(name)``) under driver ``name``.

    ``donate`` donates the state's buffers to the step (the loop leaves it off: an
    asynchronous checkpoint write may still be reading the previous state's buffers).
    ``steps_per_call`` > 1 compiles `genjax.steps.multi_step` of ``step_fn`` instead:
    one call runs that many steps on stacked batches. ``cpu_dots`` picks XLA:CPU's dot
    library (`genjax.xla_cpu.cpu_compiler_options`) for every driver.
    """
    if cpu_dots not in CPU_DOTS:
        raise ValueError(f"Unknown cpu_dots {cpu_dots!r}; valid: {', '.join(CPU_DOTS)}.")
    if steps_per_call < 1:
        raise ValueError(f"steps_per_call must be positive, got {steps_per_call}.")
    if steps_per_call > 1:
        step_fn = multi_step(step_fn)
    driver = _make_driver(name, step_fn, donate, stacked=steps_per_call > 1, cpu_dots=cpu_dots)
    driver = dataclasses.replace(driver, steps_per_call=steps_per_call,
                                 compile=driver.step.compile)
    if name != "none" and jax.local_devices()[0].platform == "cpu" and jax.local_device_count() > 1:
        driver = dataclasses.replace(driver, step=_one_at_a_time(driver.step))
    return driver


def _one_at_a_time(step: Callable) -> Callable:
    """``step``, but each call first waits for the previous call's results.

    Simulated CPU devices share one thread pool: with several collective steps queued by
    asynchronous dispatch, their all-reduce rendezvous starve each other and XLA aborts
    (measured here: the full-size VAE under either driver, 4 simulated devices on 2
    cores, died within 300 queued steps; waiting for each step it runs). Accelerators do
    not share a pool, so only CPU pays the wait.
    """
    previous = []

    def call(state, batch):
        if previous:
            jax.block_until_ready(previous.pop())
        out = step(state, batch)
        previous.append(out)
        return out

    return call


def _make_driver(name: str, step_fn: Callable, donate: bool, stacked: bool, cpu_dots: str
                 ) -> Driver:
    """The driver's compiled step and placements; ``stacked``: batches carry a leading
    axis of steps, which every device keeps whole (only the batch axis is split)."""
    check_driver(name)
    donate_argnums = (0,) if donate else ()
    first = jax.local_devices()[0]
    if name == "none":
        one = lambda tree: jax.device_put(tree, first)
        step = jit_on_first_call(step_fn, cpu_dots, donate_argnums=donate_argnums)
        return Driver(name, 1, step, one, lambda b: b, lambda tree: tree, lambda s: s)
    if name == "pmap":
        n = jax.local_device_count()
        # Same axis name as the step: pmap's placement is named after it, and a state
        # placed under another name would make the step's first call trace twice.
        replicate = jax.pmap(lambda _, tree: tree, in_axes=(0, None), axis_name=AXIS)
        first_copy = lambda tree: jax.device_put(jax.tree.map(lambda x: x[0], tree), first)
        return Driver(name, num_devices(name),
                      pmap_on_first_call(step_fn, cpu_dots, axis_name=AXIS,
                                         donate_argnums=donate_argnums),
                      lambda tree: replicate(np.arange(n), tree),
                      lambda b: jax.tree.map(functools.partial(_split_for_pmap, n, stacked), b),
                      first_copy, first_copy)
    mesh = make_mesh()
    replicated = NamedSharding(mesh, P())
    data = NamedSharding(mesh, _batch_spec(stacked))
    step = jit_on_first_call(per_device(step_fn, mesh, stacked), cpu_dots,
                             in_shardings=(replicated, data), out_shardings=(replicated, replicated),
                             donate_argnums=donate_argnums)
    put = lambda b: jax.tree.map(lambda x: jax.make_array_from_process_local_data(data, x), b)
    local = lambda tree: jax.tree.map(lambda x: jax.device_put(x.addressable_data(0), first), tree)
    return Driver(name, num_devices(name), step,
                  lambda tree: jax.tree.map(lambda x: _replicate_global(x, replicated), tree),
                  put, local, lambda s: s)


def _batch_spec(stacked: bool) -> P:
    """Where a batch's rows lie on the mesh: split over `AXIS`; a stacked batch
    [k, B, ...] keeps its leading axis of steps whole on every device."""
    return P(None, AXIS) if stacked else P(AXIS)


def per_device(step_fn: Callable, mesh: Mesh, stacked: bool = False) -> Callable:
    """``step_fn`` (built with ``axis_name=AXIS``) as one explicit program per device of
    ``mesh``: `jax.shard_map` hands each device its rows of the batch and the whole
    (replicated) state, and the step's own ``pmean``s over `AXIS` are the only
    communication, the program ``jax.pmap`` runs. The new state and metrics are declared
    replicated (``P()``): they are, because every device applies the same averaged update.

    ``check_vma`` is off because with it JAX differentiates a replicated parameter used
    on per-device rows by summing the gradient over devices itself (the transpose of its
    implicit ``pvary``); the step's own ``pmean`` would then average gradients already
    summed, n times the one-device gradient. Off, gradients stay per-device until the
    step averages them, as under ``jax.pmap``. `tests/test_parallel.py` checks that the
    devices' states agree bitwise and equal one device's.
    """
    return jax.shard_map(step_fn, mesh=mesh, in_specs=(P(), _batch_spec(stacked)),
                         out_specs=(P(), P()), check_vma=False)


def _split_for_pmap(n: int, stacked: bool, x: np.ndarray | jax.Array) -> np.ndarray:
    """[B, ...] -> [n, B / n, ...]; stacked [k, B, ...] -> [n, k, B / n, ...], in host
    memory: pmap spreads host arrays over its devices itself, but refuses a device array
    placed on one of them (the memory source's batches)."""
    x = np.asarray(x)
    if not stacked:
        return x.reshape(n, -1, *x.shape[1:])
    return x.reshape(x.shape[0], n, -1, *x.shape[2:]).swapaxes(0, 1)


def _replicate_global(x: jax.Array, replicated: NamedSharding) -> jax.Array:
    """``x`` (the same value on every host) as one array replicated over the whole mesh.

    Goes through host memory: a device array cannot be put on other hosts' devices, a
    host array can (each process fills its own devices). Typed keys travel as key data.
    """
    if isinstance(x, jax.Array) and x.sharding == replicated:
        return x
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        data = _replicate_global(jax.random.key_data(x), replicated)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    return jax.device_put(np.asarray(x), replicated)


def make_mesh() -> Mesh:
    """A 1-D mesh over every device of every host, on the `AXIS` axis."""
    return Mesh(np.array(jax.devices()), (AXIS,))


def member_mesh(k: int, batch_size: int) -> Mesh:
    """The 2-D mesh (`MEMBER`, `AXIS`) of a population of ``k`` members over this host's
    devices: gcd(k, n) groups of members, each member's batch of ``batch_size`` split over
    the n / gcd(k, n) devices of its group.

    Raises:
      ValueError: more than one process (the member mesh is one host's), or a batch that
        does not split over a group's devices.
    """
    if jax.process_count() > 1:
        raise ValueError("A population's mesh spans one host's devices; across hosts, train "
                         "one population per host (each its own --workdir).")
    n = jax.device_count()
    groups = math.gcd(k, n)
    if batch_size % (n // groups):
        raise ValueError(
            f"A population of {k} members on {n} devices splits each member's batch over "
            f"{n // groups} devices, but batch_size={batch_size} is not divisible by "
            f"{n // groups}; choose a multiple of it, or a member count dividing {n}.")
    return Mesh(np.array(jax.devices()).reshape(groups, n // groups), (MEMBER, AXIS))


def make_member_driver(update: Callable, named: Callable, mesh: Mesh, *, donate: bool = False,
                       steps_per_call: int = 1, cpu_dots: str = "auto") -> Driver:
    """The ``mesh`` driver of a population: ``update`` (the members' step, each member's
    built with ``axis_name=AXIS``, returning metrics as ``[k]`` arrays) as one explicit
    program per device of the `member_mesh` ``mesh``. `jax.shard_map` gives each device
    its group's members (every leaf with a leading member axis split over `MEMBER`; the
    shared step count whole) and their rows of the batch (``[K, B, ...]`` over
    (`MEMBER`, `AXIS`)); the members' own ``pmean``s over `AXIS` are the only
    communication. ``named`` turns the ``[K]`` metrics into the logged ones."""
    stacked = steps_per_call > 1
    spec = lambda x: P() if np.ndim(x) == 0 else P(MEMBER)  # noqa: E731
    rows = P(None, MEMBER, AXIS) if stacked else P(MEMBER, AXIS)

    def step(state, batch):
        specs = jax.tree.map(spec, state)
        state, metrics = jax.shard_map(update, mesh=mesh, in_specs=(specs, P(MEMBER, AXIS)),
                                       out_specs=(specs, P(MEMBER)), check_vma=False)(state, batch)
        return state, named(metrics)

    fn, built = multi_step(step) if stacked else step, []

    def jitted(state) -> Callable:
        """The step jitted for ``state``'s tree, its placement pinned in and out (as
        `place` puts it, metrics replicated), so no call re-places or recompiles."""
        if not built:
            placed = jax.tree.map(lambda x: NamedSharding(mesh, spec(x)), state)
            built.append(jit_on_first_call(
                fn, cpu_dots, in_shardings=(placed, NamedSharding(mesh, rows)),
                out_shardings=(placed, NamedSharding(mesh, P())),
                donate_argnums=(0,) if donate else ()))
        return built[0]

    compiled = lambda state, batch: jitted(state)(state, batch)  # noqa: E731
    compiled.compile = lambda state, batch: jitted(state).compile(state, batch)
    first = jax.local_devices()[0]
    driver = Driver(
        "mesh", mesh.size, compiled,
        lambda tree: jax.tree.map(lambda x: jax.device_put(x, NamedSharding(mesh, spec(x))), tree),
        lambda b: jax.tree.map(lambda x: jax.device_put(x, NamedSharding(mesh, rows)), b),
        lambda tree: jax.device_put(tree, first), lambda s: s, steps_per_call, compiled.compile)
    if first.platform == "cpu" and mesh.size > 1:
        driver = dataclasses.replace(driver, step=_one_at_a_time(driver.step))
    return driver


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
    """Join a multi-host run: ``jax.distributed.initialize`` with arguments from the call or,
    where not given, the environment (``GENJAX_COORDINATOR`` host:port,
    ``GENJAX_NUM_PROCESSES``, ``GENJAX_PROCESS_ID``). A no-op when neither names more than
    one process. Call it before any other JAX call; on CPU, processes talk through gloo.
    """
    env = os.environ.get
    coordinator_address = coordinator_address or env("GENJAX_COORDINATOR")
    num_processes = num_processes or int(env("GENJAX_NUM_PROCESSES", "1"))
    if process_id is None:
        process_id = int(env("GENJAX_PROCESS_ID", "0"))
    if num_processes <= 1:
        return
    if not coordinator_address:
        raise ValueError(f"{num_processes} processes need a coordinator address (host:port of "
                         "process 0): pass --coordinator_address or set GENJAX_COORDINATOR.")
    if not 0 <= process_id < num_processes:
        raise ValueError(f"Process id {process_id} is outside [0, {num_processes}).")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
