"""XLA:CPU's dot library, chosen per compiled step.

jaxlib 0.10's XLA:CPU hands every dot to YNNPACK; with it the textbook conv GANs' steps
ran at half speed, while steps without convolutions ran faster than with Eigen's dots.
`cpu_compiler_options` picks the library for one step from what the step contains, and
`jit_on_first_call` / `pmap_on_first_call` compile a step with the choice its first
arguments call for. The drivers (`genjax.parallel`) use them.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import jax

# XLA:CPU dot libraries a step can be compiled with (`cpu_compiler_options`).
CPU_DOTS = ("auto", "ynnpack", "eigen", "eigen+ynn")

# What YNNPACK still fuses under "eigen+ynn": elementwise chains and reductions (the
# values of DebugOptions' LibraryFusionType that XLA_FLAGS and compiler options accept).
_YNN_FUSIONS = "LIBRARY_FUSION_TYPE_ELTWISE,LIBRARY_FUSION_TYPE_REDUCE"


def _contains_convolution(jaxpr) -> bool:
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "conv_general_dilated":
            return True
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                sub = getattr(sub, "jaxpr", sub)  # a ClosedJaxpr's Jaxpr
                if hasattr(sub, "eqns") and _contains_convolution(sub):
                    return True
    return False


def has_convolution(fn: Callable, *args: Any, **jit_kwargs: Any) -> bool:
    """Whether ``fn(*args)`` contains a convolution (traced, not run; nested calls, loops
    and custom derivatives included). Traced as ``jax.jit(fn, **jit_kwargs)``, whose
    trace JAX then reuses when compiling ``fn`` with those arguments."""
    return _contains_convolution(jax.jit(fn, **jit_kwargs).trace(*args).jaxpr.jaxpr)


def cpu_compiler_options(cpu_dots: str, fn: Callable, *args: Any, **jit_kwargs: Any
                         ) -> dict[str, Any] | None:
    """XLA compiler options for ``jax.jit(fn, compiler_options=..., **jit_kwargs)`` on CPU.

    jaxlib 0.10's XLA:CPU hands every dot to YNNPACK, and with it the textbook conv
    GANs' steps ran at half speed (2 cores, one process: DCGAN 97 against 176 examples/s,
    the conv generator's gradient 320 against 166 ms), while the MLP GAN's step ran 19 %
    faster than with Eigen's dots. ``"auto"`` therefore picks Eigen's dots for a step with
    convolutions and YNNPACK's otherwise; ``"ynnpack"``/``"eigen"`` force one.
    ``"eigen+ynn"`` keeps Eigen's dots and convolutions but lets YNNPACK fuse elementwise
    chains and reductions: the RealNVP and Glow steps ran 13-28 % faster with it, the
    DCGAN and DDPM steps 16-22 % slower (A/B on a 2-core AMD EPYC), so configs opt in. Off CPU,
    or when ``XLA_FLAGS`` already sets ``xla_cpu_experimental_ynn_fusion_type``,
    there is nothing to choose (None).
    """
    if cpu_dots not in CPU_DOTS:
        raise ValueError(f"Unknown cpu_dots {cpu_dots!r}; valid: {', '.join(CPU_DOTS)}.")
    if jax.default_backend() != "cpu" or "ynn_fusion_type" in os.environ.get("XLA_FLAGS", ""):
        return None
    if cpu_dots == "auto":
        cpu_dots = "eigen" if has_convolution(fn, *args, **jit_kwargs) else "ynnpack"
    fusions = {"eigen": "", "eigen+ynn": _YNN_FUSIONS}
    return {"xla_cpu_experimental_ynn_fusion_type": fusions[cpu_dots]} if cpu_dots in fusions \
        else None


def jit_on_first_call(fn: Callable, cpu_dots: str, **jit_kwargs: Any) -> Callable:
    """``jax.jit(fn, **jit_kwargs)`` with the `cpu_compiler_options` of the first call's
    arguments (which the choice of dot library depends on). Like a jitted function it has
    ``lower(*args)``, and ``compile(*args)`` for compiling ahead of the first call: JAX
    keeps the executable that ``lower(*args).compile()`` builds, and a call with such
    arguments runs it."""
    jitted: list[Callable] = []

    def for_args(*args):
        if not jitted:
            options = cpu_compiler_options(cpu_dots, fn, *args, **jit_kwargs)
            jitted.append(jax.jit(fn, compiler_options=options, **jit_kwargs))
        return jitted[0]

    def call(*args):
        return for_args(*args)(*args)

    call.lower = lambda *args: for_args(*args).lower(*args)
    call.compile = lambda *args: call.lower(*args).compile()
    return call


def pmap_on_first_call(fn: Callable, cpu_dots: str, **pmap_kwargs: Any) -> Callable:
    """``jax.pmap(fn, **pmap_kwargs)`` compiled with the `cpu_compiler_options` of its
    arguments, so that the pmap driver runs the dot library the other drivers run.

    ``jax.pmap`` takes no compiler options, but its lowering's ``compile`` does (in JAX
    0.10 a pmap lowers, like ``jit``, to one SPMD program). Each argument signature
    (tree, shapes, dtypes) is compiled once, ahead of the first call through
    ``compile(*args)`` or at it, and every call runs that executable.
    """
    mapped = jax.pmap(fn, **pmap_kwargs)
    executables: dict[Any, Any] = {}

    def executable(*args):
        leaves, tree = jax.tree.flatten(args)
        signature = (tree, tuple((jax.numpy.shape(x), jax.numpy.result_type(x)) for x in leaves))
        if signature not in executables:
            options = cpu_compiler_options(cpu_dots, mapped, *args)
            executables[signature] = mapped.lower(*args).compile(compiler_options=options)
        return executables[signature]

    def call(*args):
        return executable(*args)(*args)

    call.compile = executable
    return call
