r"""Layer kind ``"nonlocal"``: a Gaussian kernel of learned width, shift and amplitude (``ω = 1``).

One layer (:class:`npdegen.integral.NonlocalPDE`) is

.. math::
    z_{t+1}(q) = f\Big(A \int G_σ(r - μ)\, z_t(q + r)\, dr\Big), \qquad
    G_σ(r) = \prod_a \frac{e^{-r_a^2/2σ_a^2}}{\sqrt{2π}\,σ_a},

sampled on the grid (stencil or FFT, whichever is cheaper for ``σ``). On a periodic grid its
symbol is ``A e^{iκ·μ − Σ_a σ_a² κ_a²/2}``: a linear reaction ``log A``, a transport by ``−μ`` and
a diffusion ``σ²/2`` per layer, with no CFL limit — one layer reaches as far as the data need,
where a stable ``w``-point stencil moves information ``(w − 1)/2`` cells. With the identity a stack
of such layers is again one Gaussian layer, so the linear recipe has ``L = 1``; ``tanh`` and
``reaction`` (``f(x) = x + A2 x² + A3 x³``, logistic and Allen–Cahn in reach) alternate kernel and
pointwise nonlinearity — a splitting of reaction–diffusion whose error falls with ``L`` — at the
space's depths. Homogeneous parameters only (a per-site kernel gives up the FFT, and the search's
time is better spent on the stencils' per-site families).

**Starts.** From the data's total ``(r, b, C)`` (:func:`~npdegen.estimator.starts.spectral_estimate`):
``A = e^{r/L}``, ``μ = −b/L``, ``σ_a² = 2C_aa/L`` (at least ``(Δ_a/2)²``). When no mode above the
mean survives (the data are diffused past the grid's lowest mode, as Fisher–KPP with ``ν = 0.5``
on the unit interval), a wide kernel: ``σ_a`` a quarter of the period over ``√L``, and ``A`` from
the ratio of the norms. Random starts draw the total width ``σ√L`` log-uniformly in ``[Δ, P/2]``.
**Bounds:** ``σ_a ∈ [Δ_a/4, P_a]``, ``μ_a ∈ [−P_a/2, P_a/2]``, ``A ≥ 0``.

**Sampled mass.** The layer samples the kernel by the rectangle rule on the offsets ``|j_a| ≤ n_a/2``;
the samples sum to ``A Π_a m_a`` with ``m_a = Σ_j Δ_a G_{σ_a}(jΔ_a − μ_a)`` (:func:`sampled_mass`),
1 for kernels wider than a cell but 1.60 per axis at ``σ = Δ/4``. The starts set ``A`` so that the
sampled kernel has the intended mass (``e^{r/L}``, the norm ratio per layer), and a start for
another depth keeps the sampled mass of ``L`` layers (``(A m)^L``): rescaling only ``A`` and ``σ``
gave fisher-kpp-2d's 64-layer recipe, from its 16-layer fit, a kernel of ``σ ≈ Δ/4`` and mass
``1.01 · 1.6²`` per layer, which overflowed (the recipe failed).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import sympy as sp

from .recipes import LETTERS, LayerKind, NotApplicable, Recipe, activation_expression, register

__all__ = ["GaussianKernel", "KernelReport", "sampled_mass"]


def sampled_mass(sigma, mu, spacing: float, n: int) -> float:
    """``Σ_{|j| ≤ n//2} Δ G_σ(jΔ − μ)``: the sum of a unit Gaussian's rectangle-rule samples on a
    periodic axis of ``n`` sites of spacing ``Δ`` (the layer's offsets: :func:`npdegen.integral.sample.max_reach`)."""
    sigma, mu = float(sigma), float(mu)
    j = np.arange(-(n // 2), n // 2 + 1)
    samples = spacing * np.exp(-(j * spacing - mu) ** 2 / (2 * sigma ** 2))
    return float(np.sum(samples)) / (math.sqrt(2 * math.pi) * sigma)


def _names(dim: int) -> tuple:
    """``(sigma names, mu names)`` per axis."""
    if dim == 1:
        return ("sigma",), ("mu",)
    return tuple(f"sigma_{a}" for a in LETTERS[:dim]), tuple(f"mu_{a}" for a in LETTERS[:dim])


class GaussianKernel(LayerKind):
    """``A G_σ(r − μ)`` with an activation (module docstring)."""
    name = "nonlocal"
    families = ("homogeneous",)

    def prepare(self, problem) -> "GaussianKernel":
        grid = problem.grid
        if min(grid) < 4:
            raise NotApplicable(f"nonlocal: needs at least 4 sites per axis, the grid is {grid}")
        ratio = float(np.linalg.norm(problem.y_train) / max(np.linalg.norm(problem.x_train), 1e-300))
        period = tuple(n * h for n, h in zip(grid, problem.spacing))
        return self.specialise(spacing=tuple(problem.spacing), period=period, estimate=problem.estimate,
                               norm_ratio=max(ratio, 1e-6))

    def recipes(self, space, family):
        """The linear kernel at ``L = 1``; ``tanh`` and ``reaction`` at each depth, warm-started from
        the shallower depth and from the linear kernel."""
        out = []
        linear = "identity" in space.activations
        if linear:
            out.append(Recipe(self.name, family, 0, 1, "identity", 1.0))
        for L in space.depths:
            for act in (a for a in space.activations if a != "identity"):
                i = space.depths.index(L)
                warm = ([Recipe(self.name, family, 0, space.depths[i - 1], act, 1.0).label] if i else []) + \
                       ([Recipe(self.name, family, 0, 1, "identity", 1.0).label] if linear else [])
                out.append(Recipe(self.name, family, 0, L, act, 1.0, tuple(warm)))
        return out

    def layer(self, recipe, dim):
        from ..integral import NonlocalPDE, gaussian
        if dim == 1:
            field = sp.Function("z")(sp.Symbol("q"))
        else:
            field = sp.Function("u")(*sp.symbols(" ".join(LETTERS[:dim])))
        sig, mus = _names(dim)
        sigmas, shifts, amp = [sp.Symbol(s) for s in sig], [sp.Symbol(m) for m in mus], sp.Symbol("A")
        kernel = amp * gaussian(sigmas[0] if dim == 1 else tuple(sigmas), shifts[0] if dim == 1 else tuple(shifts),
                                dim=dim)
        params = {s: recipe.family for s in (*sigmas, *shifts, amp)}
        activation = activation_expression(recipe.activation, params)
        if recipe.activation == "reaction":
            activation = activation.xreplace({sp.Symbol("x"): sp.Symbol("X")})   # x is a reserved kernel key
        return NonlocalPDE(kernel, field, activation=activation, params=params,
                           name=f"est_nonlocal_{recipe.activation[:3]}_{dim}d")

    def compile(self, layer, recipe, grid, spacing, boundary, backend, dtype):
        return layer.compile(grid if len(grid) > 1 else grid[0], spacing=spacing if len(grid) > 1 else spacing[0],
                             layers=recipe.depth, omega=recipe.omega, boundary=boundary, dtype=dtype, method="auto",
                             threads=1)

    def bounds(self, recipe, dim):
        sig, mus = _names(dim)
        out = {"A": (0.0, None)}
        for s, m, h, P in zip(sig, mus, self.spacing, self.period):
            out[s] = (h / 4, P)
            out[m] = (-P / 2, P / 2)
        return out

    def _mass(self, theta) -> float:
        """``Π_a m_a``: the sampled kernel's mass per unit ``A`` (module docstring)."""
        sig, mus = _names(len(self.spacing))
        return math.prod(sampled_mass(np.mean(theta[s]), np.mean(theta[m]), h, round(P / h))
                         for s, m, h, P in zip(sig, mus, self.spacing, self.period))

    def _theta(self, net, recipe, amplitude, shifts, widths):
        """Parameters whose sampled kernel has the mass ``amplitude`` (module docstring)."""
        sig, mus = _names(len(self.spacing))
        theta = {k: np.zeros(s, net.dtype) for k, s in net.shapes.items()}
        for s, m, b, w, h, P in zip(sig, mus, shifts, widths, self.spacing, self.period):
            theta[s][...] = min(max(w, h / 4), P)
            theta[m][...] = (b + P / 2) % P - P / 2
        theta["A"][...] = amplitude / self._mass(theta)
        return theta

    def transfer(self, theta, source, net, recipe):
        """:meth:`LayerKind.transfer`, with ``A`` set so that ``L'`` layers have the sampled mass of the
        source's ``L`` (module docstring)."""
        out = super().transfer(theta, source, net, recipe)
        ratio = source.depth / recipe.depth
        if ratio != 1 and "A" in theta and hasattr(self, "spacing"):
            out["A"] = np.asarray(out["A"] * self._mass(theta) ** ratio / self._mass(out), net.dtype)
        return out

    def data_start(self, net, recipe, spacing, estimate):
        """The module docstring's start from ``(r, b, C)`` per layer, or the wide kernel."""
        L, e = recipe.depth, self.estimate
        if e is None:
            return self._theta(net, recipe, self.norm_ratio ** (1 / L), [0.0] * len(self.period),
                               [P / 4 / math.sqrt(L) for P in self.period])
        widths = [max(math.sqrt(max(2 * e.diffusion[a, a], 0.0) / L), h / 2) for a, h in enumerate(self.spacing)]
        return self._theta(net, recipe, math.exp(e.reaction / L), [-b / L for b in e.velocity], widths)

    def random_starts(self, net, recipe, spacing, count, rng):
        L, e, out = recipe.depth, self.estimate, []
        for _ in range(count):
            widths = [math.exp(rng.uniform(math.log(h), math.log(P / 2))) / math.sqrt(L)
                      for h, P in zip(self.spacing, self.period)]
            shifts = [-b / L for b in e.velocity] if e is not None else [0.0] * len(widths)
            out.append(self._theta(net, recipe, self.norm_ratio ** (1 / L) * rng.uniform(0.95, 1.05), shifts, widths))
        return out

    def rescale_depth(self, name, value, ratio, omega):
        """``A^L``, ``Lμ``, ``Lσ²`` and the activation's ``L·A2``, ``L·A3`` kept when ``L → L/ratio``."""
        if name == "A":
            return np.maximum(value, 1e-12) ** ratio
        if name.startswith("sigma"):
            return value * math.sqrt(ratio)
        if name.startswith("mu"):
            return value * ratio
        return value * ratio                      # A2, A3: the reaction per layer, ∝ 1/L

    def reach(self, recipe):
        return math.inf

    def gain(self, layer, net, theta, recipe, spacing):
        """``max_κ |ŵ(κ)|`` of the sampled kernel on the grid (times ``f′(0) = 1``): the FFT of one
        linear layer's impulse response (periodic symbol; the rectangle rule's samples of a kernel
        narrower than a cell can sum to slightly more than ``A``)."""
        from ..integral import NonlocalPDE
        grid = tuple(net.grid) if np.ndim(net.grid) else (int(net.grid),)
        names = [p.name for p in layer.kernel.params]
        linear = NonlocalPDE(layer.kernel, layer.field, activation="identity",
                             params={k: "homogeneous" for k in names})
        one = linear.compile(grid if len(grid) > 1 else grid[0], spacing=spacing if len(grid) > 1 else spacing[0],
                             layers=1, omega=1.0, boundary="periodic", method="auto", threads=1)
        impulse = np.zeros((1, *grid))
        impulse[(0,) * (len(grid) + 1)] = 1.0
        response = np.asarray(one.forward(impulse, {k: np.asarray(theta[k], np.float64) for k in names}))[0]
        return float(np.abs(np.fft.fftn(response)).max()), ""

    def physics(self, layer, theta, spacing, recipe=None):
        return KernelReport(layer, {k: np.asarray(v, np.float64) for k, v in theta.items()},
                            tuple(spacing) if isinstance(spacing, (tuple, list)) else (float(spacing),),
                            recipe.depth if recipe is not None else None)


@dataclass
class KernelReport:
    """The fitted kernel per layer (``A``, ``σ``, ``μ``, the activation's ``A2``, ``A3``) and what
    ``L`` linear layers of it would do: reaction ``L log A``, transport ``−Lμ``, diffusion
    ``Lσ²/2`` (``νT``). ``str()`` prints them with the kernel's exact moments."""
    layer: object
    theta: dict
    spacing: tuple
    layers: int | None = None

    def rows(self) -> list:
        """``[{order, process, meaning, coefficient, value, min, mean, max, total}]`` (JSON-ready)."""
        L = self.layers
        out = []
        for k in sorted(self.theta):
            v = float(np.asarray(self.theta[k]).mean())
            if k == "A":
                row = ("reaction", "kernel mass W_0 = A (growth per layer; total L log A)",
                       None if L is None else L * math.log(max(v, 1e-300)))
            elif k.startswith("sigma"):
                row = ("diffusion", "kernel width: W_2 - W_1^2 = sigma^2 (nu T = L sigma^2/2)",
                       None if L is None else L * v * v / 2)
            elif k.startswith("mu"):
                row = ("advection", "kernel shift mu: transport by -mu per layer (total -L mu)",
                       None if L is None else -L * v)
            else:
                row = ("activation", f"f(x) = x + A2 x^2 + A3 x^3 ({k})", None)
            out.append({"order": k, "process": row[0], "meaning": row[1], "coefficient": k, "value": v,
                        "min": v, "mean": v, "max": v, "total": row[2]})
        return out

    def __str__(self):
        lines = [repr(self.layer), str(self.layer.explain(2)), "",
                 "param    process      per layer      total over the layers   meaning"]
        for r in self.rows():
            total = "-" if r["total"] is None else f"{r['total']:.6g}"
            lines.append(f"{r['coefficient']:<8} {r['process']:<12} {r['value']:<14.6g} {total:<23} {r['meaning']}")
        return "\n".join(lines)


register(GaussianKernel())
