"""`genjax.runs`: a finished run loaded from Python samples and scores as the evaluator does."""

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
