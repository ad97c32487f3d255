"""``NeuralPDE``: the user's entry point, a thin facade over the pipeline stages

    spec (validate) → derive (SymPy) → codegen (printers + Jinja) → runtime (cache, kernels).
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import sympy as sp

from .codegen.numba_printer import ACTIVATION_MODES
from .derive.kernel import KernelIR, build_kernel
from .codegen.step_render import StepOptions, render_step
from .spec.spacing import spacing_symbols
from .derive.moments import tensor_moments
from .derive.physics import PhysicsTable, explain_moments, explain_tensor_moments
from .derive.stencil import SPACING, Stencil, discretise, stencil_moments
from .grid import normalise_boundaries
from .ir.lower import LoweredStep, lower
from .ir.step import StepIR, build_step, param_symbol
from .runtime.backends import get_backend, step_filename
from .runtime.cache import stamp, write_atomic
from .constructors import free_stencil_transform, moments_transform
from .runtime.network import Network
from .spec.layerspec import LayerSpec, make_spec

__all__ = ["NeuralPDE"]

_CODE_OPTIONS = ("backend", "boundary", "dtype", "normalise", "train_omega")
_RUN_OPTIONS = ("n", "spacing", "layers", "omega", "alpha", "threads", "checkpoint", "activations", "allow_unstable")


class NeuralPDE:
    r"""A neural-PDE layer: the relaxation step of docs/theory.md §1 with a local kernel.

    .. math::
        z_{t+1} = (1-ω)\,z_t + ω\,f(Z_t), \qquad Z_t = T[z_t] - b, \qquad
        T[z] = \sum_k c_k(θ)\,∂_q^k z

    Parameters
    ----------
    transform : sympy.Expr
        ``T[z]``, linear in the field and its derivatives, e.g. the neural ADR operator
        ``z + R*z - U*z.diff(q) + D*z.diff(q, 2)``. Coefficients are expressions of parameter
        symbols (``exp(logD)`` is fine) and numbers.
    field : sympy applied function, e.g. ``sympy.Function("z")(q)``.
    activation : ``"identity" | "tanh" | "sigmoid" | "relu" | "softplus" | "square"`` or a SymPy
        expression of one symbol.
    params : mapping ``symbol -> "homogeneous" | "heterogeneous" | "time-dependent"``.
    bias : ``None`` or a family for ``b``.
    accuracy : order of the finite differences (even, for the default central stencils).
    offsets : optional explicit stencil offsets (grid units), e.g. ``(-2, -1, 0)`` for one-sided.
    name : identifier used for generated files.
    """

    #: parameter names theta keeps for the runtime; ``None``: ``b`` and ``omega`` (a subclass whose
    #: transform holds its own bias frees ``b``: npdegen.integral.quadrature_step)
    _reserved = None

    def __init__(self, transform, field, activation="identity", params=None, bias=None,
                 accuracy=2, offsets=None, name="neural_pde"):
        self.spec: LayerSpec = make_spec(transform, field, activation=activation, params=params,
                                         bias=bias, accuracy=accuracy, offsets=offsets, name=name,
                                         **({"reserved": self._reserved} if self._reserved else {}))
        self._args = dict(transform=transform, field=field, activation=activation, params=params, bias=bias,
                          accuracy=accuracy, offsets=offsets, name=name)
        # Every layer runs the step-IR kernels. A 1-D linear layer without activation parameters also
        # has the 1-D symbolic description (its Stencil and KernelIR) that inspection works with.
        self._linear_1d = (self.spec.dim == 1 and self.spec.terms is not None and not self.spec.activation_params
                           and not self.spec.shifts)
        self._stencil: Stencil | None = discretise(self.spec) if self._linear_1d else None
        self.lowered                       # derive now: errors surface at construction

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_moments(cls, moments, offsets: Sequence[int], field=None, **kwargs) -> "NeuralPDE":
        r"""The layer whose stencil on ``offsets`` has the given moments ``{k: W_k}``.

        ``W_k = Σ_j (jΔ)^k w_j`` (no ``1/k!``). Moments not given are zero; at most
        ``len(offsets)`` of them can be prescribed. The moment (Vandermonde) system is solved
        exactly: the transform is ``Σ_k W_k/k! ∂_q^k z`` discretised on exactly these offsets,
        whose Fornberg weights reproduce every moment below ``len(offsets)``. Example: the ADR
        layer is ``from_moments({0: 1 + R, 1: -U, 2: 2*D}, offsets=(-1, 0, 1))``.

        N-D: ``{α: W_α}`` with multi-indices ``α``, ``W_α = Σ_o Π_k (o_k Δ_k)^{α_k} w_o``, on the
        box of ``offsets`` per axis (one tuple for every axis, or one per axis), and an N-D
        ``field``; every ``α`` with ``α_k < len(offsets_k)`` can be prescribed (tensor-product
        Vandermonde system, solved exactly); the layer then uses shifted accesses ``z(x + oΔ)``.
        """
        transform, field, extra = moments_transform(moments, offsets, field)
        return cls(transform, field, **{**extra, **kwargs})

    @classmethod
    def free_stencil(cls, offsets, field=None, family: str = "heterogeneous", **kwargs) -> "NeuralPDE":
        r"""The layer whose stencil weights are themselves the parameters: ``G = Σ_o w_o z[i + o]``.

        ``offsets``: integers (1-D) or offset tuples (N-D, one entry per axis), at most 17 per axis
        reach; each weight is a parameter named after its offset (``w_m1``, ``w_0``, ``w_p1_m2``;
        :meth:`stencil` shows them) of the given ``family``. ``field`` defaults to ``z(q)`` in
        1-D and must be given in N-D, e.g. ``z(x, y)``. Other keywords as for the constructor
        (``activation``, ``bias``, ``name``). Example: ``NeuralPDE.free_stencil([-1, 0, 1])``
        learns any 3-point kernel — the moments then say which physics it found.
        """
        transform, field, params = free_stencil_transform(offsets, field, family)
        kwargs.setdefault("name", "free_stencil")
        return cls(transform, field, params={**params, **kwargs.pop("params", {})}, **kwargs)

    # ------------------------------------------------------------------ derivation
    @property
    def dim(self) -> int:
        """Number of grid axes (1–3)."""
        return self.spec.dim

    @property
    def spacing_symbols(self) -> tuple:
        """The symbolic spacings of :meth:`stencil`: ``(Delta,)`` in 1-D, ``(Delta_x, Delta_y, …)`` in N-D."""
        return spacing_symbols(self.spec.coordinates)

    def _spacing_map(self, spacing) -> dict:
        symbols = self.spacing_symbols
        if spacing is None:
            return {}
        if self.dim == 1 and not isinstance(spacing, (tuple, list)):
            spacing = (spacing,)
        if not isinstance(spacing, (tuple, list)) or len(spacing) != self.dim:
            raise ValueError(f"spacing must be {'a number, a symbol or ' if self.dim == 1 else ''}a tuple of "
                             f"{self.dim} numbers or symbols (one per axis), got {spacing!r}")
        for v in spacing:
            if isinstance(v, (str, bytes)) or not isinstance(v, (int, float, sp.Expr)) or isinstance(v, bool):
                raise TypeError(f"spacing values must be numbers or SymPy expressions, got {v!r}")
        return {s: sp.sympify(v) for s, v in zip(symbols, spacing)}

    def _user_weights(self) -> dict:
        """``{offset tuple: w_o}`` of a linear step IR, in the user's symbols."""
        ir = self.step_ir
        if not ir.linear:
            raise ValueError(f"layer {self.spec.name!r} is nonlinear in the field: it has no fixed stencil; "
                             "inspect its linearisation at a state instead (npdegen.inspect.linearised_kernel)")
        back = {param_symbol(s.name): s for s, _ in self.spec.params}
        back.update(zip(ir.spacing, self.spacing_symbols))
        return {o: w.xreplace(back) for o, w in zip(ir.accesses, ir.d_access) if w != 0}

    def stencil(self, spacing=None) -> dict:
        """``{offset: weight}`` with ``Z_i = Σ_o w_o z_{i+o} − b_i``; ``spacing`` a symbol or number
        (1-D) or a tuple per axis; ``None`` keeps the symbols :attr:`spacing_symbols`.

        1-D keys are ints: for ``z + R*z - U*z_q + D*z_qq`` at accuracy 2,
        ``{-1: U/(2Δ) + D/Δ², 0: 1 + R − 2D/Δ², 1: −U/(2Δ) + D/Δ²}``. N-D keys are offset tuples,
        e.g. ``(1, -1)`` for ``z[i_x + 1, i_y − 1]``.
        """
        subs = self._spacing_map(spacing)
        if self._linear_1d:
            return {j: w.subs(subs) for j, w in self._stencil.as_dict().items()}
        weights = self._user_weights()
        if self.dim == 1:
            return {o[0]: w.subs(subs) for o, w in weights.items()}
        return {o: w.subs(subs) for o, w in weights.items()}

    def moments(self, max_order: int = 4, spacing=None) -> dict:
        r"""Kernel moments, no ``1/k!`` (docs/theory.md §2). 1-D: ``{k: W_k}``, ``W_k = Σ_j (jΔ)^k w_j``;
        for the ADR stencil ``W_0 = 1 + R``, ``W_1 = −U``, ``W_2 = 2D``.

        N-D: ``{α: W_α}`` for every multi-index ``|α| ≤ max_order``,
        ``W_α = Σ_o Π_k (o_k Δ_k)^{α_k} w_o``, so that ``Σ_o w_o z(x + oΔ) ≈ Σ_α W_α/α! ∂^α z``.
        """
        if not isinstance(max_order, int) or isinstance(max_order, bool) or max_order < 0:
            raise ValueError(f"max_order must be an integer >= 0, got {max_order!r}")
        subs = self._spacing_map(spacing)
        if self._linear_1d:
            return {k: sp.expand(m.subs(subs)) for k, m in stencil_moments(self._stencil, max_order, SPACING).items()}
        return tensor_moments(self._user_weights(), self.spacing_symbols, max_order, subs)

    def explain(self, max_order: int | None = None) -> PhysicsTable:
        """Table moment → physical process: reaction, advection (per axis), diffusion (tensor
        components), dispersion, … (docs/theory.md §2)."""
        if max_order is None:
            reach = max(self.step_ir.halo) * 2 if not self._linear_1d else len(self._stencil.offsets) - 1
            max_order = max(reach, 2)
        if self.dim == 1:
            return explain_moments(self.moments(max_order))
        return explain_tensor_moments(self.moments(max_order), self.spec.coordinates)

    @cached_property
    def kernel_ir(self) -> KernelIR:
        """The 1-D symbolic description (weights ``w_j(θ)``, Jacobians) that inspection works with:
        1-D linear layers only (every layer's kernels come from :attr:`lowered`)."""
        if not self._linear_1d:
            raise ValueError(f"layer {self.spec.name!r} has no 1-D kernel description (N-D, nonlinear or with "
                             "activation parameters): use layer.step_ir")
        return build_kernel(self.spec)

    @cached_property
    def step_ir(self) -> StepIR:
        """The step IR of this layer (:mod:`npdegen.ir.step`): accesses, site expression, Jacobians."""
        return build_step(self.spec)

    @cached_property
    def lowered(self) -> LoweredStep:
        """The lowered step IR (:mod:`npdegen.ir.lower`) the step-IR kernels are generated from."""
        return lower(self.step_ir)

    # ------------------------------------------------------------------ code
    def _step_options(self, options: dict) -> tuple[StepOptions, dict]:
        unknown = set(options) - set(_CODE_OPTIONS) - set(_RUN_OPTIONS)
        if unknown:
            raise TypeError(f"unknown option(s) {sorted(unknown)}; code options are {_CODE_OPTIONS}, "
                            f"run options {_RUN_OPTIONS}")
        code = StepOptions(backend=options.get("backend", "numpy"),
                           boundary=normalise_boundaries(options.get("boundary", "periodic"), self.dim),
                           dtype=options.get("dtype", "float64"),
                           normalise=bool(options.get("alpha", options.get("normalise", False))),
                           train_omega=options.get("train_omega", False),
                           activations=(options.get("activations") or "auto") if options.get("backend") == "numba"
                           else "auto")
        return code, {k: options[k] for k in _RUN_OPTIONS if k in options}

    def source(self, **options) -> str:
        """The generated kernel source for the given code options (see :meth:`compile`)."""
        return render_step(self.lowered, self._step_options(options)[0]).source

    def generate(self, out, **options) -> list[Path]:
        """Write the generated kernel(s) into folder ``out``; returns the paths written.

        Takes the options of :meth:`compile`; only ``backend, boundary, dtype, normalise,
        train_omega`` change the code (the others are accepted and ignored).
        """
        code, _ = self._step_options(options)
        rendered, stem = render_step(self.lowered, code), step_filename(self.lowered, code)
        return [write_atomic(Path(out) / f"{stem}{suffix}", stamp(text, suffix), mode="umask")
                for suffix, text in rendered.files.items()]

    def compile(self, n, spacing=1.0, layers: int = 1, omega: float = 1.0,
                boundary="periodic", backend: str = "numpy", dtype: str = "float64",
                alpha: float | None = None, train_omega: bool = False, threads: int | None = None,
                checkpoint: int | None = None, activations: str | None = None,
                allow_unstable: bool = False) -> Network:
        """Generate (or reuse from the cache) and load the kernel; return a runnable :class:`Network`.

        ``n`` sites (1-D: an int; N-D: a tuple per axis) of spacing ``spacing`` (a number, or a
        tuple per axis), ``layers`` steps of relaxation ``omega`` (ω ∈ (0, 2) is the stable range
        of the leak), ``boundary`` one of periodic / dirichlet / neumann or a tuple of them per axis,
        ``alpha`` the strength of the optional soft normalisation ``−α(‖z‖ − 1) z``;
        ``threads`` splits each layer's grid across threads (default ``$NPDEGEN_NUM_THREADS`` or
        all cores; problems under ``Network.THREAD_MIN_SIZE`` values per layer use one).
        ``checkpoint=k`` keeps only every k-th layer of the trajectory for the gradient and
        recomputes the others segment by segment (memory ~ (L/k + k)·batch·n instead of L·batch·n).
        ``activations`` (numba backend): ``"auto"`` (vectorisable forms in float32, exact in
        float64), ``"fast"`` or ``"exact"``; other backends compute the exact forms.
        ``omega`` must lie in ``(0, 2)``, where the leak ``(1 − ω) z`` does not amplify;
        ``allow_unstable=True`` accepts any positive ω.
        """
        if not isinstance(layers, int) or isinstance(layers, bool) or layers < 1:
            raise ValueError(f"layers must be a positive integer, got {layers!r}")
        spacings = spacing if isinstance(spacing, (tuple, list)) else (spacing,) * self.dim
        if len(spacings) != self.dim:
            raise ValueError(f"spacing must be a number or a tuple of {self.dim} numbers (one per axis), "
                             f"got {spacing!r}")
        for what, v in [*(("spacing", v) for v in spacings), ("omega", omega)]:
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{what} must be a positive finite number, got {v!r}")
        if omega >= 2 and not allow_unstable:
            raise ValueError(f"omega = {omega!r} is outside (0, 2): the leak (1 - omega) z then amplifies every "
                             "mode (docs/theory.md §5); pass allow_unstable=True to run it anyway")
        if alpha is not None and (not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha < 0):
            raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
        if activations not in (None, *ACTIVATION_MODES):
            raise ValueError(f"activations must be one of {', '.join(ACTIVATION_MODES)}, got {activations!r}")
        recipe = dict(n=n, spacing=spacing, layers=layers, omega=omega, boundary=boundary, backend=backend,
                      dtype=dtype, alpha=alpha, train_omega=train_omega, threads=threads, checkpoint=checkpoint,
                      activations=activations, allow_unstable=allow_unstable)
        impl = get_backend(backend)      # "auto": cupy or numpy; numba without numba: numpy
        code, _ = self._step_options(dict(backend=impl.name, boundary=boundary, dtype=dtype, alpha=alpha,
                                          train_omega=train_omega, activations=activations))
        if self.dim == 1:                # 1-D networks keep the 1-D conventions: n an int, spacing a number
            n = n[0] if isinstance(n, (tuple, list)) and len(n) == 1 else n
            n = int(n) if isinstance(n, numbers.Integral) and not isinstance(n, bool) else n
        space = float(spacings[0]) if self.dim == 1 else tuple(float(v) for v in spacings)
        return Network(ir=self.lowered, options=code, backend=impl, kernel=impl.load_step(self.lowered, code),
                       n=n, spacing=space, layers=layers, omega=float(omega),
                       alpha=float(alpha or 0.0), threads=threads, checkpoint=checkpoint,
                       recipe=(self, recipe))

    def __getstate__(self):
        """A layer pickles as the arguments it was made from (everything else is derived again)."""
        return {"args": self._args}

    def __setstate__(self, state):
        self.__init__(**state["args"])

    def __repr__(self):
        bias = " - b" if self.spec.bias else ""
        return f"NeuralPDE({self.spec.name!r}: Z = {self.spec.transform}{bias}, f = {self.spec.activation_name})"

