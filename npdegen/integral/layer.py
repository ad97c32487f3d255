r"""``NonlocalPDE``: a relaxation layer whose kernel is an integral operator (issue 14 item 2).

.. math::
    z_{t+1} = (1-ω)\, z_t + ω\, f(Z_t), \qquad
    Z_t(q) = \int W(q, r; θ)\, z_t(q + r)\, dr - b(q)
           \;≈\; \Big(\prod_k Δ_k\Big) \sum_o W(q_i, oΔ; θ)\, \tilde z_t[i + o] - b_i ,

the rectangle rule on the grid (``q_i = iΔ``, ``z̃`` the boundary extension; :mod:`.network`).
Its moments are exact integrals (:meth:`NonlocalPDE.moments`), so a learned Gaussian of width σ
is diffusion ``D = σ²/2`` per layer with no stencil-width limit: one layer spreads information
over many cells, where a stable explicit stencil of half-width K moves it at most K cells.

Methods (``compile(method=...)``): ``"stencil"`` samples the kernel into an explicit stencil out
to its reach (narrow kernels), ``"fft"`` applies it by FFT convolution (periodic) or padded FFT
(zero Dirichlet; Neumann by even extension) — wide homogeneous kernels; ``"dense"`` builds the
``N × N`` matrix (small grids); ``"auto"`` picks stencil or FFT from the reach per call.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import sympy as sp

from ..grid import normalise_boundaries, normalise_grid
from ..spec.activations import ACTIVATION_SYMBOL, resolve_activation
from .kernel import Kernel
from .network import NonlocalNetwork
from .sample import KernelSampler

__all__ = ["NonlocalPDE", "METHODS"]

FAMILIES = ("homogeneous", "heterogeneous", "time-dependent")
METHODS = ("auto", "stencil", "fft", "dense")
DTYPES = ("float32", "float64")


#: Slopes written in the activation's value ``y = f(x)``: ``f′ = 1 − y²`` (tanh), ``y(1 − y)`` (the logistic
#: sigmoid). Index + 1 is :attr:`Activation.slope_of_value`, the code :func:`.fused.relax_slope` takes.
VALUE_SLOPES = (lambda y: 1 - y * y, lambda y: y * (1 - y))


class Activation:
    """``f``, ``f′`` and ``∂f/∂ρ`` (trainable activation parameters ``ρ``) of the step, lambdified once
    from npdegen's SymPy definitions (:mod:`npdegen.spec.activations`).

    ``slope_of_value`` is ``k > 0`` when ``f′(x) = g_k(f(x))`` for the ``k``-th form of
    :data:`VALUE_SLOPES` (checked on 201 points of [−8, 8] to 1e-13 in float64; no activation parameters),
    else 0: then the sweeps keep ``f′(Z)`` from the forward instead of ``Z`` (one fused pass)."""

    def __init__(self, activation, parameters=()):
        self.name, self.expr = resolve_activation(activation, parameters)
        x = ACTIVATION_SYMBOL
        self.params = tuple(sorted(self.expr.free_symbols - {x}, key=lambda p: p.name))
        self.names = tuple(p.name for p in self.params)
        self.linear = self.expr == x
        args = (x, *self.params)
        self._f = sp.lambdify(args, self.expr, modules="numpy", cse=True)
        self._df = sp.lambdify(args, sp.diff(self.expr, x), modules="numpy", cse=True)
        self._dp = {p.name: sp.lambdify(args, sp.diff(self.expr, p), modules="numpy", cse=True) for p in self.params}
        self.slope_of_value = 0 if self.params or self.linear else self._value_slope()

    def _value_slope(self) -> int:
        x = np.linspace(-8.0, 8.0, 201)
        with np.errstate(all="ignore"):
            y, d = np.broadcast_to(self._f(x), x.shape), np.broadcast_to(self._df(x), x.shape)
            for k, form in enumerate(VALUE_SLOPES, start=1):
                g = form(y)
                if np.all(np.isfinite(d)) and np.all(np.abs(g - d) <= 1e-13 * (1 + np.abs(d))):
                    return k
        return 0

    def value(self, z, args=()):
        if self.linear:
            return z
        return np.asarray(self._f(z, *args)).astype(z.dtype, copy=False)

    def slope(self, z, args=()):
        return self._full(self._df(z, *args), z)

    def dparam(self, name, z, args=()):
        return self._full(self._dp[name](z, *args), z)

    @staticmethod
    def _full(value, z):
        """``value`` as an array of ``z``'s shape and dtype (no copy when it already is one)."""
        value = np.asarray(value)
        if value.shape == z.shape and value.dtype == z.dtype:
            return value
        return np.broadcast_to(value, z.shape).astype(z.dtype)


class NonlocalPDE:
    r"""A nonlocal neural-PDE layer (module docstring).

    Parameters
    ----------
    kernel : :class:`~npdegen.integral.kernel.Kernel` (``kernel(W, r)``, ``gaussian(sigma)``, …).
    field : the field as an applied function, ``sympy.Function("z")(q)`` (N-D: ``z(x, y)``), with
        one argument per axis of the kernel's ``r``.
    activation : ``"identity" | "tanh" | "sigmoid" | "relu" | "softplus" | "square"`` or a SymPy
        expression of one symbol and, optionally, trainable parameters listed in ``params``
        (``x + rho*x*(1 - x)``: a logistic reaction), as for :class:`npdegen.NeuralPDE`.
    params : ``{symbol or name: family}`` for every kernel and activation parameter, family one of
        ``"homogeneous"`` (one value), ``"heterogeneous"`` (one per site: the kernel row varies with
        the site, ``W(r; θ_i)``) or ``"time-dependent"`` (per layer and site).
    bias : ``None`` or the family of ``b``.
    """

    def __init__(self, kernel, field, activation="identity", params=None, bias=None, name="nonlocal"):
        if not isinstance(kernel, Kernel):
            raise TypeError(f"kernel must be an npdegen Kernel (npdegen.integral.kernel(W, r), gaussian(sigma), ...), "
                            f"got {type(kernel).__name__}")
        if not (isinstance(field, sp.Expr) and isinstance(field, sp.core.function.AppliedUndef)):
            raise TypeError(f"field must be an applied function such as z(q), got {field!r}")
        if len(field.args) != kernel.dim:
            raise ValueError(f"field {field} has {len(field.args)} coordinate(s); the kernel's r has {kernel.dim}")
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"name must be an identifier, got {name!r}")
        self._args = dict(kernel=kernel, field=field, activation=activation, params=params, bias=bias, name=name)
        self.kernel, self.field, self.name = kernel, field, name
        self.coordinates = tuple(field.args)
        symbols = [k for k in (params or {}) if isinstance(k, sp.Symbol) and k not in kernel.params]
        self.activation = Activation(activation, symbols)
        self.families = self._families(params, bias)
        self.sampler = KernelSampler(kernel)

    def _families(self, params, bias) -> dict:
        params = dict(params or {})
        by_name = {}
        for key, family in params.items():
            name = key.name if isinstance(key, sp.Symbol) else key
            if not isinstance(name, str):
                raise TypeError(f"params keys must be kernel parameter symbols or names, got {key!r}")
            if family not in FAMILIES:
                raise ValueError(f"params[{name!r}] = {family!r}: choose one of {', '.join(FAMILIES)}")
            by_name[name] = family
        wanted = {p.name for p in self.kernel.params} | set(self.activation.names)
        missing, extra = wanted - set(by_name), set(by_name) - wanted
        if missing:
            raise ValueError(f"parameter(s) {', '.join(sorted(missing))} need a family in params, e.g. "
                             f"params={{{sorted(missing)[0]}: 'homogeneous'}}")
        if extra:
            raise ValueError(f"params {', '.join(sorted(extra))} are neither parameters of the kernel nor of the "
                             f"activation ({', '.join(sorted(wanted)) or 'there are none'})")
        families = {p: by_name[p] for p in [*(q.name for q in self.kernel.params), *self.activation.names]}
        if bias is not None:
            if bias not in FAMILIES:
                raise ValueError(f"bias = {bias!r}: choose None or one of {', '.join(FAMILIES)}")
            families["b"] = bias
        return families

    @property
    def dim(self) -> int:
        return self.kernel.dim

    # ------------------------------------------------------------------ physics
    def moments(self, max_order: int = 4):
        """The kernel's exact moments ``W_k = ∫ r^k W dr`` (:meth:`Kernel.moments`), divergent ones listed."""
        return self.kernel.moments(max_order)

    def explain(self, max_order: int = 4):
        """Physics table moment → process, with the field's coordinates naming the axes."""
        return self.kernel.explain(max_order, coordinates=self.coordinates)

    # ------------------------------------------------------------------ compile
    def compile(self, n, spacing=1.0, layers: int = 1, omega: float = 1.0, boundary="periodic",
                dtype: str = "float64", method: str = "auto", reach=None, train_omega: bool = False,
                threads: int | None = None, allow_unstable: bool = False) -> NonlocalNetwork:
        """A runnable network of ``layers`` steps on ``n`` sites (an int in 1-D, a tuple per axis).

        ``spacing`` Δ (a number or one per axis), ``omega`` in (0, 2) (``allow_unstable`` lifts the
        bound), ``boundary`` periodic / dirichlet / neumann (or one per axis), ``method`` one of
        ``auto | stencil | fft | dense``, ``reach`` the stencil half-width in cells (an int or one
        per axis; default: decided per call from the parameter values, :mod:`.sample`),
        ``train_omega`` adds ``"omega"`` to the parameters, ``threads`` the FFT workers.
        """
        d = self.dim
        grid = normalise_grid(n, d, (0,) * d)
        if any(v < 2 for v in grid):
            raise ValueError(f"n must be at least 2 per axis, got {n!r}")
        spacings = spacing if isinstance(spacing, (tuple, list)) else (spacing,) * d
        if len(spacings) != d:
            raise ValueError(f"spacing must be a number or a tuple of {d} numbers, got {spacing!r}")
        for what, v in [*(("spacing", v) for v in spacings), ("omega", omega)]:
            if not isinstance(v, numbers.Real) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{what} must be a positive finite number, got {v!r}")
        if omega >= 2 and not allow_unstable:
            raise ValueError(f"omega = {omega!r} is outside (0, 2): the leak (1 - omega) z amplifies; pass "
                             "allow_unstable=True to run it anyway")
        if not isinstance(layers, int) or isinstance(layers, bool) or layers < 1:
            raise ValueError(f"layers must be a positive integer, got {layers!r}")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
        boundaries = normalise_boundaries(boundary, d)
        if reach is not None:
            reach = (reach,) * d if isinstance(reach, numbers.Integral) and not isinstance(reach, bool) else reach
            if (not isinstance(reach, (tuple, list)) or len(reach) != d
                    or not all(isinstance(k, numbers.Integral) and not isinstance(k, bool) and k >= 0 for k in reach)):
                raise ValueError(f"reach must be a non-negative integer or one per axis, got {reach!r}")
            reach = tuple(int(k) for k in reach)
        net = NonlocalNetwork(self, grid, tuple(float(v) for v in spacings), layers, float(omega), boundaries,
                              dtype, method, reach, train_omega, threads)
        net.recipe = dict(n=n, spacing=spacing, layers=layers, omega=omega, boundary=boundary, dtype=dtype,
                          method=method, reach=reach, train_omega=train_omega, threads=threads,
                          allow_unstable=allow_unstable)
        if method == "fft" and net._site:
            raise ValueError("method='fft' applies one kernel to every site (a convolution); this kernel varies with "
                             "the site (heterogeneous/time-dependent parameters or W(q, r)): use 'stencil' or 'dense'")
        if reach is not None and method in ("stencil", "dense"):
            net._operator(method, net._reach({}))       # reach or size errors now, not at the first call
        return net

    def __getstate__(self):
        """A layer pickles as its arguments (the lambdified functions are made again on load)."""
        return {"args": self._args}

    def __setstate__(self, state):
        self.__init__(**state["args"])

    def __repr__(self):
        bias = " - b" if "b" in self.families else ""
        return (f"NonlocalPDE({self.name!r}: Z = ∫ W z dr{bias}, W = {self.kernel.density}, "
                f"f = {self.activation.name})")
