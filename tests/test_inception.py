"""The FID InceptionV3 port with random weights: architecture, key mapping, loading rules."""

import jax
import numpy as np
import pytest

from genjax.metrics import inception as inc

SOURCE = inc.PTH_SHA256_PREFIX + "0" * 56


def _random_state_dict(seed=0):
    """A pytorch-fid-style state dict (torch names and layouts) with random values."""
    rng = np.random.default_rng(seed)
    state = {}

    def one(path, shape):
        keys = [p.key for p in path]
        value = rng.normal(size=shape.shape).astype(np.float32) * 0.1
        if keys[-1] == "var":
            value = np.abs(value) + 0.5
        name = inc.torch_name(keys[0], keys[1:])
        torch_value = (np.transpose(value, (3, 2, 0, 1)) if keys[-2] == "conv" else
                       value.T if keys[-2:] == ["fc", "kernel"] else value)
        state[name] = torch_value
        return value

    variables = jax.tree_util.tree_map_with_path(one, inc.variable_shapes())
    return state, variables


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    state, variables = _random_state_dict()
    path = str(tmp_path_factory.mktemp("inception") / "inception_fid.npz")
    np.savez(path, **state, **{inc.SOURCE_KEY: np.array(SOURCE)})
    return path, state, variables


def test_state_dict_names_and_shapes_match_pytorch_fid(weights):
    _, state, _ = weights
    assert state["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
    assert state["Mixed_5b.branch_pool.conv.weight"].shape == (32, 192, 1, 1)
    assert state["Mixed_6e.branch7x7dbl_5.conv.weight"].shape == (192, 192, 1, 7)
    assert state["Mixed_7b.branch3x3_2b.conv.weight"].shape == (384, 384, 3, 1)
    assert state["Mixed_7c.branch_pool.bn.running_var"].shape == (192,)
    assert state["fc.weight"].shape == (1008, 2048)
    # torchvision's Inception3 without aux logits, fc widened to 1008: 94 conv+BN layers.
    assert len([k for k in state if k.endswith("conv.weight")]) == 94
    assert sum(v.size for v in state.values()) - sum(
        v.size for k, v in state.items() if "running" in k) == 23_850_960


def test_converted_weights_load_exactly(weights):
    path, _, variables = weights
    loaded = inc.load_variables(path)
    jax.tree.map(np.testing.assert_array_equal, loaded, variables)


def test_network_outputs_and_input_handling(weights):
    path, _, variables = weights
    model = inc.FIDInceptionV3()
    x = np.random.default_rng(0).uniform(-1, 1, size=(2, 75, 75, 3)).astype(np.float32)
    pool3, logits = jax.jit(model.apply)(variables, x)  # 75x75: the smallest input it takes
    assert pool3.shape == (2, inc.FEATURE_DIM) and logits.shape == (2, inc.NUM_LOGITS)
    np.testing.assert_array_equal(jax.jit(model.apply)(variables, x)[0], pool3)  # deterministic
    grey = np.random.default_rng(1).uniform(size=(3, 28, 28, 1)).astype(np.float32)
    y = inc.preprocess(grey)
    assert y.shape == (3, 299, 299, 3) and float(y.min()) >= -1.0 and float(y.max()) <= 1.0
    np.testing.assert_array_equal(y, inc.preprocess(np.repeat(grey, 3, axis=-1)))
    quantised = (np.asarray(inc.preprocess(grey[:, :1, :1])) + 1.0) / 2.0 * 255.0
    np.testing.assert_allclose(quantised, np.round(quantised), atol=1e-3)  # 8-bit levels
    extract = inc.make_extractor(path)
    assert extract.name.startswith("inception2015-")
    with pytest.raises(ValueError, match="1 or 3"):
        extract(np.zeros((1, 28, 28, 2), np.float32))


def test_missing_or_foreign_weights_are_clear_errors(weights, tmp_path):
    with pytest.raises(FileNotFoundError, match="convert_inception"):
        inc.load_variables(str(tmp_path / "missing.npz"))
    _, state, _ = weights
    foreign = str(tmp_path / "foreign.npz")
    np.savez(foreign, **state, **{inc.SOURCE_KEY: np.array("ab" * 32)})
    with pytest.raises(ValueError, match="not converted from pt_inception"):
        inc.load_variables(foreign)
    partial = str(tmp_path / "partial.npz")
    np.savez(partial, **{k: v for k, v in state.items() if k != "fc.bias"},
             **{inc.SOURCE_KEY: np.array(SOURCE)})
    with pytest.raises(KeyError, match="fc.bias"):
        inc.load_variables(partial)


def test_converter_drops_counters_and_checks_the_source_hash(weights, tmp_path, monkeypatch):
    import sys
    import types

    from genjax.cli import convert_inception

    _, state, variables = weights

    class Tensor:
        def __init__(self, a):
            self.a = a

        def numpy(self):
            return self.a

    torch_state = {k: Tensor(v) for k, v in state.items()}
    torch_state["Conv2d_1a_3x3.bn.num_batches_tracked"] = Tensor(np.array(7))
    calls = []
    fake_torch = types.SimpleNamespace(
        load=lambda path, map_location, weights_only: calls.append(weights_only) or torch_state)
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    pth = tmp_path / "w.pth"
    pth.write_bytes(b"not really")
    with pytest.raises(ValueError, match="Download it from"):
        convert_inception.convert(str(pth), str(tmp_path / "x.npz"))
    monkeypatch.setattr(inc, "file_sha256", lambda path: SOURCE)
    convert_inception.convert(str(pth), str(tmp_path / "ok.npz"))
    assert calls == [True]  # weights_only: no arbitrary unpickling
    jax.tree.map(np.testing.assert_array_equal, inc.load_variables(str(tmp_path / "ok.npz")),
                 variables)
