"""A hyperparameter that differs between the members of a population, inside one traced step.

A population (`genjax.population`) trains K members whose configs differ only in
numbers such as learning rates and loss weights. Its step is the family's own step,
built once from a config in which each varied field is a `Varied`: in arithmetic it is
that member's traced scalar (the members' values are explicit state, a ``[K]`` array
per field, mapped over by ``vmap`` or ``lax.map``), so one compiled program serves every
member; in Python decisions (``if config.gp_weight:``, ``config.ema_decay or None``,
comparisons) it answers for all members at once, which is only possible when they
agree. A decision on which they disagree changes the program itself (a penalty computed
for some members only, an EMA copy in some states only), so it is refused with the
field named, as is using the value as a plain Python number (``float(...)``).

Families need no code of their own for this: their step factories already take these
numbers from the config, and every use they make of them is one of the above.
"""

from __future__ import annotations

import operator
from typing import Any, Callable, Sequence

import jax


class PopulationFieldError(ValueError):
    """A varied field is used in a way that cannot differ between members of one program."""


def _value(x: Any) -> Any:
    return x.value if isinstance(x, Varied) else x


class Varied:
    """Field ``name`` with traced ``value`` (this member's) and static ``values`` (every
    member's, for the Python decisions the family's code takes on it)."""

    __slots__ = ("name", "value", "values")

    def __init__(self, name: str, value: jax.Array, values: Sequence[float]):
        self.name, self.value, self.values = name, value, tuple(values)

    def _decide(self, what: str, decide: Callable[[Any], Any]) -> Any:
        answers = {decide(v) for v in self.values}
        if len(answers) > 1:
            raise PopulationFieldError(
                f"config.{self.name}: the members' values {self.values} give different answers "
                f"to {what}, which decides what this family's step computes (a term, a state "
                f"entry); members may differ only in values that agree there (e.g. all "
                f"non-zero). Run the others as a second population.")
        return answers.pop()

    def _plain(self, *_):
        raise PopulationFieldError(
            f"config.{self.name} is used as a plain Python number by this family, so it cannot "
            f"differ between the members of one population (values {self.values}).")

    # Python decisions: answered for every member at once.
    def __bool__(self) -> bool:
        return self._decide("`if` (zero or not)", bool)

    def _compare(op: Callable, symbol: str):  # noqa: N805  (builds the comparison methods)
        def compare(self, other):
            if isinstance(other, Varied) or isinstance(other, jax.Array):
                return op(self.value, _value(other))
            return self._decide(f"`{symbol} {other!r}`", lambda v: op(v, other))
        return compare

    __lt__, __le__ = _compare(operator.lt, "<"), _compare(operator.le, "<=")
    __gt__, __ge__ = _compare(operator.gt, ">"), _compare(operator.ge, ">=")
    __eq__, __ne__ = _compare(operator.eq, "=="), _compare(operator.ne, "!=")
    __float__ = __int__ = __index__ = _plain

    def __hash__(self) -> int:
        return hash((self.name, self.values))

    # Arithmetic: this member's traced value.
    def _arith(op: Callable):  # noqa: N805
        return (lambda self, other: op(self.value, _value(other)),
                lambda self, other: op(_value(other), self.value))

    __add__, __radd__ = _arith(operator.add)
    __sub__, __rsub__ = _arith(operator.sub)
    __mul__, __rmul__ = _arith(operator.mul)
    __truediv__, __rtruediv__ = _arith(operator.truediv)
    __pow__, __rpow__ = _arith(operator.pow)
    del _compare, _arith

    def __neg__(self):
        return -self.value

    def __pos__(self):
        return self.value

    def __abs__(self):
        return abs(self.value)

    def __jax_array__(self) -> jax.Array:  # `jax.Array op Varied` (a jnp function needs
        return self.value                  # the array itself: they refuse this protocol)

    def __repr__(self) -> str:
        return f"Varied({self.name}, values={self.values})"

    __format__ = lambda self, spec: repr(self)  # noqa: E731  (error messages that name it)


# A pytree (the traced value its one leaf), so that it passes through the jitted helpers a
# library calls with it (optax's bias correction takes ``b1`` as a jit argument).
jax.tree_util.register_pytree_node(
    Varied, lambda v: ((v.value,), (v.name, v.values)),
    lambda aux, leaves: Varied(aux[0], leaves[0], aux[1]))
