"""``NeuralPDE``: the user's entry point, a thin facade over the pipeline stages

    spec (validate) → derive (SymPy) → codegen (printers + Jinja) → runtime (cache, kernels).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import cached_property
from math import factorial
from pathlib import Path

import sympy as sp

from .codegen.numba_target import ACTIVATION_MODES
from .codegen.render import KernelOptions, render
from .derive.kernel import KernelIR, build_kernel
from .derive.physics import PhysicsTable, explain_moments
from .derive.stencil import SPACING, Stencil, discretise, stencil_moments
from .runtime.backends import get_backend, kernel_filename
from .runtime.cache import stamp, write_atomic
from .runtime.network import Network
from .spec.layerspec import LayerSpec, make_spec
from .spec.specfile import read_spec_file

__all__ = ["NeuralPDE", "load_spec"]

_CODE_OPTIONS = ("backend", "boundary", "dtype", "normalise", "train_omega")
_RUN_OPTIONS = ("n", "spacing", "layers", "omega", "alpha", "threads", "checkpoint", "activations")


class NeuralPDE:
    r"""A neural-PDE layer: the relaxation step of MODEL.md §1 with a local kernel.

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

    def __init__(self, transform, field, activation="identity", params=None, bias=None,
                 accuracy=2, offsets=None, name="neural_pde"):
        self.spec: LayerSpec = make_spec(transform, field, activation=activation, params=params,
                                         bias=bias, accuracy=accuracy, offsets=offsets, name=name)
        self._stencil: Stencil = discretise(self.spec)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_moments(cls, moments, offsets: Sequence[int], field=None, **kwargs) -> "NeuralPDE":
        r"""The layer whose stencil on ``offsets`` has the given moments ``{k: W_k}``.

        ``W_k = Σ_j (jΔ)^k w_j`` (no ``1/k!``). Moments not given are zero; at most
        ``len(offsets)`` of them can be prescribed. The moment (Vandermonde) system is solved
        exactly: the transform is ``Σ_k W_k/k! ∂_q^k z`` discretised on exactly these offsets,
        whose Fornberg weights reproduce every moment below ``len(offsets)``. Example: the ADR
        layer is ``from_moments({0: 1 + R, 1: -U, 2: 2*D}, offsets=(-1, 0, 1))``.
        """
        if isinstance(moments, Mapping):
            items = dict(moments)
        elif isinstance(moments, Sequence) and not isinstance(moments, (str, bytes)):
            items = dict(enumerate(moments))
        else:
            raise TypeError(f"moments must be a mapping {{k: W_k}} or a sequence, got {type(moments).__name__}")
        if offsets is None or len(offsets) == 0:
            raise ValueError("from_moments needs the stencil offsets")
        bad = [k for k in items if not isinstance(k, int) or isinstance(k, bool) or k < 0]
        if bad:
            raise ValueError(f"moment orders must be integers >= 0, got {bad}")
        if items and max(items) >= len(offsets):
            raise ValueError(f"{len(offsets)} offsets fix at most the moments W_0..W_{len(offsets) - 1}; "
                             f"got W_{max(items)}")
        if field is None:
            field = sp.Function("z")(sp.Symbol("q"))
        q = field.args[0] if field.args else None
        transform = sum((sp.sympify(w) / factorial(k) * (field.diff(q, k) if k else field)
                         for k, w in sorted(items.items())), sp.Integer(0))
        kwargs.setdefault("accuracy", None)
        return cls(transform, field, offsets=tuple(offsets), **kwargs)

    # ------------------------------------------------------------------ derivation
    def stencil(self, spacing=SPACING) -> dict:
        """``{offset: weight}`` with ``Z_i = Σ_j w_j z_{i+j} − b_i``; ``spacing`` a symbol or number.

        For ``z + R*z - U*z_q + D*z_qq`` at accuracy 2:
        ``{-1: U/(2Δ) + D/Δ², 0: 1 + R − 2D/Δ², 1: −U/(2Δ) + D/Δ²}``.
        """
        return {j: w.subs(SPACING, spacing) for j, w in self._stencil.as_dict().items()}

    def moments(self, max_order: int = 4, spacing=SPACING) -> dict:
        """Kernel moments ``{k: W_k}``, ``W_k = Σ_j (jΔ)^k w_j`` — no ``1/k!`` (MODEL.md §2).

        For the ADR stencil: ``W_0 = 1 + R``, ``W_1 = −U``, ``W_2 = 2D`` (grid units:
        ``W_0 = A+B+C``, ``W_1 = (B−A)Δ``, ``W_2 = (A+B)Δ²``).
        """
        return stencil_moments(self._stencil, max_order, spacing)

    def explain(self, max_order: int | None = None) -> PhysicsTable:
        """Table moment → physical process (reaction, advection, diffusion, dispersion, …)."""
        if max_order is None:
            max_order = max(len(self._stencil.offsets) - 1, 2)
        return explain_moments(self.moments(max_order))

    @cached_property
    def kernel_ir(self) -> KernelIR:
        """The derived kernel description handed to code generation."""
        return build_kernel(self.spec)

    # ------------------------------------------------------------------ code
    @staticmethod
    def _split_options(options: dict) -> tuple[KernelOptions, dict]:
        unknown = set(options) - set(_CODE_OPTIONS) - set(_RUN_OPTIONS)
        if unknown:
            raise TypeError(f"unknown option(s) {sorted(unknown)}; code options are {_CODE_OPTIONS}, "
                            f"run options {_RUN_OPTIONS}")
        chosen = {k: options[k] for k in _CODE_OPTIONS if k in options}
        chosen.setdefault("normalise", bool(options.get("alpha")))
        code = KernelOptions(**chosen)
        return code, {k: options[k] for k in _RUN_OPTIONS if k in options}

    def source(self, **options) -> str:
        """The generated kernel source for the given code options (see :meth:`compile`)."""
        code, _ = self._split_options(options)
        return render(self.kernel_ir, code).source

    def generate(self, out, **options) -> list[Path]:
        """Write the generated kernel(s) into folder ``out``; returns the paths written.

        Takes the options of :meth:`compile`; only ``backend, boundary, dtype, normalise,
        train_omega`` change the code (the others are accepted and ignored).
        """
        code, _ = self._split_options(options)
        rendered = render(self.kernel_ir, code)
        stem = kernel_filename(self.kernel_ir, code)
        return [write_atomic(Path(out) / f"{stem}{suffix}", stamp(text, suffix))
                for suffix, text in rendered.files.items()]

    def compile(self, n: int, spacing: float = 1.0, layers: int = 1, omega: float = 1.0,
                boundary: str = "periodic", backend: str = "numpy", dtype: str = "float64",
                alpha: float | None = None, train_omega: bool = False, threads: int | None = None,
                checkpoint: int | None = None, activations: str | None = None) -> Network:
        """Generate (or reuse from the cache) and load the kernel; return a runnable :class:`Network`.

        ``n`` sites of spacing ``spacing``, ``layers`` steps of relaxation ``omega`` (ω ∈ (0, 2)
        is the stable range of the leak), ``boundary`` one of periodic / dirichlet / neumann,
        ``alpha`` the strength of the optional soft normalisation ``−α(‖z‖ − 1) z``;
        ``threads`` splits each layer's grid across threads (default ``$NPDEGEN_NUM_THREADS`` or
        all cores; problems under ``Network.THREAD_MIN_SIZE`` values per layer use one).
        ``checkpoint=k`` keeps only every k-th layer of the trajectory for the gradient and
        recomputes the others segment by segment (memory ~ (L/k + k)·batch·n instead of L·batch·n).
        ``activations`` (numba backend): ``"auto"`` (vectorisable forms in float32, exact in
        float64), ``"fast"`` or ``"exact"``; other backends compute the exact forms.
        """
        if not isinstance(n, int) or isinstance(n, bool) or n <= 2 * self.kernel_ir.halo:
            raise ValueError(f"n must be an integer > {2 * self.kernel_ir.halo} (twice the stencil "
                             f"half-width), got {n!r}")
        if not isinstance(layers, int) or isinstance(layers, bool) or layers < 1:
            raise ValueError(f"layers must be a positive integer, got {layers!r}")
        for what, v in (("spacing", spacing), ("omega", omega)):
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{what} must be a positive finite number, got {v!r}")
        if alpha is not None and (not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha < 0):
            raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
        if activations not in (None, *ACTIVATION_MODES):
            raise ValueError(f"activations must be one of {', '.join(ACTIVATION_MODES)}, got {activations!r}")
        impl = get_backend(backend)      # "auto": cupy or numpy; numba without numba: numpy
        code = KernelOptions(backend=impl.name, boundary=boundary, dtype=dtype,
                             normalise=bool(alpha), train_omega=train_omega)
        code = impl.code_options(code, activations=activations)
        return Network(ir=self.kernel_ir, options=code, backend=impl, kernel=impl.load(self.kernel_ir, code),
                       n=n, spacing=float(spacing), layers=layers, omega=float(omega),
                       alpha=float(alpha or 0.0), threads=threads, checkpoint=checkpoint)

    def __repr__(self):
        return f"NeuralPDE({self.spec.name!r}: Z = {self.spec.transform} - b, f = {self.spec.activation_name})"


def load_spec(path) -> tuple[NeuralPDE, dict]:
    """Read a TOML spec file (format: :mod:`npdegen.spec.specfile`); returns ``(layer, compile_options)``.

    Expression strings are parsed by a whitelist parser: nothing in the file is evaluated.
    """
    spec = read_spec_file(path)
    return NeuralPDE(**spec["layer"]), spec["compile"]
