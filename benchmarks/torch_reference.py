"""PyTorch implementations of the textbook models and train steps, eager and with
``torch.compile``, for side-by-side throughput in `benchmarks.throughput` (only where ``torch`` is installed:
``pip install torch==2.13.0``; genjax itself never imports it).

Same architectures, objectives and optimizers as the genjax configs
(`genjax/configs`), BatchNorm in training mode. Three GAN step structures, as genjax's
``gan_update``:

* ``update="shared"`` (the default, what a PyTorch user writes; pytorch/examples'
  DCGAN): with one critic update per step, ``fake = G(z)`` once; D learns on real and
  ``fake.detach()``, then G learns through the same ``fake`` against the updated D.
* ``update="alternating"``: each discriminator update scores fresh generator samples
  drawn without gradients and the generator update draws its own (genjax's default step).
* ``update="simultaneous"`` (the TensorFlow tutorial's step): one ``fake = G(z)``, D
  scores real and fake once, each loss's gradient from those scores, both applied.

With ``n_critic`` > 1 (WGAN-GP) both are the usual pattern of the public PyTorch
implementations: ``n_critic`` critic updates on fresh real batches and fresh detached
fakes with the penalty's double backward, then a generator update on fresh noise. The
discriminator's parameters are frozen (``requires_grad_(False)``) during the generator
update, as a careful PyTorch user would write it.
"""

from __future__ import annotations

import math
import os
import time

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.peer_timing import timed_row

torch.set_num_threads(os.cpu_count() or 1)

_SUPPORTED = ("vae_mnist", "gan_mlp_mnist", "dcgan_mnist", "lsgan_mnist", "wgan_gp_mnist",
              "ddpm_mnist", "ddpm_mnist_cond", "gated_pixelcnn_mnist", "gated_pixelcnn_cond_mnist",
              "pixelcnn_pp_mnist", "realnvp_mnist", "maf_mnist", "row_lstm_mnist",
              "diagonal_bilstm_mnist", "pixel_transformer_mnist")


def version() -> str:
    return torch.__version__


def supports(config_name: str) -> bool:
    """Whether this module has the config's models (SNGAN's is not ported)."""
    return config_name in _SUPPORTED


def matmul_gflops(size: int) -> float:
    """GFLOP/s of the fastest of 5 float32 [size, size] matmuls."""
    a = torch.randn(size, size)
    a @ a
    best = min(_time(lambda: a @ a) for _ in range(5))
    return round(2 * size**3 / best / 1e9, 1)


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class VAE(nn.Module):
    """784-400-(2 x 20) encoder, 20-400-784 Bernoulli decoder (genjax vae_mnist)."""

    def __init__(self, hidden: int = 400, latent: int = 20):
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent))
        self.dec = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, 784))

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        mean, logvar = self.enc(x).chunk(2, dim=1)
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
        rec = F.binary_cross_entropy_with_logits(self.dec(z), x, reduction="none").sum(1)
        kl = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).sum(1)
        return (rec + kl).mean()


def mlp_generator(latent: int) -> nn.Module:
    layers, width = [], latent
    for w in (256, 512, 1024):
        layers += [nn.Linear(width, w), nn.LeakyReLU(0.2)]
        width = w
    return nn.Sequential(*layers, nn.Linear(width, 784), nn.Tanh(), nn.Unflatten(1, (1, 28, 28)))


def mlp_discriminator() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.LeakyReLU(0.2), nn.Linear(512, 256),
                         nn.LeakyReLU(0.2), nn.Linear(256, 1))


def conv_generator(latent: int) -> nn.Module:
    """Dense -> 7x7x128 -> ConvT 128 s2 -> BN -> LReLU -> ConvT 64 s2 -> BN -> LReLU -> 4x4
    stride-1 'same' -> tanh (a stride-1 transposed conv is a conv: same FLOPs)."""
    bn = lambda c: nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)
    return nn.Sequential(
        nn.Linear(latent, 7 * 7 * 128), nn.Unflatten(1, (128, 7, 7)),
        nn.ConvTranspose2d(128, 128, 4, 2, 1, bias=False), bn(128), nn.LeakyReLU(0.2),
        nn.ConvTranspose2d(128, 64, 4, 2, 1, bias=False), bn(64), nn.LeakyReLU(0.2),
        nn.Conv2d(64, 1, 4, padding="same"), nn.Tanh())


def conv_discriminator() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 64, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(64, 128, 4, 2, 1),
                         nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(7 * 7 * 128, 1))


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """cos and sin of t at frequencies max_period^(-i / (dim/2)) (genjax.nn.diffusion)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv + projected time embedding, GroupNorm-SiLU-conv, 1x1 skip when
    widths differ (genjax.nn.diffusion.ResBlock)."""

    def __init__(self, cin: int, cout: int, emb_dim: int, groups: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cout)
        self.norm2, self.conv2 = nn.GroupNorm(groups, cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x))) + self.emb(F.silu(emb))[:, :, None, None]
        return self.skip(x) + self.conv2(F.silu(self.norm2(h)))


class Attention(nn.Module):
    """Single-head self-attention over the pixels, with a residual."""

    def __init__(self, c: int, groups: int):
        super().__init__()
        self.norm, self.qkv, self.out = nn.GroupNorm(groups, c), nn.Linear(c, 3 * c), nn.Linear(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x).flatten(2).transpose(1, 2)).chunk(3, dim=2)
        out = self.out(F.scaled_dot_product_attention(q, k, v))
        return x + out.transpose(1, 2).reshape(b, c, h, w)


class UNet(nn.Module):
    """genjax.nn.diffusion.UNet layer for layer, in NCHW: the same function of the same
    parameters (``tests/test_diffusion.py`` loads genjax's into it and compares outputs),
    its layers registered in the order genjax creates them."""

    def __init__(self, channels: int, mult, num_res_blocks: int, attention: bool,
                 num_classes: int, groups: int, image_channels: int = 1):
        super().__init__()
        self.channels, emb_dim = channels, 4 * channels
        self.time = nn.Sequential(nn.Linear(channels, emb_dim), nn.SiLU(),
                                  nn.Linear(emb_dim, emb_dim))
        self.label = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None
        self.stem = nn.Conv2d(image_channels, channels, 3, padding=1)
        last, widths, c = len(mult) - 1, [channels], channels
        self.down = nn.ModuleList()
        for level, m in enumerate(mult):
            for _ in range(num_res_blocks):
                self.down.append(ResBlock(c, channels * m, emb_dim, groups))
                c = channels * m
                if attention and level == last:
                    self.down.append(Attention(c, groups))
                widths.append(c)
            if level != last:
                # Flax's SAME padding of a stride-2 conv on an even size: one row/column after
                self.down.append(nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)),
                                               nn.Conv2d(c, c, 3, stride=2)))
                widths.append(c)
        self.mid = nn.ModuleList([ResBlock(c, c, emb_dim, groups)]
                                 + ([Attention(c, groups)] if attention else [])
                                 + [ResBlock(c, c, emb_dim, groups)])
        self.up = nn.ModuleList()
        for level in reversed(range(len(mult))):
            for _ in range(num_res_blocks + 1):
                self.up.append(ResBlock(c + widths.pop(), channels * mult[level], emb_dim, groups))
                c = channels * mult[level]
                if attention and level == last:
                    self.up.append(Attention(c, groups))
            if level != 0:
                self.up.append(nn.Upsample(scale_factor=2, mode="nearest"))
                self.up.append(nn.Conv2d(c, c, 3, padding=1))
        self.head = nn.Sequential(nn.GroupNorm(groups, c), nn.SiLU(),
                                  nn.Conv2d(c, image_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None):
        emb = self.time(timestep_embedding(t, self.channels))
        if self.label is not None:
            emb = emb + self.label(labels)
        h = self.stem(x)
        skips = [h]
        for layer in self.down:  # a block's output (after its attention) is a skip
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
            if isinstance(layer, Attention):
                skips[-1] = h
            else:
                skips.append(h)
        for layer in self.mid:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        for layer in self.up:
            if isinstance(layer, ResBlock):
                h = layer(torch.cat([h, skips.pop()], dim=1), emb)
            elif isinstance(layer, nn.Upsample):
                h = layer(h)[:, :, :skips[-1].shape[2], :skips[-1].shape[3]]
            else:
                h = layer(h)
        return self.head(h)


class GatedPixelCNN(nn.Module):
    """genjax's `GatedPixelCNN` in PyTorch, layer for layer (NCHW; 1x1 convolutions for
    its dense layers): vertical (k//2 + 1) x k and horizontal 1 x (k//2 + 1) convolutions
    padded on the top and left, the vertical stack linked one row down, gated units,
    residual and skip connections, per-layer class biases."""

    def __init__(self, outputs: int, features: int, num_layers: int, head: int,
                 num_classes: int = 0, channels: int = 1):
        super().__init__()
        p, self.sizes = features, [7] + [3] * (num_layers - 1)
        ins = [channels] + [p] * (num_layers - 1)
        self.vertical = nn.ModuleList(nn.Conv2d(c, 2 * p, (k // 2 + 1, k))
                                      for c, k in zip(ins, self.sizes))
        self.horizontal = nn.ModuleList(nn.Conv2d(c, 2 * p, (1, k // 2 + 1))
                                        for c, k in zip(ins, self.sizes))
        self.links = nn.ModuleList(nn.Conv2d(2 * p, 2 * p, 1) for _ in self.sizes)
        self.residuals = nn.ModuleList(nn.Conv2d(p, p, 1) for _ in self.sizes)
        self.skips = nn.ModuleList(nn.Conv2d(p, head, 1) for _ in self.sizes)
        classes = self.sizes if num_classes else []
        self.v_classes = nn.ModuleList(nn.Embedding(num_classes, 2 * p) for _ in classes)
        self.h_classes = nn.ModuleList(nn.Embedding(num_classes, 2 * p) for _ in classes)
        self.last, self.hidden = nn.Conv2d(p, head, 1), nn.Conv2d(head, head, 1)
        self.out = nn.Conv2d(head, outputs, 1)

    @staticmethod
    def _gate(x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return torch.tanh(a) * torch.sigmoid(b)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        v, h, skip = x, x, 0.0
        for i, k in enumerate(self.sizes):
            cls = ((self.v_classes[i](labels)[:, :, None, None],
                    self.h_classes[i](labels)[:, :, None, None]) if len(self.v_classes) else (0, 0))
            pre = self.vertical[i](F.pad(v, (k // 2, k // 2, k // 2, 0)))
            link = self.links[i](F.pad(pre, (0, 0, 1, 0))[:, :, :-1])
            v = self._gate(pre + cls[0])
            h_in = F.pad(h, (1, 0))[:, :, :, :-1] if i == 0 else h
            gated = self._gate(self.horizontal[i](F.pad(h_in, (k // 2, 0))) + link + cls[1])
            h = self.residuals[i](gated) + (h if i else 0.0)
            skip = skip + self.skips[i](gated)
        return self.out(F.relu(self.hidden(F.relu(skip + self.last(h)))))


class _ShiftedConv(nn.Module):
    """genjax's `pixelcnn.ShiftedConv`: a convolution padded so that it looks only up and,
    with ``right``, left (zero padding on the top and the sides)."""

    def __init__(self, ins: int, outs: int, size: tuple[int, int], right: bool = False):
        super().__init__()
        kh, kw = size
        self.pad = (kw - 1, 0, kh - 1, 0) if right else (kw // 2, (kw - 1) // 2, kh - 1, 0)
        self.conv = nn.Conv2d(ins, outs, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, self.pad))


def _lstm_cell(pre: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """genjax's `pixelrnn.lstm_cell` on channels-first gates [B, 4F, ...]."""
    o, f, i, g = pre.chunk(4, dim=1)
    c = torch.sigmoid(f + 1.0) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _skew(x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, H, W + H - 1], row i moved i columns right."""
    b, c, h, w = x.shape
    flat = F.pad(x, (0, h)).reshape(b, c, h * (w + h))
    return flat[:, :, :h * (w + h - 1)].reshape(b, c, h, w + h - 1)


def _unskew(x: torch.Tensor, width: int) -> torch.Tensor:
    b, c, h, _ = x.shape
    flat = F.pad(x.reshape(b, c, h * (width + h - 1)), (0, h))
    return flat.reshape(b, c, h, width + h)[:, :, :, :width]


class PixelRNN(nn.Module):
    """genjax's `PixelRNN` in PyTorch, layer for layer, as a PyTorch user writes a
    convolutional LSTM (``nn.LSTM`` has no convolutional state-to-state step): a Python
    loop over the rows (Row LSTM: a width-3 ``Conv1d`` of the row above's state) or over
    the skewed image's diagonals (Diagonal BiLSTM: a 2 x 1 ``Conv1d`` along the diagonal,
    the right-to-left LSTM on the mirrored image, moved one row down), a 7x7 type-A masked
    first convolution, residual 1x1 layers and the 1x1 head."""

    def __init__(self, kind: str, outputs: int, features: int, num_layers: int, head: int,
                 channels: int = 1):
        super().__init__()
        f, self.kind, row = features, kind, kind == "row_lstm"
        self.first = nn.Conv2d(channels, 2 * f, 7, padding=3)
        mask = torch.zeros(7, 7)
        mask[:3], mask[3, :3] = 1.0, 1.0
        self.register_buffer("mask", mask)
        self.directions = ("fwd",) if row else ("fwd", "bwd")
        gate = (lambda: nn.Conv2d(2 * f, 4 * f, (1, 2))) if row else (lambda: nn.Conv2d(2 * f, 4 * f, 1))
        taps = 3 if row else 2
        self.to_gates = nn.ModuleDict({d: nn.ModuleList(gate() for _ in range(num_layers))
                                       for d in self.directions})
        self.states = nn.ModuleDict({d: nn.ModuleList(nn.Conv1d(f, 4 * f, taps, bias=False)
                                                      for _ in range(num_layers))
                                     for d in self.directions})
        self.pixel_gates = None if row else nn.Conv2d(channels, 4 * f, 1)
        self.residuals = nn.ModuleList(nn.Conv2d(f, 2 * f, 1) for _ in range(num_layers))
        self.hidden, self.out = nn.Conv2d(2 * f, head, 1), nn.Conv2d(head, outputs, 1)
        self.features = f

    def _row_lstm(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        gates = self.to_gates["fwd"][layer](F.pad(x, (1, 0)))
        state = self.states["fwd"][layer]
        b, _, h, w = gates.shape
        hid = c = gates.new_zeros(b, self.features, w)
        rows = []
        for i in range(h):
            hid, c = _lstm_cell(gates[:, :, i] + state(F.pad(hid, (1, 1))), c)
            rows.append(hid)
        return torch.stack(rows, dim=2)

    def _diagonal_lstm(self, d: str, layer: int, x: torch.Tensor, pixels) -> torch.Tensor:
        width = x.shape[3]
        if d == "bwd":
            x, pixels = x.flip(3), None if pixels is None else pixels.flip(3)
        gates = self.to_gates[d][layer](x)
        if pixels is not None:
            gates = gates + self.pixel_gates(pixels)
        gates = _skew(gates)
        valid = _skew(torch.ones_like(x[:1, :1]))[0, 0]  # [H, H + W - 1]
        state = self.states[d][layer]
        b, _, h, cols = gates.shape
        hid = c = gates.new_zeros(b, self.features, h)
        out = []
        for k in range(cols):
            hid, c = _lstm_cell(gates[:, :, :, k] + state(F.pad(hid, (1, 0))), c)
            hid, c = hid * valid[:, k], c * valid[:, k]
            out.append(hid)
        result = _unskew(torch.stack(out, dim=3), width)
        return result.flip(3) if d == "bwd" else result

    def forward(self, image: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = F.conv2d(image, self.first.weight * self.mask, self.first.bias, padding=3)
        for i in range(len(self.residuals)):
            if self.kind == "row_lstm":
                hid = self._row_lstm(i, x)
            else:
                bwd = self._diagonal_lstm("bwd", i, x, image if i == 0 else None)
                hid = self._diagonal_lstm("fwd", i, x, None) + F.pad(bwd, (0, 0, 1, 0))[:, :, :-1]
            x = x + self.residuals[i](hid)
        return self.out(F.relu(self.hidden(F.relu(x))))


class PixelTransformer(nn.Module):
    """genjax's `PixelTransformer` in PyTorch from ``nn.TransformerEncoderLayer`` blocks
    (pre-norm, GELU with the tanh approximation, no dropout, LayerNorm epsilon 1e-6 as
    Flax's) under a causal mask: position p fed pixel p - 1 (a learned start vector at
    p = 0) plus its learned position embedding; a final LayerNorm and a linear head."""

    def __init__(self, outputs: int, features: int, num_layers: int, num_heads: int,
                 mlp_ratio: int, positions: int, channels: int = 1):
        super().__init__()
        self.pixel_embed = nn.Linear(channels, features)
        self.start = nn.Parameter(torch.randn(features) * 0.02)
        self.positions = nn.Parameter(torch.randn(positions, features) * 0.02)
        gelu = lambda t: F.gelu(t, approximate="tanh")
        self.blocks = nn.ModuleList(nn.TransformerEncoderLayer(
            features, num_heads, mlp_ratio * features, dropout=0.0, activation=gelu,
            layer_norm_eps=1e-6, batch_first=True, norm_first=True) for _ in range(num_layers))
        self.norm, self.out = nn.LayerNorm(features, eps=1e-6), nn.Linear(features, outputs)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        seq = x.permute(0, 2, 3, 1).reshape(b, h * w, c)
        tokens = torch.cat([self.start.expand(b, 1, -1), self.pixel_embed(seq[:, :-1])], 1)
        tokens = tokens + self.positions
        mask = nn.Transformer.generate_square_subsequent_mask(h * w)
        for block in self.blocks:
            tokens = block(tokens, src_mask=mask, is_causal=True)
        out = self.out(self.norm(tokens))
        return out.reshape(b, h, w, -1).permute(0, 3, 1, 2)


def _concat_elu(x: torch.Tensor) -> torch.Tensor:
    return F.elu(torch.cat([x, -x], dim=1))


class _GatedResnet(nn.Module):
    """genjax's `pixelcnn.GatedResnet`: x + a * sigmoid(b) from two shifted convolutions
    of concat_elu, a 1x1 of the auxiliary input, a per-class bias."""

    def __init__(self, c: int, right: bool, aux: int, num_classes: int):
        super().__init__()
        size = (2, 2) if right else (2, 3)
        self.conv0 = _ShiftedConv(2 * c, c, size, right)
        self.conv1 = _ShiftedConv(2 * c, 2 * c, size, right)
        self.dense = nn.Conv2d(2 * aux, c, 1) if aux else None
        self.embed = nn.Embedding(num_classes, 2 * c) if num_classes else None

    def forward(self, x, aux, labels):
        y = self.conv0(_concat_elu(x))
        if self.dense is not None:
            y = y + self.dense(_concat_elu(aux))
        y = self.conv1(_concat_elu(y))
        if self.embed is not None:
            y = y + self.embed(labels)[:, :, None, None]
        a, b = y.chunk(2, dim=1)
        return x + a * torch.sigmoid(b)


class PixelCNNPP(nn.Module):
    """genjax's `PixelCNNPP` in PyTorch, block for block (NCHW): the down stream u and the
    down-right stream ul of gated residual blocks, ul taking u (and on the way back the
    matching ul of the way down) as its auxiliary input."""

    def __init__(self, outputs: int, features: int, num_blocks: int, num_classes: int = 0,
                 channels: int = 1):
        super().__init__()
        f, n = features, num_blocks
        self.num_blocks = n
        self.u_first = _ShiftedConv(channels, f, (2, 3))
        self.ul_up = _ShiftedConv(channels, f, (1, 3))
        self.ul_left = _ShiftedConv(channels, f, (2, 1), right=True)
        self.u_blocks = nn.ModuleList(_GatedResnet(f, False, f if i >= n else 0, num_classes)
                                      for i in range(2 * n))
        self.ul_blocks = nn.ModuleList(_GatedResnet(f, True, 2 * f if i >= n else f, num_classes)
                                       for i in range(2 * n))
        self.out = nn.Conv2d(f, outputs, 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        n = self.num_blocks
        us = [F.pad(self.u_first(x), (0, 0, 1, 0))[:, :, :-1]]
        for i in range(2 * n):
            us.append(self.u_blocks[i](us[-1], us[2 * n - i] if i >= n else None, labels))
        ul = (self.ul_up(F.pad(x, (0, 0, 1, 0))[:, :, :-1])
              + F.pad(self.ul_left(x), (1, 0))[:, :, :, :-1])
        saved = [ul]
        for i in range(2 * n):
            aux = us[i + 1] if i < n else torch.cat([us[i + 1], saved[2 * n - i]], dim=1)
            ul = self.ul_blocks[i](ul, aux, labels)
            saved.append(ul)
        return self.out(F.elu(ul))


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    near = x > -math.log(2.0)
    return torch.where(near, torch.log(-torch.expm1(torch.where(near, x, -1.0))),
                       torch.log1p(-torch.exp(torch.where(near, -1.0, x))))


def logistic_mixture_log_prob(params: torch.Tensor, x: torch.Tensor, k: int) -> torch.Tensor:
    """genjax's `losses.pixelcnn.logistic_mixture_log_prob` for one channel (NCHW): log p
    per pixel [B, H, W] of 8-bit ``x`` [B, 1, H, W] in [-1, 1], edge bins open, the mass
    taken in the tail where it does not cancel."""
    logits, mean, log_scale = params.split(k, dim=1)
    log_scale, bin_ = log_scale.clamp(min=-7.0), 1.0 / 255.0
    inv = torch.exp(-log_scale)
    lo, hi = (x - bin_ - mean) * inv, (x + bin_ - mean) * inv
    cdf = F.logsigmoid
    upper = cdf(-lo) + _log1mexp(torch.clamp(cdf(-hi) - cdf(-lo), max=-1e-30))
    lower = cdf(hi) + _log1mexp(torch.clamp(cdf(lo) - cdf(hi), max=-1e-30))
    mass = torch.where(lo > 0, upper, lower)
    per = torch.where(x < -1.0 + bin_, cdf(hi), torch.where(x > 1.0 - bin_, cdf(-lo), mass))
    return torch.logsumexp(per + F.log_softmax(logits, dim=1), dim=1)


class _CouplingNet(nn.Module):
    """genjax's `flows.ConvNet`: 3x3 conv, residual blocks of two 3x3 convs, zero 3x3 output."""

    def __init__(self, cin: int, hidden: int, num_blocks: int, out: int):
        super().__init__()
        self.first = nn.Conv2d(cin, hidden, 3, padding=1)
        self.blocks = nn.ModuleList(nn.ModuleList([nn.Conv2d(hidden, hidden, 3, padding=1),
                                                   nn.Conv2d(hidden, hidden, 3, padding=1)])
                                    for _ in range(num_blocks))
        self.last = nn.Conv2d(hidden, out, 3, padding=1)
        nn.init.zeros_(self.last.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.first(x)
        for a, b in self.blocks:
            h = h + b(F.relu(a(F.relu(h))))
        return self.last(F.relu(h))


class RealNVP(nn.Module):
    """genjax's `flows.MultiScaleFlow` of kind 'realnvp' in PyTorch (NCHW), operation for
    operation from the same `genjax.nn.flows.plan`: logit, checkerboard and channel affine
    couplings with tanh-bounded scales, ActNorm, squeeze and split. ``forward`` returns
    log p(x~) per image."""

    def __init__(self, ops: list[tuple], hidden: int, num_blocks: int, alpha: float):
        super().__init__()
        self.ops, self.alpha = ops, alpha
        self.nets, self.scales, self.locs, self.log_scales = (nn.ModuleList(), nn.ParameterList(),
                                                              nn.ParameterList(), nn.ParameterList())
        for op in ops:
            if op[0] == "coupling":
                c = op[3]
                changed = c if op[1] == "checkerboard" else (c - c // 2 if op[2] == 0 else c // 2)
                cin = c + 1 if op[1] == "checkerboard" else c - changed
                self.nets.append(_CouplingNet(cin, hidden, num_blocks, 2 * changed))
                self.scales.append(nn.Parameter(torch.ones(changed, 1, 1)))
            elif op[0] == "actnorm":
                self.locs.append(nn.Parameter(torch.zeros(op[1], 1, 1)))
                self.log_scales.append(nn.Parameter(torch.zeros(op[1], 1, 1)))

    @staticmethod
    def _squeeze(x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 3, 5, 1, 2, 4)
        return x.reshape(b, 4 * c, h // 2, w // 2)

    def _coupling(self, x, op, k):
        c, parity = op[3], op[2]
        if op[1] == "checkerboard":
            i, j = torch.meshgrid(torch.arange(x.shape[2]), torch.arange(x.shape[3]), indexing="ij")
            b = ((i + j + parity) % 2 == 0).float()[None, None]
            raw, t = self.nets[k](torch.cat([x * b, b.expand(x.shape[0], 1, -1, -1)], 1)).chunk(2, 1)
            log_s, t = self.scales[k] * torch.tanh(raw) * (1 - b), t * (1 - b)
            return x * torch.exp(log_s) + t, log_s.flatten(1).sum(1)
        kept, changed = (x[:, :c // 2], x[:, c // 2:]) if parity == 0 else (x[:, c // 2:], x[:, :c // 2])
        raw, t = self.nets[k](kept).chunk(2, 1)
        log_s = self.scales[k] * torch.tanh(raw)
        changed = changed * torch.exp(log_s) + t
        return torch.cat([kept, changed] if parity == 0 else [changed, kept], 1), log_s.flatten(1).sum(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.alpha + (1 - 2 * self.alpha) * x
        log_det = (math.log1p(-2 * self.alpha) - torch.log(p) - torch.log1p(-p)).flatten(1).sum(1)
        x, zs, k, a = torch.log(p) - torch.log1p(-p), [], 0, 0
        for op in self.ops[1:]:
            if op[0] == "squeeze":
                x = self._squeeze(x)
            elif op[0] == "split":
                half = x.shape[1] // 2
                zs.append(x[:, half:].flatten(1))
                x = x[:, :half]
            elif op[0] == "actnorm":
                x = (x + self.locs[a]) * torch.exp(self.log_scales[a])
                log_det = log_det + x.shape[2] * x.shape[3] * self.log_scales[a].sum()
                a += 1
            else:
                x, ld = self._coupling(x, op, k)
                log_det, k = log_det + ld, k + 1
        z = torch.cat(zs + [x.flatten(1)], 1)
        return -0.5 * (z * z).sum(1) - 0.5 * z.shape[1] * math.log(2 * math.pi) + log_det


class MAF(nn.Module):
    """genjax's `maf.MAF` in PyTorch for one-channel images: logit, then per layer a
    scalar ActNorm and a MADE affine layer (masked linear layers with the same masks,
    `genjax.nn.maf.made_masks`, the order reversed every other layer). ``forward`` returns
    log p(x~) per image."""

    def __init__(self, dims: int, num_layers: int, hidden: int, num_blocks: int, alpha: float):
        from genjax.nn.maf import made_degrees, made_masks  # NumPy masks

        super().__init__()
        self.alpha = alpha
        self.made = nn.ModuleList()
        for k in range(num_layers):
            masks = made_masks(made_degrees(dims, hidden, num_blocks, k % 2 == 1), 2)
            linears = nn.ModuleList(nn.Linear(*m.shape) for m in masks)
            for lin, m in zip(linears, masks):
                lin.register_buffer("mask", torch.tensor(m.T.copy()))
            nn.init.zeros_(linears[-1].weight)
            nn.init.zeros_(linears[-1].bias)
            self.made.append(linears)
        self.scales = nn.Parameter(torch.ones(num_layers, dims))
        self.locs = nn.Parameter(torch.zeros(num_layers))
        self.log_scales = nn.Parameter(torch.zeros(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.alpha + (1 - 2 * self.alpha) * x
        log_det = (math.log1p(-2 * self.alpha) - torch.log(p) - torch.log1p(-p)).flatten(1).sum(1)
        x = (torch.log(p) - torch.log1p(-p)).flatten(1)
        for k, linears in enumerate(self.made):
            x = (x + self.locs[k]) * torch.exp(self.log_scales[k])
            h = x
            for lin in linears[:-1]:
                h = F.relu(F.linear(h, lin.weight * lin.mask, lin.bias))
            raw, t = F.linear(h, linears[-1].weight * linears[-1].mask, linears[-1].bias).chunk(2, 1)
            log_s = self.scales[k] * torch.tanh(raw)
            x = x * torch.exp(log_s) + t
            log_det = log_det + x.shape[1] * self.log_scales[k] + log_s.sum(1)
        return -0.5 * (x * x).sum(1) - 0.5 * x.shape[1] * math.log(2 * math.pi) + log_det


def _flow_step(config, wrap):
    """The flow's maximum-likelihood step a PyTorch user writes (RealNVP or MAF): fresh
    uniform dequantisation noise, -log p(x~) + D log 256 per image averaged, Adam with the
    gradient norm clipped."""
    from genjax.nn.flows import plan  # the same architecture list, pure Python

    if config.model == "maf":
        model = MAF(784, config.num_layers, config.width, config.num_blocks, config.alpha)
    elif config.model == "realnvp":
        model = RealNVP(plan((28, 28, 1), "realnvp", config.levels, config.num_layers),
                        config.width, config.num_blocks, config.alpha)
    else:
        raise ValueError("The PyTorch flow steps are RealNVP and MAF.")
    net = wrap(model)
    opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    params = list(model.parameters())
    b = config.batch_size
    x = torch.randint(0, 256, (b, 1, 28, 28)).float()

    def step():
        opt.zero_grad(set_to_none=True)
        log_p = net((x + torch.rand_like(x)) / 256)
        (-log_p.mean() + 784 * math.log(256)).backward()
        if config.clip_norm:
            torch.nn.utils.clip_grad_norm_(params, config.clip_norm)
        opt.step()

    return step


def _gan_losses(loss: str):
    """(d_loss(real_scores, fake_scores), g_loss(fake_scores)) as in genjax.losses.gan."""
    bce = F.binary_cross_entropy_with_logits
    if loss == "ns":
        return (lambda r, f: bce(r, torch.ones_like(r)) + bce(f, torch.zeros_like(f)),
                lambda f: bce(f, torch.ones_like(f)))
    if loss == "lsgan":
        return (lambda r, f: 0.5 * ((r - 1) ** 2).mean() + 0.5 * (f**2).mean(),
                lambda f: ((f - 1) ** 2).mean())
    if loss == "wgan":
        return lambda r, f: f.mean() - r.mean(), lambda f: -f.mean()
    raise ValueError(f"No PyTorch reference for loss {loss!r}.")


def make_step(config, update: str = "shared", compiled: bool = False):
    """(step() -> None, real examples per step) for ``config`` on a fixed random batch;
    ``compiled``: each network wrapped in ``torch.compile`` (the default inductor backend),
    the way a user speeds up a PyTorch step; with a gradient penalty only the generator,
    since compiled modules have no double backward. ``update``: a GAN step's algorithm,
    as genjax's ``gan_update`` (`_gan_step`)."""
    torch.manual_seed(0)
    b = config.batch_size
    if compiled:  # each row compiles afresh: dynamo's caches, shared by every model in the
        torch._dynamo.reset()  # process, would otherwise hit their limit and run eagerly
    wrap = torch.compile if compiled else (lambda m: m)
    if config.task == "vae":
        model = VAE(config.hidden[0], config.latent_dim)
        model.loss = wrap(model.loss)
        opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
        x = (torch.rand(b, 1, 28, 28) < 0.5).float()

        def vae_step():
            opt.zero_grad(set_to_none=True)
            model.loss(x).backward()
            opt.step()

        return vae_step, b
    if config.task == "diffusion":
        return _diffusion_step(config, wrap), b
    if config.task == "pixelcnn":
        return _pixelcnn_step(config, wrap), b
    if config.task == "flow":
        return _flow_step(config, wrap), b
    return _gan_step(config, wrap, update), b * config.n_critic


def _gan_step(config, wrap, update: str):
    """The GAN step in PyTorch: ``alternating``, n_critic critic updates on fakes drawn
    under ``no_grad``, then a generator update through fresh fakes; ``shared``
    (pytorch/examples' DCGAN, with n_critic 1), one ``fake = G(z)``: D learns on
    ``fake.detach()``, G through the same ``fake`` against the updated D;
    ``simultaneous`` (the TensorFlow tutorial's step), D scores real and fake once and
    both gradients come from those scores (``autograd.grad`` per loss), then both
    optimizers step."""
    b = config.batch_size
    if update != "alternating" and config.n_critic != 1:
        raise ValueError(f"The {update} update has one critic update per step.")
    conv = config.generator == "conv"
    gen = wrap(conv_generator(config.latent_dim) if conv else mlp_generator(config.latent_dim))
    disc = conv_discriminator() if conv else mlp_discriminator()
    # torch.compile has no double backward: the penalty's critic stays eager.
    disc = disc if config.gp_weight else wrap(disc)
    betas = (config.b1, config.b2)
    g_opt = torch.optim.Adam(gen.parameters(), lr=config.g_learning_rate, betas=betas)
    d_opt = torch.optim.Adam(disc.parameters(), lr=config.d_learning_rate, betas=betas)
    d_loss_fn, g_loss_fn = _gan_losses(config.loss)
    n_critic, gp = config.n_critic, config.gp_weight
    reals = torch.rand(n_critic, b, 1, 28, 28) * 2 - 1
    shared = update == "shared"

    def critic_update(real, fake):
        d_opt.zero_grad(set_to_none=True)
        loss = d_loss_fn(disc(real).squeeze(1), disc(fake).squeeze(1))
        if gp:
            eps = torch.rand(b, 1, 1, 1)
            mid = (eps * real + (1 - eps) * fake).requires_grad_(True)
            (grad,) = torch.autograd.grad(disc(mid).sum(), mid, create_graph=True)
            loss = loss + gp * ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
        loss.backward()
        d_opt.step()

    def gan_step():
        disc.requires_grad_(True)
        if shared:
            fake = gen(torch.randn(b, config.latent_dim))
            critic_update(reals[0], fake.detach())
        else:
            for i in range(n_critic):
                with torch.no_grad():
                    fake = gen(torch.randn(b, config.latent_dim))
                critic_update(reals[i], fake)
        disc.requires_grad_(False)
        g_opt.zero_grad(set_to_none=True)
        if not shared:
            fake = gen(torch.randn(b, config.latent_dim))
        g_loss_fn(disc(fake).squeeze(1)).backward()
        g_opt.step()

    def simultaneous_step():
        fake = gen(torch.randn(b, config.latent_dim))
        real_s, fake_s = disc(reals[0]).squeeze(1), disc(fake).squeeze(1)
        d_params, g_params = list(disc.parameters()), list(gen.parameters())
        d_grads = torch.autograd.grad(d_loss_fn(real_s, fake_s), d_params, retain_graph=True)
        g_grads = torch.autograd.grad(g_loss_fn(fake_s), g_params)
        for params, grads in ((d_params, d_grads), (g_params, g_grads)):
            for p, g in zip(params, grads):
                p.grad = g
        d_opt.step()
        g_opt.step()

    if update == "simultaneous" and gp:
        raise ValueError("No simultaneous PyTorch step with a gradient penalty.")
    if update == "simultaneous":  # two backward passes through one compiled graph
        torch._functorch.config.donated_buffer = False
    return simultaneous_step if update == "simultaneous" else gan_step


def _diffusion_step(config, wrap):
    """The ε-prediction DDPM step a PyTorch user writes (the diffusers training-script
    pattern): uniform t, q(x_t | x_0), MSE, Adam with the gradient norm clipped, then the
    EMA of the weights with one foreach lerp; label dropout for a conditional config."""
    if (config.schedule, config.prediction, config.loss_weighting) != ("linear", "eps", "none"):
        raise ValueError("The PyTorch diffusion step is ε-prediction, L_simple, linear schedule.")
    model = UNet(config.channels, tuple(config.channel_mult), config.num_res_blocks,
                 config.attention, config.num_classes, config.groups)
    net = wrap(model)
    opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    params = list(model.parameters())
    ema = [p.detach().clone() for p in params]
    T, b = config.timesteps, config.batch_size
    betas = torch.linspace(1e-4 * 1000 / T, 0.02 * 1000 / T, T, dtype=torch.float64)
    alpha_bar = torch.cumprod(1 - betas, 0).float()
    x0 = torch.rand(b, 1, 28, 28) * 2 - 1
    labels = torch.randint(0, max(config.num_classes, 1), (b,))

    def step():
        t = torch.randint(0, T, (b,))
        noise = torch.randn_like(x0)
        a = alpha_bar[t][:, None, None, None]
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        y = None
        if config.num_classes:
            y = torch.where(torch.rand(b) < config.label_dropout, config.num_classes, labels)
        opt.zero_grad(set_to_none=True)
        F.mse_loss(net(xt, t, y), noise).backward()
        if config.clip_norm:
            torch.nn.utils.clip_grad_norm_(params, config.clip_norm)
        opt.step()
        if config.ema_decay:
            with torch.no_grad():
                torch._foreach_lerp_(ema, params, 1 - config.ema_decay)

    return step


def _bernoulli_model(config) -> nn.Module:
    """The PyTorch network of an autoregressive config with Bernoulli pixels (28x28)."""
    if config.model == "gated":
        return GatedPixelCNN(1, config.features, config.num_layers, config.head, config.num_classes)
    if config.model == "transformer":
        return PixelTransformer(1, config.features, config.num_layers, config.num_heads,
                                config.mlp_ratio, 28 * 28)
    return PixelRNN(config.model, 1, config.features, config.num_layers, config.head)


def _pixelcnn_step(config, wrap):
    """The autoregressive step a PyTorch user writes: the Gated PixelCNN, a PixelRNN or the
    Transformer with the summed binary cross-entropy per image, or PixelCNN++ with the
    negative log-likelihood of the discretised logistic mixture per image, averaged; Adam
    with the gradient norm clipped."""
    kind = (config.model, config.likelihood)
    bernoulli = ("gated", "row_lstm", "diagonal_bilstm", "transformer")
    if kind not in [(m, "bernoulli") for m in bernoulli] + [("pixelcnn++", "logistic_mixture")]:
        raise ValueError("The PyTorch autoregressive steps are the Gated PixelCNN, the "
                         "PixelRNNs and the Transformer with Bernoulli pixels and PixelCNN++ "
                         "with the logistic mixture.")
    b, k = config.batch_size, config.num_classes
    if config.model in bernoulli:
        model = _bernoulli_model(config)
        x = (torch.rand(b, 1, 28, 28) < 0.5).float()
        nll = lambda out: F.binary_cross_entropy_with_logits(out, x, reduction="sum").div(b)
    else:
        model = PixelCNNPP(3 * config.num_mixtures, config.features, config.num_layers, k)
        x = torch.randint(0, 256, (b, 1, 28, 28)).float() * (2 / 255) - 1
        nll = lambda out: -logistic_mixture_log_prob(out, x, config.num_mixtures).sum() / b
    net = wrap(model)
    opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    params = list(model.parameters())
    labels = torch.randint(0, k, (b,)) if k else None

    def step():
        opt.zero_grad(set_to_none=True)
        nll(net(x, labels)).backward()
        if config.clip_norm:
            torch.nn.utils.clip_grad_norm_(params, config.clip_norm)
        opt.step()

    return step


def measure(name: str, config, seconds: float, windows: int, update: str = "shared",
            compiled: bool = False) -> dict:
    """The PyTorch row of `benchmarks.throughput` for config ``name`` (same windows and
    fields); ``compiled``: the networks wrapped in ``torch.compile`` (its first call
    compiles); ``update``: a GAN step's algorithm (`_gan_step`; with several critic
    updates, always alternating)."""
    gan = config.task == "gan"
    update = update if gan and config.n_critic == 1 else "alternating"
    step, n = make_step(config, update, compiled)
    variant = f", {update} update" if gan else ""
    mode = "eager" if not compiled else (
        "torch.compile (G only: no double backward)" if config.get("gp_weight") else "torch.compile")
    return {"framework": f"torch {torch.__version__} {mode}{variant}", "config": name,
            "batch_size": config.batch_size, "n_critic": config.get("n_critic", 1),
            "update": update if gan else None, **timed_row(step, n, seconds, windows)}
