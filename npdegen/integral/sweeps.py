"""The forward and adjoint sweeps of :class:`~npdegen.integral.network.NonlocalNetwork` (a mixin).

Layer by layer (any activation, boundary and method; :mod:`.network` states the equations), or, for a
linear network with a homogeneous kernel on a periodic grid and the FFT method, all layers at once
in Fourier space (:mod:`.spectral`): the same operator, ``4L`` transforms replaced by four.
"""
from __future__ import annotations

import numpy as np

from .apply import dot
from .fastsweep import LayerSweep, direct_stencil
from .spectral import SpectralLinear

__all__ = ["Sweeps"]


class Sweeps:
    """``_run`` → ``(z_L, trajectory or None, aux)``; ``_adjoint(aux, λ, θ)`` → ``(∂/∂x, grads)``."""

    def _act_args(self, theta, t) -> tuple:
        """Activation parameter values of step ``t`` (scalars or grid arrays)."""
        return tuple(theta[k][t] if self.families[k] == "time-dependent" else theta[k]
                     for k in self.layer.activation.names)

    def _step(self, plan, t, z, theta, omega, keep, out=None):
        """``z_{t+1}`` (into ``out``), what the operator keeps for the backward, and ``Z_t`` (kept for
        ``f′`` when ``f`` is nonlinear)."""
        act = self.layer.activation
        operator, (prepared, _) = plan.op, plan.layer(t)
        Z, saved = operator.forward(prepared, z)
        b = self._bias(theta, t)
        if b is not None:
            Z -= b
        pre = Z if keep and not act.linear else None
        fz = act.value(Z, self._act_args(theta, t))     # Z itself when linear: not needed any more
        fz *= omega
        out = np.empty_like(z) if out is None else out
        np.multiply(z, 1 - omega, out=out)
        out += fz
        return out, saved, pre

    def _spectral(self, plan) -> bool:
        return (plan.op.name == "fft" and self.layer.activation.linear
                and all(b == "periodic" for b in self.boundaries))

    def _fast_sweep(self, plan) -> bool:
        """Whether the sweep runs in :mod:`.fastsweep` (one kernel, by FFT or a 1-D numba stencil)."""
        return plan.op.name == "fft" or direct_stencil(plan.op, self)

    def _run(self, x2d, theta, keep=True, trajectory=False, transient=False):
        """``transient``: the call's arrays never leave it (``loss_and_grad``), so they may live in
        buffers kept between calls."""
        plan = self.plan(theta)
        omega = self._omega(theta)
        if self._spectral(plan):
            return self._run_spectral(plan, x2d, theta, omega, trajectory)
        if self._fast_sweep(plan):
            return LayerSweep(self, plan, x2d.shape[0]).forward(x2d, theta, omega, keep, transient and not trajectory)
        traj = np.empty((self.layers + 1, *x2d.shape), self.dtype)
        traj[0] = x2d
        saved, pres = [], []
        for t in range(self.layers):
            _, s, pre = self._step(plan, t, traj[t], theta, omega, keep, out=traj[t + 1])
            saved.append(s if keep else None)
            pres.append(pre)
        return traj[-1], traj, ("layers", plan, traj, saved, pres)

    def _adjoint(self, aux, lam, theta):
        """``(∂loss/∂x, grads)`` from what ``_run`` kept and ``λ = ∂loss/∂z_L`` (consumed)."""
        if aux[0] == "spectral":
            return self._adjoint_spectral(aux, lam, theta)
        if aux[0] == "sweep":
            return aux[1].adjoint(aux, lam, theta)
        _, plan, traj, saved, pres = aux
        return self._layer_adjoint(plan, traj, saved, pres, lam, theta)

    def _layer_adjoint(self, plan, traj, saved, pres, lam, theta, first: int = 0):
        """Backward over ``len(saved)`` steps; step ``i`` is layer ``first + i``, from ``traj[i]``."""
        omega = self._omega(theta)
        grads = {k: np.zeros(s, np.float64) for k, s in self.shapes.items()}
        want = bool(self.kernel_names)
        spectrum = None                   # FFT: Σ_t Ĉ_t, contracted once (the kernel is the same in every layer)
        for i in reversed(range(len(saved))):
            t = first + i
            mu = lam * omega
            if pres[i] is not None:           # the kept pre-activation Z_t
                args = self._act_args(theta, t)
                for k in self.layer.activation.names:
                    self._reduce(grads, k, t, np.sum(mu * self.layer.activation.dparam(k, pres[i], args), axis=0,
                                                     dtype=np.float64))
                mu *= self.layer.activation.slope(pres[i], args)
            if self.train_omega:
                grads["omega"] += dot(lam, traj[i + 1] - traj[i]) / omega
            if "b" in self.families:
                self._reduce(grads, "b", t, -np.sum(mu, axis=0, dtype=np.float64))
            prepared, dws = plan.layer(t)
            dz, corr = plan.op.backward(prepared, mu, traj[i], saved[i], want)
            if plan.op.name == "fft" and want:
                spectrum = corr if spectrum is None else spectrum + corr
                dws = {}
            for k, dw in dws.items():
                if corr.ndim == 1:
                    self._reduce(grads, k, t, dot(dw, corr))
                else:
                    self._reduce(grads, k, t, np.sum(dw * corr, axis=-1))
            lam *= 1 - omega              # lam is owned by this sweep
            lam += dz
        if spectrum is not None:
            for k, dw in plan.layer(first)[1].items():
                grads[k] += plan.op.parseval(dw, spectrum)
        return lam, {k: g.astype(self.dtype) for k, g in grads.items()}

    def _reduce(self, grads, k, t, site_values):
        fam = self.families[k]
        if fam == "homogeneous":
            grads[k] += np.sum(site_values)
        elif fam == "heterogeneous":
            grads[k] += site_values
        else:
            grads[k][t] += site_values


    # ------------------------------------------------------------------ linear, periodic: Fourier space
    def _spectral_engine(self, op) -> SpectralLinear:
        engine = getattr(op, "_spectral_engine", None)
        if engine is None:
            engine = op._spectral_engine = SpectralLinear(op)
        return engine

    def _bias_spectra(self, engine, theta):
        """``t -> b̂_t`` (computed once per row), or a function returning ``None`` without bias."""
        if "b" not in self.families:
            return lambda t: None
        family, cache = self.families["b"], {}

        def bias_hat(t):
            key = t if family == "time-dependent" else 0
            if key not in cache:
                cache[key] = engine.rfft(np.broadcast_to(self._bias(theta, t), self.grid).astype(np.float64))
            return cache[key]
        return bias_hat

    def _run_spectral(self, plan, x2d, theta, omega, trajectory):
        engine = self._spectral_engine(plan.op)
        (_, khat_conj), _ = plan.layer(0)
        last, traj, saved = engine.forward(khat_conj, x2d, self._bias_spectra(engine, theta), omega, self.layers,
                                           trajectory)
        return last, traj, ("spectral", plan, saved)

    def _adjoint_spectral(self, aux, lam, theta):
        _, plan, saved = aux
        engine = self._spectral_engine(plan.op)
        (_, khat_conj), dws = plan.layer(0)
        dkhat = {k: engine.rfft(dw) for k, dw in dws.items()}
        dx, parts = engine.adjoint(khat_conj, saved, lam, self._omega(theta), dkhat, self.families.get("b"),
                                   self.train_omega)
        grads = {k: np.asarray(parts[k], np.float64).reshape(self.shapes[k]).astype(self.dtype) for k in self.shapes}
        return dx, grads
