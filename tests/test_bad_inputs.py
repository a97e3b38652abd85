"""Bad inputs get a specific, readable error before anything compiles or trains."""

import json
import os
import re

import jax
import jax.monitoring
import numpy as np
import pytest
import tensorflow_datasets as tfds
from absl import flags
from ml_collections import config_flags

from genjax.cli import launch
from genjax.configs import (dcgan_mnist, ddpm_mnist, flow_ring2d, gated_pixelcnn_mnist,
                                 pixel_transformer_mnist, pixelcnn_pp_mnist, rbm_pcd_mnist,
                                 realnvp_mnist, row_lstm_mnist, vae_mnist)
from genjax import loop, parallel, rng, spectral
from genjax.checkpoint import Checkpointer, CheckpointMismatchError
from genjax.data import DatasetUnavailableError
from genjax.data.own import OwnDataError
from genjax.metrics import domain, inception
from genjax.population import PopulationError
from genjax.varied import PopulationFieldError

_COMPILES: list[str] = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, _secs, **_: _COMPILES.append(event) if event.endswith("backend_compile_duration")
    else None)


def _no_network(self, *args, **kwargs):
    raise ConnectionError("Name or service not known")


def _file_in_the_way(tmp_path):
    (tmp_path / "a_file").write_text("")
    return str(tmp_path / "a_file" / "run")


def _foreign_checkpoint(tmp_path):
    workdir = tmp_path / "run"
    ckpt = Checkpointer(str(workdir / "checkpoints"), every=1, asynchronous=False)
    ckpt.save(1, {"step": np.zeros((), np.int32), "params": {"w": np.zeros((3, 3), np.float32)}})
    ckpt.close()
    return str(workdir)


def _own_data(files: dict):
    """A workdir maker that first writes own data under ``<tmp>/data``: a file name ->
    an image array (saved as that PNG), bytes (written as they are) or arrays (an .npz)."""
    def make(tmp_path):
        from PIL import Image

        for name, content in files.items():
            path = tmp_path / "data" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            elif isinstance(content, dict):
                np.savez(path, **content)
            else:
                Image.fromarray(content.squeeze(-1) if content.shape[-1] == 1 else content).save(path)
        return str(tmp_path / "run")
    return make


_GREY, _RGB = np.zeros((28, 28, 1), np.uint8), np.zeros((28, 28, 3), np.uint8)
_DIGITS = {"images": np.zeros((10, 28, 28), np.uint8)}
GAN, VAE, DDPM = dcgan_mnist, vae_mnist, ddpm_mnist
PIXELCNN, PIXELCNN_PP = gated_pixelcnn_mnist, pixelcnn_pp_mnist
ROW_LSTM, TRANSFORMER = row_lstm_mnist, pixel_transformer_mnist
FLOW, FLOW2D = realnvp_mnist, flow_ring2d
RBM = rbm_pcd_mnist
# (id, config module, overrides, workdir maker or None, exception, message pattern)
def _population_of_workers(tmp_path) -> str:
    """A workdir that holds a population trained by workers (a run per member)."""
    os.makedirs(tmp_path / "run" / "members" / "m0")
    (tmp_path / "run" / "members" / "m0" / "config.json").write_text("{}")  # m0 started
    return str(tmp_path / "run")


CONFIG_CASES = [
    ("unknown loss", GAN, {"loss": "wasserstein"}, None, ValueError,
     r"Unknown GAN loss 'wasserstein'; valid names: .*hinge"),
    ("unknown dataset", GAN, {"dataset": "mnist6k"}, None, DatasetUnavailableError,
     r"Unknown dataset 'mnist6k'.*'mnist5k'"),
    ("dataset offline", VAE, {"dataset": "cifar10"}, None, DatasetUnavailableError,
     r"could not be downloaded.*--config.dataset=mnist5k"),
    ("batch zero", VAE, {"batch_size": 0}, None, ValueError, r"config.batch_size must be positive, got 0"),
    ("keep_best without direction", VAE, {"keep_best": "free_energy", "eval_every": 10}, None,
     ValueError, r"config.keep_best='free_energy' is a spread or a value that is no quality"),
    ("keep_best off checkpoints", VAE, {"keep_best": "domain_fid", "eval_every": 5}, None,
     ValueError, r"config.eval_every \(5\) must be a positive multiple of config.checkpoint_every "
     r"\(10\)"),
    ("batch negative", GAN, {"batch_size": -8}, None, ValueError, r"config.batch_size must be positive"),
    ("learning rate negative", GAN, {"g_learning_rate": -2e-4}, None, ValueError,
     r"config.g_learning_rate must be positive, got -0.0002"),
    ("learning rate zero", VAE, {"learning_rate": 0.0}, None, ValueError, r"config.learning_rate must be positive"),
    ("n_critic zero", GAN, {"n_critic": 0}, None, ValueError, r"config.n_critic must be positive, got 0"),
    ("penalty negative", GAN, {"gp_weight": -10.0}, None, ValueError,
     r"config.gp_weight must be 0 \(off\) or positive, got -10.0"),
    ("image the net cannot take", GAN, {"generator": "dcgan", "image_size": 30}, None, ValueError,
     r"config.image_size=30 gives images of shape \(30, 30, 1\), but generator 'dcgan' takes "
     r"square images \[S, S, C\] with S = 4\*2\^n or 7\*2\^n, n >= 1 \(8, 14, 16, 28, 32"),
    ("image size zero", VAE, {"image_size": 0}, None, ValueError,
     r"config.image_size must be a positive integer \(or None: the dataset's own size\), got 0"),
    ("image size negative", VAE, {"image_size": -1}, None, ValueError,
     r"config.image_size must be a positive integer .*got -1"),
    ("crop zero", GAN, {"crop": 0}, None, ValueError, r"config.crop must be a positive integer"),
    ("conv generator at 30x30", GAN, {"image_size": 30}, None, ValueError,
     r"config.image_size=30 gives images of shape \(30, 30, 1\), but generator 'conv' takes "
     r"images \[H, W, C\] whose height and width divide by 4 \(4, 8, 12, ...\); set "
     r"config.image_size \(resize\) or config.crop"),
    ("SNGAN generator at a crop of 30", GAN, {"generator": "sngan", "crop": 30}, None, ValueError,
     r"config.crop=30 \(config.image_size unset\) gives images of shape \(30, 30, 1\), but "
     r"generator 'sngan' takes square images"),
    ("conv VAE at 30x30", VAE, {"model": "conv", "image_size": 30}, None, ValueError,
     r"config.image_size=30 gives .* but model 'conv' with config.conv_features=\(8, 16\) takes "
     r"images \[H, W, C\] whose height and width divide by 4"),
    ("latent zero", VAE, {"latent_dim": 0}, None, ValueError, r"config.latent_dim must be positive, got 0"),
    ("hidden width zero", VAE, {"hidden": (0,)}, None, ValueError,
     r"config.hidden must be a non-empty list of positive integers, got \(0,\)"),
    ("dataset empty", VAE, {"dataset": ""}, None, ValueError, r"config.dataset must be a dataset name"),
    ("one forward with several critic updates", GAN, {"gan_update": "shared", "n_critic": 5},
     None, ValueError, r"gan_update='shared' .* needs n_critic=1 and unroll_steps=0, got n_critic=5"),
    ("joint critic with minibatch features", GAN, {"gan_update": "shared", "minibatch": "stddev"},
     None, ValueError, r"config.gan_update='shared' .* minibatch features \('stddev'\)"),
    ("unknown GAN update", GAN, {"gan_update": "joint"}, None, ValueError,
     r"Unknown gan_update 'joint'; valid: alternating, shared, simultaneous"),
    ("pack zero", GAN, {"pack": 0}, None, ValueError, r"config.pack must be a positive integer"),
    ("pack that does not divide the batch", GAN, {"pack": 5}, None, ValueError,
     r"config.batch_size \(\d+\) must divide by config.pack \(5\)"),
    ("pack with a gradient penalty", GAN, {"pack": 2, "gp_weight": 10.0}, None, ValueError,
     r"pack=2 \(PacGAN\) is not defined here .* gp_weight=10.0"),
    ("pack with minibatch features", GAN, {"pack": 2, "minibatch": "stddev"}, None, ValueError,
     r"config.pack=2 \(PacGAN\) and minibatch features \('stddev'\)"),
    ("unknown data source", VAE, {"data_source": "disk"}, None, ValueError,
     r"config.data_source must be one of auto, tfds, memory, got 'disk'"),
    ("skip limit zero", VAE, {"max_skipped_fraction": 0.0}, None, ValueError,
     r"config.max_skipped_fraction must be in \(0, 1\]"),
    ("steps per call zero", VAE, {"steps_per_call": 0}, None, ValueError,
     r"config.steps_per_call must be positive, got 0"),
    ("unknown driver", VAE, {"parallel": "ddp"}, None, ValueError,
     r"Unknown parallel driver 'ddp'; valid: none, pmap, mesh"),
    ("EMA decay 1", GAN, {"ema_decay": 1.0}, None, ValueError, r"config.ema_decay must be in \[0, 1\)"),
    ("label smoothing 1", GAN, {"label_smoothing": 1.0}, None, ValueError,
     r"config.label_smoothing must be in \[0, 1\)"),
    ("unknown task", VAE, {"task": "ebm"}, None, ValueError, r"Unknown task 'ebm'; valid: vae, gan"),
    ("unknown generator", GAN, {"generator": "resnet"}, None, ValueError,
     r"Unknown generator 'resnet'; valid: mlp, conv, dcgan, sngan"),
    ("unknown minibatch feature", GAN, {"minibatch": "mbstd"}, None, ValueError,
     r"Unknown minibatch feature 'mbstd'; valid: none, stddev, discrimination"),
    ("unknown conditioning", GAN, {"num_classes": 10, "conditioning": "film"}, None, ValueError,
     r"Unknown conditioning 'film'; valid: projection, concat"),
    ("unroll steps negative", GAN, {"unroll_steps": -1}, None, ValueError,
     r"config.unroll_steps must be 0 \(off\) or positive, got -1"),
    ("progressive half", GAN, {"generator": "progan"}, None, ValueError,
     r"Progressive growing needs generator and discriminator 'progan'"),
    ("progressive at 28x28", GAN, {"generator": "progan", "discriminator": "progan"}, None,
     ValueError, r"config.dataset='mnist5k' \(config.image_size and config.crop unset\) gives "
                 r"images of shape \(28, 28, 1\), but generator 'progan' takes square images "
                 r"\[S, S, C\] with S = 4\*2\^n \(4, 8, 16, 32, 64, ...\); set config.image_size "
                 r"\(resize\) or config.crop \(centre crop or pad\)"),
    ("unknown optimizer", GAN, {"optimizer": "sgd"}, None, ValueError,
     r"Unknown optimizer 'sgd'; valid: adam, rmsprop"),
    ("unknown preprocessing", VAE, {"preprocess": "binarise"}, None, ValueError,
     r"Unknown preprocess mode 'binarise'"),
    ("Gaussian likelihood on binary pixels", VAE,
     {"likelihood": "gaussian", "preprocess": "binarize_static"}, None, ValueError,
     r"likelihood='gaussian' on binarised pixels .* unbounded density"),
    ("no evaluation samples", VAE, {"eval_samples": 0}, None, ValueError,
     r"config.eval_samples must be positive"),
    ("unknown sampler", DDPM, {"sampler": "euler"}, None, ValueError,
     r"config.sampler must be one of ddpm, ddim, dpm\+\+2m, got 'euler'"),
    ("unknown schedule", DDPM, {"schedule": "quadratic"}, None, ValueError,
     r"config.schedule must be one of linear, cosine, got 'quadratic'"),
    ("diffusion on [0, 1] images", DDPM, {"preprocess": "unit"}, None, ValueError,
     r"config.preprocess must be 'symmetric', got 'unit'"),
    ("more sampling steps than timesteps", DDPM, {"sample_steps": 101}, None, ValueError,
     r"config.sample_steps \(101\) cannot exceed config.timesteps \(100\)"),
    ("U-Net widths GroupNorm cannot split", DDPM, {"channels": 12}, None, ValueError,
     r"Every U-Net width \[12, 24\] must divide by config.groups \(8\)"),
    ("guidance without classes", DDPM, {"guidance": 2.0}, None, ValueError,
     r"config.guidance=2.0 needs a conditional model"),
    ("DDIM eta above 1", DDPM, {"eta": 1.5}, None, ValueError, r"config.eta must be in \[0, 1\]"),
    ("label dropout 1", DDPM, {"label_dropout": 1.0}, None, ValueError,
     r"config.label_dropout must be in \[0, 1\)"),
    ("unknown autoregressive model", PIXELCNN, {"model": "pixelrnn"}, None, ValueError,
     r"config.model must be one of pixelcnn, gated, pixelcnn\+\+, row_lstm, diagonal_bilstm, "
     r"transformer, got 'pixelrnn'"),
    ("Transformer on a config without its fields", PIXELCNN, {"model": "transformer"}, None,
     ValueError, r"config.model='transformer' needs config.num_heads: start from the "
     r"pixel_transformer_mnist config"),
    ("attention heads that do not divide the width", TRANSFORMER, {"num_heads": 3}, None,
     ValueError, r"config.features \(8\) must divide into config.num_heads \(3\) attention heads"),
    ("unknown position embedding", TRANSFORMER, {"positional": "sinusoidal"}, None, ValueError,
     r"config.positional must be one of learned, 2d, got 'sinusoidal'"),
    ("PixelRNN scan unrolled 0 times", ROW_LSTM, {"unroll": 0}, None, ValueError,
     r"config.unroll must be at least 1, got 0"),
    ("unknown PixelRNN state step", ROW_LSTM, {"state_step": "fft"}, None, ValueError,
     r"config.state_step must be 'matmul' or 'conv', got 'fft'"),
    ("Bernoulli pixels on 8-bit images", PIXELCNN, {"preprocess": "symmetric"}, None, ValueError,
     r"likelihood='bernoulli' models binary pixels: config.preprocess must be one of "
     r"binarize_static, binarize_dynamic, got 'symmetric'"),
    ("logistic mixture on binary test digits", PIXELCNN_PP, {"eval_preprocess": "binarize_static"},
     None, ValueError, r"config.eval_preprocess must be one of symmetric"),
    ("a mixture of no components", PIXELCNN_PP, {"num_mixtures": 0}, None, ValueError,
     r"config.num_mixtures must be positive for the logistic mixture, got 0"),
    ("autoregressive guidance without label dropout", PIXELCNN, {"num_classes": 10, "guidance": 2.0},
     None, ValueError, r"config.guidance=2.0 needs a conditional model trained with label dropout"),
    ("guided logistic mixture", PIXELCNN_PP, {"num_classes": 10, "label_dropout": 0.1,
                                              "guidance": 1.0}, None, ValueError,
     r"config.guidance=1.0 guides Bernoulli logits; config.likelihood='logistic_mixture'"),
    ("no gated layers", PIXELCNN, {"num_layers": 0}, None, ValueError,
     r"config.num_layers must be positive, got 0"),
    ("unknown flow", FLOW, {"model": "nice"}, None, ValueError,
     r"config.model must be one of realnvp, glow, maf, points, got 'nice'"),
    ("flow on binarised digits", FLOW, {"preprocess": "binarize_dynamic"}, None, ValueError,
     r"Image flows dequantise 8-bit pixels k/255: config.preprocess must be 'unit'"),
    ("flow with too many squeezes", FLOW, {"levels": 3}, None, ValueError,
     r"gives images of shape \(28, 28, 1\), but the realnvp flow with config.levels=3 takes "
     r"images \[H, W, C\] whose height and width divide by 8"),
    ("logit margin of one half", FLOW, {"alpha": 0.5}, None, ValueError,
     r"config.alpha \(the logit's margin\) must be in \(0, 0.5\), got 0.5"),
    ("spline couplings on images", FLOW2D, {"model": "realnvp"}, None, ValueError,
     r"The image flows have affine couplings; config.coupling='spline' is for model='points'"),
    ("zero temperature", FLOW, {"temperature": 0.0}, None, ValueError,
     r"config.temperature must be positive, got 0.0"),
    ("point flow on images", FLOW, {"model": "points"}, None, ValueError,
     r"config.model='points' fits points \[D\] with preprocess='raw'"),
    ("image flow on points", FLOW2D, {"model": "glow", "coupling": "affine"}, None, ValueError,
     r"Image flows take images \[H, W, C\], got shape \(2,\)"),
    ("rbm on grey pixels", RBM, {"preprocess": "unit"}, None, ValueError,
     r"Bernoulli RBMs model binary pixels: config.preprocess must be 'binarize_static'"),
    ("rbm momentum of one", RBM, {"momentum": 1.0}, None, ValueError,
     r"config.momentum must be in \[0, 1\), got 1.0"),
    ("rbm zero gibbs sweeps", RBM, {"cd_k": 0}, None, ValueError,
     r"config.cd_k must be positive, got 0"),
    ("rbm too few temperatures", RBM, {"ais_temperatures": 2}, None, ValueError,
     r"config.ais_temperatures must be 0 \(no AIS\) or at least 3, got 2"),
    ("rbm negative weight decay", RBM, {"weight_decay": -1e-4}, None, ValueError,
     r"config.weight_decay must be 0 \(off\) or positive"),
    ("zero timesteps", DDPM, {"timesteps": 0}, None, ValueError,
     r"config.timesteps must be positive, got 0"),
    ("seed negative", VAE, {"seed": -1}, None, ValueError,
     r"config.seed must be a non-negative integer below 2\*\*32, got -1"),
    ("seed beyond 32 bits", GAN, {"seed": 2**32}, None, ValueError,
     r"config.seed must be a non-negative integer below 2\*\*32, got 4294967296"),
    ("own data missing", VAE, {"dataset": "folder:{tmp}/nowhere"}, None, FileNotFoundError,
     r"folder:.*/nowhere does not exist; give the path of a folder of images"),
    ("own folder without images", VAE, {"dataset": "folder:{tmp}/data"},
     _own_data({"notes.txt": b"no images here"}), OwnDataError,
     r"folder:.*/data holds no images \(.png, .jpg, .*\); put image files in it or in one "
     r"subfolder per class"),
    ("own image unreadable", VAE, {"dataset": "folder:{tmp}/data"},
     _own_data({"a.png": _GREY, "b.png": _GREY, "c.png": b"\x89PNG cut short"}), OwnDataError,
     r"folder:.*/data: c.png is not a readable image \(UnidentifiedImageError: .*\); fix or "
     r"remove it, or set --config.bad_images=skip"),
    ("own images of mixed channels", VAE, {"dataset": "folder:{tmp}/data"},
     _own_data({"a.png": _GREY, "b.png": _RGB}), OwnDataError,
     r"images differ in channels \(a.png has 1, b.png has 3\); set --config.image_channels=1 "
     r"or 3 to convert them all"),
    ("own images of mixed sizes", VAE, {"dataset": "folder:{tmp}/data"},
     _own_data({"a.png": _GREY, "b.png": np.zeros((30, 28, 1), np.uint8)}), OwnDataError,
     r"images differ in size \(a.png is 28x28, b.png is 30x28\); set --config.image_size"),
    ("own image smaller than image_size", VAE, {"dataset": "folder:{tmp}/data", "image_size": 32},
     _own_data({"a.png": _GREY, "b.png": _GREY}), OwnDataError,
     r"a.png is 28x28, smaller than config.image_size=32; set --config.upscale=True to enlarge "
     r"small images, or a smaller --config.image_size"),
    ("own train folder without test", VAE, {"dataset": "folder:{tmp}/data"},
     _own_data({"train/a.png": _GREY, "train/b.png": _GREY}), OwnDataError,
     r"a folder with given splits holds exactly train/ and test/ \(one of them is missing\)"),
    ("own images beside class folders", VAE, {"dataset": "folder:{tmp}/data"},
     _own_data({"a.png": _GREY, "cats/b.png": _GREY}), OwnDataError,
     r"a.png lies beside class folders such as cats/; put every image in a class folder, or "
     r"none"),
    ("npz not an npz", VAE, {"dataset": "npz:{tmp}/data/x.npz"},
     _own_data({"x.npz": b"hello"}), OwnDataError, r"npz:.*x.npz is not an .npz \(not a zip archive\)"),
    ("npz without images", VAE, {"dataset": "npz:{tmp}/data/x.npz"},
     _own_data({"x.npz": {"x": np.zeros((10, 28, 28), np.uint8)}}), OwnDataError,
     r"x.npz has no 'images' array \(it has: x\); save uint8 images"),
    ("npz of float images", VAE, {"dataset": "npz:{tmp}/data/x.npz"},
     _own_data({"x.npz": {"images": np.zeros((10, 28, 28), np.float32)}}), OwnDataError,
     r"'images' must be uint8 pixels 0..255, got float32"),
    ("npz images of wrong rank", VAE, {"dataset": "npz:{tmp}/data/x.npz"},
     _own_data({"x.npz": {"images": np.zeros((10, 784), np.uint8)}}), OwnDataError,
     r"'images' must be \[N, H, W, C\] with C 1 to 4 \(or \[N, H, W\]\), got shape \(10, 784\)"),
    ("npz labels of wrong length", VAE, {"dataset": "npz:{tmp}/data/x.npz"},
     _own_data({"x.npz": {**_DIGITS, "labels": np.zeros(9, np.int64)}}), OwnDataError,
     r"'labels' must be integers \[N\] = \[10\], got int64 \(9,\)"),
    ("npz labels not integers", VAE, {"dataset": "npz:{tmp}/data/x.npz"},
     _own_data({"x.npz": {**_DIGITS, "labels": np.zeros(10, np.float32)}}), OwnDataError,
     r"'labels' must be integers \[N\] = \[10\], got float32"),
    ("image channels 2", VAE, {"image_channels": 2}, None, ValueError,
     r"config.image_channels must be 1 or 3 \(or None: as stored\), got 2"),
    ("unknown bad_images", VAE, {"bad_images": "ignore"}, None, ValueError,
     r"config.bad_images must be 'stop' or 'skip', got 'ignore'"),
    ("workdir not writable", VAE, {}, _file_in_the_way, PermissionError,
     r"Cannot write to workdir .*a_file/run .*choose another --workdir"),
    ("checkpoint of another model", VAE, {}, _foreign_checkpoint, CheckpointMismatchError,
     r"written by a different model or config. In the checkpoint, not in this model: 1 \(params/w\). "
     r"Missing from the checkpoint: \d+ \(nets/model/opt_state"),
    ("population of no seeds", VAE, {"population": {"seeds": 0}}, None, PopulationError,
     r"config.population.seeds must be a positive integer, got 0"),
    ("population of a structural field", VAE, {"population": {"latent_dim": (8, 16)}}, None,
     PopulationError, r"config.population.latent_dim: latent_dim is structural .*; members may "
     r"differ in: learning_rate, "),
    ("population of a field the config lacks", VAE, {"population": {"gp_weight": (1.0, 10.0)}},
     None, PopulationError, r"config.population.gp_weight: this config \(vae\) has no field "
     r"gp_weight to vary"),
    ("population values not numbers", VAE, {"population": {"beta": ("low", "high")}}, None,
     PopulationError, r"config.population.beta must be a non-empty tuple of numbers, e.g. "
     r"\(1e-3, 3e-4\), got \('low', 'high'\)"),
    ("population zip of unequal lengths", VAE, {"population": {
        "rule": "zip", "learning_rate": (1e-3, 3e-3), "beta": (0.5, 1.0, 2.0)}}, None,
     PopulationError, r"rule='zip' pairs the i-th values .* learning_rate 2, beta 3"),
    ("population value out of range", VAE, {"population": {"learning_rate": (1e-3, -1.0)}}, None,
     ValueError, r"population member m1 \(learning_rate=-1, seed=0\): config.learning_rate "
     r"must be positive, got -1.0"),
    ("population members disagree on a term", GAN, {"population": {
        "gp_weight": (0.0, 10.0), "strategy": "vmap"}}, None,
     PopulationFieldError, r"config.gp_weight: the members' values \(0.0, 10.0\) give "
     r"different answers to `if` \(zero or not\)"),
    ("population members of different states", GAN, {"population": {
        "ema_decay": (0.0, 0.999), "strategy": "vmap"}}, None,
     PopulationError, r"members m0 \(ema_decay=0, seed=0\) and m1 \(ema_decay=0.999, "
     r"seed=0\) have states of different structure"),
    ("population on several devices", VAE, {"population": {"seeds": 2}, "parallel": "pmap"},
     None, PopulationError, r"config.parallel='pmap': a population runs on one device, or with "
     r"config.parallel='mesh'"),
    ("population larger than memory", VAE, {"population": {"seeds": 10**6, "strategy": "vmap"}},
     None, PopulationError, r"a population of 1000000 members needs at least [\d.]+ GiB \(twice "
     r"1000000 x [\d.]+ MiB of state during a step\), more than the [\d.]+ GiB available"),
    ("population resumed under another strategy", VAE, {"population": {
        "seeds": 2, "strategy": "vmap"}}, _population_of_workers,
     PopulationError, r"holds a population trained by workers \(a run per member in members/\); "
     r"resume it with config.population.strategy='workers'"),
]


@pytest.mark.parametrize("name,module,overrides,make_workdir,error,pattern", CONFIG_CASES,
                         ids=[c[0] for c in CONFIG_CASES])
def test_bad_config_fails_before_compiling(name, module, overrides, make_workdir, error, pattern,
                                          data_dir, tmp_path, monkeypatch):
    if overrides.get("dataset") == "cifar10":  # as without internet
        monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", _no_network)
    config = module.get_config("test")
    config.data_dir = data_dir
    config.update({k: v.format(tmp=tmp_path) if isinstance(v, str) else v  # own data's path
                   for k, v in overrides.items()})
    workdir = make_workdir(tmp_path) if make_workdir else str(tmp_path / "run")
    rng.stream(config.seed, "init")  # the loop's eager ops, compiled once per process anyway
    _COMPILES.clear()
    with pytest.raises(error, match=pattern):
        loop.train_and_evaluate(config, workdir)
    assert not _COMPILES, f"{name}: compiled {len(_COMPILES)} programs before failing"


def test_batch_not_divisible_by_devices(monkeypatch):
    monkeypatch.setattr(jax, "device_count", lambda: 4)
    with pytest.raises(ValueError, match=r"Global batch size 30 is not divisible by the number of "
                                         r"devices \(4\) of the 'mesh' driver; choose a multiple of 4"):
        parallel.check_batch("mesh", 30)


def test_misspelt_config_key_on_the_command_line():
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", launch.config_path("vae_mnist.py"), flag_values=fv,
                                    lock_config=True)
    with pytest.raises(flags.UnrecognizedFlagError, match="config.lerning_rate"):
        fv(["prog", "--config.lerning_rate=0.1"])


def test_missing_and_foreign_inception_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Inception weights not found.*domain classifier"):
        inception.load_variables(str(tmp_path / "missing.npz"))
    np.savez(tmp_path / "other.npz", **{inception.SOURCE_KEY: np.array("0123abcd")}, w=np.zeros(3))
    with pytest.raises(ValueError, match=r"not converted from .*'0123abcd'.*'6726825d'"):
        inception.load_variables(str(tmp_path / "other.npz"))


def test_spectral_filter_that_matches_nothing():
    params = {"Dense_0": {"kernel": np.ones((3, 2), np.float32), "bias": np.zeros(2, np.float32)}}
    with pytest.raises(ValueError, match="the filter selected no parameters"):
        spectral.init(params, jax.random.key(0), filter=lambda path, leaf: False)


@pytest.mark.parametrize("images,pattern", [
    (np.zeros((4, 32, 32, 3), np.float32), r"takes \[N, 28, 28, 1\] images, got \(4, 32, 32, 3\)"),
    (np.full((4, 28, 28, 1), 255.0, np.float32), r"\[0, 1\]"),
], ids=["wrong shape", "wrong range"])
def test_evaluator_refuses_foreign_samples(images, pattern):
    with pytest.raises(ValueError, match=pattern):
        domain.check_images(images)


def test_fid_with_fewer_samples_than_feature_dimensions_warns(caplog):
    # Documented choice: warn, not refuse (the value is finite but biased upwards).
    from genjax.metrics import fid

    rng = np.random.default_rng(0)
    value = fid(rng.normal(size=(40, 64)), rng.normal(size=(500, 64)))
    assert np.isfinite(value)
    assert "the first set has 40 samples for 64 feature dimensions" in caplog.text


def test_no_code_path_unpickles_a_file():
    import glob
    import os
    import re

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for path in glob.glob(f"{root}/genjax/**/*.py", recursive=True) + glob.glob(
            f"{root}/experiments/**/*.py", recursive=True):
        source = open(path).read()
        assert not re.search(r"^\s*(import pickle|from pickle|import dill)", source, re.M), path
        for call in re.findall(r"np\.load\([^)]*\)", source):
            assert "allow_pickle=False" in call, (path, call)
        for call in re.findall(r"torch\.load\([^)]*\)", source):
            assert "weights_only=True" in call, (path, call)


def _launch(*args, cwd=None):
    """(exit status, stderr lines) of ``python *args`` run as a user runs it."""
    import sys

    from conftest import run_command, stderr_lines

    done = run_command([sys.executable, *args], cwd=cwd)
    return done.returncode, stderr_lines(done)


@pytest.mark.parametrize("args,pattern", [
    (["--config.learning_rat=1e-3"], r"^error: ConfigError: config has no field 'learning_rat'. "
                                      r"Did you mean \"learning_rate\""),
    (["--config=no/such/config.py"], r"^error: ConfigError: config file not found: no/such/config.py"),
    (["--config={bad}"], r"^error: ConfigError: config file .*bad_config.py does not parse: .*line 1"),
    (["--config.num_steps=many"], r"^error: IllegalFlagValueError: flag --config.num_steps=many"),
    (["--config.population.latent_dim=8,16"], r"^error: ConfigError: config.population.latent_dim: "
     r"the members of a population may differ only in learning_rate, .* \(and seeds\); every "
     r"other field is structural"),
], ids=["misspelt field", "missing config file", "config syntax error", "wrong type",
        "population field on the command line"])
def test_launcher_reports_a_bad_command_in_one_line(args, pattern, tmp_path):
    (tmp_path / "bad_config.py").write_text("def get_config(:\n")
    args = [a.format(bad=tmp_path / "bad_config.py") for a in args]
    if not any(a.startswith("--config=") for a in args):
        args.insert(0, "--config=vae_mnist:test")
    code, lines = _launch("-m", "experiments.vae", f"--workdir={tmp_path / 'run'}", *args)
    assert code == 1 and len(lines) == 1, lines
    assert re.search(pattern, lines[0]), lines[0]


def test_launcher_reports_a_refused_config_in_one_line(data_dir, tmp_path):
    code, lines = _launch("-m", "experiments.vae", "--config=vae_mnist:test",
                          f"--workdir={tmp_path}", f"--config.data_dir={data_dir}",
                          "--config.dataset=mnist6k")
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith("error: DatasetUnavailableError: Unknown dataset 'mnist6k'")


def _evaluator_workdir(tmp_path, data_dir, config_text=None):
    run = tmp_path / "run"
    run.mkdir()
    c = VAE.get_config("test")
    c.data_dir = data_dir
    (run / "config.json").write_text(config_text or json.dumps(c.to_dict()))
    return str(run)


def test_evaluator_bad_inputs_name_the_file(data_dir, tmp_path):
    from genjax.cli import evaluate as evaluate_cli
    from genjax.record import RecordError

    with pytest.raises(RecordError, match=r"run/config.json is not valid JSON \(Expecting"):
        evaluate_cli.evaluate_run(_evaluator_workdir(tmp_path, data_dir, "{garbage"), 100)
    run = _evaluator_workdir(tmp_path / "run", data_dir)
    (tmp_path / "not_a_zip.npz").write_text("hello")
    with pytest.raises(ValueError, match=r"not_a_zip.npz is not a converted Inception .npz"):
        evaluate_cli.evaluate_run(run, 100, extractor="inception",
                                  inception_weights=str(tmp_path / "not_a_zip.npz"))
    with pytest.raises(PermissionError, match=r"--save_samples=.*no/such/dir/s.npy: cannot write"):
        evaluate_cli.evaluate_run(run, 100, save_samples=str(tmp_path / "no/such/dir/s.npy"))
    with pytest.raises(ValueError, match=r"--sampler applies to diffusion runs; this run is task"):
        evaluate_cli.evaluate_run(run, 100, sampling={"sampler": "ddim"})


def test_a_truncated_tfrecord_names_the_dataset_folder(data_dir, tmp_path):
    import glob
    import shutil

    from genjax import data
    from genjax.data import DatasetDamagedError

    shutil.copytree(data_dir, tmp_path / "tfds")
    (train,) = glob.glob(f"{tmp_path}/tfds/mnist5k/*/mnist5k-train.tfrecord*")
    with open(train, "r+b") as f:
        f.truncate(f.seek(0, 2) // 2)
    spec = data.DataSpec(data_dir=str(tmp_path / "tfds"))
    with pytest.raises(DatasetDamagedError, match=r"Dataset 'mnist5k' in .*tfds/mnist5k/.* is "
                                                 r"damaged .*Re-prepare it"):
        next(data.train_iterator(spec, "train", global_batch_size=32))


def test_a_train_step_refuses_integer_images(data_dir):
    from genjax.tasks import TASKS

    c = VAE.get_config("test")
    task = TASKS["vae"](c, (28, 28, 1))
    state = task.init(jax.random.key(0))
    batch = {"image": np.full((32, 28, 28, 1), 255, np.uint8), "label": np.zeros(32, np.int32)}
    with pytest.raises(TypeError, match=r"batch\['image'\] must be floating point .* got uint8"):
        jax.jit(task.train_step)(state, batch)


def test_non_finite_images_and_features_are_refused():
    from genjax.metrics import fid

    with pytest.raises(ValueError, match=r"finite images; 784 of 784 values are NaN"):
        domain.check_images(np.full((1, 28, 28, 1), np.nan, np.float32))
    features = np.random.default_rng(0).normal(size=(100, 8))
    with pytest.raises(ValueError, match=r"Features hold NaN or Inf \(1 of 100 rows\)"):
        fid(np.where(np.arange(100)[:, None] == 7, np.nan, features), features)


def test_launcher_refuses_an_image_size_the_generator_cannot_make_before_writing(data_dir,
                                                                                 tmp_path):
    workdir = tmp_path / "run"
    code, lines = _launch("-m", "experiments.gan",
                          "--config=dcgan_mnist:test",
                          f"--workdir={workdir}", f"--config.data_dir={data_dir}",
                          "--config.image_size=30")
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith("error: ValueError: config.image_size=30 gives images of shape "
                               "(30, 30, 1), but generator 'conv' takes "), lines[0]
    assert not workdir.exists() or not any(workdir.iterdir()), list(workdir.iterdir())


_CONFIG_FILES = sorted(f for f in os.listdir(launch.CONFIG_DIR)
                       if f.endswith(".py") and f not in ("common.py", "__init__.py"))
# A value of the field's type for a field whose value is None (a typed placeholder).
_SAMPLE_VALUES = {int: 32, float: 0.5, str: "unit", bool: True, tuple: (0.5, 0.25)}


def _leaves(config, prefix=""):
    """(dotted path, value, declared type) of every leaf field of a ConfigDict."""
    for key, value in config.items():
        if hasattr(value, "items"):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value, config.get_type(key)


def _command_line(value) -> str:
    """``value`` as a user types it after ``--config.<field>=`` (a tuple as ``(16,)``)."""
    if isinstance(value, tuple):
        return "(" + ",".join(map(str, value)) + ("," if len(value) == 1 else "") + ")"
    return repr(value) if isinstance(value, float) else str(value)


@pytest.mark.parametrize("name", _CONFIG_FILES)
def test_every_config_field_can_be_set_on_the_command_line(name):
    import importlib

    for variant in ("", "test"):
        path = launch.config_path(name) + (f":{variant}" if variant else "")
        config = importlib.import_module(f"genjax.configs.{name[:-3]}").get_config(variant)
        want = {p: _SAMPLE_VALUES[t] if v is None else v for p, v, t in _leaves(config)}
        argv = ["prog", f"--config={path}",
                *(f"--config.{p}={_command_line(v)}" for p, v in want.items())]
        fv = flags.FlagValues()
        config_flags.DEFINE_config_file("config", path, flag_values=fv, lock_config=True,
                                        sys_argv=argv)
        fv(argv)
        got = {p: v for p, v, _ in _leaves(fv.config)}
        for p, v in want.items():
            assert fv[f"config.{p}"].present, (path, p)
            assert got[p] == v and type(got[p]) is type(v), (path, p, got[p], v)


def test_a_config_file_without_get_config_is_named_in_one_line(tmp_path):
    (tmp_path / "no_get_config.py").write_text("def make_config():\n    return None\n")
    (tmp_path / "returns_none.py").write_text("def get_config(variant=''):\n    pass\n")
    code, lines = _launch("-m", "experiments.vae", f"--config={tmp_path}/no_get_config.py:test",
                          f"--workdir={tmp_path / 'run'}")
    assert code == 1 and len(lines) == 1, lines
    assert re.search(rf"^error: ConfigError: config file {tmp_path}/no_get_config.py has no "
                     rf"get_config\(\); a config file defines get_config\(variant", lines[0]), lines
    code, lines = _launch("-m", "experiments.vae", f"--config={tmp_path}/returns_none.py",
                          f"--workdir={tmp_path / 'run'}")
    # ml_collections' own warning ("did you forget a return statement?") comes first
    assert code == 1 and not any("Traceback" in line for line in lines), lines
    assert re.search(rf"^error: ConfigError: config file {tmp_path}/returns_none.py: "
                     r"get_config\(\) returned None", lines[-1]), lines
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args", [
    ["-m", "experiments.vae", "--config=vae_mnist:test"],
    ["-m", "experiments.evaluate"],
], ids=["trainer", "evaluator"])
def test_a_stray_argument_is_one_line_not_the_usage(args, tmp_path):
    code, lines = _launch(*args, f"--workdir={tmp_path / 'run'}", "extra")
    assert code == 1 and len(lines) == 1, lines
    assert re.search(r"^error: UsageError: Unexpected arguments: \['extra'\]\. Every argument "
                     r"must be a --flag=value", lines[0]), lines[0]
    assert not (tmp_path / "run").exists()


def test_an_unreachable_download_host_fails_in_seconds_and_leaves_nothing(tmp_path, monkeypatch):
    import time

    from genjax import data
    from genjax.data import network

    # Every download goes through a proxy on a closed local port: refused at once, so the
    # outcome does not depend on this machine's network, and no packet leaves it.
    for var in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    probed, probe = [], network.unreachable

    def spy(hosts, *args, **kwargs):
        probed.append(list(hosts))
        return probe(probed[-1], *args, **kwargs)

    monkeypatch.setattr(network, "unreachable", spy)
    start = time.monotonic()
    with pytest.raises(DatasetUnavailableError,
                       match=r"Dataset 'mnist' could not be downloaded \(127\.0\.0\.1:9 is not "
                             r"reachable .*offline dataset 'mnist5k' \(--config.dataset=mnist5k\)"):
        data.get_builder(data.DataSpec(name="mnist", data_dir=str(tmp_path)))
    assert time.monotonic() - start < 30
    assert probed == [[("127.0.0.1", 9)]]  # the probe ran, on the proxy of MNIST's URLs
    assert os.listdir(tmp_path) == []  # tfds never started: no downloads/, no mnist/incomplete.*


def test_a_failed_download_removes_the_partial_files_it_made(tmp_path, monkeypatch):
    from genjax import data

    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "kept.tar.gz").write_text("an earlier download")

    def half_a_download(self, *args, **kwargs):  # what tfds leaves when a download breaks
        (tmp_path / "downloads" / "mnist").mkdir()
        (tmp_path / "downloads" / "mnist" / "train.gz.tmp.0123").write_text("")
        (tmp_path / "downloads" / "extracted").mkdir()
        (tmp_path / "mnist" / "incomplete.AB12_3.0.1").mkdir(parents=True)
        raise ConnectionError("Connection reset by peer")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", half_a_download)
    with pytest.raises(DatasetUnavailableError, match=r"could not be downloaded \(ConnectionError: "
                                                      r"Connection reset by peer\).*mnist5k"):
        data.get_builder(data.DataSpec(name="mnist", data_dir=str(tmp_path)))
    left = sorted(os.path.relpath(os.path.join(d, f), tmp_path)
                  for d, dirs, files in os.walk(tmp_path) for f in dirs + files)
    assert left == ["downloads", "downloads/kept.tar.gz"], left


@pytest.mark.parametrize("temperature", [1e30, 10.5, 0.0, -1.0, float("nan")])
def test_evaluator_refuses_a_temperature_out_of_range_before_sampling(temperature, data_dir,
                                                                     tmp_path):
    from genjax.cli import evaluate as evaluate_cli

    config = FLOW.get_config("test")
    config.data_dir = data_dir
    run = _evaluator_workdir(tmp_path, data_dir, json.dumps(config.to_dict()))
    _COMPILES.clear()
    with pytest.raises(ValueError, match=r"^--temperature must be in \(0, 10\] \(the latent's "
                                         r"scale T, .*got " + re.escape(repr(temperature))):
        evaluate_cli.evaluate_run(run, 100, sampling={"temperature": temperature})
    assert not _COMPILES


def test_the_docs_table_lists_every_config_case():
    """docs/reliability.md's table of bad inputs has a row per config case: its id, in
    backticks, as the first cell (`| `<id>` | <where> | <message> |`)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "docs", "reliability.md")) as f:
        doc = f.read()
    missing = [case[0] for case in CONFIG_CASES if f"| `{case[0]}` |" not in doc]
    assert not missing, f"docs/reliability.md's table of bad inputs lacks {missing}"
