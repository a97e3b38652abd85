"""Own data (``folder:<path>``, ``npz:<path>``) through tfds and the one pipeline: the
embedded digits exported give its batches bit for bit; preparation follows the content;
conversions; every family trains on it and resumes exactly."""

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import check_resumes_exactly, short_run_config
from genjax import data, loop
from genjax.data import mnist5k, own
from genjax.record import ResumeRefusedError


@pytest.fixture(scope="module")
def digits():
    """mnist5k's 5,000 digits and labels in its fixed order (4,000 train, then 1,000 test)."""
    return mnist5k._shuffled_arrays()


def save_png(path, image: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(path, compress_level=1)


def export_folder(root, images, labels, given_splits=False, num_train=mnist5k.NUM_TRAIN) -> str:
    """One PNG per digit in a folder per class, named by its position (zero-padded, so
    the file-name order is the array order); under train/ and test/ if ``given_splits``."""
    for i, (image, label) in enumerate(zip(images, labels)):
        split = ("train/" if i < num_train else "test/") if given_splits else ""
        save_png(os.path.join(root, f"{split}{label}", f"{i:05d}.png"), image)
    return str(root)


def _batches(spec, n_train_batches=10):
    train = data.train_iterator(spec, "train", global_batch_size=500)
    return ([next(train) for _ in range(n_train_batches)],  # crosses an epoch at 8
            list(data.eval_iterator(spec, "test", global_batch_size=300)))


def _assert_same_batches(got, want):
    for g, w in zip(got[0] + got[1], want[0] + want[1]):
        assert g.keys() == w.keys()
        for k in w:
            np.testing.assert_array_equal(np.asarray(g[k]), np.asarray(w[k]), err_msg=k)
    assert len(got[1]) == len(want[1]) == 4


SOURCES = ("memory", "tfds")


def _spec(name, data_dir, source):
    return data.DataSpec(name=name, data_dir=data_dir, preprocess="binarize_static",
                         source=source, seed=3)


@pytest.fixture(scope="module")
def embedded_batches(data_dir):
    """mnist5k's batches from each source (computed once for the module)."""
    return {source: _batches(_spec("mnist5k", data_dir, source)) for source in SOURCES}


def _check_exported(name, data_dir, embedded_batches):
    for source in SOURCES:
        _assert_same_batches(_batches(_spec(name, data_dir, source)), embedded_batches[source])


@pytest.mark.parametrize("layout", ["folder", "npz"])
def test_exported_digits_give_the_embedded_batches_bit_for_bit(layout, digits, data_dir,
                                                                embedded_batches, tmp_path):
    """The mnist5k digits written to class folders (split by the last-fifth rule) or to
    an .npz serve training batches (across an epoch) and evaluation batches equal to the
    embedded dataset's, from both sources, static binarisation included."""
    images, labels = digits
    if layout == "npz":
        np.savez(tmp_path / "digits.npz", images=images[..., 0], labels=labels)  # [N, H, W]
        name = f"npz:{tmp_path / 'digits.npz'}"
    else:
        name = "folder:" + export_folder(tmp_path / "digits", images, labels)
    _check_exported(name, data_dir, embedded_batches)
    info = data.get_builder(data.DataSpec(name=name, data_dir=data_dir)).info
    assert (info.splits["train"].num_examples, info.splits["test"].num_examples) == (4000, 1000)
    if layout == "folder":
        assert info.features["label"].names == [str(k) for k in range(10)]


@pytest.mark.slow(seconds=30)
def test_given_train_and_test_folders_give_the_embedded_batches(digits, data_dir,
                                                                embedded_batches, tmp_path):
    images, labels = digits
    root = export_folder(tmp_path / "digits", images, labels, given_splits=True)
    _check_exported(f"folder:{root}", data_dir, embedded_batches)


def _small_folder(root, n=10, size=(8, 8), channels=1, seed=0):
    rng = np.random.default_rng(seed)
    for i in range(n):
        save_png(os.path.join(root, f"{i:02d}.png"),
                 rng.integers(0, 256, (*size, channels), dtype=np.uint8))
    return str(root)


def _preparations(data_dir) -> list[str]:
    folder = os.path.join(data_dir, own.NAME)
    return sorted(f for f in os.listdir(folder) if not f.startswith(".")) \
        if os.path.isdir(folder) else []


def test_prepared_once_per_content_fingerprint(tmp_path):
    """An unchanged source (touched, moved) is not prepared again; changed bytes, a
    renamed file or another preparation option give a new id and a new preparation."""
    d = str(tmp_path / "tfds")
    root = _small_folder(tmp_path / "a")
    spec = data.DataSpec(name=f"folder:{root}", data_dir=d)
    first = data.dataset_id(spec)
    assert first.startswith("folder-") and len(first) == len("folder-") + 12
    info_file = os.path.join(data.get_builder(spec).data_dir, "dataset_info.json")
    stamp = os.stat(info_file).st_mtime_ns
    os.utime(os.path.join(root, "03.png"), ns=(1, 1))  # touched: same bytes
    moved = shutil.move(root, tmp_path / "b")
    spec = data.DataSpec(name=f"folder:{moved}", data_dir=d)
    assert data.dataset_id(spec) == first and data.get_builder(spec).data_dir.endswith(first + "/1.0.0")
    assert os.stat(info_file).st_mtime_ns == stamp and _preparations(d) == [first]
    image = np.asarray(Image.open(os.path.join(moved, "03.png")))
    save_png(os.path.join(moved, "03.png"), (255 - image)[..., None])  # changed bytes
    changed = data.dataset_id(spec)
    os.rename(os.path.join(moved, "03.png"), os.path.join(moved, "99.png"))  # order, split
    renamed = data.dataset_id(spec)
    grey = data.dataset_id(data.DataSpec(name=f"folder:{moved}", data_dir=d, image_size=4))
    assert len({first, changed, renamed, grey}) == 4
    data.get_builder(spec)
    assert _preparations(d) == sorted([first, renamed])
    assert data.dataset_id(data.DataSpec()) == "mnist5k"


def test_unlabelled_rgb_and_grey_of_odd_sizes(tmp_path):
    """No subfolders: no label feature, label 0 served. Odd sizes with image_size: each
    centre-cropped to its short side and resized; RGB to grey (ITU-R 601 weights: red
    255 -> 76) and grey to RGB; the memory source takes them (one static shape)."""
    root = tmp_path / "odd"
    wide = np.zeros((10, 30, 3), np.uint8)
    wide[:, 10:20] = 200  # the centre square of a 10x30 image
    save_png(str(root / "a.png"), wide)
    save_png(str(root / "b.png"), np.full((25, 17, 3), (255, 0, 0), np.uint8))
    save_png(str(root / "c.png"), np.full((40, 40, 3), 7, np.uint8))  # last: the test split
    d = str(tmp_path / "tfds")
    for channels, a, b in [(None, [200] * 3, [255, 0, 0]), (1, [200], [76]),
                           (3, [200] * 3, [255, 0, 0])]:
        spec = data.DataSpec(name=f"folder:{root}", data_dir=d, image_size=10, channels=channels,
                             source="memory", preprocess="raw")
        assert "label" not in data.get_builder(spec).info.features
        batch = next(data.train_iterator(spec, "train", global_batch_size=2))
        images = np.asarray(batch["image"])
        assert images.shape == (2, 10, 10, len(a)) and not np.asarray(batch["label"]).any()
        got = sorted(tuple(map(float, x[0, 0])) for x in images)
        assert got == sorted([tuple(map(float, a)), tuple(map(float, b))])
        assert all((x == x[0, 0]).all() for x in images)  # each one colour: the crop is central
        (test,) = data.eval_iterator(spec, "test", global_batch_size=1)
        np.testing.assert_array_equal(test["image"], np.full((1, 10, 10, len(a)), 7, np.float32))


def test_bad_images_skip_counts_and_stop_names_the_file(tmp_path, capsys):
    root = _small_folder(tmp_path / "a", n=6)
    (tmp_path / "a" / "02.png").write_bytes(b"not a png")
    d = str(tmp_path / "tfds")
    skip = data.DataSpec(name=f"folder:{root}", data_dir=d, bad_images="skip")
    builder = data.get_builder(skip)
    assert builder.info.splits["train"].num_examples + builder.info.splits["test"].num_examples == 5
    assert "skipped 1 unreadable image(s) (config.bad_images='skip'): 02.png" in capsys.readouterr().out
    stop = data.DataSpec(name=f"folder:{root}", data_dir=d)
    with pytest.raises(own.OwnDataError, match=r"02.png is not a readable image \(.*\); fix or "
                                               r"remove it, or set --config.bad_images=skip "
                                               r"\(its preparation in .* left 1 such file"):
        data.get_builder(stop)
    assert data.dataset_id(stop) == data.dataset_id(skip)  # the same content, one preparation


def test_npz_grey_to_rgb_and_labels(tmp_path):
    images = np.arange(10 * 4 * 4, dtype=np.uint8).reshape(10, 4, 4, 1)
    np.savez(tmp_path / "x.npz", images=images, labels=np.arange(10) % 3)
    spec = data.DataSpec(name=f"npz:{tmp_path / 'x.npz'}", data_dir=str(tmp_path / "tfds"),
                         channels=3, preprocess="raw")
    assert data.get_builder(spec).info.features["label"].num_classes == 3
    (test,) = data.eval_iterator(spec, "test", global_batch_size=2)  # the last fifth: 8, 9
    np.testing.assert_array_equal(test["image"], np.repeat(images[8:], 3, -1).astype(np.float32))
    np.testing.assert_array_equal(test["label"], [2, 0])


# ---------------------------------------------------------------------------- runs

FAMILIES = ["vae_mnist", "gan_mlp_mnist", pytest.param("ddpm_mnist", marks=pytest.mark.slow(
    seconds=120)), "pixelcnn_mnist", "realnvp_mnist", "rbm_cd1_mnist"]  # the cheapest of each


@pytest.fixture(scope="module")
def rgb_folder(digits, tmp_path_factory):
    """500 digits as 32x32 RGB PNGs in class folders: served at 28x28x1 with
    ``image_size=28, image_channels=1``."""
    images, labels = digits
    root = tmp_path_factory.mktemp("own") / "rgb"
    padded = np.repeat(np.pad(images[:500], ((0, 0), (2, 2), (2, 2), (0, 0))), 3, -1)
    return export_folder(root, padded, labels[:500], num_train=400)


def _own_config(name, data_dir, dataset, **fields):
    c = short_run_config(name, data_dir)
    c.dataset = dataset
    c.update(fields)
    return c


@pytest.mark.slow(seconds=60)
@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_trains_on_a_folder_and_resumes_exactly(name, rgb_folder, data_dir,
                                                             tmp_path, capsys):
    c = _own_config(name, data_dir, f"folder:{rgb_folder}", image_size=28, image_channels=1)
    final = check_resumes_exactly(c, tmp_path, capsys)
    assert final["final"] is True


@pytest.mark.slow(seconds=60)
@pytest.mark.parametrize("name", ["vae_mnist", "ddpm_mnist"])
def test_families_train_on_an_npz_and_resume_exactly(name, digits, data_dir, tmp_path, capsys):
    images, labels = digits
    np.savez(tmp_path / "digits.npz", images=images[:500], labels=labels[:500])
    c = _own_config(name, data_dir, f"npz:{tmp_path / 'digits.npz'}")
    final = check_resumes_exactly(c, tmp_path / "run", capsys)
    assert final["final"] is True


@pytest.mark.slow(seconds=30)
def test_a_resume_on_changed_data_is_refused_before_writing(digits, data_dir, tmp_path):
    from conftest import train_unfinished

    images, labels = digits
    root = export_folder(tmp_path / "digits", images[:300], labels[:300], num_train=240)
    c = _own_config("vae_mnist", data_dir, f"folder:{root}", num_steps=2)
    train_unfinished(c, tmp_path / "run")
    workdir = tmp_path / "run"
    started = data.dataset_id(loop.data_specs(c)[0])
    assert (workdir / "dataset.json").read_text().count(started) == 1
    save_png(os.path.join(root, "0", "99999.png"), images[0])  # one image more
    before = {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file()}
    c.num_steps = 4
    with pytest.raises(ResumeRefusedError, match=rf"Cannot resume .*run: its data folder:.* "
                                                 rf"changed since the run started \(dataset id "
                                                 rf"{started} -> folder-[0-9a-f]{{12}}\).* use "
                                                 rf"another --workdir"):
        loop.train_and_evaluate(c, str(workdir))
    assert {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file()} == before
