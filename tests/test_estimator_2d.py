"""The estimator on 2-D grids: the data start's shift, the 2-D stencil kinds, a tiny 2-D ADR recovered.

Truths are exact Fourier multipliers (the spectral start) or 2-D ADR networks whose every step is
checked against a hand-written NumPy loop of ``np.roll`` differences; the estimator must find their
coefficients again.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("sklearn")

from npdegen.estimator.starts import spectral_estimate  # noqa: E402


def diagonal_sine_sums(count, grid, seed, max_mode=3):
    """Sine sums whose wave vectors have both components ≠ 0 (no axis-aligned mode carries energy,
    as in the 2-D tasks' initial conditions)."""
    rng = np.random.default_rng(seed)
    x, y = [(np.arange(n) + 0.5) / n for n in grid]
    X, Y = np.meshgrid(x, y, indexing="ij")
    out = np.zeros((count, *grid))
    for s in range(count):
        for _ in range(3):
            mx, my = rng.integers(1, max_mode + 1, 2) * rng.choice([-1, 1], 2)
            out[s] += rng.uniform(0.2, 1) * np.sin(2 * np.pi * (mx * X + my * Y) + rng.uniform(0, 6))
    return out


def multiplier(x, spacing, r, b, C):
    """``Y = F⁻¹[exp(r − i b·κ − κᵀCκ) F X]``: advection by ``b``, diffusion ``C``, growth ``r``."""
    grid = x.shape[1:]
    kappa = np.meshgrid(*[2 * np.pi * np.fft.fftfreq(n, d=d) for n, d in zip(grid, spacing)], indexing="ij")
    exponent = r - 1j * sum(bi * k for bi, k in zip(b, kappa)) - sum(
        C[i][j] * kappa[i] * kappa[j] for i in range(2) for j in range(2))
    return np.real(np.fft.ifftn(np.fft.fftn(x, axes=(1, 2)) * np.exp(exponent), axes=(1, 2)))


@settings(derandomize=True, max_examples=15, deadline=None)
@given(bx=st.floats(-0.45, 0.45), by=st.floats(-0.45, 0.45), c=st.floats(0.0, 2e-3))
def test_spectral_estimate_2d_shift_without_axis_modes(bx, by, c):
    """Shifts up to half the period along both axes, from data with no axis-aligned modes (the
    1-D rule of unwrapping along the axis modes saw none of them and returned 0)."""
    grid, spacing = (32, 24), (1 / 32, 1 / 24)
    x = diagonal_sine_sums(6, grid, 3)
    y = multiplier(x, spacing, -0.05, (bx, by), [[c, 0.0], [0.0, c / 2]])
    est = spectral_estimate(x, y, spacing)
    np.testing.assert_allclose(est.velocity, [bx, by], atol=1e-8)
    np.testing.assert_allclose(est.diffusion, [[c, 0], [0, c / 2]], atol=1e-8)
    assert est.reaction == pytest.approx(-0.05, abs=1e-8)
