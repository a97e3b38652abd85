"""Sweeps: the search-space parser, the study's budget across workers and retries, the
pruner's feed from every run layout, the results, the bad inputs in one line, and real
workers sharing one study on SQLite and on a PostgreSQL server (a worker killed mid-trial
has its trial retried by the other)."""

import csv
import glob
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import optuna
import pytest
from optuna.trial import TrialState

from genjax import record, sweep
from genjax.configs import gan_mlp_mnist

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_the_search_space_parser():
    space = sweep.parse_space("g_learning_rate=loguniform(1e-5, 1e-3);b1 = uniform(0,0.9)\n"
                              "ema_decay=choice(0.99, 0.999)")
    assert [p.field for p in space] == ["b1", "ema_decay", "g_learning_rate"]
    assert sweep.space_text(space) == ("b1=uniform(0.0, 0.9); ema_decay=choice(0.99, 0.999); "
                                       "g_learning_rate=loguniform(1e-05, 0.001)")
    assert sweep.parse_space(sweep.space_text(space)) == space  # the recorded text reads back
    b1, ema, lr = (p.distribution() for p in space)
    assert (b1.low, b1.high, b1.log) == (0.0, 0.9, False) and lr.log and lr.low == 1e-5
    assert ema.choices == (0.99, 0.999)
    assert sweep.grid_size(sweep.parse_space("b1=choice(0, .5); b2=choice(.9, .99, .999)")) == 6


@pytest.mark.parametrize("text,pattern", [
    ("", "the search space is empty"),
    (" ; \n", "the search space is empty"),
    ("b1=normal(0, 1)", r"cannot read the search-space term 'b1=normal\(0, 1\)': expected"),
    ("b1 uniform(0, 1)", "cannot read the search-space term"),
    ("b1=uniform(0, 'a')", "the arguments must be finite numbers"),
    ("b1=uniform(0, nan)", "the arguments must be finite numbers"),
    ("b1=uniform(0.9, 0.1)", "uniform takes two bounds, low < high"),
    ("b1=uniform(0.1)", "uniform takes two bounds"),
    ("g_learning_rate=loguniform(0, 1e-3)", "loguniform's bounds must be positive"),
    ("b1=uniform(0, .5); b1=choice(.9)", "names b1 more than once"),
])
def test_search_space_mistakes_are_one_line(text, pattern):
    with pytest.raises(sweep.SweepError, match=pattern) as e:
        sweep.parse_space(text)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("text,pattern", [
    ("g_lr=uniform(0, 1)", "names 'g_lr', which the config has no field for"),
    ("batch_size=choice(32, 64)", "'batch_size' is a structural field"),
    ("beta=uniform(0, 1)", "names 'beta', which the config has no field for"),
])
def test_space_fields_are_checked_against_the_config(text, pattern):
    c = gan_mlp_mnist.get_config("test")
    with pytest.raises(sweep.SweepError, match=pattern):
        sweep.check_space(sweep.parse_space(text), c)
    sweep.check_space(sweep.parse_space("g_learning_rate=loguniform(1e-5, 1e-3); "
                                        "d_learning_rate=loguniform(1e-5, 1e-3); "
                                        "b1=uniform(0, 0.9)"), c)


def test_a_trial_of_one_seed_sets_its_fields_and_more_make_a_zipped_population():
    assert sweep.run_flags([{"b1": 0.5, "learning_rate": 1e-3}], 1, "test/domain_fid") == [
        "--config.b1=0.5", "--config.learning_rate=0.001"]
    flags = sweep.run_flags([{"b1": 0.5}, {"b1": 0.25}], 2, "test/domain_fid")
    assert flags == ["--config.population.rule=zip", "--config.population.seeds=2",
                     "--config.population.rank_by=test/domain_fid",
                     "--config.population.b1=(0.5, 0.25,)"]


def test_the_budget_counts_first_attempts_across_workers_and_retries():
    """Trials asked past the budget (two workers asking at once) are surplus; a retry of a
    trial whose worker died replaces it and is never surplus."""
    study = optuna.create_study(direction="minimize")
    asked = [study.ask() for _ in range(4)]  # two workers raced for the last slots of 3
    assert [sweep.is_surplus(study, t, 3) for t in asked] == [False, False, False, True]
    asked[3].set_user_attr(sweep.SURPLUS, True)  # as `sweep.ask` marks it
    study.tell(asked[3], state=TrialState.FAIL)
    study.tell(asked[0], 1.0)
    study.tell(asked[1], state=TrialState.FAIL)  # its worker died: queued again
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        optuna.storages.RetryHeartbeatStaleTrialCallback()(study, study.trials[1])
    assert sweep.left(study, 3) == 1  # the waiting retry
    retry = study.ask()
    assert retry.number == 4 and sweep.is_retry(study.trials[4])
    assert not sweep.is_surplus(study, retry, 3)
    assert sweep.left(study, 3) == 0 and sweep.left(study, 5) == 2


def _rows(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def test_evaluations_reach_the_pruner_from_every_run_layout(tmp_path):
    """A run of one trial, a population in one process (metrics keyed per member) and one
    of workers (a folder per member): each trial's evaluations, the median over its seeds
    at the steps all seeds have, and the final value apart."""
    key = "test/domain_fid"
    _rows(tmp_path / "one" / record.METRICS, [
        {"step": 2, key: 50.0}, {"step": 2, "train/loss": 1.0}, {"step": 4, key: 40.0, "final": True}])
    assert sweep.trial_values(str(tmp_path / "one"), None, key, final=False) == {2: 50.0}
    assert sweep.trial_values(str(tmp_path / "one"), None, key, final=True) == {4: 40.0}
    _rows(tmp_path / "vmap" / record.METRICS, [
        {"step": 2, f"{key}/m0": 10.0, f"{key}/m1": 30.0, f"{key}/m2": 99.0, f"{key}/m3": 1.0},
        {"step": 4, f"{key}/m0": 8.0, f"{key}/m1": float("nan")}])
    assert sweep.trial_values(str(tmp_path / "vmap"), [0, 1], key, final=False) == {2: 20.0}
    for m, rows in enumerate([[{"step": 2, key: 7.0}, {"step": 4, key: 5.0}], [{"step": 2, key: 9.0}]]):
        _rows(tmp_path / "workers" / "members" / f"m{m}" / record.METRICS, rows)
    assert sweep.trial_values(str(tmp_path / "workers"), [0, 1], key, final=False) == {2: 8.0}

    study = optuna.create_study(pruner=optuna.pruners.MedianPruner(n_startup_trials=1))
    good = study.ask()
    good.report(5.0, 2)
    study.tell(good, 5.0)
    batch = sweep.Batch([study.ask()], [{"b1": 0.5}], str(tmp_path / "one"), None)
    sweep._report(batch, key)  # 50 at step 2, worse than the median 5: pruned
    assert batch.pruned == {1: 2} and study.trials[1].intermediate_values == {2: 50.0}


@pytest.mark.slow(seconds=30)
@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed")  # this test's own ask
def test_a_run_whose_trials_are_all_pruned_is_stopped(data_dir, tmp_path):
    """The pruner's verdict on the first evaluation of a 400-step VAE run (worse than the
    median of a finished trial) stops the run: the trial is pruned at step 2 and the run
    never reaches its final evaluation."""
    space = sweep.parse_space("learning_rate=loguniform(1e-4, 1e-2)")
    plan = sweep.Sweep(task="vae", spec="vae_mnist:test", overrides=(
        f"--config.data_dir={data_dir}", "--config.num_steps=400", "--config.eval_every=2",
        "--config.checkpoint_every=2", "--config.eval_samples=100",
        "--config.eval_batch_size=100"), space=space, metric="test/domain_fid", seeds=1,
        trials=2, per_run=1, workdir=str(tmp_path / "w"), poll_s=0.2)
    storage = sweep.open_storage(f"sqlite:///{tmp_path}/s.db", heartbeat_s=5)
    study = sweep.open_study(storage, "p", plan.describe(), optuna.samplers.RandomSampler(0),
                             optuna.pruners.MedianPruner(n_startup_trials=1))
    first = study.ask()
    sweep.suggest(first, space)
    first.report(0.0, 2)
    study.tell(first, 0.0)
    batch = sweep.ask(study, plan, 1)
    assert sweep.train(plan, batch, storage) == 0 and batch.pruned == {1: 2}
    sweep.conclude(study, plan, batch, 0)
    assert study.trials[1].state == TrialState.PRUNED
    rows = record.read_rows(os.path.join(batch.run_dir, record.METRICS))
    assert not any(r.get("final") for r in rows) and max(r["step"] for r in rows) < 400


def _finished_study(storage, space):
    study = optuna.create_study(study_name="s", storage=storage, direction="minimize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    for value in (30.0, 20.0, 25.0):
        t = study.ask()
        sweep.suggest(t, space)
        t.set_user_attr("run", f"/runs/t{t.number}")
        study.tell(t, value)
    return study


def test_results_table_best_config_and_plots(tmp_path):
    space = sweep.parse_space("g_learning_rate=loguniform(1e-5, 1e-3); b1=uniform(0, 0.9)")
    plan = sweep.Sweep(task="gan", spec="gan_mlp_mnist:test", overrides=("--config.num_steps=7",),
                       space=space, metric="test/domain_fid", seeds=2, trials=3, per_run=1,
                       workdir=str(tmp_path / "sweep"))
    config = gan_mlp_mnist.get_config("test")
    config.num_steps = 7
    study = _finished_study(optuna.storages.InMemoryStorage(), space)
    sweep.write_results(study, plan, config)
    with open(tmp_path / "sweep" / sweep.TRIALS_CSV) as f:
        rows = list(csv.DictReader(f))
    assert [(r["trial"], r["state"], float(r["value"])) for r in rows] == [
        ("0", "complete", 30.0), ("1", "complete", 20.0), ("2", "complete", 25.0)]
    assert rows[1]["run"] == "/runs/t1" and float(rows[1]["b1"]) == study.trials[1].params["b1"]
    spec = importlib.util.spec_from_file_location("best", tmp_path / "sweep" / sweep.BEST_CONFIG)
    best = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(best)
    c = best.get_config()
    assert c.num_steps == 7 and c.g_learning_rate == study.trials[1].params["g_learning_rate"]
    assert c.b1 == study.trials[1].params["b1"] and c.batch_size == config.batch_size
    assert "trial 1, test/domain_fid 20" in best.__doc__
    pngs = sorted(os.listdir(tmp_path / "sweep" / sweep.PLOTS))
    assert pngs == ["history.png", "importances.png", "parallel_coordinates.png"]
    assert all(open(tmp_path / "sweep" / sweep.PLOTS / p, "rb").read(4) == b"\x89PNG" for p in pngs)


def test_a_grid_of_choices_gets_its_heatmap(tmp_path):
    """A grid sweep (every field a choice) draws the metric per cell, a panel per value of
    the third field, a failed trial's cell marked; telling the grid's last trial outside
    ``optimize`` (the sampler then asks the study to stop) stores it and goes on."""
    space = sweep.parse_space("g_learning_rate=choice(1e-4, 3e-4, 9e-4); "
                              "d_learning_rate=choice(1e-4, 3e-4); b1=choice(0, 0.5)")
    plan = sweep.Sweep(task="gan", spec="gan_mlp_mnist:test", overrides=(), space=space,
                       metric="test/domain_fid", seeds=1, trials=12, per_run=1,
                       workdir=str(tmp_path / "grid"))
    study = optuna.create_study(sampler=sweep.sampler("grid", space, 0))
    for i in range(12):
        t = study.ask()
        sweep.suggest(t, space)
        sweep.tell(study, t, 100.0 + i) if i != 3 else sweep.tell(study, t, state=TrialState.FAIL)
    assert [t.state for t in study.trials].count(TrialState.COMPLETE) == 11
    sweep.write_results(study, plan, gan_mlp_mnist.get_config("test"))
    path = tmp_path / "grid" / sweep.PLOTS / "heatmap.png"
    assert open(path, "rb").read(4) == b"\x89PNG"


def test_a_journal_file_holds_a_study_without_heartbeats(tmp_path):
    """``journal:PATH``: Optuna's journal file (a shared filesystem), which a second
    process reads; it has no heartbeats, so nothing is retried there."""
    storage = sweep.open_storage(f"journal:{tmp_path}/j/study.log")
    study = optuna.create_study(study_name="j", storage=storage)
    study.tell(study.ask(), 1.5)
    assert not getattr(storage, "heartbeat_interval", None)
    again = optuna.load_study(study_name="j", storage=sweep.open_storage(
        f"journal:{tmp_path}/j/study.log"))
    assert [t.value for t in again.trials] == [1.5]


def test_a_study_reused_for_another_search_is_refused(tmp_path):
    storage = sweep.open_storage(f"sqlite:///{tmp_path}/s.db", heartbeat_s=5)
    what = {"config": "vae_mnist:test", "space": "b1=uniform(0.0, 0.9)",
            "metric": "test/domain_fid", "direction": "minimize", "seeds": 1}
    sampler, pruner = optuna.samplers.RandomSampler(), optuna.pruners.NopPruner()
    sweep.open_study(storage, "s", what, sampler, pruner)
    sweep.open_study(storage, "s", what, sampler, pruner)  # the same search: joined
    with pytest.raises(sweep.SweepError, match=r"study 's' exists and searches something else "
                       r"\(space 'b1=uniform\(0.0, 0.9\)' there, 'b1=uniform\(0.0, 0.5\)' here\)"):
        sweep.open_study(storage, "s", {**what, "space": "b1=uniform(0.0, 0.5)"}, sampler, pruner)


def _cli(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "genjax.cli.sweep", *args], capture_output=True,
                          text=True, timeout=kw.pop("timeout", 120), **kw)


SPACE = "--space=learning_rate=loguniform(1e-4, 1e-2)"
SWEEP_CASES = [  # (id, arguments, the error line's pattern)
    ("sweep: empty space", ["--config=vae_mnist:test", "--study=s", "--trials=2", "--space="],
     r"SweepError: the search space is empty"),
    ("sweep: malformed space", ["--config=vae_mnist:test", "--study=s", "--trials=2",
                                "--space=learning_rate=log(1, 2)"],
     r"SweepError: cannot read the search-space term 'learning_rate=log\(1, 2\)'"),
    ("sweep: unknown field", ["--config=vae_mnist:test", "--study=s", "--trials=2",
                              "--space=lr=uniform(0, 1)"],
     r"SweepError: the search space names 'lr', which the config has no field for"),
    ("sweep: structural field", ["--config=vae_mnist:test", "--study=s", "--trials=2",
                                 "--space=latent_dim=choice(8, 16)"],
     r"SweepError: 'latent_dim' is a structural field"),
    ("sweep: no trials", ["--config=vae_mnist:test", "--study=s", "--trials=0", SPACE],
     r"SweepError: --trials must be at least 1, got 0"),
    ("sweep: metric without direction", ["--config=vae_mnist:test", "--study=s", "--trials=2",
                                         SPACE, "--metric=ais_log_z"],
     r"SweepError: --metric='test/ais_log_z': no known direction"),
    ("sweep: not a storage URL", ["--config=vae_mnist:test", "--study=s", "--trials=2", SPACE,
                                  "--storage=runs/sweeps.db"],
     r"SweepError: --storage='runs/sweeps.db' is no storage URL"),
    ("sweep: unreachable database", ["--config=vae_mnist:test", "--study=s", "--trials=2", SPACE,
                                     "--storage=postgresql://u:secret@127.0.0.1:9/db"],
     r"SweepError: --storage=postgresql://u:\*\*\*@127.0.0.1:9/db cannot be opened: "
     r"OperationalError: .*(refused|connect)"),
    ("sweep: database driver missing", ["--config=vae_mnist:test", "--study=s", "--trials=2",
                                        SPACE, "--storage=mysql://u@127.0.0.1/db"],
     r"SweepError: --storage=mysql://u@127.0.0.1/db: its database driver \(MySQLdb\) is not "
     r"installed"),
    ("sweep: unknown database", ["--config=vae_mnist:test", "--study=s", "--trials=2", SPACE,
                                 "--storage=nosuchdb://host/x"],
     r"SweepError: --storage=nosuchdb://host/x cannot be opened: NoSuchModuleError"),
]


@pytest.mark.parametrize("args,pattern", [c[1:] for c in SWEEP_CASES],
                         ids=[c[0] for c in SWEEP_CASES])
def test_bad_sweep_commands_fail_in_one_line_before_any_trial(args, pattern, tmp_path):
    r = _cli(*args, f"--workdir={tmp_path}/w", cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert re.search(pattern, lines[0]), lines[0]
    assert not os.path.exists(tmp_path / "w")


def test_a_run_that_fails_before_training_stops_the_sweep_in_one_line(data_dir, tmp_path):
    """A setup error that every trial would meet (here a dataset that does not exist) ends
    the worker with one line naming it, the trial told failed with the error."""
    r = _cli("--config=vae_mnist:test", "--study=s", f"--storage=sqlite:///{tmp_path}/s.db",
             "--trials=3", SPACE, f"--workdir={tmp_path}/w", f"--config.data_dir={data_dir}",
             "--config.dataset=mnist6k", "--trials_per_run=1", cwd=tmp_path)
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert re.match(r"error: SweepError: the run of trial\(s\) 0 failed before training \(error: "
                    r"DatasetUnavailableError: Unknown dataset 'mnist6k'.*\); its log: .*t0.log",
                    last), r.stderr
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/s.db")
    assert [t.state for t in study.trials] == [TrialState.FAIL]
    assert "mnist6k" in study.trials[0].user_attrs["error"]


def test_the_docs_table_lists_every_sweep_case():
    doc = open(os.path.join(os.path.dirname(__file__), "..", "docs", "reliability.md")).read()
    assert [c[0] for c in SWEEP_CASES if f"| `{c[0]}` |" not in doc] == []


def _worker(storage, study, workdir, data_dir, trials, *extra) -> subprocess.Popen:
    """A sweep worker over 4-step VAE runs, one trial per run, its output in a log."""
    args = ["--config=vae_mnist:test", f"--study={study}", f"--storage={storage}",
            f"--trials={trials}", SPACE, "--trials_per_run=1", "--sampler=random", "--poll=0.5",
            f"--workdir={workdir}", f"--config.data_dir={data_dir}", "--config.num_steps=4",
            "--config.checkpoint_every=2", "--config.sample_every=4", "--config.eval_samples=100",
            "--config.eval_batch_size=100", *extra]
    log = open(os.path.join(workdir + f".{len(glob.glob(workdir + '.*.log'))}.log"), "w")
    return subprocess.Popen([sys.executable, "-m", "genjax.cli.sweep", *args], stdout=log,
                            stderr=subprocess.STDOUT)


def _check_study(storage_url, name, workdir, trials):
    """Exactly ``trials`` counted trials, all complete, each trained once in a run of its
    own that finished; returns the study."""
    study = optuna.load_study(study_name=name, storage=storage_url)
    counted = [t for t in study.trials if not t.user_attrs.get(sweep.SURPLUS)
               and (t.state != TrialState.FAIL or sweep.is_retry(t))]
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(done) == trials and all(t.state == TrialState.COMPLETE for t in counted), \
        [(t.number, t.state, t.user_attrs) for t in study.trials]
    runs = [t.user_attrs["run"] for t in done]
    assert len(set(runs)) == trials and all(os.path.isdir(r) for r in runs)
    for t in done:
        assert record.final_metrics(t.user_attrs["run"])["test/domain_fid"] == pytest.approx(t.value)
    with open(os.path.join(workdir, sweep.TRIALS_CSV)) as f:
        assert sum(r["state"] == "complete" for r in csv.DictReader(f)) == trials
    return study


def test_two_workers_on_one_sqlite_study_split_the_trials(data_dir, tmp_path):
    """Two worker processes on one SQLite file finish 4 trials: none lost, none run twice,
    each trial's value its run's final metric."""
    url, workdir = f"sqlite:///{tmp_path}/sweeps.db", str(tmp_path / "sweep")
    workers = [_worker(url, "two", workdir, data_dir, 4) for _ in range(2)]
    assert [w.wait(timeout=600) for w in workers] == [0, 0], open(workdir + ".0.log").read()
    study = _check_study(url, "two", workdir, 4)
    assert os.path.exists(os.path.join(workdir, sweep.BEST_CONFIG))
    assert study.best_value == min(t.value for t in study.trials if t.value is not None)


def _pg_bin() -> str | None:
    """The folder of PostgreSQL's server programs (Debian keeps them off PATH), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or [shutil.which("initdb")]
    return os.path.dirname(found[-1]) if found[-1] else None


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL cluster on a local socket (Debian's ``postgresql`` package,
    which .ci/run installs); its URL. initdb refuses root: run as the postgres user."""
    pg = _pg_bin()
    if pg is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    root = tempfile.mkdtemp(prefix="genjax-pg-")
    as_pg = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        as_pg = ["runuser", "-u", "postgres", "--"]
    data, log = os.path.join(root, "data"), os.path.join(root, "server.log")
    subprocess.run([*as_pg, f"{pg}/initdb", "-D", data, "-A", "trust", "-U", "genjax"],
                   check=True, capture_output=True)
    subprocess.run([*as_pg, f"{pg}/pg_ctl", "-D", data, "-l", log, "-w", "-o",
                    f"-k {root} -c listen_addresses='' -p 5439", "start"], check=True,
                   capture_output=True)
    yield f"postgresql://genjax@/postgres?host={root}&port=5439"
    subprocess.run([*as_pg, f"{pg}/pg_ctl", "-D", data, "-m", "immediate", "stop"],
                   capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


def _running_trial(url, name, timeout=300) -> optuna.trial.FrozenTrial:
    """The first trial that is running with its run started (its config recorded)."""
    end = time.time() + timeout
    while time.time() < end:
        try:
            for t in optuna.load_study(study_name=name, storage=url).trials:
                run = t.user_attrs.get("run")
                if t.state == TrialState.RUNNING and run and os.path.exists(
                        os.path.join(run, record.CONFIG)):
                    return t
        except KeyError:  # the study is not created yet
            pass
        time.sleep(0.5)
    raise TimeoutError("no trial started")


@pytest.mark.slow(seconds=90)
def test_workers_on_postgresql_retry_the_trial_of_a_killed_worker(postgres, data_dir, tmp_path):
    """Two workers on one PostgreSQL study of 3 trials; the first is killed (SIGKILL)
    mid-trial: its trial goes stale (heartbeats every second) and the other worker runs it
    again; the study ends with 3 complete trials, the killed one failed and retried once."""
    workdir = str(tmp_path / "sweep")
    first = _worker(postgres, "pg", workdir, data_dir, 3, "--heartbeat=1")
    victim = _running_trial(postgres, "pg")
    second = _worker(postgres, "pg", workdir, data_dir, 3, "--heartbeat=1")
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert second.wait(timeout=600) == 0, open(workdir + ".1.log").read()
    study = _check_study(postgres, "pg", workdir, 3)
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert [t.number for t in failed] == [victim.number]
    retries = [t for t in study.trials if sweep.is_retry(t)]
    assert len(retries) == 1 and retries[0].system_attrs["failed_trial"] == victim.number
    assert retries[0].params == victim.params and retries[0].state == TrialState.COMPLETE
