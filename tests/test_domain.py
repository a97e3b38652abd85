"""Domain classifiers for any labelled dataset: the network's shapes, the registry, the
lookup by dataset id and image shape, the one-line skip, unlabelled data refused."""

import json
import os
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from conftest import run_command
from genjax.configs import classifier_mnist5k, gan_mlp_mnist
from genjax import loop, runs
from genjax.data import pipeline  # noqa: F401  (loaded before mock_data replaces tfds' download)
from genjax.metrics import domain
from genjax.tasks import classifier, common


def _params_shapes(model):
    tree = jax.eval_shape(lambda: model.init(jax.random.key(0),
                                             jnp.zeros((1, *model.image_shape)))["params"])
    return {f"{layer}/{name}": leaf.shape for layer, leaves in tree.items()
            for name, leaf in leaves.items()}


def test_stride_two_layers_by_image_size():
    """Stride-2 layers halve the map until its longer side is at most 4, so the dense
    layer sees 4x4x64 (or less) inputs at any size; 28x28x1 is the shipped tree."""
    sizes = {8: 1, 12: 2, 16: 2, 28: 3, 32: 3, 64: 4, 4: 0}
    assert {s: domain.downsamples((s, s, 1)) for s in sizes} == sizes
    assert domain.downsamples((64, 20, 3)) == 4  # the longer side decides
    shipped = _params_shapes(domain.DomainClassifier())
    assert shipped == {"Conv_0/kernel": (3, 3, 1, 32), "Conv_0/bias": (32,),
                       **{f"Conv_{i}/{k}": s for i in (1, 2, 3)
                          for k, s in (("kernel", (3, 3, 32 if i == 1 else 64, 64)), ("bias", (64,)))},
                       "Dense_0/kernel": (1024, 128), "Dense_0/bias": (128,),
                       "Dense_1/kernel": (128, 10), "Dense_1/bias": (10,)}
    big = _params_shapes(domain.DomainClassifier((64, 64, 3), 7))
    small = _params_shapes(domain.DomainClassifier((8, 8, 3), 7))
    assert big["Conv_4/kernel"] == (3, 3, 64, 64) and "Conv_5/kernel" not in big
    assert small["Conv_1/kernel"] == (3, 3, 32, 64) and "Conv_2/kernel" not in small
    assert big["Dense_0/kernel"] == small["Dense_0/kernel"] == (1024, 128)
    assert big["Conv_0/kernel"] == (3, 3, 3, 32) and big["Dense_1/kernel"] == (128, 7)


def test_registry_finds_entries_by_dataset_id_and_shape(tmp_path, monkeypatch):
    monkeypatch.setenv("GENJAX_CACHE", str(tmp_path))
    for name in ("mnist5k", "mnist"):  # the shipped entry: the same digits
        assert domain.find(name, (28, 28, 1)).directory == domain.WEIGHTS_DIR
    for name, shape in (("fashion_mnist", (28, 28, 1)), ("mnist5k", (16, 16, 1)), ("toy", (8, 8, 3))):
        assert domain.find(name, shape) is None
    model = domain.DomainClassifier((8, 8, 3), 5)
    params = model.init(jax.random.key(1), jnp.zeros((1, 8, 8, 3)))["params"]
    entry = domain.export(params, domain.entry_dir("toy", (8, 8, 3)), dataset_id="toy",
                          image_shape=(8, 8, 3), num_classes=5, test_accuracy=0.5, steps=3)
    assert entry.directory == str(tmp_path / "classifiers" / "toy-8x8x3")
    assert domain.find("toy", (8, 8, 3)) == entry
    assert domain.find("toy", (8, 8, 1)) is None and domain.find("toy2", (8, 8, 3)) is None
    extract = domain.entry_extractor(entry)
    images = np.random.default_rng(0).uniform(size=(3, 8, 8, 3)).astype(np.float32)
    features, probs = extract(images)
    logits, want = model.apply({"params": params}, images)
    np.testing.assert_allclose(features, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probs, jax.nn.softmax(logits), rtol=1e-5, atol=1e-7)
    assert extract.name == f"toy-8x8x3_classifier-{domain.fingerprint(params)}"
    with pytest.raises(ValueError, match=r"takes \[N, 8, 8, 3\] images, got \(3, 8, 8, 1\)"):
        extract(images[..., :1])


def _config(dataset: str, data_dir: str, **fields) -> ml_collections.ConfigDict:
    c = gan_mlp_mnist.get_config("test")
    c.dataset, c.data_dir = dataset, data_dir
    c.update(fields)
    return c


def test_other_28x28x1_data_is_never_scored_by_the_mnist_classifier(tmp_path, capsys):
    """fashion_mnist has MNIST's shape, not its classes: no classifier, one line saying so
    (naming the dataset and the command that trains one), however often it is asked."""
    common._say_skipped.cache_clear()
    c = _config("fashion_mnist", str(tmp_path))
    with tfds.testing.mock_data(num_examples=20):
        assert common.domain_extractor_for(c, (28, 28, 1)) is None
        assert common.domain_extractor_for(c, (28, 28, 1)) is None
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("Domain metrics skipped: no domain classifier for dataset "
                               "'fashion_mnist' at 28x28x1. Train one with `genjax-train "
                               "classifier --config.dataset=fashion_mnist ")
    assert "--extractor=inception" in lines[0]


def test_unlabelled_data_has_no_classifier_and_trains_none(tmp_path, capsys):
    common._say_skipped.cache_clear()
    c = _config("celeb_a", str(tmp_path))  # attributes and landmarks, no class label
    with tfds.testing.mock_data(num_examples=4):
        assert common.domain_extractor_for(c, (64, 64, 3)) is None
        cc = classifier_mnist5k.get_config("test")
        cc.dataset, cc.data_dir = "celeb_a", str(tmp_path)
        with pytest.raises(ValueError) as e:
            classifier.build(cc, (64, 64, 3))
    assert str(e.value) == ("config.dataset='celeb_a' has no class labels: a domain classifier "
                            "trains on labelled data only (score unlabelled data with "
                            "`genjax-evaluate --extractor=inception`).")
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("Domain metrics skipped: dataset 'celeb_a' has no class labels")


def test_mnist_padded_by_crop_is_scored_on_its_centre(data_dir):
    """Progressive growing pads the 28x28 digits to 32x32 (config.crop); the shipped
    classifier scores the centre 28x28, exactly as it scores the digits themselves."""
    c = _config("mnist5k", data_dir, crop=32)
    extract = common.domain_extractor_for(c, (32, 32, 1))
    digits = np.random.default_rng(0).uniform(size=(5, 28, 28, 1)).astype(np.float32)
    padded = np.pad(digits, ((0, 0), (2, 2), (2, 2), (0, 0)))
    shipped = domain.entry_extractor(domain.find("mnist5k", (28, 28, 1)))
    assert extract.name == shipped.name
    for got, want in zip(extract(padded), shipped(digits)):
        np.testing.assert_array_equal(got, want)
    assert common.domain_extractor_for(_config("mnist5k", data_dir, crop=24), (24, 24, 1)) is None


def _domain_keys(metrics: dict) -> list[str]:
    return sorted(k for k in metrics if k.startswith("test/domain_"))


@pytest.mark.slow(seconds=60)  # 2 cores: a GAN run, a classifier run (a process), evaluations
def test_a_trained_classifier_is_registered_then_found_by_runs(data_dir, tmp_path, monkeypatch,
                                                                capsys):
    """mnist5k at 16x16: first no classifier (one skip line, no domain metrics, the
    task's own evaluation unchanged); then `genjax-train classifier` trains one, registers
    it under the dataset id and shape, and the run's evaluations (the loop's and
    `genjax.runs`') use it: its name keys their reference features."""
    monkeypatch.setenv("GENJAX_CACHE", str(tmp_path / "cache"))
    common._say_skipped.cache_clear()
    c = _config("mnist5k", data_dir, image_size=16)
    gan = str(tmp_path / "gan")
    state = loop.train_and_evaluate(c, gan)
    rows = [json.loads(line) for line in open(os.path.join(gan, "metrics.jsonl"))]
    assert rows[-1]["step"] == c.num_steps and not any(_domain_keys(r) for r in rows)
    skipped = [x for x in capsys.readouterr().out.splitlines() if "Domain metrics skipped" in x]
    assert skipped == [
        f"Domain metrics skipped: no domain classifier for dataset 'mnist5k' at 16x16x1. Train "
        f"one with `genjax-train classifier --config.dataset=mnist5k "
        f"--config.image_size=16 --workdir=runs/classifier_mnist5k-16x16x1` (it registers in "
        f"{tmp_path / 'cache' / 'classifiers'}), or `genjax-evaluate "
        f"--extractor=inception --inception_weights=<the converted .npz>` scores samples with "
        f"Inception weights you supply."]
    assert runs.load(gan).evaluate(write=False) == {}

    done = run_command([sys.executable, "-m", "experiments.classifier",
                        "--config=genjax/configs/classifier_mnist5k.py:test",
                        "--config.image_size=16", f"--config.data_dir={data_dir}",
                        f"--workdir={tmp_path / 'classifier'}"])
    assert done.returncode == 0, done.stderr
    entry = domain.find("mnist5k", (16, 16, 1))
    assert (entry.directory, entry.num_classes, entry.steps) == (
        str(tmp_path / "cache" / "classifiers" / "mnist5k-16x16x1"), 10, 4)
    final = [json.loads(x) for x in open(tmp_path / "classifier" / "metrics.jsonl")][-1]
    assert entry.test_accuracy == final["test/accuracy"]

    setup = loop.setup(c)
    found = setup.evaluate(state, final=True)
    assert len(_domain_keys(found)) == 10 and np.isfinite(found["test/domain_fid"])
    name = domain.entry_extractor(entry).name
    assert name.startswith("mnist5k-16x16x1_classifier-")
    assert os.listdir(tmp_path / "cache" / "reference") == [
        f"mnist5k-test-{c.preprocess}-{c.eval_samples}-{name}.npz"]
    again = runs.load(gan).evaluate(write=False)
    assert again == pytest.approx(found, rel=1e-6, abs=1e-9)
    assert "Domain metrics skipped" not in capsys.readouterr().out
