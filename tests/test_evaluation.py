"""The domain classifier, its shipped weights, and evaluation wired into runs."""

import json
import os

import jax
import numpy as np
import pytest

from genjax.cli import evaluate as evaluate_cli
from genjax.configs import classifier_mnist5k, gan_mlp_mnist
from genjax import assembly, data, loop, metrics
from genjax.metrics import domain, evaluation


@pytest.fixture(scope="module")
def test_images(data_dir):
    spec = data.DataSpec(data_dir=data_dir)
    batches = list(data.eval_iterator(spec, "test", global_batch_size=500))
    return (np.concatenate([b["image"] for b in batches]),
            np.concatenate([b["label"] for b in batches]))


def test_shipped_classifier_recognises_test_digits(test_images):
    """The shipped weights load into the general classifier unchanged: the same name (so
    the same cached features) and exactly the test accuracy their entry records."""
    images, labels = test_images
    entry = domain.find("mnist5k", (28, 28, 1))
    extract = domain.entry_extractor(entry)
    features, probs = extract(images[:777])  # a partial final batch on purpose
    assert features.shape == (777, 128) and probs.shape == (777, 10)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    assert extract.name == domain.make_extractor().name == "mnist5k_classifier-3f0a3c8834ed"
    accuracy = np.mean(extract(images)[1].argmax(1) == labels)  # the 1,000 test digits
    assert (len(labels), accuracy, entry.test_accuracy) == (1000, 0.972, 0.972)


@pytest.mark.parametrize("images,match", [(np.zeros((4, 32, 32, 3)), r"\[N, 28, 28, 1\]"),
                                          (np.full((4, 28, 28, 1), -1.0), r"in \[0, 1\]")])
def test_extractor_refuses_wrong_images(images, match):
    with pytest.raises(ValueError, match=match):
        domain.make_extractor()(images)


def test_missing_weights_say_how_to_make_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="genjax-train classifier"):
        domain.load_params(str(tmp_path / "nowhere"))


def test_real_digits_score_better_than_noise(test_images):
    images, _ = test_images
    extract = domain.make_extractor()
    real_vs_real = metrics.sample_quality(images[500:], images[:500], extract)
    noise = np.random.default_rng(0).uniform(size=(500, 28, 28, 1)).astype(np.float32)
    noise_vs_real = metrics.sample_quality(noise, images[:500], extract)
    assert real_vs_real["domain/fid"] < 0.1 * noise_vs_real["domain/fid"]
    assert real_vs_real["domain/is"] > 5 and real_vs_real["domain/classes_covered"] == 10
    assert 0.05 < real_vs_real["domain/min_class_share"] <= 0.1  # the test digits are balanced
    assert real_vs_real["domain/precision"] > 0.5 > noise_vs_real["domain/precision"]


def test_reference_features_are_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("GENJAX_CACHE", str(tmp_path))
    calls = []
    ext = evaluation.Extractor("fake", lambda x: (x.reshape(len(x), -1), None))

    def images():
        calls.append(1)
        return np.ones((3, 2, 2, 1), np.float32)

    first = evaluation.reference_features(ext, "set-test-3", images)
    second = evaluation.reference_features(ext, "set-test-3", images)
    assert len(calls) == 1 and np.array_equal(first, second)
    assert os.listdir(tmp_path / "reference") == ["set-test-3-fake.npz"]


def _zeroed(path):  # the features replaced by zeros, the recorded checksum kept
    with np.load(path) as f:
        entry = {k: f[k] for k in f.files}
    np.savez(path, **{**entry, "features": np.zeros_like(entry["features"])})


def _reshaped(path):  # a wrong-shape array, checksum kept
    with np.load(path) as f:
        entry = {k: f[k] for k in f.files}
    np.savez(path, **{**entry, "features": entry["features"].reshape(-1)[:7, None]})


def _foreign(path):  # an intact entry of another dataset, under this entry's name
    with np.load(path) as f:
        entry = {k: f[k] for k in f.files}
    np.savez(path, **{**entry, "key": np.array("other-test-3|fake")})


@pytest.mark.parametrize("damage", [
    _zeroed, _reshaped, _foreign,
    lambda p: open(p, "wb").write(open(p, "rb").read()[:50]),  # truncated
    lambda p: np.save(open(p, "wb"), np.zeros((3, 4), np.float32)),  # a bare array (old format)
], ids=["zeroed", "wrong shape", "another key", "truncated", "bare array"])
def test_damaged_reference_cache_is_recomputed_not_trusted(damage, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("GENJAX_CACHE", str(tmp_path))
    ext = evaluation.Extractor("fake", lambda x: (x.reshape(len(x), -1), None))
    images = lambda: np.arange(12, dtype=np.float32).reshape(3, 2, 2, 1)  # noqa: E731
    good = evaluation.reference_features(ext, "set-test-3", images)
    damage(str(tmp_path / "reference" / "set-test-3-fake.npz"))
    again = evaluation.reference_features(ext, "set-test-3", images)
    np.testing.assert_array_equal(again, good)
    assert "are not usable" in caplog.text and "recomputing" in caplog.text
    np.testing.assert_array_equal(evaluation.reference_features(ext, "set-test-3", images), good)


def test_classifier_task_trains_and_exports(data_dir, tmp_path, monkeypatch, capsys):
    """An export is a registry entry (weights bitwise, the run's test accuracy and steps);
    for mnist5k at 28x28x1 the shipped weights are still found first, and it says so."""
    from genjax.tasks import classifier

    monkeypatch.setenv("GENJAX_CACHE", str(tmp_path / "cache"))
    c = classifier_mnist5k.get_config("test")
    c.data_dir = data_dir
    state = loop.train_and_evaluate(c, str(tmp_path / "run"))
    run = loop.setup(c)
    entry = classifier.export(state, run.eval_spec, run.image_shape, str(tmp_path / "run"))
    assert entry.directory == domain.entry_dir("mnist5k", (28, 28, 1))
    assert entry == domain.read_entry(str(tmp_path / "cache" / "classifiers" / "mnist5k-28x28x1"))
    back = domain.load_params(entry.directory, entry.model())
    jax.tree.map(np.testing.assert_array_equal, back, jax.device_get(state.nets["model"].params))
    final = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")][-1]
    assert (entry.test_accuracy, entry.steps, entry.num_classes) == (final["test/accuracy"], 4, 10)
    assert domain.find("mnist5k", (28, 28, 1)).directory == domain.WEIGHTS_DIR
    assert f"--export_dir={domain.WEIGHTS_DIR} replaces them" in capsys.readouterr().out


def test_gan_run_reports_domain_metrics_and_evaluate_reproduces_them(data_dir, tmp_path):
    c = gan_mlp_mnist.get_config("test")
    c.data_dir = data_dir
    workdir = str(tmp_path / "gan")
    loop.train_and_evaluate(c, workdir)
    final = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))][-1]
    assert final["test/domain_classes_covered"] >= 1 and np.isfinite(final["test/domain_fid"])

    out = str(tmp_path / "samples.npy")
    again = evaluate_cli.evaluate_run(workdir, save_samples=out)  # the run's eval_samples
    for k, v in again.items():  # same checkpoint, same noise, same reference images
        assert v == pytest.approx(final[k], rel=1e-6, abs=1e-9), k
    rows = lambda name: [json.loads(line) for line in open(os.path.join(workdir, name))]  # noqa: E731
    assert rows("metrics.jsonl")[-1] == final and final["final"]  # the run's final row stays last
    assert rows("evaluations.jsonl") == [{"step": c.num_steps, **again}]
    samples = np.load(out)
    assert samples.shape == (c.eval_samples, 28, 28, 1) and samples.dtype == np.float32
    assert 0.0 <= samples.min() and samples.max() <= 1.0


def test_evaluate_explains_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a genjax training run"):
        evaluate_cli.evaluate_run(str(tmp_path), 100)


def test_inception_without_weights_says_where_to_get_them(data_dir, tmp_path):
    c = gan_mlp_mnist.get_config("test")
    c.data_dir = data_dir
    os.makedirs(tmp_path / "run")
    with open(tmp_path / "run" / "config.json", "w") as f:
        json.dump(c.to_dict(), f)
    with pytest.raises(FileNotFoundError, match="pt_inception-2015-12-05") as e:
        evaluate_cli.evaluate_run(str(tmp_path / "run"), 100, extractor="inception")
    assert "\n" not in str(e.value) and "genjax-train classifier" in str(e.value)


def test_classifier_evaluation_counts_only_real_rows():
    """The evaluation pipeline pads the last batch with zero rows (mask 0); the
    classifier's test accuracy and cross-entropy are over the real rows only."""
    import optax

    from genjax.configs import classifier_mnist5k
    from genjax.tasks import classifier

    task = classifier.build(classifier_mnist5k.get_config("test"), (28, 28, 1))
    state = jax.jit(task.init)(jax.random.key(0))
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(10, 28, 28, 1)).astype(np.float32)
    labels = rng.integers(0, 10, 10).astype(np.int32)
    padded = {"image": np.concatenate([images[6:], np.zeros((2, 28, 28, 1), np.float32)]),
              "label": np.concatenate([labels[6:], np.zeros(2, np.int32)]),
              "mask": np.array([1, 1, 1, 1, 0, 0], np.float32)}
    full = {"image": images[:6], "label": labels[:6], "mask": np.ones(6, np.float32)}
    got = task.evaluate(state, [full, padded])
    logits = domain.DomainClassifier().apply({"params": state.nets["model"].params}, images)[0]
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    np.testing.assert_allclose(got["test/cross_entropy"], float(np.mean(ce)), rtol=1e-5)
    np.testing.assert_allclose(got["test/accuracy"],
                               float(np.mean(np.argmax(logits, -1) == labels)), rtol=1e-6)


def test_class_accuracy_scores_each_sample_against_the_class_it_was_asked_for():
    """Draws in chunks of eval_batch_size ask for 0, 1, ..., k-1, 0, ... (the tasks' order);
    a classifier that names class 2 wherever it was asked for 2 and class 0 elsewhere is
    right exactly on the asked 0s and 2s."""
    import ml_collections

    from genjax.tasks.common import sample_class_accuracy

    config = ml_collections.ConfigDict({"num_classes": 3, "eval_batch_size": 4})
    asked = np.array([0, 1, 2, 0] * 2 + [0, 1])  # two full chunks and a short last one
    draws = [asked[:4, None], asked[4:8, None], asked[8:, None]]  # each "image" is its label
    named = lambda x: (None, np.eye(3)[np.where(x[:, 0] == 2, 2, 0)])
    scores = sample_class_accuracy(draws, config, named, "p/")
    assert scores["p/class_accuracy"] == pytest.approx(7 / 10)  # 5 zeros + 2 twos right
    assert (scores["p/class_accuracy_0"], scores["p/class_accuracy_1"],
            scores["p/class_accuracy_2"]) == (1.0, 0.0, 1.0)


def test_scored_samples_are_exactly_the_ones_that_count():
    """`assembly._first` (what `score_samples` scores, and hands on for a conditional run's
    class check) cuts the stream to n rows and keeps just those, without drawing
    batches it will not use beyond the first one past n."""
    batches = (np.full((4, 1), i) for i in range(5))
    kept = []
    out = list(assembly._first(batches, 6, kept))
    assert [len(b) for b in out] == [len(b) for b in kept] == [4, 2]
    np.testing.assert_array_equal(np.concatenate(kept)[:, 0], [0, 0, 0, 0, 1, 1])
    assert next(batches)[0, 0] == 3  # batch 2 was drawn to see that n is reached; 3 is left
