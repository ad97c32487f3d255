"""Activations f of the relaxation step, as SymPy expressions of one symbol.

Each built-in is written in a form that is finite for every finite float input (no
``exp`` overflow turning into ``inf/inf``): SymPy differentiates these same forms for the
adjoint, so ``f'`` inherits the stability.

============  =========================================  ===================================
name          f(x)                                       written as
============  =========================================  ===================================
identity      x                                          x
tanh          tanh x                                     tanh(x)
sigmoid       1 / (1 + e^{-x})                           (1 + tanh(x/2)) / 2
relu          max(x, 0)                                  Max(x, 0)   (f'(0) = 1/2)
softplus      log(1 + e^{x})                             Max(x, 0) + log1p(exp(-|x|))
square        x²                                         x**2
============  =========================================  ===================================
"""
from __future__ import annotations

import sympy as sp
from sympy.codegen.cfunctions import log1p

__all__ = ["ACTIVATION_SYMBOL", "BUILTIN_ACTIVATIONS", "resolve_activation"]

#: The symbol every activation expression is written in.
ACTIVATION_SYMBOL = sp.Symbol("x", real=True)
_x = ACTIVATION_SYMBOL

BUILTIN_ACTIVATIONS: dict[str, sp.Expr] = {
    "identity": _x,
    "tanh": sp.tanh(_x),
    "sigmoid": (1 + sp.tanh(_x / 2)) / 2,
    "relu": sp.Max(_x, 0),
    "softplus": sp.Max(_x, 0) + log1p(sp.exp(-sp.Abs(_x))),
    "square": _x**2,
}


def resolve_activation(activation, parameters=()) -> tuple[str, sp.Expr]:
    """Return ``(name, f(x))`` with ``f`` written in :data:`ACTIVATION_SYMBOL`.

    ``activation`` is a built-in name, a ``sympy.Lambda`` of one argument, or a SymPy
    expression whose free symbols are one argument (renamed to ``x``) and, optionally, trainable
    activation parameters among ``parameters`` (symbols), e.g. ``rho*X*(1 - X)`` with ``rho`` a
    parameter: the argument is the one free symbol that is not a parameter.
    """
    parameters = set(parameters)
    if isinstance(activation, str):
        try:
            return activation, BUILTIN_ACTIVATIONS[activation]
        except KeyError:
            raise ValueError(
                f"unknown activation {activation!r}; built-ins are "
                f"{', '.join(sorted(BUILTIN_ACTIVATIONS))}, or pass a SymPy expression of one symbol"
            ) from None
    if isinstance(activation, sp.Lambda):
        if len(activation.variables) != 1:
            raise ValueError(f"activation Lambda must take one argument, got {activation}")
        if activation.variables[0] in parameters:
            raise ValueError(f"activation Lambda: its argument {activation.variables[0]} is also a parameter")
        expr = activation.expr.subs(activation.variables[0], _x)
        stray = sorted((s.name for s in expr.free_symbols - parameters - {_x}))
        if stray:
            raise ValueError(f"activation {activation}: symbol(s) {', '.join(stray)} are neither its argument "
                             "nor parameters listed in params")
    elif isinstance(activation, sp.Expr):
        free = sorted(activation.free_symbols - parameters, key=lambda s: s.name)
        if len(free) > 1:
            raise ValueError(
                f"activation {activation} must depend on exactly one argument symbol besides its "
                f"parameters, found {', '.join(s.name for s in free)} (list trainable ones in params)")
        expr = activation.subs(free[0], _x) if free else activation
    else:
        raise TypeError(
            f"activation must be a name or a SymPy expression, got {type(activation).__name__}")
    if expr.atoms(sp.Derivative) or expr.atoms(sp.core.function.AppliedUndef):
        raise ValueError(f"activation {activation} must be a pointwise function of one symbol")
    if not expr.has(_x):
        raise ValueError(f"activation {activation} is constant; it must depend on its argument")
    return "custom", expr
