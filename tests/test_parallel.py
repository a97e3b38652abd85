"""Data-parallel drivers: every driver computes the one-device step, across processes too.

The device count is fixed when jax starts, so the equivalence runs in subprocesses
(tests/parallel_worker.py) with simulated CPU devices.
"""

import json
import os
import socket
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest

from genjax import parallel, replica, xla_cpu

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "parallel_worker.py")


def _worker(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": ROOT}
    env.pop("XLA_FLAGS", None)
    return subprocess.Popen([sys.executable, WORKER, *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(procs: list[subprocess.Popen], timeout: int) -> None:
    """Wait for every process; kill them all on timeout or on the first failure."""
    try:
        for p in procs:
            out, _ = p.communicate(timeout=timeout)
            assert p.returncode == 0, out[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


# Relative difference allowed between a driver's state and one device's after 3 steps.
# float64: roundoff 1.1e-16 per operation; the steps amplify reduction-order changes at
# most ~2e4-fold (measured in float32: 6e-8 -> 1.2e-3, WGAN-GP), which gives ~2e-12; 1e-9
# leaves a margin of 500 on that, and a driver computing anything else moves the state
# by 1e-3 or more (tests/parallel_worker.py). float32 (the VAE only, a well-conditioned
# step): measured ~1e-7 apart; 1e-5 is ~170 roundoffs.
TOLERANCE = {"float64": 1e-9, "float32": 1e-5}


# Each config's state components that must be compared (so a component the worker
# stops reporting fails the test); the GAN's one-pass updates are config variants.
COMPONENTS = {"vae_mnist": {"model/params", "model/opt_state"},
              "dcgan_mnist": {"gen/batch_stats"},
              "wgan_gp_mnist": {"gen/batch_stats", "extra/spectral", "disc/opt_state"},
              "dcgan_mnist+shared": {"gen/batch_stats", "gen/opt_state"},
              "dcgan_mnist+simultaneous": {"gen/batch_stats", "gen/opt_state", "disc/params"},
              "ddpm_mnist_cond": {"model/params", "extra/ema"},
              "gated_pixelcnn_cond_mnist": {"model/params", "model/opt_state"},
              "glow_mnist": {"model/params", "model/opt_state"},
              "rbm_centered_mnist": {"layer0/params", "extra/chains", "extra/offsets"}}


@pytest.mark.slow(seconds=40)  # 12-80 s each on 2 cores, the U-Net's 150 s
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow(seconds=150))
                                  if n == "ddpm_mnist_cond" else n for n in COMPONENTS])
def test_drivers_equal_one_device_and_trace_once(name, tmp_path):
    _finish([_worker("drivers", str(tmp_path / "out.json"), name)], timeout=600)
    by_precision = json.loads((tmp_path / "out.json").read_text())
    assert set(by_precision) == ({"float64", "float32"} if name == "vae_mnist" else {"float64"})
    for precision, by_driver in by_precision.items():
        assert by_driver["none"]["traces"] == 1, name
        for driver, r in by_driver.items():
            if driver == "none":
                continue
            where = (name, precision, driver)
            if "per call" not in driver:  # a multi-step call also traces the step's shapes
                assert r["traces"] == 1, where
            assert r["replicas_identical"], where
            assert COMPONENTS[name] <= set(r["relative_difference"]), where
            worst = max(r["relative_difference"].items(), key=lambda kv: kv[1])
            assert worst[1] < TOLERANCE[precision], (where, r["relative_difference"])
            assert r["relative_difference"]["step"] == r["relative_difference"]["rng"] == 0


@pytest.mark.parametrize("name", ["vae_mnist", pytest.param(
    "dcgan_mnist", marks=pytest.mark.slow(seconds=120))])
def test_a_population_on_the_member_mesh_equals_one_device(name, tmp_path):
    """A population's mesh driver on 4 devices: 2 members (each member's rows over 2
    devices, its gradients and BatchNorm statistics all-reduced between them), 4 members
    (one per device), 6 members (3 per group of 2 devices) and 4 under ``lax.map``; one
    step per call and 3: the state and every member's metrics equal the population on one
    device in float64, and the devices holding a member agree on it bitwise."""
    _finish([_worker("members", str(tmp_path / "out.json"), name, "2", "4", "6", "4:map")],
            timeout=600)
    result = json.loads((tmp_path / "out.json").read_text())
    assert set(result) == {f"{k}, {c} per call" for k in ("2", "4", "6", "4:map")
                           for c in (1, 3)}
    for where, r in result.items():
        k = int(where.split(":")[0].split(",")[0])
        groups = {2: 2, 4: 4, 6: 2}[k]
        assert r["mesh"] == {"member": groups, "data": 4 // groups}, where
        assert {m.rsplit("/", 1)[1] for m in r["metrics"]} == {f"m{i}" for i in range(k)}
        assert r["shards_agree"], where
        assert r["metrics_difference"] < TOLERANCE["float64"], (where, r["metrics_difference"])
        worst = max(r["relative_difference"].items(), key=lambda kv: kv[1])
        assert worst[1] < TOLERANCE["float64"], (name, where, r["relative_difference"])
        assert r["relative_difference"]["step"] == 0, where


# Collectives a model has by design beyond all-reduces: minibatch discrimination gathers
# every replica's features (and its gradient scatters them back); the RBM's and DBN's
# persistent chains are one global array that each replica advances a block of.
GATHERS_BY_DESIGN = {"gan_mlp_mnist+minibatch": {"all-gather", "reduce-scatter"},
                     "rbm_centered_mnist": {"all-gather"}, "dbn_mnist": {"all-gather"}}


@pytest.mark.parametrize("names", [
    "vae_mnist,dcgan_mnist,gan_mlp_mnist+minibatch,rbm_centered_mnist",
    pytest.param("ddpm_mnist,gated_pixelcnn_mnist,glow_mnist,dbn_mnist",
                 marks=pytest.mark.slow(seconds=40))])
def test_mesh_step_communicates_what_the_pmap_step_does(names, tmp_path):
    """The compiled mesh step (4 devices) holds exactly the pmap step's collectives: the
    all-reduces of the gradients, metrics and statistics (BatchNorm's, the RBM's offsets),
    about one element per parameter (XLA drops the all-reduce of a gradient it knows is zero: 0.4 % of the
    U-Net's, 1 % of the Gated PixelCNN's), and no all-gather, all-to-all or permute of
    activations, except the gathers a model makes by design. XLA partitioning the
    one-device step instead gathers activations (the earlier mesh driver)."""
    out = tmp_path / "out.json"
    _finish([_worker("collectives", str(out), *names.split(","))], timeout=300)
    for name, r in json.loads(out.read_text()).items():
        assert r["mesh"] == r["pmap"], name
        ops = {op for op, _ in r["mesh"]}
        assert ops - {"all-reduce"} == GATHERS_BY_DESIGN.get(name, set()), (name, r["mesh"])
        reduced = sum(n for op, n in r["mesh"] if op == "all-reduce")
        # beyond the gradients: metrics, BatchNorm statistics, the RBM's centering offsets
        assert 0.95 * r["params"] <= reduced <= 1.1 * r["params"] + 1000, (name, r)


def _types(tree) -> list:
    return [(x.shape, x.dtype, x.weak_type) for x in jax.tree.leaves(tree)]


@pytest.mark.parametrize("name", [n for n in COMPONENTS if "+" not in n] + ["dbn_mnist"])
@pytest.mark.parametrize("x64", [False, True])
def test_step_returns_its_state_types_so_it_traces_once(name, x64):
    """The quick form of the trace-once check above (abstract evaluation, nothing
    compiles): a step's new state has its input's shapes, dtypes and weak types, in
    float32 and under x64; a weak-typed leaf in ``init`` (``jnp.full(shape, 0.5)``)
    becomes strong after one step and makes every driver trace the step twice."""
    import importlib

    from genjax.tasks import TASKS

    c = importlib.import_module(f"genjax.configs.{name}").get_config("test")
    task = TASKS[c.task](c, (28, 28, 1))
    with jax.enable_x64(x64):
        state = jax.eval_shape(task.init, jax.random.key(0))
        if x64:  # as the driver test starts: every float32 leaf as float64
            state = jax.tree.map(lambda s: jax.ShapeDtypeStruct(
                s.shape, np.float64, weak_type=s.weak_type) if s.dtype == np.float32 else s, state)
        n = task.examples_per_step
        batch = {"image": jax.ShapeDtypeStruct((n, 28, 28, 1), np.float64 if x64 else np.float32),
                 "label": jax.ShapeDtypeStruct((n,), np.int32)}
        new_state, _ = jax.eval_shape(task.train_step, state, batch)
    assert _types(new_state) == _types(state), name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_process(tmp_path):
    """Two processes x 2 CPU devices (gloo) under the mesh driver, each feeding its half of
    the global batch, end with identical VAE states equal to one device's."""
    port = str(_free_port())
    files = [tmp_path / f"{n}.npz" for n in ("p0", "p1", "single")]
    _finish([_worker("vae", str(files[0]), "mesh", "0", "2", port),
             _worker("vae", str(files[1]), "mesh", "1", "2", port),
             _worker("vae", str(files[2]), "none")], timeout=120)
    p0, p1, single = (np.load(f) for f in files)
    assert int(p0["devices"]) == 4  # the mesh spans both processes
    keys = [k for k in single.files if k != "devices"]
    assert len(keys) > 4
    for k in keys:
        np.testing.assert_array_equal(p0[k], p1[k])
        np.testing.assert_allclose(p0[k], single[k], rtol=1e-5, atol=1e-6)


def test_shard_draw_slices_the_one_device_draw():
    key = jax.random.key(3)
    full = jax.random.normal(key, (8, 5))
    parts = jax.vmap(lambda _: replica.shard_draw(replica.normal, key, (2, 5), "i"),
                     axis_name="i")(np.arange(4))
    np.testing.assert_array_equal(parts.reshape(8, 5), full)
    np.testing.assert_array_equal(replica.shard_draw(replica.normal, key, (8, 5), None), full)


def test_clear_errors_before_compilation():
    with pytest.raises(ValueError, match="Unknown parallel driver 'pmapp'.*none, pmap, mesh"):
        parallel.check_batch("pmapp", 64)
    with pytest.raises(ValueError, match="Unknown parallel driver"):
        parallel.make_driver("spmd", lambda s, b: (s, b))
    with pytest.raises(ValueError, match="Batch size must be positive"):
        parallel.check_batch("none", 0)
    assert parallel.check_batch("mesh", 7) == jax.device_count() == 1
    with pytest.raises(ValueError, match="coordinator address"):
        parallel.initialize(num_processes=2, process_id=0)


def _conv_loss_grad(kernel, x):
    conv = lambda k: jax.lax.conv_general_dilated(x, k, (2, 2), "SAME",
                                                  dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jax.grad(lambda k: jax.numpy.sum(jax.numpy.tanh(conv(k)) ** 2))(kernel)


def test_cpu_dot_library_follows_the_step(monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 12, 12, 3)).astype(np.float32)
    kernel = rng.normal(size=(4, 4, 3, 5)).astype(np.float32)
    dense = lambda w, v: jax.numpy.tanh(v.reshape(8, -1) @ w)
    w = rng.normal(size=(432, 4)).astype(np.float32)
    # found inside a gradient, and inside a scan (as in several steps per call)
    assert xla_cpu.has_convolution(_conv_loss_grad, kernel, x)
    scanned = lambda k, xs: jax.lax.scan(lambda c, xi: (c + _conv_loss_grad(k, xi), None),
                                         jax.numpy.zeros_like(k), xs)[0]
    assert xla_cpu.has_convolution(scanned, kernel, x[None])
    assert not xla_cpu.has_convolution(jax.grad(lambda w, v: dense(w, v).sum()), w, x)
    eigen = {"xla_cpu_experimental_ynn_fusion_type": ""}
    assert xla_cpu.cpu_compiler_options("auto", _conv_loss_grad, kernel, x) == eigen
    assert xla_cpu.cpu_compiler_options("auto", dense, w, x) is None
    assert xla_cpu.cpu_compiler_options("ynnpack", _conv_loss_grad, kernel, x) is None
    assert xla_cpu.cpu_compiler_options("eigen", dense, w, x) == eigen
    mixed = xla_cpu.cpu_compiler_options("eigen+ynn", _conv_loss_grad, kernel, x)
    assert mixed == {"xla_cpu_experimental_ynn_fusion_type":
                     "LIBRARY_FUSION_TYPE_ELTWISE,LIBRARY_FUSION_TYPE_REDUCE"}
    # every choice computes the same gradient, up to float32 roundoff (and XLA accepts it)
    for options in (eigen, mixed):
        np.testing.assert_allclose(jax.jit(_conv_loss_grad, compiler_options=options)(kernel, x),
                                   jax.jit(_conv_loss_grad)(kernel, x), rtol=1e-5, atol=1e-5)
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=individual_dot")
    assert xla_cpu.cpu_compiler_options("eigen", dense, w, x) is None  # the user's flag wins
    with pytest.raises(ValueError,
                       match="Unknown cpu_dots 'mkl'.*auto, ynnpack, eigen, eigen\\+ynn"):
        parallel.make_driver("none", _conv_loss_grad, cpu_dots="mkl")


def test_batch_not_divisible_by_devices_is_refused(monkeypatch):
    monkeypatch.setattr(jax, "device_count", lambda: 4)
    with pytest.raises(ValueError, match="Global batch size 30 is not divisible by the number "
                                         "of devices \\(4\\) of the 'mesh' driver"):
        parallel.check_batch("mesh", 30)


def test_loop_refuses_bad_driver_before_any_work(tmp_path):
    from genjax.configs import vae_mnist
    from genjax import loop

    c: ml_collections.ConfigDict = vae_mnist.get_config("test")
    c.parallel = "dp"
    with pytest.raises(ValueError, match="Unknown parallel driver 'dp'"):
        loop.train_and_evaluate(c, str(tmp_path / "run"))
    assert not (tmp_path / "run" / "checkpoints").exists()
