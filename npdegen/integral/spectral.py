r"""Linear periodic networks in Fourier space: L layers for two FFTs each way.

With ``f`` the identity, a homogeneous kernel and every axis periodic, the step
``z_{t+1} = (1 − ω) z_t + ω (K z_t − b_t)`` is diagonal in Fourier space. With ``k̂`` the
transform of the wrapped weights (the operator of :class:`~npdegen.integral.apply.FFTOperator`,
``(Kz)^ = conj(k̂) ẑ``) and the gain ``G = (1 − ω) + ω conj(k̂)``:

.. math::  ẑ_t = G^t ẑ_0 − ω \hat β_t, \quad \hat β_0 = 0,\ \hat β_{t+1} = G \hat β_t + \hat b_t,
           \qquad \hat λ_{t+1} = \bar G^{\,L−1−t}\, \hat λ_L .

The gradients need the batch only through ``P = Σ_b conj(λ̂_L) ẑ_0`` and ``Q = Σ_b conj(λ̂_L)``:
``Σ_b conj(λ̂_{t+1}) ẑ_t = G^{L−1} P − ω G^{L−1−t} β̂_t Q``, so with the Parseval inner product
``⟨u, v⟩ = Σ_f c_f Re(conj(û_f) v̂_f) / P_total`` (``c_f = 2`` on the half spectrum, 1 at ``f = 0``
and at the Nyquist frequency of the last axis) and ``S = Σ_t Σ_b conj(λ̂_{t+1}) ẑ_t``:

.. math::  ∂/∂θ = ω\, Σ_f c_f Re(S\, \overline{∂k̂/∂θ}), \quad
           ∂/∂b_t = −ω\, \mathrm{irfft}(\bar G^{L−1−t} \bar Q), \quad
           ∂/∂ω = Σ_f c_f Re\big((\overline{k̂} − 1) S − Q Σ_t G^{L−1−t} \hat b_t\big), \quad
           ∂/∂x = \mathrm{irfft}(\bar G^L \hat λ_L)

(all divided by ``P_total``). A forward pass is one ``rfft`` and one inverse, a backward the same:
the per-layer FFT path does ``4L`` transforms of the batch. Equal to it to rounding (tested).
"""
from __future__ import annotations

import numpy as np

from .apply import irfftn, rfftn

__all__ = ["SpectralLinear"]


class SpectralLinear:
    """The sweeps above, for an :class:`FFTOperator` on a periodic grid."""

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
        return rfftn(a, self.periods, self.workers)

    def irfft(self, a):
        return irfftn(a, self.periods, self.workers)

    def real_sum(self, a) -> float:
        """``Σ_f c_f Re(a_f) / P_total``: the Parseval sum of a half spectrum (leading axes summed)."""
        return float(np.sum(self.weights * np.real(a), dtype=np.float64))

    def forward(self, khat_conj, x, bias_hat, omega, layers, trajectory=False):
        """``(z_L, [z_0 … z_L] or None, state for the adjoint)``; ``bias_hat(t)`` is ``b̂_t`` or ``None``."""
        gain = (1 - omega) + omega * khat_conj.astype(np.complex128)
        biases = [bias_hat(t) for t in range(layers)]
        biases = [None if b is None else np.asarray(b, np.complex128) for b in biases]
        if trajectory or any(b is not None for b in biases):
            powers, betas = [np.ones_like(gain)], [np.zeros_like(gain)]
            for t in range(layers):
                powers.append(powers[-1] * gain)
                betas.append(betas[-1] * gain + (0 if biases[t] is None else biases[t]))
        else:                        # only G^L and G^(L-1) are needed: the batch never sees the others
            before = np.power(gain, layers - 1)
            powers, betas = {layers - 1: before, layers: before * gain}, None
        zhat0 = self.rfft(x)
        ctype = zhat0.dtype

        def state(t):
            out = zhat0 * powers[t].astype(ctype)
            if betas is not None and any(b is not None for b in biases[:t]):
                out -= (omega * betas[t]).astype(ctype)
            return out
        last = self.irfft(state(layers)).astype(x.dtype, copy=False)
        traj = np.stack([self.irfft(state(t)) for t in range(layers + 1)]).astype(x.dtype) if trajectory else None
        return last, traj, (gain, zhat0, powers, betas, biases)

    def adjoint(self, khat_conj, saved, lam, omega, dkhat, bias_family, train_omega):
        """``(λ_0, grads)``; ``dkhat`` maps kernel parameter names to ``∂k̂/∂θ``."""
        gain, zhat0, powers, betas, biases = saved
        layers = len(biases)
        lhat = self.rfft(lam)
        lead = tuple(range(lhat.ndim - len(self.axes)))
        conj_l = np.conj(lhat)
        P = np.sum(conj_l * zhat0, axis=lead, dtype=np.complex128)
        Q = np.sum(conj_l, axis=lead, dtype=np.complex128)
        dx = self.irfft(lhat * np.conj(powers[layers]).astype(lhat.dtype))
        S = layers * powers[layers - 1] * P
        bias_term = np.zeros_like(gain)                 # Σ_t G^{L-1-t} b̂_t
        for t in range(layers):
            if biases[t] is not None:
                S -= omega * powers[layers - 1 - t] * betas[t] * Q
                bias_term += powers[layers - 1 - t] * biases[t]
        grads = {name: omega * self.real_sum(S * np.conj(dk)) for name, dk in dkhat.items()}
        if train_omega:
            grads["omega"] = self.real_sum((khat_conj.astype(np.complex128) - 1) * S - Q * bias_term)
        if bias_family is not None:
            rows = [np.conj(powers[layers - 1 - t] * Q) for t in range(layers)]     # Σ_b λ̂_{t+1}
            if bias_family == "homogeneous":
                grads["b"] = -omega * float(np.real(sum(rows).reshape(-1)[0]))
            elif bias_family == "heterogeneous":
                grads["b"] = -omega * self.irfft(sum(rows))
            else:
                grads["b"] = -omega * np.stack([self.irfft(r) for r in rows])
        return dx.astype(lam.dtype, copy=False), grads
