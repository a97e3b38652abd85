"""Populations: every member of a population run is the run of that member alone.

Equivalence is checked in float64, as the data-parallel drivers are (tests/parallel_worker.py
says why: some steps amplify float32 roundoff far beyond any tolerance that would still
catch a wrong program), with each member's own batches; ``map`` runs the member's step as
it is, ``vmap`` batches it, so both must match the member's own run to roundoff.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import loop, population, runs
from genjax.cli.evaluate import evaluate_run
from genjax.configs import gan_mlp_mnist, vae_mnist
from genjax.varied import PopulationFieldError, Varied
from tests.conftest import short_run_config, train_unfinished
from tests.equivalence import batches, in_float64, relative_differences


def _config(name: str, data_dir: str, fields: dict, seeds: int = 1, **overrides):
    import importlib

    c = importlib.import_module(f"genjax.configs.{name}").get_config("test")
    c.data_dir = data_dir
    c.update(overrides)
    c.population.seeds = seeds
    for field, values in fields.items():
        c.population[field] = values
    return c


def _step_n(step, state, feeds):
    step = jax.jit(step)
    for batch in feeds:
        state, _ = step(state, batch)
    return state


def _equivalence(c, strategy: str, steps: int = 3, float64: bool = True) -> list[dict]:
    """Per member, `relative_differences` of its slice of the population's state after
    ``steps`` steps of ``strategy`` from the member's own run's (its fresh state, its own
    fixed batches: member i's are batch rows drawn with seed i)."""
    c.population.strategy = strategy
    run = population.setup(c)
    k, n = len(run.roster), run.members[0].task.examples_per_step
    feeds = [batches(c.preprocess, n, steps) for _ in range(k)]
    for i, f in enumerate(feeds):  # a different stream per member
        rng = np.random.default_rng(i + 1)
        for b in f:
            b["image"] = rng.permutation(b["image"])
    cast = in_float64 if float64 else (lambda tree: tree)
    with jax.enable_x64(float64):
        states = [cast(m.data_initialized(m.init_state())) for m in run.members]
        solo = [_step_n(m.task.train_step, s, [cast(b) for b in f])
                for m, s, f in zip(run.members, states, feeds)]
        stacked = [cast({key: np.stack([f[t][key] for f in feeds]) for key in feeds[0][t]})
                   for t in range(steps)]
        pop = _step_n(run.task.train_step, population.stack(states, run.roster), stacked)
        assert np.all(np.asarray(pop.extra[population.KEY]["frozen_at"]) == population.ALIVE)
        return [relative_differences(population.member_state(pop, i), s)
                for i, s in enumerate(solo)]


FAST = [("vae_mnist", {"learning_rate": (1e-3, 3e-3), "beta": (0.5, 2.0)}, 1, {}),
        ("gan_mlp_mnist", {"d_learning_rate": (2e-4, 1e-3), "b1": (0.5, 0.0),
                           "label_smoothing": (0.1, 0.2)}, 1, {"population.rule": "zip"}),
        ("rbm_pcd_mnist", {"learning_rate": (0.05, 0.01), "weight_decay": (1e-4, 1e-3)}, 1,
         {"population.rule": "zip"})]
SLOW = [("ddpm_mnist", {"learning_rate": (1e-3, 3e-4), "ema_decay": (0.99, 0.9)}, 1,
         {"population.rule": "zip", "batch_size": 4}),
        ("wgan_gp_mnist", {"gp_weight": (10.0, 1.0)}, 1, {"n_critic": 2, "batch_size": 8}),
        ("gated_pixelcnn_mnist", {"learning_rate": (1e-3, 3e-3)}, 1, {"batch_size": 8}),
        ("realnvp_mnist", {"learning_rate": (1e-3, 3e-3)}, 1, {"batch_size": 8})]


def _cases(cases, marks=()):
    return [pytest.param(*case, id=case[0], marks=marks) for case in cases]


@pytest.mark.parametrize("name,fields,seeds,overrides",
                         _cases(FAST) + _cases(SLOW, pytest.mark.slow))
def test_each_strategy_trains_every_member_as_its_own_run(name, fields, seeds, overrides,
                                                         data_dir):
    overrides = dict(overrides)
    rule = overrides.pop("population.rule", "product")
    c = _config(name, data_dir, fields, seeds, **overrides)
    c.population.rule = rule
    for strategy in ("vmap", "map"):
        for i, diffs in enumerate(_equivalence(c, strategy)):
            worst = max(diffs.values())
            assert worst < 1e-9, (strategy, i, diffs)


def test_seeds_in_float32_match_the_members_runs(data_dir):
    """The precision users train in, on the well-conditioned VAE: vmap within 1e-5 of each
    member's run, map to roundoff."""
    c = _config("vae_mnist", data_dir, {}, seeds=2)
    for strategy, tol in (("vmap", 1e-5), ("map", 1e-6)):
        for diffs in _equivalence(c, strategy, float64=False):
            assert max(diffs.values()) < tol, (strategy, diffs)


def test_roster_rules_and_member_configs():
    c = vae_mnist.get_config("test")
    c.seed = 7
    c.population.seeds = 2
    c.population.learning_rate = (1e-3, 3e-3)
    c.population.beta = (0.5, 1.0, 2.0)
    members = population.roster(c)
    assert len(members) == 12
    assert [(dict(m.values)["learning_rate"], dict(m.values)["beta"], m.seed)
            for m in members[:4]] == [(1e-3, 0.5, 7), (1e-3, 0.5, 8), (1e-3, 1.0, 7), (1e-3, 1.0, 8)]
    c.population.rule = "zip"
    c.population.beta = (0.5, 2.0)
    members = population.roster(c)
    assert [(dict(m.values)["beta"], m.seed) for m in members] == [(0.5, 7), (0.5, 8), (2.0, 7),
                                                                   (2.0, 8)]
    one = population.member_config(c, members[3])
    assert (one.learning_rate, one.beta, one.seed) == (3e-3, 2.0, 8)
    assert not population.is_population(one) and population.is_population(c)
    assert members[3].label == "m3 (learning_rate=0.003, beta=2, seed=8)"


def test_a_varied_value_answers_decisions_only_when_the_members_agree():
    v = Varied("gp_weight", jnp.float32(5.0), (5.0, 10.0))
    assert bool(v) and v > 0 and not v < 1 and float((v * 2)) == 10.0 and float(1 - v) == -4.0
    with pytest.raises(PopulationFieldError, match=r"config.gp_weight: .*\(0.0, 10.0\).*`if`"):
        bool(Varied("gp_weight", jnp.float32(0.0), (0.0, 10.0)))
    with pytest.raises(PopulationFieldError, match=r"config.beta is used as a plain Python number"):
        float(Varied("beta", jnp.float32(1.0), (1.0, 2.0)))


def test_summary_groups_seeds_and_names_the_best_member():
    c = vae_mnist.get_config("test")
    c.population.seeds, c.population.learning_rate = 3, (1e-3, 3e-3)
    members = population.roster(c)
    fid = [30.0, 20.0, 25.0, 10.0, float("nan"), 50.0]
    finals = [{"test/domain_fid": f, "test/neg_elbo": 100.0 + i} for i, f in enumerate(fid)]
    frozen = [population.ALIVE] * 4 + [120, population.ALIVE]
    result = population.summary(members, finals, frozen)
    assert result["rank_by"] == "test/domain_fid"
    assert result["best"]["member"] == 3 and result["best"]["value"] == 10.0
    first, second = result["settings"]
    assert first["members"] == [0, 1, 2] and first["metrics"]["test/domain_fid"] == {
        "median": 25.0, "min": 20.0, "max": 30.0, "n": 3}
    assert second["metrics"]["test/domain_fid"] == {"median": 30.0, "min": 10.0, "max": 50.0,
                                                     "n": 2}
    assert result["members"][4]["frozen_at"] == 120 and result["members"][0]["frozen_at"] is None
    lines = population.summary_lines(result)
    assert lines[1] == "  learning_rate=0.001: 25 [20, 30] (3 seed(s))"
    assert population.summary(members, finals, frozen, "neg_elbo")["best"]["member"] == 0


def test_a_diverging_member_is_frozen_and_the_others_train_on(data_dir, tmp_path):
    """Learning rate 1e4 sends member 1 to NaN in its first steps: it keeps its last finite
    state, the run finishes, and member 0 is exactly its own run."""
    c = short_run_config("vae_mnist", data_dir)
    c.log_every, c.population.learning_rate = 1, (1e-3, 1e4)
    c.population.strategy = "map"
    state = train_unfinished(c, tmp_path / "pop")
    frozen_at = np.asarray(state.extra[population.KEY]["frozen_at"])
    assert frozen_at[0] == population.ALIVE and 0 <= frozen_at[1] < 4
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.nets))
    alone = train_unfinished(population.member_config(c, population.roster(c)[0]), tmp_path / "m0")
    for a, b in zip(jax.tree.leaves(population.member_state(state, 0).nets),
                    jax.tree.leaves(alone.nets)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    rows = [json.loads(line) for line in open(tmp_path / "pop" / "metrics.jsonl")]
    last = rows[-1]
    assert last["population/frozen"] == 1.0 and "train/loss/m0" in last
    assert "train/loss/m1" not in last
    # From Python, a member is a run of its own: its config, its state, its sampler.
    member = runs.load(str(tmp_path / "pop"), member=0)
    assert member.trained.learning_rate == 1e-3 and not population.is_population(member.trained)
    for a, b in zip(jax.tree.leaves(member.state.nets), jax.tree.leaves(alone.nets)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert member.sample(8).shape == (8, 28, 28, 1)
    with pytest.raises(ValueError, match=r"holds a population of 2 members .*member=i, i in 0..1"):
        runs.load(str(tmp_path / "pop"))
    with pytest.raises(ValueError, match=r"member=2: the population in .* has members 0..1"):
        runs.load(str(tmp_path / "pop"), member=2)
    with pytest.raises(ValueError, match=r"member=0: the run in .* is not a population"):
        runs.load(str(tmp_path / "m0"), member=0)


@pytest.mark.slow
def test_a_population_resumes_bitwise_and_writes_its_summary(data_dir, tmp_path):
    c = short_run_config("vae_mnist", data_dir)
    c.population.seeds, c.population.beta = 2, (0.5, 1.0)
    c.population.strategy = "vmap"
    whole = loop.train_and_evaluate(c, str(tmp_path / "whole"))
    half = c.copy_and_resolve_references()
    half.num_steps = 2
    train_unfinished(half, tmp_path / "resumed")
    resumed = loop.train_and_evaluate(c, str(tmp_path / "resumed"))
    for a, b in zip(jax.tree.leaves(resumed.nets), jax.tree.leaves(whole.nets)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    summary = json.load(open(tmp_path / "whole" / population.SUMMARY))
    assert len(summary["members"]) == 4 and len(summary["settings"]) == 2
    assert summary["rank_by"] == "test/domain_fid" and summary["best"] is not None
    assert os.path.exists(tmp_path / "whole" / f"{population.OVERVIEW}.png")
    assert os.path.exists(tmp_path / "whole" / "samples_m3.png")
    results = evaluate_run(str(tmp_path / "whole"), num_samples=50, member=3)
    row = json.loads(open(tmp_path / "whole" / "evaluations.jsonl").readlines()[-1])
    assert results and set(row) - {"step"} == {f"{k}/m3" for k in results}


def test_a_population_of_gan_learning_rates_logs_every_member(data_dir):
    c = _config("gan_mlp_mnist", data_dir, {"g_learning_rate": (1e-4, 2e-4)})
    run = loop.setup(c)
    assert isinstance(run, population.PopulationSetup) and len(run.members) == 2
    assert run.task.examples_per_step == 2 * run.members[0].task.examples_per_step
    assert gan_mlp_mnist.get_config("test").population.seeds == 1


def _alone_as_a_worker(pop, root, i: int):
    """Member ``i`` of the population recorded in ``pop`` trained alone: one process
    running the worker's program as a worker runs, single-threaded on one core (XLA:CPU
    sizes its thread pools by the cores a process may use, and conv kernels split their
    sums by them), nothing beside it; returns its run's folder."""
    import shutil
    import subprocess
    import sys

    from genjax import workers

    root.mkdir()
    shutil.copy(pop / "config.json", root / "config.json")
    subprocess.run([sys.executable, "-m", "genjax.cli.member", str(root), str(i)], check=True,
                   env=workers.worker_env(workers.cores()[0]), capture_output=True, timeout=600)
    return root / "members" / f"m{i}"


def _same_nets(a, b, exact: bool = True) -> None:
    for x, y in zip(jax.tree.leaves(a.nets), jax.tree.leaves(b.nets), strict=True):
        if exact:
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        else:  # a multithreaded XLA sums in another order: float32 roundoff
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-6)


def test_workers_train_each_member_bitwise_as_its_own_run(data_dir, tmp_path, capfd):
    """``workers``: member 0 is bitwise its run alone under the workers' flags (state and
    metric rows) and, to roundoff, its run in this process; member 1 (learning rate 1e4)
    diverges, is frozen with its last good checkpoint and passed over on a relaunch;
    population.json, the overview grid and runs.load(member=) see the members' own runs."""
    c = short_run_config("vae_mnist", data_dir)
    c.population.learning_rate, c.population.strategy = (1e-3, 1e4), "workers"
    pop = tmp_path / "pop"
    state = loop.train_and_evaluate(c, str(pop))
    out = capfd.readouterr().out
    assert "[m0] member m0 (learning_rate=0.001, seed=0): training in" in out
    assert np.asarray(state.extra[population.KEY]["frozen_at"]).tolist()[0] == population.ALIVE
    assert (pop / "members" / "m1" / "diverged.json").exists()
    alone = _alone_as_a_worker(pop, tmp_path / "alone", 0)
    _same_nets(population.member_state(state, 0), runs.load(str(alone)).state)
    timing = ("examples_per_sec", "minutes")
    rows = lambda d: [{k: v for k, v in json.loads(line).items() if not k.endswith(timing)}  # noqa: E731
                      for line in open(d / "metrics.jsonl")]
    assert rows(pop / "members" / "m0") == rows(alone)
    here = train_unfinished(population.member_config(c, population.roster(c)[0]),
                            tmp_path / "here")
    _same_nets(population.member_state(state, 0), here, exact=False)
    summary = json.load(open(pop / population.SUMMARY))
    assert summary["members"][1]["frozen_at"] is not None and summary["best"]["member"] == 0
    assert (pop / f"{population.OVERVIEW}.png").exists()
    _same_nets(runs.load(str(pop), member=0).state, population.member_state(state, 0))
    loop.train_and_evaluate(c, str(pop))  # a relaunch: m0 finished, m1 frozen, nothing trains
    out = capfd.readouterr().out
    assert "[m1] member m1 (learning_rate=10000, seed=0) diverged at step" in out
    assert "nothing to do" in out


@pytest.mark.slow(seconds=120)
@pytest.mark.parametrize("strategy", ["vmap", "workers"])
def test_a_population_killed_and_resumed_ends_bitwise_equal(strategy, data_dir, tmp_path):
    """`benchmarks.chaos` with 2 kills of a 2-seed VAE population: under ``workers`` each
    kill hits the launcher, whose workers die with it; every member ends bitwise equal to
    the uninterrupted population's."""
    from benchmarks import chaos

    r = chaos.chaos("vae_mnist:test", kills=2, steps=16, every=2, seed=0, root=str(tmp_path),
                    data_dir=data_dir, population={"seeds": 2, "strategy": strategy})
    assert r["kills"] == 2 and len(r["resumed_at"]) >= 2, r
    assert r["identical"], r["differing_leaves"]


@pytest.mark.slow(seconds=150)
def test_a_population_on_a_mesh_of_four_devices_killed_and_resumed_ends_bitwise_equal(
        data_dir, tmp_path, monkeypatch):
    """The member mesh through the loop over several devices: a 2-seed VAE population with
    ``parallel='mesh'`` on 4 simulated devices (2 member groups of 2 devices), killed twice
    and resumed (its checkpoints written from and restored onto the mesh), ends bitwise
    equal to the uninterrupted one; this process, which has one device, reads the
    checkpoints written from 4."""
    from benchmarks import chaos

    assert len(jax.devices()) == 1  # the backend starts before the flag: one device here
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
    r = chaos.chaos("vae_mnist:test", kills=2, steps=16, every=2, seed=1, root=str(tmp_path),
                    data_dir=data_dir, population={"seeds": 2, "strategy": "vmap"},
                    overrides={"parallel": "mesh"})
    assert r["kills"] == 2 and len(r["resumed_at"]) >= 2, r
    assert r["identical"], r["differing_leaves"]
    log = open(tmp_path / "log.txt").read()
    assert log.count("(vmap on a mesh of 2 member group(s) x 2 device(s))") == r["launches"]


def test_a_population_runs_several_steps_per_call(data_dir, tmp_path):
    """``steps_per_call=2`` (the steps of a call scanned over stacked [2, K, B] batches)
    ends bitwise equal to one step per call."""
    c = short_run_config("vae_mnist", data_dir)
    c.population.seeds, c.population.strategy = 2, "vmap"
    one = train_unfinished(c, tmp_path / "one")
    c.steps_per_call = 2
    two = train_unfinished(c, tmp_path / "two")
    for a, b in zip(jax.tree.leaves(one.nets), jax.tree.leaves(two.nets)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_population_trains_through_the_loop_on_the_member_mesh(data_dir, tmp_path):
    """``config.parallel='mesh'`` through the loop (its driver, placement, checkpoints,
    evaluation and loading a member) on this process's device: it ends as the population
    on one device, to float32 roundoff. (The mesh over several devices:
    tests/test_parallel.py.)"""
    c = short_run_config("vae_mnist", data_dir)
    c.population.seeds, c.population.strategy = 2, "vmap"
    one = train_unfinished(c, tmp_path / "one")
    c.parallel = "mesh"
    mesh = loop.train_and_evaluate(c, str(tmp_path / "mesh"))
    for a, b in zip(jax.tree.leaves(one.nets), jax.tree.leaves(mesh.nets)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    assert runs.load(str(tmp_path / "mesh"), member=1).sample(4).shape == (4, 28, 28, 1)


@pytest.mark.slow(seconds=60)
@pytest.mark.parametrize("name", ["gan_mlp_mnist", "ddpm_mnist", "gated_pixelcnn_mnist",
                                  "realnvp_mnist", "rbm_pcd_mnist"])
def test_workers_train_every_family_bitwise_as_its_own_runs(name, data_dir, tmp_path):
    """``workers`` for one config of each family beyond the VAE's: 2 seeds; member 1's
    final state bitwise its run alone as a worker runs it. (Against a multithreaded run
    of its config float32 roundoff differs, and Adam's first updates amplify it beyond
    any useful tolerance in the U-Net: tests/parallel_worker.py says why.)"""
    c = short_run_config(name, data_dir)
    c.population.seeds, c.population.strategy = 2, "workers"
    state = loop.train_and_evaluate(c, str(tmp_path / "pop"))
    alone = _alone_as_a_worker(tmp_path / "pop", tmp_path / "alone", 1)
    _same_nets(population.member_state(state, 1), runs.load(str(alone)).state)
