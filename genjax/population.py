"""Populations: K seeds or hyperparameter values of one config trained together as one run.

``config.population.seeds = S`` and ``config.population.<field> = (v1, v2, ...)`` for the
fields of `genjax.hparams.VARIED_FIELDS` (learning rates, Adam's betas, loss
weights, EMA decay, ...) make a run a population. Its members (`roster`): with the rule
``"product"`` every combination of the fields' values, with ``"zip"`` the i-th value of
every field together (equal lengths); each setting with S seeds, ``config.seed``,
``config.seed + 1``, ...; settings in order, seeds innermost. Member i is exactly the run
of `member_config(config, member)`: the same initial state, data order and step.

One workdir holds the whole population: one state whose leaves have a leading member
axis (the step count shared), the members' varied values in it as explicit state
(``state.extra["population"]["hparams"]``, a ``[K]`` array per field), one checkpoint.
The step is the family's own step built once from a config whose varied fields are
`genjax.varied.Varied` (this member's traced value in arithmetic), run for every member
by ``jax.vmap`` (``strategy="vmap"``: one batched program) or ``jax.lax.map``
(``"map"``: members in sequence inside one compiled call); each member reads its own
batches, in its own seed's order. A member whose update is not finite is frozen with its
last finite state (``frozen_at``, the step it diverged at) and reported; the others go on
exactly as without it. Metrics and grids carry the member (``train/loss/m3``,
``samples_m3``, and an overview grid with a row per member); evaluation is per member.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
from typing import Any, Iterator, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genjax import assembly, parallel, ranking, record
from genjax.hparams import (POPULATION_RULES, POPULATION_SETTINGS, POPULATION_STRATEGIES,
                            VARIED_FIELDS, is_population)  # noqa: F401 (population.is_population)
from genjax.report import info, warn
from genjax.state import TrainState
from genjax.steps import StepFn
from genjax.tasks import TASKS
from genjax.varied import Varied

SUMMARY = "population.json"  # the members' final metrics, per setting, and the best one
KEY = "population"  # state.extra entry: {"hparams": {field: [K]}, "frozen_at": int32 [K]}
ALIVE = -1          # frozen_at of a member still training
OVERVIEW = "population"  # the overview grid: a row of each member's first images


class PopulationError(ValueError):
    """A population that cannot be trained as asked (refused before any work)."""


@dataclasses.dataclass(frozen=True)
class Member:
    """Member ``index`` of a population: its seed and the values of the varied fields."""

    index: int
    seed: int
    values: tuple[tuple[str, float], ...]

    @property
    def label(self) -> str:
        """e.g. ``"m3 (learning_rate=0.0003, seed=1)"``."""
        settings = "".join(f"{k}={v:g}, " for k, v in self.values)
        return f"m{self.index} ({settings}seed={self.seed})"


def varied(config: ml_collections.ConfigDict) -> dict[str, tuple]:
    """The fields ``config.population`` varies, with their values as given, in the order of
    `genjax.hparams.VARIED_FIELDS` (then any others, which `check` refuses)."""
    p = config.get("population") or {}
    names = [k for k in VARIED_FIELDS if k in p] + sorted(
        k for k in p if k not in VARIED_FIELDS and k not in POPULATION_SETTINGS)
    return {k: p[k] for k in names if p[k] is not None}


def check(config: ml_collections.ConfigDict) -> None:
    """Refuse, in one line naming the field, a population that cannot be trained: a seed
    count below 1, an unknown rule or strategy, a field that may not vary (a structural
    one: widths, layers, batch size, ``n_critic``, image size, sampler...), a field the
    config lacks, values that are not a non-empty tuple of numbers, zipped fields of
    unequal lengths, a member config the family refuses, and the settings a population
    does not combine with."""
    p = config.population
    seeds = p.get("seeds", 1)
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise PopulationError(f"config.population.seeds must be a positive integer, got {seeds!r}.")
    if p.get("rule", "product") not in POPULATION_RULES:
        raise PopulationError(f"config.population.rule must be one of "
                              f"{', '.join(POPULATION_RULES)}, got {p.rule!r}.")
    if p.get("strategy", "auto") not in POPULATION_STRATEGIES:
        raise PopulationError(f"config.population.strategy must be one of "
                              f"{', '.join(POPULATION_STRATEGIES)}, got {p.strategy!r}.")
    fields = varied(config)
    for field, values in fields.items():
        _check_field(config, field, values)
    rank_by = p.get("rank_by", "auto")
    if rank_by != "auto" and _direction(rank_by) is None:
        raise PopulationError(f"config.population.rank_by={rank_by!r} has no known direction "
                              f"(better lower or higher); give a metric such as 'domain_fid', "
                              f"'bits_per_dim' or 'neg_elbo', or 'auto'.")
    lengths = {len(v) for v in fields.values()}
    if p.get("rule", "product") == "zip" and len(lengths) > 1:
        raise PopulationError(f"config.population.rule='zip' pairs the i-th values of every "
                              f"field, but the fields have {sorted(lengths)} values: "
                              + ", ".join(f"{k} {len(v)}" for k, v in fields.items()) + ".")
    parallel.check_driver(config.get("parallel", "none"))
    if config.get("parallel", "none") == "pmap" or (
            config.get("parallel", "none") == "mesh" and p.get("strategy") == "workers"):
        raise PopulationError(_NOT_WITH["parallel"].format(value=config.parallel))
    for setting, off in (("skip_nonfinite_steps", False), ("keep_best", None)):
        if config.get(setting, off) != off:
            raise PopulationError(_NOT_WITH[setting].format(value=config.get(setting)))


_NOT_WITH = {
    "parallel": "config.parallel={value!r}: a population runs on one device, or with "
                "config.parallel='mesh' (strategy vmap or map) its members spread over "
                "this host's devices; the workers strategy is one process per CPU core.",
    "skip_nonfinite_steps": "config.skip_nonfinite_steps=True: a population freezes a "
                            "member whose update is not finite instead (the others go on).",
    "keep_best": "config.keep_best={value!r}: a population's checkpoints hold every member, "
                 "so there is no one best to keep; compare the members in population.json.",
}


def _check_field(config: ml_collections.ConfigDict, field: str, values: Any) -> None:
    if field not in VARIED_FIELDS:
        raise PopulationError(
            f"config.population.{field}: {field} is structural (it changes the networks' "
            f"shapes or what the step runs), so all members must share it; members may "
            f"differ in: {', '.join(VARIED_FIELDS)}.")
    if field not in config:
        raise PopulationError(f"config.population.{field}: this config ({config.get('task')}) "
                              f"has no field {field} to vary.")
    if (not isinstance(values, (tuple, list)) or not values
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)):
        raise PopulationError(f"config.population.{field} must be a non-empty tuple of numbers, "
                              f"e.g. (1e-3, 3e-4), got {values!r}.")


def roster(config: ml_collections.ConfigDict) -> list[Member]:
    """The members of ``config``'s population, in order (see the module docstring)."""
    p, fields = config.population, varied(config)
    names = list(fields)
    if p.get("rule", "product") == "zip" and fields:
        settings = list(zip(*fields.values()))
    else:
        settings = list(itertools.product(*fields.values()))
    seeds = [config.seed + j for j in range(p.get("seeds", 1))]
    return [Member(i, seed, tuple(zip(names, map(float, setting))))
            for i, (setting, seed) in enumerate(itertools.product(settings, seeds))]


def member_config(config: ml_collections.ConfigDict, member: Member) -> ml_collections.ConfigDict:
    """The config of ``member`` as a run of its own: ``config`` with its seed and values,
    on one device, and no population."""
    c = config.copy_and_resolve_references()
    with c.unlocked():
        c.seed = member.seed
        c.parallel = "none"  # a member's batch is split by the population's mesh, if any
        for field, value in member.values:
            c[field] = value
        for field in varied(c):
            c.population[field] = None
        c.population.seeds = 1
    return c


def _traced_config(config: ml_collections.ConfigDict, hparams: dict[str, jax.Array],
                   values: dict[str, tuple]) -> ml_collections.ConfigDict:
    """``config`` with each varied field a `Varied` of this member's traced value."""
    tree = config.to_dict()
    tree.update({f: Varied(f, hparams[f], values[f]) for f in hparams})
    return ml_collections.ConfigDict(tree)


def hparams(members: Sequence[Member]) -> dict[str, np.ndarray]:
    """The varied fields' values, one ``[K]`` float64 array per field."""
    return {field: np.asarray([dict(m.values)[field] for m in members], np.float64)
            for field, _ in members[0].values}


def stack(states: Sequence[TrainState], members: Sequence[Member]) -> TrainState:
    """The population state of the members' own states (their step is the shared one)."""
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *[s.replace(step=states[0].step)
                                                          for s in states])
    # JAX's default float (float32; float64 under x64): as the step's own arithmetic
    pop = {"hparams": {k: jnp.asarray(v, float) for k, v in hparams(members).items()},
           "frozen_at": jnp.full((len(members),), ALIVE, jnp.int32)}
    return stacked.replace(step=states[0].step, extra={**stacked.extra, KEY: pop})


def member_state(state: TrainState, i: int) -> TrainState:
    """Member ``i``'s state as a run of its own would hold it."""
    extra = {k: v for k, v in state.extra.items() if k != KEY}
    rest = jax.tree.map(lambda x: x[i], (state.rng, state.nets, extra))
    return TrainState(step=state.step, rng=rest[0], nets=rest[1], extra=rest[2])


def _finite_members(tree: Any, k: int) -> jax.Array:
    """[K] bool: whether each member's floating leaves of ``tree`` are all finite."""
    ok = jnp.ones((k,), bool)
    for leaf in jax.tree.leaves(tree):
        if jnp.issubdtype(leaf.dtype, jnp.inexact) and leaf.size:
            ok &= jnp.isfinite(leaf.reshape(k, -1)).all(axis=1)
    return ok


def member_updates(config: ml_collections.ConfigDict, members: Sequence[Member],
                   image_shape: tuple[int, ...], strategy: str, axis_name: str | None = None
                   ) -> StepFn:
    """The members' update: the family's step of every member the state holds (``k``, its
    leading axis: all K, or a device's group under the mesh driver), by ``strategy``
    ``"vmap"`` or ``"map"``; then a member whose new state or metrics are not finite keeps
    its old state and is marked frozen. Metrics come back as ``[k]`` arrays. Each member's
    step is built with ``axis_name`` (its batch split over that axis)."""
    values = {field: tuple(dict(m.values)[field] for m in members) for field, _ in members[0].values}

    def one(step, rng, nets, extra, hp, batch):
        task = TASKS[config.task](_traced_config(config, hp, values), image_shape, axis_name)
        new, metrics = task.train_step(TrainState(step, rng, nets, extra), batch)
        return new.nets, new.extra, metrics

    def update(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        pop = state.extra[KEY]
        k = pop["frozen_at"].shape[0]
        extra = {key: v for key, v in state.extra.items() if key != KEY}
        args = (state.rng, state.nets, extra, pop["hparams"], batch)
        if strategy == "vmap":
            nets, new_extra, metrics = jax.vmap(lambda *a: one(state.step, *a))(*args)
        else:
            nets, new_extra, metrics = jax.lax.map(lambda a: one(state.step, *a), args)
        alive = pop["frozen_at"] == ALIVE
        ok = _finite_members((nets, new_extra, metrics), k) & alive
        keep = lambda new, old: jnp.where(ok.reshape((k,) + (1,) * (new.ndim - 1)), new, old)  # noqa: E731
        nets, new_extra = jax.tree.map(keep, (nets, new_extra), (state.nets, extra))
        frozen_at = jnp.where(alive & ~ok, state.step, pop["frozen_at"])
        return state.replace(step=state.step + 1, nets=nets,
                             extra={**new_extra, KEY: {**pop, "frozen_at": frozen_at}}), metrics

    return update


def named(metrics: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """``[K]`` metrics as the population logs them, one per member (``<name>/m<i>``)."""
    return {member_key(name, i): v[i] for name, v in metrics.items() for i in range(v.shape[0])}


def make_step(config: ml_collections.ConfigDict, members: Sequence[Member],
              image_shape: tuple[int, ...], strategy: str) -> StepFn:
    """The population's step on one device: `member_updates` of every member, its
    metrics `named`."""
    update = member_updates(config, members, image_shape, strategy)

    def step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        state, metrics = update(state, batch)
        return state, named(metrics)

    return step


def member_key(name: str, i: int) -> str:
    """Member ``i``'s metric ``name`` as the population logs it."""
    return f"{name}/m{i}"


def _images(members: Sequence[assembly.Setup]):
    """``images(state, batch)``: each member's grids (``<name>_m<i>``) and the overview,
    a row of each member's first 8 images of its ``samples`` grid (else its first)."""

    def images(state: TrainState, batch: dict) -> dict[str, np.ndarray]:
        out, rows = {}, []
        for i, m in enumerate(members):
            grids = m.task.images(member_state(state, i), batch)
            out.update({f"{name}_m{i}": g for name, g in grids.items()})
            if grids:
                first = np.asarray(grids.get("samples", next(iter(grids.values()))))
                rows.append(first.reshape(-1, *first.shape[-3:])[:8])
        if rows and all(r.shape == rows[0].shape for r in rows):
            out[OVERVIEW] = np.stack(rows)
        return out

    return images


def _evaluate(members: Sequence[assembly.Setup]):
    """``evaluate(state, batches)``: each member's own test metrics (`Task.evaluate`)."""

    def evaluate(state: TrainState, batches) -> dict[str, float]:
        batches = list(batches)
        return {member_key(name, i): v for i, m in enumerate(members)
                for name, v in m.task.evaluate(member_state(state, i), batches).items()}

    return evaluate


def rank_metric(rank_by: str, finals: Sequence[dict[str, float]]) -> str | None:
    """The final metric that ranks the members: ``rank_by`` (a name as ``keep_best`` takes
    it), or with ``"auto"`` the domain FID when the members have one, else their first
    metric with a direction (`genjax.ranking.direction`); None when there is none."""
    names = list(dict.fromkeys(k for f in finals for k in f))
    if rank_by != "auto":
        return ranking.metric_key(rank_by)
    if "test/domain_fid" in names:
        return "test/domain_fid"
    return next((k for k in names if _direction(k) is not None), None)


def _direction(name: str) -> str | None:
    try:
        return ranking.direction(name)
    except KeyError:
        return None


def _spread(values: Sequence[float]) -> dict[str, float] | None:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    if not finite:
        return None
    return {"median": float(np.median(finite)), "min": float(min(finite)),
            "max": float(max(finite)), "n": len(finite)}


def summary(members: Sequence[Member], finals: Sequence[dict[str, float]],
            frozen_at: Sequence[int], rank_by: str = "auto") -> dict:
    """``population.json``: every member's final metrics (and the step it froze at, if it
    did); per setting (members that differ only in seed) each metric's median, min and
    max over its seeds; and the best member by `rank_metric`."""
    metric = rank_metric(rank_by, finals)
    rows = [{"member": m.index, "label": m.label, "seed": m.seed, "values": dict(m.values),
             "frozen_at": None if f == ALIVE else int(f), "final": finals[m.index]}
            for m, f in zip(members, frozen_at)]
    settings = []
    for values, group in itertools.groupby(members, key=lambda m: m.values):
        group = [m.index for m in group]
        names = dict.fromkeys(k for i in group for k in finals[i])
        settings.append({"values": dict(values), "members": group, "metrics": {
            k: _spread([finals[i].get(k) for i in group]) for k in names}})
    best = None
    if metric is not None and _direction(metric) is not None:
        sign = 1.0 if _direction(metric) == ranking.HIGHER else -1.0
        scored = [(sign * finals[m.index][metric], m) for m in members
                  if np.isfinite(finals[m.index].get(metric, np.nan))]
        if scored:
            _, m = max(scored, key=lambda t: t[0])
            best = {"member": m.index, "label": m.label, "value": finals[m.index][metric]}
    return {"rank_by": metric, "best": best, "settings": settings, "members": rows}


def summary_lines(result: dict) -> list[str]:
    """The summary as the log says it: a line per setting (the ranking metric's median
    and range over its seeds), then the best member."""
    metric = result["rank_by"]
    if metric is None:
        return []
    lines = [f"Population: {metric} per setting, median [min, max] over seeds:"]
    for s in result["settings"]:
        spread = s["metrics"].get(metric)
        setting = ", ".join(f"{k}={v:g}" for k, v in s["values"].items()) or "seeds"
        lines.append(f"  {setting}: " + ("no finite value" if spread is None else
                     f"{spread['median']:.4g} [{spread['min']:.4g}, {spread['max']:.4g}] "
                     f"({spread['n']} seed(s))"))
    if result["best"]:
        lines.append(f"Best member: {result['best']['label']}, {metric} "
                     f"{result['best']['value']:.4g}.")
    return lines


@dataclasses.dataclass(frozen=True)
class PopulationSetup(assembly.Setup):
    """A population as the loop trains it: ``task`` is the population's (its step, init
    and grids over every member), ``members`` each member's own `genjax.assembly.Setup`."""

    members: tuple[assembly.Setup, ...] = ()
    roster: tuple[Member, ...] = ()
    strategy: str = "vmap"  # how the one program runs its members: vmap or map
    reported: list = dataclasses.field(default_factory=list)  # members said to be frozen

    def driver(self, step: StepFn) -> parallel.Driver:
        """On one device, ``step`` as any run's; with ``config.parallel='mesh'`` the
        members' update over the `genjax.parallel.member_mesh`, each member's batch split
        over its group's devices (`genjax.parallel.make_member_driver`)."""
        c = self.config
        if c.parallel != "mesh":
            return super().driver(step)
        update = member_updates(c, self.roster, self.image_shape, self.strategy, parallel.AXIS)
        return parallel.make_member_driver(
            update, named, parallel.member_mesh(len(self.roster), c.batch_size),
            steps_per_call=c.get("steps_per_call", 1), cpu_dots=c.get("cpu_dots", "auto"))

    def init_state(self) -> TrainState:
        """Each member's fresh state, exactly as its own run makes it, stacked."""
        return stack([m.init_state() for m in self.members], self.roster)

    def data_initialized(self, fresh: TrainState) -> TrainState:
        if all(m.task.data_init is None for m in self.members):
            return fresh
        states = [m.data_initialized(member_state(fresh, i)) for i, m in enumerate(self.members)]
        return stack(states, self.roster)

    def train_batches(self, start_step: int) -> Iterator[dict]:
        """Every member's batch of each step (its own seed's order), stacked [K, B, ...]."""
        its = [m.train_batches(start_step) for m in self.members]
        while True:
            batches = [next(it) for it in its]
            on_device = isinstance(batches[0]["image"], jax.Array)
            yield {key: (jnp.stack if on_device else np.stack)([b[key] for b in batches])
                   for key in batches[0]}

    def evaluate(self, state: TrainState, final: bool = False) -> dict[str, float]:
        """Every member's evaluation (its family metrics and domain metrics), per member."""
        return {member_key(name, i): v for i, m in enumerate(self.members)
                for name, v in m.evaluate(member_state(state, i), final).items()}

    def report(self, workdir: str, state: TrainState, results: dict[str, float]) -> None:
        """Write `SUMMARY` (`summary` of the final evaluation) and say its table."""
        finals = [{} for _ in self.roster]
        for key, value in (results or {}).items():
            name, _, member = key.rpartition("/m")
            finals[int(member)][name] = value
        frozen_at = np.asarray(jax.device_get(state.extra[KEY]["frozen_at"])).tolist()
        result = summary(self.roster, finals, frozen_at,
                         self.config.population.get("rank_by", "auto"))
        with record.atomic_file(os.path.join(workdir, SUMMARY)) as f:
            json.dump(result, f, indent=1)
        for line in summary_lines(result):
            info(line)
        info(f"Every member's final metrics in {os.path.join(workdir, SUMMARY)}.")

    def train_metrics(self, means: dict[str, float], state: TrainState) -> dict[str, float]:
        """The log row without the frozen members' metrics (their state no longer
        changes), with ``population/frozen``; a newly frozen member is reported once."""
        frozen_at = np.asarray(jax.device_get(state.extra[KEY]["frozen_at"]))
        frozen = [i for i, s in enumerate(frozen_at) if s != ALIVE]
        for i in frozen:
            if i not in self.reported:
                self.reported.append(i)
                warn(f"member {self.roster[i].label} diverged at step {frozen_at[i]}: frozen "
                     f"with its last finite state; the others train on.")
        gone = tuple(f"/m{i}" for i in frozen)
        return {**{k: v for k, v in means.items() if not k.endswith(gone)},
                "population/frozen": float(len(frozen))}


def strategy(config: ml_collections.ConfigDict) -> str:
    """The population's strategy, ``auto`` resolved: ``workers`` on CPU (one
    single-threaded process per core), ``vmap`` on an accelerator or on a mesh."""
    chosen = config.population.get("strategy", "auto")
    if chosen != "auto":
        return chosen
    on_cpu = jax.default_backend() == "cpu" and config.get("parallel", "none") != "mesh"
    return "workers" if on_cpu else "vmap"


def setup(config: ml_collections.ConfigDict) -> PopulationSetup:
    """`check` the population, build every member's `genjax.assembly.Setup` (each member
    config checked by its family), and the population's step; trace it once, so that a
    varied field the family uses in a decision its members disagree on, or members whose
    states differ in shape, are refused here, before anything is written."""
    check(config)
    members = roster(config)
    placed = ""
    if config.parallel == "mesh":  # the batch splits over the member mesh, or a clear error
        groups, per_group = parallel.member_mesh(len(members), config.batch_size).devices.shape
        placed = f" on a mesh of {groups} member group(s) x {per_group} device(s)"
    first = member_setup(config, members[0])
    check_memory(first, len(members))
    setups = (first,) + tuple(member_setup(config, m) for m in members[1:])
    chosen = strategy(config)
    if chosen == "workers":  # the population as one program (runs.load, a resume's checks)
        chosen = "map"
    step = make_step(config, members, first.image_shape, chosen)
    task = first.task._replace(
        init=lambda key: stack([m.task.init(m.init_key) for m in setups], members),
        train_step=step, evaluate=_evaluate(setups), images=_images(setups), sample=None,
        data_init=None, final_evaluate=None, log_likelihood=None,
        examples_per_step=len(members) * first.task.examples_per_step)
    run = PopulationSetup(config, task, first.train_spec, first.eval_spec, first.show,
                          members=setups, roster=tuple(members), strategy=chosen)
    _check_traces(run, first)
    info(f"Population of {len(members)} members ({chosen}{placed}): "
         + "; ".join(m.label for m in members[:8]) + ("; ..." if len(members) > 8 else "") + ".")
    return run


def available_memory() -> int | None:
    """Bytes free for a new state: the accelerator's limit less what is in use, else the
    host's available memory (``MemAvailable``); None where neither is known."""
    stats = jax.devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return stats["bytes_limit"] - stats.get("bytes_in_use", 0)
    try:
        with open("/proc/meminfo") as f:
            found = [line.split()[1] for line in f if line.startswith("MemAvailable:")]
        return int(found[0]) * 1024 if found else None
    except OSError:
        return None


def check_memory(first: assembly.Setup, k: int) -> None:
    """Refuse, before anything compiles, a population whose states alone cannot fit: one
    step holds the K members' states and their new ones, at least 2 K times a member's
    state (activations come on top)."""
    shapes = jax.tree.leaves(jax.eval_shape(first.task.init, first.init_key))
    member = sum(x.size * (8 if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
                           else np.dtype(x.dtype).itemsize) for x in shapes)
    need, have = 2 * k * member, available_memory()
    if have is not None and need > have:
        raise PopulationError(
            f"a population of {k} members needs at least {need / 2**30:.1f} GiB (twice "
            f"{k} x {member / 2**20:.1f} MiB of state during a step), more than the "
            f"{have / 2**30:.1f} GiB available; train fewer members, or "
            f"config.population.strategy='workers' (one member per process).")


def member_setup(config: ml_collections.ConfigDict, member: Member) -> assembly.Setup:
    """``member``'s own `genjax.assembly.Setup`; a value its family refuses names it."""
    try:
        return assembly.setup(member_config(config, member))
    except ValueError as e:
        if type(e) is not ValueError:
            raise
        raise ValueError(f"population member {member.label}: {e}") from None


def _check_traces(run: PopulationSetup, first: assembly.Setup) -> None:
    """Trace the population's init and step (nothing compiles): members whose states
    differ in structure, or a varied field used in a decision they disagree on, fail
    here with the fields named."""
    shapes = [jax.eval_shape(m.task.init, m.init_key) for m in run.members]
    for i, s in enumerate(shapes[1:], 1):
        if jax.tree.structure(s) != jax.tree.structure(shapes[0]) or any(
                a.shape != b.shape for a, b in zip(jax.tree.leaves(s), jax.tree.leaves(shapes[0]))):
            raise PopulationError(f"members {run.roster[0].label} and {run.roster[i].label} "
                                  f"have states of different structure; the varied fields "
                                  f"({', '.join(varied(run.config)) or 'seeds'}) may only "
                                  f"change numbers, not what a state holds.")
    state = jax.eval_shape(run.task.init, run.init_key)
    per_member = first.task.examples_per_step
    batch = {k: jax.ShapeDtypeStruct((len(run.roster), per_member, *v.shape[1:]), v.dtype)
             for k, v in first.show.items() if k != "mask"}
    jax.eval_shape(run.task.train_step, state, batch)
