"""Shared fixtures. No test touches the network: real datasets are mocked by tfds."""

import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The tests compile many small steps and run each only a few times, so compiling is most
# of the suite's time: XLA:CPU's LLVM backend at -O0 halves it (measured: the SNGAN run's
# step 7.0 -> 3.5 s). Subprocesses (chaos runs) inherit it; tests/parallel_worker.py sets it too.
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0"
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Under `pytest -n 2` each worker has one core: Eigen's pool of two threads per worker
    # only makes the two workers' convolutions contend (measured: the GAN, loop and
    # reliability tests 200 -> 186 s).
    TEST_XLA_FLAGS += " --xla_cpu_multi_thread_eigen=false"
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {TEST_XLA_FLAGS}".strip()

import pytest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository


def run_command(argv: list, cwd: str | None = None, timeout: float = 300):
    """``argv`` run as a user runs it, from the repository root and without
    ``GENJAX_TRACEBACK``: the finished process, its output as text."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "GENJAX_TRACEBACK"}
    return subprocess.run(argv, cwd=cwd or ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def stderr_lines(done) -> list[str]:
    """The non-empty lines a finished command printed on stderr."""
    return [line for line in done.stderr.splitlines() if line.strip()]


def pytest_collection_modifyitems(items: list) -> None:
    """Longest tests first, so that neither xdist worker is left with a long test at the
    end while the other idles: a test's expected seconds are the largest of its
    ``slow(seconds=...)`` marks (a parameter's or its function's); unmarked tests keep
    their order after them."""
    def seconds(item) -> float:
        return max((m.kwargs.get("seconds", 0) for m in item.iter_markers("slow")), default=0)

    items.sort(key=lambda item: -seconds(item))


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
    """Share compiled executables between the runs of one test session.

    Resume tests train the same configuration several times; each run builds fresh
    closures, so only XLA's persistent cache avoids compiling identical steps again.
    """
    import jax

    jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("xla_cache")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    yield


@pytest.fixture(scope="session", autouse=True)
def reference_cache(tmp_path_factory):
    """Cached reference features go to a per-session directory, never to ~/.cache."""
    os.environ["GENJAX_CACHE"] = str(tmp_path_factory.mktemp("genjax_cache"))
    yield


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> str:
    """A tfds data_dir with the embedded mnist5k prepared (offline, ~3 s)."""
    from genjax import data

    d = str(tmp_path_factory.mktemp("tfds"))
    data.get_builder(data.DataSpec(data_dir=d))
    return d


def copy_flax_layer(module, p: dict) -> None:
    """Flax parameters ``p`` of one layer (Conv, Dense, GroupNorm or Embed) into the PyTorch
    ``module`` (Conv2d, Linear, GroupNorm or Embedding; a Dense may stand as a 1x1 Conv2d),
    shapes checked: how the tests load genjax's weights into the benchmarks' PyTorch peers."""
    import torch

    w = np.asarray(p.get("kernel", p.get("scale", p.get("embedding"))))
    if "kernel" in p:
        w = w.transpose(3, 2, 0, 1) if w.ndim == 4 else w.T
        w = w[:, :, None, None] if module.weight.ndim == 4 and w.ndim == 2 else w
    assert tuple(module.weight.shape) == w.shape, (module, w.shape)
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(np.array(w)))
        if "bias" in p:
            module.bias.copy_(torch.from_numpy(np.array(p["bias"])))


def perturbed(params, scale: float, seed: int):
    """``params`` plus ``scale`` times standard normal noise (zero-initialised layers, such
    as a coupling's or a residual's output, become generic maps). Drawn by NumPy: eager
    `jax.random` would compile a sampler for every distinct leaf shape."""
    import jax

    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda p: (p + scale * rng.standard_normal(p.shape)).astype(p.dtype),
                        params)


def short_run_config(name: str, data_dir: str):
    """The `:test` variant of config ``name`` for a 4-step run through the loop: offline
    data, checkpoints at 2 and 4, one grid at the end, 100 evaluation samples."""
    import importlib

    c = importlib.import_module(f"genjax.configs.{name}").get_config("test")
    c.data_dir, c.num_steps, c.checkpoint_every, c.sample_every = data_dir, 4, 2, 4
    c.eval_samples = c.eval_batch_size = 100
    return c


def train_unfinished(config, workdir):
    """`loop.train_and_evaluate` without its end (final grids, evaluation and curves): for
    runs of which a test compares only the state, checkpoints or logged losses."""
    from unittest import mock

    from genjax import loop

    with mock.patch.object(loop, "_finish"):
        return loop.train_and_evaluate(config, str(workdir))


def check_resumes_exactly(config, workdir, capsys) -> dict:
    """Train ``config`` (a `short_run_config`: checkpoints at 2 and 4) in ``workdir``, remove
    the step-4 checkpoint and run again: the second run must resume from step 2 and end
    bitwise equal to the first. Only the second run draws the final pictures and runs the
    final evaluation (the first one's would be compared with nothing). Returns the final
    metrics row of ``metrics.jsonl``."""
    import json
    import re
    import shutil

    import chex
    import jax

    from genjax import loop

    straight = train_unfinished(config, workdir)
    shutil.rmtree(workdir / "checkpoints" / "4")
    capsys.readouterr()
    resumed = loop.train_and_evaluate(config, str(workdir))
    assert re.search(r"Resumed from .* at step 2\b", capsys.readouterr().out)
    chex.assert_trees_all_equal(jax.device_get(resumed), jax.device_get(straight))
    return [json.loads(line) for line in open(workdir / "metrics.jsonl")][-1]


def wandb_offline_run(wandb_dir) -> tuple[list[dict], dict]:
    """(history rows, summary) of the W&B offline run in ``wandb_dir`` (one run; values
    decoded from JSON), read from its ``run-<id>.wandb`` file: LevelDB-log records of
    W&B's protobuf ``Record``s after a 7-byte ``:W&B`` header, in 32 KiB blocks."""
    import glob
    import json
    import time

    from wandb.proto import wandb_internal_pb2

    [path] = glob.glob(os.path.join(str(wandb_dir), "wandb", "*run-*", "run-*.wandb"))
    for _ in range(100):  # W&B's core process may still be writing when finish() returns
        records = _wandb_records(open(path, "rb").read(), wandb_internal_pb2.Record)
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            break
        time.sleep(0.1)
    items = lambda its: {"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in its}
    history = [items(r.history.item) for r in records if r.WhichOneof("record_type") == "history"]
    summary = {}
    for r in records:
        if r.WhichOneof("record_type") == "summary":
            summary.update(items(r.summary.update))
    return history, summary


def _wandb_records(data: bytes, record_type) -> list:
    """The protobuf records of a W&B transaction log's bytes ``data``."""
    import struct

    block, pos, records, chunk = 32768, 7, [], b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = struct.unpack("<HB", data[pos + 4:pos + 7])
        if kind == 0 or pos + 7 + length > len(data):  # the end, or a record being written
            break
        chunk += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL, LAST
            records.append(record_type.FromString(chunk))
            chunk = b""
    return records


def check_loaded_run(workdir, final: dict, likelihood: str | None, sign: float = -1.0,
                     tmp_path=None) -> None:
    """`genjax.runs.load` of a finished run in ``workdir`` reproduces its final row
    ``final``: the domain FID of its samples (the same key; image runs), and, where the family has a
    likelihood, the mean of `Run.log_likelihood` over the test images its evaluation
    used equals ``sign * final[likelihood]`` (else log_likelihood refuses in one line);
    with ``tmp_path``, an export put back into the run samples bitwise alike."""
    import numpy as np
    import pytest

    from genjax import data as gdata
    from genjax import runs
    from genjax.tasks.common import collect_images

    run = runs.load(str(workdir))
    if "test/domain_fid" in final:  # images the domain classifier takes
        tag = runs.metric_tag(run.config, run.config.eval_samples, run.trained)  # the sampler
        scores = run.evaluate(write=False)
        assert scores[f"test/domain_{tag}fid"] == pytest.approx(final["test/domain_fid"],
                                                                 rel=1e-5)
    if likelihood is None:
        with pytest.raises(ValueError, match=r"run has no log-likelihood: "):
            run.log_likelihood(np.zeros((1, *run.setup.image_shape), np.float32))
    else:
        spec, size = run.setup.eval_spec, run.config.eval_batch_size
        n = gdata.num_examples(spec, "test")
        if run.config.get("bound_images"):  # the whole batches the diffusion bound covers
            n = min(n, -(-run.config.bound_images // size) * size)
        images = collect_images(gdata.eval_iterator(spec, "test", global_batch_size=size), n,
                                spec.preprocess)
        labels = None
        if run.config.task == "pixelcnn" and run.config.num_classes:
            labels = np.concatenate([b["label"][b["mask"] > 0] for b in gdata.eval_iterator(
                spec, "test", global_batch_size=size)])[:n]
        nats = run.log_likelihood(images, labels)
        assert nats.shape == (n,)
        np.testing.assert_allclose(nats.mean(), sign * final[likelihood], rtol=1e-5)
    if tmp_path is not None:
        import jax

        path = runs.export(str(workdir), str(tmp_path / "export.npz"))
        key = jax.random.key(5)
        np.testing.assert_array_equal(run.with_params(path).sample(4, key=key),
                                      run.sample(4, key=key))
