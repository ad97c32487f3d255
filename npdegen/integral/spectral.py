r"""Linear periodic networks in Fourier space: L layers for two FFTs each way.

With ``f`` the identity, a homogeneous kernel and every axis periodic, the step
``z_{t+1} = (1 − ω) z_t + ω (K z_t − b_t)`` is diagonal in Fourier space. With ``k̂`` the
transform of the wrapped weights (the same operator as :class:`~npdegen.integral.apply.FFTOperator`,
``(Kz)^ = conj(k̂) ẑ``) and ``G = (1 − ω) + ω conj(k̂)``:

.. math::  ẑ_{t+1} = G\, ẑ_t − ω\, \hat b_t, \qquad \hat λ_t = \bar G\, \hat λ_{t+1},

and, with ``⟨u, v⟩ = (1/P) Σ_f c_f Re(conj(û_f) v̂_f)`` (Parseval for real signals on the
half spectrum, ``c_f = 2`` except ``c = 1`` at ``f = 0`` and the Nyquist frequency of the last axis),

.. math::  ∂/∂θ = ω \sum_t ⟨λ_{t+1}, (∂K/∂θ) z_t⟩, \quad ∂/∂b_t = −ω λ_{t+1}, \quad
           ∂/∂ω = \sum_t ⟨λ_{t+1}, K z_t − b_t − z_t⟩, \quad ∂/∂x = λ_0 .

So a forward pass costs one ``rfft`` of the input and one inverse of the output, the backward the
same, plus ``L`` complex products per pass: the per-layer FFT path does ``4L`` transforms.
"""
from __future__ import annotations

import numpy as np
import scipy.fft as sfft

__all__ = ["SpectralLinear"]


class SpectralLinear:
    """The forward and adjoint sweeps above, for an :class:`FFTOperator` on a periodic grid."""

    def __init__(self, op):
        self.op = op
        self.axes, self.periods, self.workers = op.axes, op.periods, op.workers
        last = self.periods[-1]
        weights = np.full(last // 2 + 1, 2.0)
        weights[0] = 1.0
        if last % 2 == 0:
            weights[-1] = 1.0
        self.weights = weights / float(np.prod(self.periods))

    def rfft(self, a):
        return sfft.rfftn(a, axes=self.axes, workers=self.workers)

    def irfft(self, a):
        return sfft.irfftn(a, s=self.periods, axes=self.axes, workers=self.workers)

    def inner(self, uhat, vhat) -> float:
        """``⟨u, v⟩`` from half spectra (summed over any leading axes)."""
        return float(np.sum(self.weights * np.real(np.conj(uhat) * vhat), dtype=np.float64))

    def forward(self, khat_conj, x, bias_hat, omega, layers):
        """``[ẑ_0, …, ẑ_L]``; ``bias_hat(t)`` gives ``b̂_t`` (or ``None`` without bias)."""
        gain = (1 - omega) + omega * khat_conj
        zhat = [self.rfft(x)]
        for t in range(layers):
            nxt = zhat[-1] * gain
            b = bias_hat(t)
            if b is not None:
                nxt -= omega * b
            zhat.append(nxt)
        return zhat

    def adjoint(self, khat, khat_conj, zhat, lam, omega, bias_hat, dkhat, families):
        """``(λ_0, grads)``: ``dkhat`` maps kernel parameter names to ``∂k̂/∂θ``; ``families`` the
        bias family (or ``None``) and whether ω is trained."""
        bias_family, train_omega = families
        layers = len(zhat) - 1
        back = (1 - omega) + omega * khat
        lhat = self.rfft(lam)
        batch = tuple(range(lhat.ndim - len(self.axes)))
        cross = np.zeros(lhat.shape[len(batch):], np.complex128)    # Σ_{t,b} conj(λ̂_{t+1}) ẑ_t
        lam_sum = np.zeros_like(cross)                              # Σ_{t,b} λ̂_{t+1}
        grads = {}
        bias_rows = [] if bias_family == "time-dependent" else None
        omega_grad = 0.0
        for t in reversed(range(layers)):
            summed = lhat.sum(axis=batch, dtype=np.complex128)
            cross += np.sum(np.conj(lhat) * zhat[t], axis=batch, dtype=np.complex128)
            lam_sum += summed
            if train_omega:
                step = (khat_conj - 1) * zhat[t]
                omega_grad += self.inner(lhat, step)
                b = bias_hat(t)
                if b is not None:
                    omega_grad -= self.inner(summed, b)
            if bias_rows is not None:
                bias_rows.append(-omega * self.irfft(summed))
            lhat = lhat * back
        for name, dk in dkhat.items():        # ω Σ_f c_f Re(conj(∂k̂) conj(λ̂) ẑ)
            grads[name] = omega * float(np.sum(self.weights * np.real(cross * np.conj(dk)), dtype=np.float64))
        if bias_family == "homogeneous":
            grads["b"] = -omega * float(np.real(lam_sum.reshape(-1)[0]))
        elif bias_family == "heterogeneous":
            grads["b"] = -omega * self.irfft(lam_sum)
        elif bias_family == "time-dependent":
            grads["b"] = np.stack(bias_rows[::-1])
        if train_omega:
            grads["omega"] = omega_grad
        return self.irfft(lhat), grads
