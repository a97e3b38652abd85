"""What machine a benchmark ran on, for its result file: the CPU as /proc/cpuinfo names it
(virtual machines often hide the exact model, so its family, model number and the vector
extensions that decide kernel speed too) and the core count."""

from __future__ import annotations

import os
import platform
import re

# the instruction-set extensions that change which kernels XLA, oneDNN and PyTorch pick
_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")


def cpu() -> dict:
    """{"model", "family", "model_number", "flags" (those of `_FLAGS` present), "cores"}."""
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read().split("\n\n")[0]
    except OSError:
        info = ""
    field = lambda name: (re.search(rf"^{name}\s*:\s*(.*)$", info, re.M) or [None, None])[1]
    flags = set((field("flags") or "").split())
    return {"model": field("model name") or platform.processor() or platform.machine(),
            "family": field("cpu family"), "model_number": field("model"),
            "flags": [f for f in _FLAGS if f in flags], "cores": os.cpu_count()}


def describe() -> str:
    """One line: model (family, model number; extensions), cores."""
    c = cpu()
    return (f"{c['model']} (family {c['family']}, model {c['model_number']}; "
            f"{' '.join(c['flags']) or 'no AVX2'}), {c['cores']} cores")
