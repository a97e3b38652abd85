"""`genjax.runs`: a finished run loaded from Python samples and scores as the evaluator does."""

import os

import chex
import jax
import numpy as np
import pytest

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
