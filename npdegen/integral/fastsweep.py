r"""The layer-by-layer sweep of one homogeneous kernel — by FFT, or by a direct 1-D stencil — with its
work arrays kept between calls.

One kernel ``w`` for every site and layer (a convolution), any activation and boundary. Per layer
``t`` (``z̃`` the boundary extension, :mod:`.apply`):

.. math::  Z_t = K z_t − b_t, \quad z_{t+1} = (1 − ω) z_t + ω f(Z_t);\qquad
           μ_t = ω f′(Z_t) λ_{t+1}, \quad λ_t = (1 − ω) λ_{t+1} + Kᵀ μ_t, \quad
           C_o \mathrel{+}= Σ_{b,i} μ_t[b,i]\, \tilde z_t[b, i + o]

and ``∂/∂θ = Σ_o ∂w_o/∂θ · C_o`` once after the sweep (the kernel is the same in every layer).

* **FFT** (:class:`_FFT`, ``P`` the extended period, ``k̂`` the transform of the wrapped weights):
  ``ẑ_t = rfft(z̃_t)`` (kept), ``K z_t = irfft_u(ẑ_t · conj(k̂)/P_tot)|_{[0,n)}``,
  ``Kᵀμ = fold irfft_u(μ̂ · k̂/P_tot)`` and ``Ĉ += Σ_b conj(μ̂_b) ẑ_{t,b}``, contracted by Parseval
  (:meth:`FFTOperator.parseval`). ``irfft_u`` is the unnormalised inverse: ``1/P_tot`` sits in the
  kernel's spectrum once per call. Four transforms of the batch per layer — the least for a
  nonlinear ``f``: each direction needs ``Z_t`` in real space for ``f`` and its result back in
  Fourier space. scipy's pocketfft writes into kept arrays (``out=``).
* **Stencil** (:class:`_Stencil`, 1-D, numba): ``K z = Σ_j w_j zp[i + j]`` over the halo-padded
  ``zp`` (:func:`npdegen.grid.fill_halo`), ``Kᵀμ`` the correlation of the ``2K``-zero-padded ``μ``
  with the reversed weights, its halo folded back, and ``C_o`` by :func:`.fused.lag_sums`.

``loss_and_grad`` keeps the trajectory, spectra and pre-activations in arrays of the network (they
never leave the call): a network must not run two ``loss_and_grad`` at once (as
:class:`npdegen.runtime.network.Network`). Measured speed: benchmarks/RESULTS.md, nonlocal section.
"""
from __future__ import annotations

import numpy as np
import scipy.fft as sfft

from ..grid import fill_halo, fold_halo
from . import fused
from .apply import dot

try:                                  # scipy's pocketfft binding: transforms into a given output array
    from scipy.fft._pocketfft import pypocketfft as _pocketfft
except ImportError:                   # pragma: no cover - another scipy layout: the public functions
    _pocketfft = None

__all__ = ["LayerSweep", "Transforms", "direct_stencil"]


def direct_stencil(op, net) -> bool:
    """Whether ``op`` is a stencil that :class:`_Stencil` runs (1-D, one kernel, numba installed)."""
    return op.name == "stencil" and op.d == 1 and not net._site and fused.HAVE_NUMBA


class Transforms:
    """Unnormalised real transforms over the last ``len(periods)`` axes into given arrays."""

    def __init__(self, periods, workers: int, direct: bool = True):
        self.periods, self.workers = tuple(periods), int(workers)
        self.axes = tuple(range(-len(self.periods), 0))
        self.direct = direct and _pocketfft is not None

    def r2c(self, a, out):
        """``out = rfftn(a)`` (no scaling); ``a`` has the period's shape on its last axes."""
        if self.direct:
            _pocketfft.r2c(a, tuple(a.ndim + k for k in self.axes), True, 0, out, self.workers)
        else:
            out[...] = sfft.rfftn(a, axes=self.axes, workers=self.workers)
        return out

    def c2r(self, a, out):
        """``out = P_tot · irfftn(a)`` (the unnormalised inverse); ``a`` may be overwritten."""
        if self.direct:
            _pocketfft.c2r(a, tuple(a.ndim + k for k in self.axes), self.periods[-1], False, 0, out, self.workers)
        else:
            out[...] = sfft.irfftn(a, s=self.periods, axes=self.axes, norm="forward", workers=self.workers)
        return out


class _Engine:
    def __init__(self, sweep, op, plan, B):
        self.sweep, self.op, self.plan, self.B = sweep, op, plan, B
        self.grid = op.grid
        self.kept = sweep.kept


class _FFT(_Engine):
    """``K``, ``Kᵀ`` and ``Ĉ`` by transforms (module docstring)."""

    def __init__(self, sweep, op, plan, B):
        super().__init__(sweep, op, plan, B)
        self.periods = op.periods
        self.same = self.periods == self.grid            # every axis periodic: no extension, no fold
        self.half = self.periods[:-1] + (self.periods[-1] // 2 + 1,)
        self.fft = Transforms(self.periods, op.workers)
        self.real, self.complex = op.dtype, op._complex
        (khat, khat_conj), _ = plan.layer(0)
        scale = 1.0 / float(np.prod(self.periods))
        self.kc, self.ks = (khat_conj * scale).astype(self.complex), (khat * scale).astype(self.complex)
        full, half = (B, *self.periods), (B, *self.half)
        self.ext = None if self.same else self.kept("ext", full, self.real, zero=True)   # the pad stays 0
        self.prod, self.work = self.kept("prod", half, self.complex), self.kept("Z", full, self.real)
        self.mu_full = self.kept("mu", full, self.real, zero=True)
        self.mu = self._inside(self.mu_full)
        self.muhat, self.back = self.kept("muhat", half, self.complex), self.kept("U", full, self.real)
        self.zh, self.acc = None, None

    def reset(self):
        self.acc = None

    def _inside(self, a):
        return a if self.same else a[(Ellipsis,) + tuple(slice(0, n) for n in self.grid)]

    def keep(self, transient, L):
        """Keep ``ẑ_t`` of every layer (the parameter gradient needs them)."""
        self.zh = self.sweep.array(transient, "zhat", (L, self.B, *self.half), self.complex)

    def apply(self, t, z, out):
        """``K z`` (written into ``out`` when it is given and the grid is periodic; a view otherwise)."""
        src = z
        if not self.same:
            e = self.op._extend(z)
            src = self.ext
            src[(Ellipsis,) + tuple(slice(0, m) for m in e.shape[1:])] = e
        spec = self.zh[t] if self.zh is not None else self.kept("zh1", (self.B, *self.half), self.complex)
        self.fft.r2c(src, spec)
        np.multiply(spec, self.kc, out=self.prod)
        if out is not None and self.same:
            return self.fft.c2r(self.prod, out)
        return self._inside(self.fft.c2r(self.prod, self.work))

    def adjoint(self, t, mu, z):
        """``Kᵀ μ`` (``mu`` is :attr:`mu`), accumulating ``Ĉ``."""
        self.fft.r2c(self.mu_full, self.muhat)
        if self.zh is not None:
            if self.acc is None:
                self.acc = np.zeros(self.half, np.complex128)
            fused.correlate_spectra(self.acc, self.muhat, self.zh[t], self.ks)      # and μ̂ *= k̂/P_tot
        else:
            self.muhat *= self.ks
        dz = self.fft.c2r(self.muhat, self.back)
        return dz if self.same else self.op._fold(dz)

    def kernel_grads(self, grads):
        if self.acc is not None:
            for k, dw in self.plan.layer(0)[1].items():
                grads[k] += self.op.parseval(dw, self.acc)


class _Stencil(_Engine):
    """``K``, ``Kᵀ`` and ``C`` by the compiled 1-D loops of :mod:`.fused` (module docstring)."""

    def __init__(self, sweep, op, plan, B):
        super().__init__(sweep, op, plan, B)
        self.w, k, n = plan.layer(0)[0], op.reach[0], op.grid[0]
        self.k, self.n = k, n
        self.zp = self.kept("zp", (B, n + 2 * k), op.dtype)
        self.mup = self.kept("mup", (B, n + 4 * k), op.dtype, zero=True)        # the pads stay 0
        self.acc_halo = self.kept("acc", (B, n + 2 * k), op.dtype)
        self.mu = self.kept("mu", (B, n), op.dtype)
        self.corr = None

    def reset(self):
        self.corr = None

    def keep(self, transient, L):
        pass

    def _pad(self, z):
        self.zp[:, self.k:self.k + self.n] = z
        fill_halo(self.zp, self.op.boundaries, self.op.reach)
        return self.zp

    def apply(self, t, z, out):
        out = self.kept("Z", (self.B, self.n), self.op.dtype) if out is None else out
        fused.correlate(self._pad(z), self.w, out)
        return out

    def adjoint(self, t, mu, z):
        k, n = self.k, self.n
        self.mup[:, 2 * k:2 * k + n] = mu
        fused.correlate(self.mup, self.w[::-1], self.acc_halo)
        fold_halo(self.acc_halo, self.op.boundaries, self.op.reach)
        dz = self.acc_halo[:, k:k + n]
        if self.plan.layer(0)[1]:
            c = fused.lag_sums(mu, self._pad(z), len(self.op.offsets))
            self.corr = c if self.corr is None else self.corr + c
        return dz

    def kernel_grads(self, grads):
        if self.corr is not None:
            for k, dw in self.plan.layer(0)[1].items():
                grads[k] += dot(dw, self.corr)


class LayerSweep:
    """Forward and adjoint over all layers of a network whose plan has one homogeneous kernel,
    applied by ``FFTOperator`` or (1-D, numba) ``StencilOperator``."""

    def __init__(self, net, plan, batch: int):
        self.net = net
        engine = _FFT if plan.op.name == "fft" else _Stencil
        self.engine = engine(self, plan.op, plan, batch)

    def kept(self, name, shape, dtype, zero=False):
        """A work array of the network, reused while shape and dtype stay (zeroed when made)."""
        pool = self.net.__dict__.setdefault("_sweep_buffers", {})
        buf = pool.get(name)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            pool[name] = buf = (np.zeros if zero else np.empty)(shape, dtype)
        return buf

    def array(self, transient, name, shape, dtype):
        return self.kept(name, shape, dtype) if transient else np.empty(shape, dtype)

    def forward(self, x2d, theta, omega, keep: bool, transient: bool):
        """``(z_L, trajectory, aux)`` as ``Sweeps._run``. For the backward it keeps ``Z_t`` — or, when
        the activation's slope is a function of its value (tanh, sigmoid: ``Activation.slope_of_value``),
        ``f′(Z_t)`` itself, written in the same pass as ``z_{t+1}``."""
        net, act, eng = self.net, self.net.layer.activation, self.engine
        L, B, real = net.layers, x2d.shape[0], net.dtype
        traj = self.array(transient, "traj", (L + 1, B, *net.grid), real)
        traj[0] = x2d
        if keep and net.kernel_names:
            eng.keep(transient, L)
        pres = self.array(transient, "pre", (L, B, *net.grid), real) if keep and not act.linear else None
        slopes = act.slope_of_value if pres is not None else 0
        for t in range(L):
            Z = eng.apply(t, traj[t], None if pres is None or slopes else pres[t])
            if pres is not None and not slopes and Z is not pres[t]:
                np.copyto(pres[t], Z)
                Z = pres[t]
            b = net._bias(theta, t)
            if b is not None:
                Z -= b
            fz = np.ascontiguousarray(act.value(Z, net._act_args(theta, t)))
            if slopes:
                fused.relax_slope(traj[t + 1], traj[t], fz, pres[t], 1 - omega, omega, slopes)
            else:
                fused.relax(traj[t + 1], traj[t], fz, 1 - omega, omega)
        return traj[-1], traj, ("sweep", self, traj, pres, slopes)

    def adjoint(self, aux, lam, theta):
        """``(∂loss/∂x, grads)`` from :meth:`forward`'s ``aux`` and ``λ = ∂loss/∂z_L`` (consumed)."""
        net, act, eng = self.net, self.net.layer.activation, self.engine
        _, _, traj, pres, slopes = aux
        omega = net._omega(theta)
        grads = {k: np.zeros(s, np.float64) for k, s in net.shapes.items()}
        eng.reset()
        mu = eng.mu
        for t in reversed(range(net.layers)):
            if slopes:                                   # pres[t] is f′(Z_t)
                fused.product(mu, lam, pres[t], omega)
            else:
                np.multiply(lam, omega, out=mu)
            if pres is not None and not slopes:
                args = net._act_args(theta, t)
                for k in act.names:
                    net._reduce(grads, k, t, np.sum(mu * act.dparam(k, pres[t], args), axis=0, dtype=np.float64))
                mu *= act.slope(pres[t], args)
            if net.train_omega:
                grads["omega"] += dot(lam, traj[t + 1] - traj[t]) / omega
            if "b" in net.families:
                net._reduce(grads, "b", t, -np.sum(mu, axis=0, dtype=np.float64))
            dz = eng.adjoint(t, mu, traj[t])
            if dz.flags.c_contiguous:
                fused.relax(lam, lam, dz, 1 - omega, 1.0)
            else:
                lam *= 1 - omega
                lam += dz
        eng.kernel_grads(grads)
        return lam, {k: g.astype(net.dtype) for k, g in grads.items()}
