r"""Self-transport layers: a 2-D field carried by the velocity it induces (vorticity form), periodic grids.

The nonlocal map of the vorticity equation :math:`z_t + \mathbf u\cdot\nabla z = ν Δz`: the velocity is
the Biot–Savart integral of the field itself, :math:`\mathbf u = c\,\nabla^{\perp}(-Δ)^{-1} z`
(:math:`\mathbf u = (ψ_y, -ψ_x)`, :math:`-Δψ = z`), which no stencil of fixed reach represents.
In Fourier space (real FFTs, :math:`κ` the angular wavenumbers of the grid's period) with the
multipliers :math:`D_a = iκ_a` (zero at a Nyquist index, so that the symbol is odd),
:math:`G = 1/|κ|^2` (0 for the mean: the mean carries no velocity), :math:`P` Orszag's 2/3 rule
(:func:`npdegen.tasks.fourier.dealias_mask`) and :math:`Δ = -|κ|^2`:

.. math::
    J(z) = P\big[u\, D_x z + v\, D_y z\big], \qquad u = D_y G z, \quad v = -D_x G z,

the semi-discretisation of :func:`npdegen.tasks.twod.vorticity_on_grid` (same derivatives, same
dealiasing), with the transport scaled: :math:`\dot z = -c J(z) + ν Δ z`.

**Scheme** (one layer, time step ``ω``): integrating-factor Heun (IF-RK2), with :math:`E = e^{ωνΔ}`,

.. math::
    \tilde z = E\,(z - ωc\,J(z)), \qquad z' = \tfrac12\big(E z + \tilde z - ωc\,J(\tilde z)\big).

Why: the diffusion is integrated exactly, so no viscosity a fit may try limits the step (forward
Euler or plain Heun need :math:`ων|κ|^2 ≤ 2`, i.e. ``L ≥ 20`` layers at ν = 2e-3 on 32²); the
advection's symbol is imaginary, where forward Euler amplifies every mode by
:math:`\sqrt{1 + θ^2}` (:math:`θ = ωc|\mathbf u||κ|`) but Heun only by :math:`(1 + θ^4/4)^{1/2}`,
and the exact diffusion damps the fast modes. The scheme is second order: ``L`` layers of
``ω = T/L`` converge to the solver's map as :math:`L^{-2}`. The layer depends on ``ω`` only through
``ωc`` and ``ων``, so ``ω`` is fixed at compile time (training it beside ``c`` and ``ν`` would be
redundant): with ``ω = T/L`` the true parameters are ``c = 1`` and ``ν`` the viscosity.

**Adjoint** (exact, by hand). :math:`D_a^{\mathsf T} = -D_a`, :math:`G, P, E` are symmetric, and
the transpose of the linearised transport at :math:`z` (fields :math:`u, v, z_x, z_y`) is

.. math::
    J_z^{\mathsf T} g = -G D_y(p z_x) + G D_x(p z_y) - D_x(p u) - D_y(p v), \qquad p = P g.

With :math:`λ` the cotangent of :math:`z'`: :math:`\tilde λ = \tfrac12 λ - \tfrac{ωc}2 J_{\tilde z}^{\mathsf T}λ`,
:math:`λ_a = E\tilde λ`, and

.. math::
    λ_z = \tfrac12 Eλ + λ_a - ωc\,J_z^{\mathsf T} λ_a, \qquad
    \frac{∂}{∂c} = -\tfrac{ω}2⟨λ, J(\tilde z)⟩ - ω⟨λ_a, J(z)⟩, \qquad
    \frac{∂}{∂ν} = ⟨\tilde λ, ωΔ\tilde z⟩ + \tfrac12⟨λ, ωΔ E z⟩.

Inner products are taken in the spectrum: :math:`⟨a, b⟩ = \frac1N \sum_k w_k \operatorname{Re}(\bar{\hat a}_k \hat b_k)`
(``w = 2`` for the half spectrum's interior columns). ``loss = 0.5 Σ (z_L − y)²``; a forward pass keeps
the spectra :math:`\hat z_t`; the backward recomputes each layer's fields from them.
"""
from __future__ import annotations

import numbers

import numpy as np
import scipy.fft as sfft

from ..runtime.host_api import HostNetworkAPI

__all__ = ["TransportNetwork", "transport_network"]

NAMES = ("c", "nu")


class _Spectrum:
    """The Fourier multipliers of a periodic 2-D grid (rfft layout, the dtype of the network)."""

    def __init__(self, grid, lengths, dtype):
        nx, ny = grid
        real = np.dtype(dtype)
        kx = 2 * np.pi / lengths[0] * sfft.fftfreq(nx, 1.0 / nx)[:, None]
        ky = 2 * np.pi / lengths[1] * sfft.rfftfreq(ny, 1.0 / ny)[None, :]
        self.k2 = (kx ** 2 + ky ** 2).astype(real)                      # -Δ (Nyquist included: an even symbol)
        dx, dy = kx.copy(), np.broadcast_to(ky, (1, ky.shape[1])).copy()
        if nx % 2 == 0:
            dx[nx // 2] = 0.0                                           # odd symbols: D_a antisymmetric
        if ny % 2 == 0:
            dy[:, ny // 2] = 0.0
        self.dx, self.dy = (1j * dx).astype(np.result_type(real, np.complex64)), \
            (1j * dy).astype(np.result_type(real, np.complex64))
        self.g = np.where(self.k2 > 0, 1.0 / np.where(self.k2 > 0, self.k2, 1.0), 0.0).astype(real)
        self.mask = ((np.abs(sfft.fftfreq(nx, 1.0 / nx)) < nx / 3)[:, None]
                     & (np.abs(sfft.rfftfreq(ny, 1.0 / ny)) < ny / 3)[None, :]).astype(real)
        w = np.full(ky.shape[1], 2.0)
        w[0] = 1.0
        if ny % 2 == 0:
            w[-1] = 1.0
        self.weights = w / (nx * ny)
        self.grid = (nx, ny)

    def rfft(self, a):
        return sfft.rfft2(a, axes=(-2, -1))

    def irfft(self, a):
        return sfft.irfft2(a, s=self.grid, axes=(-2, -1))

    def dot(self, a, b) -> float:
        """``⟨irfft a, irfft b⟩`` from the spectra (float64)."""
        prod = (np.conj(a) * b).real.astype(np.float64)
        return float(np.sum(prod.reshape(-1, prod.shape[-1]) @ self.weights))

    def fields(self, zh):
        """``(z_x, z_y, u, v)`` stacked on a new first axis, from the spectrum ``zh``."""
        psi = self.g * zh
        return self.irfft(np.stack([self.dx * zh, self.dy * zh, self.dy * psi, -self.dx * psi]))

    def transport(self, f):
        """``Ĵ = P rfft(u z_x + v z_y)`` from :meth:`fields`."""
        return self.mask * self.rfft(f[2] * f[0] + f[3] * f[1])

    def transport_t(self, f, gh):
        """``rfft(J_zᵀ g)`` for the spectrum ``gh`` of ``g`` (module docstring)."""
        p = self.irfft(self.mask * gh)
        q = self.rfft(p[None] * f)
        return self.g * (self.dx * q[1] - self.dy * q[0]) - self.dx * q[2] - self.dy * q[3]


class TransportNetwork(HostNetworkAPI):
    """``L`` self-transport layers on a periodic 2-D grid (module docstring): the surface training uses
    (``init_params``, ``check_params``, ``forward``, ``backward``, ``vjp``, ``loss_and_grad``,
    ``layer_losses``, ``shapes``). Parameters ``c`` (transport scale) and ``nu`` (viscosity),
    homogeneous (shape ``()``); ``omega`` the time step of a layer (fixed)."""
    UNSTABLE = "ω·c·|u|·κ too large: use more layers"

    families = {"c": "homogeneous", "nu": "homogeneous"}
    kernel_names = NAMES
    train_omega = False

    def __init__(self, grid, spacing=None, layers: int = 1, omega: float = 1.0, boundary="periodic",
                 dtype="float64"):
        grid = (grid,) if isinstance(grid, numbers.Integral) else tuple(grid)
        if len(grid) != 2:
            raise ValueError(f"transport layers are 2-D (a field and the velocity it induces in the plane); "
                             f"got a {len(grid)}-D grid {grid}")
        if not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 4 for n in grid):
            raise ValueError(f"grid must be 2 integers >= 4 (sites per axis), got {grid!r}")
        bounds = (boundary,) * 2 if isinstance(boundary, str) else tuple(boundary)
        if len(bounds) != 2 or any(b != "periodic" for b in bounds):
            raise ValueError(f"transport layers need a periodic grid (the velocity is a Fourier multiplier of "
                             f"the field), got boundary={boundary!r}")
        spacing = tuple(1.0 / n for n in grid) if spacing is None else (
            (spacing,) * 2 if isinstance(spacing, numbers.Real) else tuple(spacing))
        if len(spacing) != 2 or not all(isinstance(h, numbers.Real) and np.isfinite(h) and h > 0 for h in spacing):
            raise ValueError(f"spacing must be a positive number or 2 of them, got {spacing!r}")
        if isinstance(layers, bool) or not isinstance(layers, numbers.Integral) or layers < 1:
            raise ValueError(f"layers must be a positive integer, got {layers!r}")
        if isinstance(omega, bool) or not isinstance(omega, numbers.Real) or not np.isfinite(omega) or omega <= 0:
            raise ValueError(f"omega (the time step of a layer) must be a positive number, got {omega!r}")
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
        self.grid, self.n, self.spacing = grid, grid, tuple(float(h) for h in spacing)
        self.layers, self.omega, self.boundary = int(layers), float(omega), "periodic"
        self.shapes = {k: () for k in NAMES}
        self.spectrum = _Spectrum(grid, [n * h for n, h in zip(grid, self.spacing)], self.dtype)

    # ------------------------------------------------------------------ parameters and arrays
    def init_params(self, seed=0, scale: float = 0.0, values: dict | None = None) -> dict:
        """``values`` (default ``c = 1``, ``ν = 0``) plus ``scale·N(0, 1)`` (``ν`` kept ≥ 0)."""
        values = {"c": 1.0, "nu": 0.0, **(values or {})}
        unknown = set(values) - set(NAMES)
        if unknown:
            raise ValueError(f"init_params: unknown parameter(s) {sorted(unknown)}; expected {list(NAMES)}")
        rng = np.random.default_rng(seed)
        theta = {k: float(values[k]) + scale * rng.standard_normal() for k in NAMES}
        theta["nu"] = abs(theta["nu"])
        return self.check_params({k: np.asarray(v, self.dtype) for k, v in theta.items()})

    def _check_kernel(self, values) -> None:
        if float(values["nu"]) < 0:
            raise ValueError(f"nu must be >= 0 (a negative viscosity grows the mode κ by e^(ω|ν|κ²) per layer), "
                             f"got {float(values['nu'])}")

    # ------------------------------------------------------------------ one layer
    def _layer(self, zh, c, nu):
        """``(ẑ', E, fields of z, J(z), z̃̂, fields of z̃, J(z̃))`` for the spectrum ``zh`` (module docstring)."""
        s, w = self.spectrum, self.omega
        E = np.exp(-(w * nu) * s.k2).astype(self.dtype)
        f1 = s.fields(zh)
        j1 = s.transport(f1)
        th = E * (zh - (w * c) * j1)
        f2 = s.fields(th)
        j2 = s.transport(f2)
        return 0.5 * (E * zh + th - (w * c) * j2), E, f1, j1, th, f2, j2

    def _params(self, theta):
        return float(theta["c"]), float(theta["nu"])

    def _run(self, x2d, theta, keep=False, trajectory=False):
        c, nu = self._params(theta)
        zh = self.spectrum.rfft(x2d)
        stored, traj = [], [x2d.copy()] if trajectory else None
        with np.errstate(over="ignore", invalid="ignore"):
            for _ in range(self.layers):
                if keep:
                    stored.append(zh)
                zh = self._layer(zh, c, nu)[0]
                if trajectory:
                    traj.append(self.spectrum.irfft(zh).astype(self.dtype))
        last = self.spectrum.irfft(zh).astype(self.dtype)
        return last, (np.stack(traj) if trajectory else None), stored

    def _final(self, x2d, theta):
        last, _, stored = self._run(x2d, theta, keep=True)
        return last, stored

    def _adjoint(self, stored, lam, theta):
        """``(dx, grads)`` from the kept spectra and the cotangent ``lam`` of ``z_L`` (module docstring)."""
        s, w = self.spectrum, self.omega
        c, nu = self._params(theta)
        gc = gnu = 0.0
        lh = s.rfft(np.asarray(lam, self.dtype))
        with np.errstate(over="ignore", invalid="ignore"):
            for zh in reversed(stored):
                _, E, f1, j1, th, f2, j2 = self._layer(zh, c, nu)
                gc -= 0.5 * w * s.dot(lh, j2)
                lt = 0.5 * lh - (0.5 * w * c) * s.transport_t(f2, lh)
                gnu -= w * (s.dot(lt, s.k2 * th) + 0.5 * s.dot(lh, s.k2 * (E * zh)))
                la = E * lt
                gc -= w * s.dot(la, j1)
                lh = 0.5 * E * lh + la - (w * c) * s.transport_t(f1, la)
        dx = s.irfft(lh).astype(self.dtype)
        return dx, {"c": np.asarray(gc, self.dtype), "nu": np.asarray(gnu, self.dtype)}

    # ------------------------------------------------------------------ public
    def velocity(self, z, c: float = 1.0) -> tuple:
        """``(u, v) = c ∇⊥(−Δ)⁻¹ z`` of fields ``z`` (``(batch, nx, ny)``)."""
        z2d, single = self._states(z, "z")
        f = self.spectrum.fields(self.spectrum.rfft(z2d))
        u, v = c * f[2], c * f[3]
        return (u[0], v[0]) if single else (u, v)

    def __repr__(self):
        return (f"TransportNetwork(grid={self.grid}, spacing={self.spacing}, layers={self.layers}, "
                f"omega={self.omega:g}, dtype={self.dtype.name!r})")

    def __reduce__(self):
        return (transport_network, (self.grid, self.spacing, self.layers, self.omega, "periodic", self.dtype.name))


def transport_network(grid, spacing=None, layers: int = 1, omega: float = 1.0, boundary="periodic",
                      dtype="float64") -> TransportNetwork:
    """:class:`TransportNetwork` (checks the grid, boundary, depth and time step)."""
    return TransportNetwork(grid, spacing, layers, omega, boundary, dtype)
