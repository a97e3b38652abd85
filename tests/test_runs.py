"""`genjax.runs`: a finished run loaded from Python samples and scores as the evaluator does."""

import json
import os
import re
import shutil

import chex
import jax
import numpy as np
import pytest

from conftest import run_command
from genjax import record, runs
from test_loop import _config, straight  # noqa: F401  (the finished 20-step VAE run)


def test_a_loaded_run_is_the_trained_one_and_samples_and_scores(straight):
    workdir, final = straight
    run = runs.load(workdir)
    assert run.step == 20 and record.plain(run.config) == record.plain(run.trained)
    chex.assert_trees_all_equal(jax.device_get(run.state), jax.device_get(final))
    images = run.sample(10)
    assert images.shape == (10, 28, 28, 1) and 0 <= images.min() and images.max() <= 1
    again = np.concatenate(list(run.batches(10)))  # the evaluation key by default
    np.testing.assert_array_equal(images, again)
    other = run.sample(10, key=jax.random.key(7))
    assert not np.array_equal(images, other)
    scores = run.evaluate(50, write=False)
    assert np.isfinite(scores["test/domain_n50_fid"]) and "test/domain_n50_is" in scores
    floor = run.evaluate(50, real_baseline=True)  # real training digits: never written
    assert floor["test/domain_n50_fid"] < scores["test/domain_n50_fid"] / 2
    assert not os.path.exists(os.path.join(workdir, record.EVALUATIONS))


def test_a_run_loads_at_any_kept_step_and_names_the_steps_it_has(straight):
    workdir, _ = straight
    assert runs.load(workdir, step=10).step == 10
    with pytest.raises(FileNotFoundError, match=r"No checkpoint of step 7 .* it has \[10, 20\]"):
        runs.load(workdir, step=7)
    with pytest.raises(ValueError, match=r"--temperature applies to flow runs; this run is task"):
        runs.load(workdir, sampling={"temperature": 0.5})


def test_a_run_whose_data_changed_is_not_evaluated(straight, tmp_path):
    """As a resume on changed data is refused, so is scoring a run on it: one line, before
    any sample is drawn or written (the evaluator's function, over `runs.Run.evaluate`)."""
    from genjax.cli.evaluate import evaluate_run

    workdir = str(tmp_path / "run")
    shutil.copytree(straight[0], workdir)
    path = os.path.join(workdir, record.DATASET)
    assert json.load(open(path)) == {"dataset": "mnist5k", "id": "mnist5k"}
    with open(path, "w") as f:  # as if the run had started on other data
        json.dump({"dataset": "mnist5k", "id": "folder-0123456789ab"}, f)
    saved = tmp_path / "samples.npy"
    with pytest.raises(record.DataChangedError) as refused:
        evaluate_run(workdir, 50, save_samples=str(saved))
    assert str(refused.value) == (
        f"Cannot evaluate {workdir}: its data mnist5k changed since the run started (dataset "
        f"id folder-0123456789ab -> mnist5k): the checkpoints were trained on other examples. "
        f"Restore the data the run trained on to score it.")
    assert not saved.exists() and not os.path.exists(os.path.join(workdir, record.EVALUATIONS))


def test_the_console_scripts_run_from_outside_the_repository(straight, data_dir, tmp_path):
    """``pip install`` puts genjax-train and genjax-evaluate on the PATH; from any directory
    they find the shipped configs by name and train or score a run."""
    scripts = {name: shutil.which(name) for name in ("genjax-train", "genjax-evaluate")}
    assert all(scripts.values()), f"not installed (pip install -e .): {scripts}"
    workdir = str(tmp_path / "run")
    shutil.copytree(straight[0], workdir)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    trained = run_command([scripts["genjax-train"], "vae", "--config=vae_mnist:test",
                           f"--config.data_dir={data_dir}", f"--workdir={workdir}"], cwd=elsewhere)
    assert trained.returncode == 0, trained.stderr
    assert "is finished at step 20 with this config" in trained.stderr + trained.stdout
    printed = run_command([scripts["genjax-train"], "flow", "--config=glow_mnist:test",
                           "--print_config"], cwd=elsewhere)
    assert printed.returncode == 0, printed.stderr
    assert "num_steps: int = " in printed.stdout and "data_dir: str | None = None" in printed.stdout
    scored = run_command([scripts["genjax-evaluate"], f"--workdir={workdir}", "--num_samples=50"],
                         cwd=elsewhere)
    assert scored.returncode == 0, scored.stderr
    assert re.search(r"^test/domain_n50_fid\s+\d", scored.stdout, re.M), scored.stdout
    assert os.path.exists(os.path.join(workdir, record.EVALUATIONS))


def test_the_readme_snippet_loads_samples_and_scores_a_run(straight, tmp_path, monkeypatch):
    """The README's trained-run snippet, as written, in a directory whose ``runs/gan_mlp``
    is a finished run."""
    from test_project import python_snippets

    (code,) = [s for s in python_snippets("README.md") if "runs.load(" in s]
    shutil.copytree(straight[0], tmp_path / "runs" / "gan_mlp")
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["images"].shape == (64, 28, 28, 1)
    assert np.isfinite(scope["metrics"]["test/domain_fid"])


def _test_images(run, n=None):
    """The run's test split in [0, 1], in the evaluation's order (all of it by default)."""
    from genjax import data as gdata
    from genjax.tasks.common import collect_images

    spec = run.setup.eval_spec
    n = gdata.num_examples(spec, "test") if n is None else n
    return collect_images(gdata.eval_iterator(spec, "test", global_batch_size=run.config.eval_batch_size),
                          n, spec.preprocess)


def _final_row(workdir):
    return record.final_row(workdir, record.run_config(workdir).num_steps)


def test_a_vae_runs_log_likelihood_is_its_iwae_estimate_and_refuses_grey_images(straight):
    workdir, _ = straight
    run = runs.load(workdir)
    images = _test_images(run)
    nats = run.log_likelihood(images)
    assert nats.shape == (len(images),)
    k = run.config.iwae_samples
    np.testing.assert_allclose(-nats.mean(), _final_row(workdir)[f"test/iwae_nll_k{k}"], rtol=1e-5)
    with pytest.raises(ValueError, match=r"binary pixels: pass images of 0s and 1s"):
        run.log_likelihood(np.full((2, 28, 28, 1), 0.5, np.float32))
    with pytest.raises(ValueError, match=r"images must have shape \[N, 28, 28, 1\]"):
        run.log_likelihood(images[:, :14])
    with pytest.raises(ValueError, match=r"labels apply to class-conditional PixelCNN runs only"):
        run.log_likelihood(images[:2], labels=np.zeros(2))


def test_an_export_holds_parameters_only_and_reproduces_the_samples_bitwise(straight, tmp_path):
    workdir, _ = straight
    run = runs.load(workdir)
    path = runs.export(workdir, str(tmp_path / "vae.npz"))
    with np.load(path, allow_pickle=False) as f:
        keys = set(f.files)
        assert int(f[runs.EXPORT_STEP]) == 20
        assert record.plain(runs.ml_collections.ConfigDict(
            json.loads(str(f[runs.EXPORT_CONFIG])))) == record.plain(run.trained)
    params = {k for k in keys if not k.startswith("__")}
    assert "nets/model/params/encoder/Dense_0/kernel" in params, sorted(params)
    assert all(k.startswith("nets/model/params/") for k in params), sorted(params)  # no opt_state, rng
    again = runs.from_export(path)
    assert again.workdir is None and again.step == 20
    key = jax.random.key(3)
    np.testing.assert_array_equal(again.sample(10, key=key), run.sample(10, key=key))
    np.testing.assert_array_equal(run.with_params(path).sample(10, key=key), run.sample(10, key=key))


def test_an_export_that_does_not_fit_is_refused_naming_what_differs(straight, tmp_path):
    workdir, _ = straight
    run = runs.load(workdir)
    arrays = dict(np.load(runs.export(workdir, str(tmp_path / "vae.npz")), allow_pickle=False))
    kernel = "nets/model/params/encoder/Dense_0/kernel"
    missing = {k: v for k, v in arrays.items() if k != kernel}
    with pytest.raises(runs.ExportMismatchError, match=rf"missing: {kernel}"):
        run.with_params(missing)
    wrong = {**arrays, kernel: arrays[kernel][:-1]}
    with pytest.raises(runs.ExportMismatchError, match=rf"shape differs: {kernel} \(783, 64\)"):
        run.with_params(wrong)
    other = json.loads(str(arrays[runs.EXPORT_CONFIG]))
    other["likelihood"] = "gaussian"
    with pytest.raises(runs.ExportMismatchError, match=r"another config \(its value -> this run's: likelihood gaussian -> bernoulli\)"):
        run.with_params({**arrays, runs.EXPORT_CONFIG: np.array(json.dumps(other))})
    with pytest.raises(ValueError, match=r"step='best': the run .* keeps no best checkpoint"):
        runs.load(workdir, step="best")


def test_the_best_step_is_kept_beside_the_latest_and_found_read_only(tmp_path):
    """Orbax's rotation with keep_best: the latest step, and the best-scoring evaluated one
    (lower is better for an NLL); a step without metrics is kept by recency only."""
    from genjax import ranking
    from genjax.checkpoint import Checkpointer

    ckpt = Checkpointer(str(tmp_path), keep=1, asynchronous=False, best=ranking.goodness("nll"))
    for step, nll in [(10, 3.0), (20, 1.0), (30, None), (40, float("nan")), (50, 2.0)]:
        ckpt.save(step, {"w": np.full(3, step, np.float32)},
                  metrics=None if nll is None else {"test/nll": nll})
    ckpt.close()
    assert ckpt.all_steps() == [20, 50]
    reader = Checkpointer(str(tmp_path), read_only=True)
    assert reader.best_step(ranking.goodness("test/nll")) == 20
    assert reader.best_step(ranking.goodness("domain_fid")) is None  # never saved with one
    assert reader.metrics(20) == {"test/nll": 1.0}


@pytest.mark.parametrize("keep_best, eval_every, match", [
    ("nll_stderr", 10, r"config.keep_best='nll_stderr' is a spread"),
    ("sharpness", 10, r"config.keep_best='sharpness': no known direction"),
    ("nll", 0, r"config.eval_every \(0\) must be a positive multiple of config.checkpoint_every \(10\)"),
    ("nll", 15, r"config.eval_every \(15\) must be a positive multiple")])
def test_keep_best_is_refused_in_one_line_before_anything_is_read(keep_best, eval_every, match):
    from genjax import loop

    c = _config("/nonexistent", keep_best=keep_best, eval_every=eval_every)
    with pytest.raises(ValueError, match=match):
        loop.setup(c)


@pytest.mark.slow(seconds=45)  # three short runs on 2 cores
def test_keep_best_keeps_a_middle_step_and_load_finds_it(data_dir, tmp_path):
    """A run whose -ELBO is best at a middle evaluation (trained on with a learning rate
    far too high after step 4) keeps that step with keep_checkpoints=1, on disk and for
    load(step="best"); a metric the evaluation does not produce stops the run at its first
    evaluation, that step saved."""
    from genjax import loop

    workdir = str(tmp_path / "run")
    common = dict(checkpoint_every=2, eval_every=2, keep_checkpoints=1,
                  keep_best="neg_elbo", sample_every=100, eval_samples=100, eval_batch_size=100)
    loop.train_and_evaluate(_config(data_dir, num_steps=4, **common), workdir)
    loop.train_and_evaluate(_config(data_dir, num_steps=8, learning_rate=1.0, **common), workdir)
    rows = [json.loads(line) for line in open(os.path.join(workdir, record.METRICS))]
    scores = {r["step"]: r["test/neg_elbo"] for r in rows if "test/neg_elbo" in r}
    assert sorted(scores) == [2, 4, 6, 8]
    best = min(scores, key=scores.get)
    assert best < 8, scores  # a middle step: the test proves nothing otherwise
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == sorted({str(best), "8"})
    assert runs.load(workdir, step="best").step == best

    other = str(tmp_path / "nll")
    with pytest.raises(ValueError, match=r"keep_best='nll': the evaluation at step 2 produced no "
                                         r"test/nll \(it produces .*test/neg_elbo"):
        loop.train_and_evaluate(_config(data_dir, num_steps=4, **{**common, "keep_best": "nll"}),
                                other)
    assert os.listdir(os.path.join(other, "checkpoints")) == ["2"]
