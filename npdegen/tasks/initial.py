r"""Random initial conditions: sums of sine modes, with occasional :math:`|u|`, sign flips and smooth windows.

The settings follow the benchmark description of PDEBench (Takamoto et al. 2022, appendix D); the
code is our own. On a periodic box with side lengths :math:`L_a`, sample :math:`s` is

.. math::
    g_s(x) = σ_s\, w_s(x)\, \mathcal A_s\!\Big(\sum_{i=1}^{K} A_{si}
             \sin\big(2π\, m_{si}\cdot (x/L) + φ_{si}\big)\Big)

with :math:`K` modes (default 2), integer wave vectors :math:`m_{si}` (each component uniform in
``1 … max_mode`` with a random sign on axes after the first), amplitudes :math:`A \sim U(0, 1)`,
phases :math:`φ \sim U(0, 2π)`; with probability ``p_abs`` :math:`\mathcal A_s = |\cdot|`
(else the identity), with probability ``p_flip`` :math:`σ_s = -1` (else 1), and with probability
``p_window`` a smooth periodic window

.. math::
    w(x) = \prod_a \sum_{j=-1}^{1} \tfrac12\Big[\tanh\frac{x_a/L_a + j - α_a}{δ}
           - \tanh\frac{x_a/L_a + j - β_a}{δ}\Big],
    \quad α_a \sim U(0.1, 0.45),\ β_a \sim U(0.55, 0.9)

(else :math:`w = 1`). The images :math:`j = -1, 0, 1` make the window periodic to within
:math:`e^{-2/δ}`. An initial condition is a *function*: it can be evaluated on any grid, so a fine
solver grid and the coarse data grid see the same :math:`u_0`, and exact solutions (advection) are
evaluated at :math:`x - βT` without interpolation.

:class:`UnitInterval` maps :math:`g` affinely onto :math:`[0, 1]` per sample (Fisher–KPP data must
lie there), :class:`Fronts` turns it into plateaus near 0 and 1 joined by fronts,
:math:`\tfrac12(1 + \tanh(\hat g/ε))` with :math:`\hat g = g / \max|g|`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fourier import check_positive

__all__ = ["SineSum", "UnitInterval", "Fronts"]


def _tensor(coords):
    """The coordinate arrays broadcast to ``(1, n_0, …, n_{d−1})`` each."""
    d = len(coords)
    out = []
    for a, c in enumerate(coords):
        view = [1] * (d + 1)
        view[a + 1] = -1
        out.append(np.asarray(c, dtype=np.float64).reshape(view))
    return out


def _probability(name, p):
    check_positive(name, p, allow_zero=True)
    if p > 1:
        raise ValueError(f"{name} must lie in [0, 1], got {p!r}")
    return float(p)


@dataclass(frozen=True, eq=False)
class SineSum:
    """Sums of random sine modes (module docstring); call with one coordinate array per axis.

    ``amplitude``, ``phase``: ``(samples, K)``; ``mode``: ``(samples, K, d)`` integers; ``absolute``:
    ``(samples,)`` bools; ``sign``: ``(samples,)`` of ±1; ``window``: ``(samples, d, 2)`` edges
    ``(α, β)`` as fractions of the side, NaN where a sample has no window.
    """

    amplitude: np.ndarray
    mode: np.ndarray
    phase: np.ndarray
    absolute: np.ndarray
    sign: np.ndarray
    window: np.ndarray
    lengths: tuple = (1.0,)
    delta: float = 0.02

    @classmethod
    def draw(cls, samples: int, rng: np.random.Generator, dims: int = 1, modes: int = 2, max_mode: int = 8,
             p_abs: float = 0.1, p_flip: float = 0.1, p_window: float = 0.1, delta: float = 0.02,
             lengths=None) -> "SineSum":
        """Draw ``samples`` initial conditions from ``rng`` (a :class:`numpy.random.Generator`)."""
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        for name, v in (("samples", samples), ("modes", modes), ("max_mode", max_mode), ("dims", dims)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        p_abs, p_flip, p_window = (_probability(k, v) for k, v in
                                   (("p_abs", p_abs), ("p_flip", p_flip), ("p_window", p_window)))
        lengths = (1.0,) * dims if lengths is None else tuple(check_positive("length", v) for v in lengths)
        if len(lengths) != dims:
            raise ValueError(f"lengths must hold {dims} side length(s), got {lengths!r}")
        amplitude, mode, phase = np.empty((samples, modes)), np.empty((samples, modes, dims), int), np.empty((samples, modes))
        absolute, sign, window = np.empty(samples, bool), np.empty(samples), np.full((samples, dims, 2), np.nan)
        for s in range(samples):          # sample by sample: the first k samples do not depend on ``samples``
            amplitude[s] = rng.uniform(0.0, 1.0, modes)
            mode[s] = rng.integers(1, max_mode + 1, (modes, dims))
            mode[s, :, 1:] *= rng.choice([-1, 1], (modes, dims - 1))
            phase[s] = rng.uniform(0.0, 2 * np.pi, modes)
            u = rng.uniform(size=3)
            absolute[s], sign[s] = u[0] < p_abs, -1.0 if u[1] < p_flip else 1.0
            edges = np.stack([rng.uniform(0.1, 0.45, dims), rng.uniform(0.55, 0.9, dims)], -1)
            if u[2] < p_window:
                window[s] = edges
        return cls(amplitude, mode, phase, absolute, sign, window, lengths, check_positive("delta", delta))

    @property
    def samples(self) -> int:
        return self.amplitude.shape[0]

    @property
    def dims(self) -> int:
        return self.mode.shape[-1]

    @property
    def smooth(self) -> bool:
        """True when no sample uses ``|u|`` or a window: every sample is a finite sine sum."""
        return not (self.absolute.any() or np.isfinite(self.window).any())

    def _argument(self, coords, i):
        xs = _tensor(coords)
        theta = self.phase[:, i].reshape((-1,) + (1,) * self.dims)
        for a, x in enumerate(xs):
            theta = theta + (2 * np.pi * self.mode[:, i, a].reshape((-1,) + (1,) * self.dims)) * (x / self.lengths[a])
        return theta

    def _column(self, v):
        return v.reshape((-1,) + (1,) * self.dims)

    def __call__(self, *coords) -> np.ndarray:
        """Values on the tensor grid of ``coords`` (one 1-D array per axis): ``(samples, n_0, …)``."""
        if len(coords) != self.dims:
            raise ValueError(f"give {self.dims} coordinate array(s), one per axis, got {len(coords)}")
        g = sum(self._column(self.amplitude[:, i]) * np.sin(self._argument(coords, i))
                for i in range(self.amplitude.shape[1]))
        g = np.where(self._column(self.absolute), np.abs(g), g) * self._column(self.sign)
        if np.isfinite(self.window).any():
            w = np.ones_like(g)
            for a, x in enumerate(_tensor(coords)):
                s = x / self.lengths[a]
                lo, hi = self._column(self.window[:, a, 0]), self._column(self.window[:, a, 1])
                box = sum(0.5 * (np.tanh((s + j - lo) / self.delta) - np.tanh((s + j - hi) / self.delta))
                          for j in (-1, 0, 1))
                w = w * np.where(np.isnan(box), 1.0, box)
            g = g * w
        return g

    def primitive(self, x) -> np.ndarray:
        r"""1-D, smooth sums only: :math:`F(x) = \int_0^x g`, in closed form, ``(samples, len(x))``."""
        if self.dims != 1 or not self.smooth:
            raise ValueError("the closed-form primitive needs a 1-D sine sum without |u| or windows")
        length = self.lengths[0]
        out = 0.0
        for i in range(self.amplitude.shape[1]):
            k = 2 * np.pi * self._column(self.mode[:, i, 0]) / length
            amp, phi = self._column(self.amplitude[:, i]), self._column(self.phase[:, i])
            out = out - amp / k * (np.cos(k * np.asarray(x)[None] + phi) - np.cos(phi))
        return out * self._column(self.sign)

    def take(self, index) -> "SineSum":
        """The samples ``index`` (a slice or index array) as a new :class:`SineSum`."""
        return SineSum(self.amplitude[index], self.mode[index], self.phase[index], self.absolute[index],
                       self.sign[index], self.window[index], self.lengths, self.delta)

    def bound(self) -> np.ndarray:
        r"""A bound on :math:`|g_s|`: :math:`\sum_i A_{si}` (windows lie in [0, 1])."""
        return self.amplitude.sum(axis=1)


def _dense_extremes(base: SineSum, points: int):
    """Per-sample minimum and maximum of ``base`` on a dense grid (``points`` per axis), in chunks of samples."""
    coords = [np.arange(points) / points * length for length in base.lengths]
    chunk = max(1, 2 ** 22 // points ** base.dims)
    lo, hi = [], []
    for start in range(0, base.samples, chunk):
        g = base.take(slice(start, start + chunk))(*coords).reshape(-1, points ** base.dims)
        lo.append(g.min(axis=1))
        hi.append(g.max(axis=1))
    return np.concatenate(lo), np.concatenate(hi)


@dataclass(frozen=True, eq=False)
class UnitInterval:
    r"""``base`` mapped onto ``[0, 1]`` per sample: :math:`(g - \min g)/(\max g - \min g)`, clipped.

    The extremes are taken on a dense grid (16384 points in 1-D, 1024² in 2-D), so values on any grid lie
    in [0, 1]; the clip moves values by at most the dense grid's sampling error (≈ 1e-6 here).
    """

    base: SineSum
    lo: np.ndarray
    hi: np.ndarray

    @classmethod
    def of(cls, base: SineSum, points: int | None = None) -> "UnitInterval":
        lo, hi = _dense_extremes(base, points or (16384 if base.dims == 1 else 1024))
        return cls(base, lo, np.maximum(hi, lo + 1e-12))

    @property
    def samples(self) -> int:
        return self.base.samples

    @property
    def dims(self) -> int:
        return self.base.dims

    @property
    def lengths(self) -> tuple:
        return self.base.lengths

    def take(self, index) -> "UnitInterval":
        """The samples ``index`` as a new :class:`UnitInterval`."""
        return UnitInterval(self.base.take(index), self.lo[index], self.hi[index])

    def __call__(self, *coords) -> np.ndarray:
        col = (-1,) + (1,) * self.dims
        g = self.base(*coords)
        return np.clip((g - self.lo.reshape(col)) / (self.hi - self.lo).reshape(col), 0.0, 1.0)


@dataclass(frozen=True, eq=False)
class Fronts:
    r"""Plateaus near 0 and 1 joined by smooth fronts: :math:`\tfrac12(1 + \tanh(\hat g/ε))`, :math:`\hat g = g/\max|g|`.

    :math:`\max|g|` per sample is taken on a dense grid (as in :class:`UnitInterval`); the
    plateaus then reach :math:`\tfrac12(1 \pm \tanh(1/ε))`.
    """

    base: SineSum
    scale: np.ndarray
    width: float = 0.25

    @classmethod
    def of(cls, base: SineSum, width: float = 0.25, points: int | None = None) -> "Fronts":
        lo, hi = _dense_extremes(base, points or (16384 if base.dims == 1 else 1024))
        return cls(base, np.maximum(np.maximum(-lo, hi), 1e-12), check_positive("width", width))

    @property
    def samples(self) -> int:
        return self.base.samples

    @property
    def dims(self) -> int:
        return self.base.dims

    @property
    def lengths(self) -> tuple:
        return self.base.lengths

    def take(self, index) -> "Fronts":
        """The samples ``index`` as a new :class:`Fronts`."""
        return Fronts(self.base.take(index), self.scale[index], self.width)

    def __call__(self, *coords) -> np.ndarray:
        scale = self.scale.reshape((-1,) + (1,) * self.dims)
        return 0.5 * (1.0 + np.tanh(self.base(*coords) / (scale * self.width)))
