"""Plots render headless (no display, no pyplot) and show what they claim: axes, labels, data."""
import numpy as np
import pytest
import sympy as sp

pytest.importorskip("matplotlib")

from npdegen import NeuralPDE, kernel_moments, stability  # noqa: E402
from npdegen.inspect import banded_matrix, loss_profile, plots  # noqa: E402


@pytest.fixture(scope="module")
def layer():
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    U, D, R = sp.symbols("U D R")
    return NeuralPDE(z + R * z - U * z.diff(q) + D * z.diff(q, 2), z,
                     params={U: "homogeneous", D: "homogeneous", R: "homogeneous"})


def _line(ax, i=0):
    return np.asarray(ax.get_lines()[i].get_xdata(), float), np.asarray(ax.get_lines()[i].get_ydata(), float)


def test_stencil_plot_shows_the_weights(tmp_path):
    stencil = {-1: 0.3, 0: 0.5, 1: -0.1}
    fig = plots.plot_stencil(stencil, reference={-1: 0.25, 0: 0.5, 1: 0.0})
    (ax,) = fig.axes
    heights = [p.get_height() for p in ax.patches]
    assert heights == pytest.approx([0.3, 0.5, -0.1])
    assert [p.get_facecolor()[:3] for p in ax.patches][2] != [p.get_facecolor()[:3] for p in ax.patches][0]
    assert ax.get_xlabel().startswith("offset j") and ax.get_ylabel() == "weight w_j"
    assert list(ax.get_xticks()) == [-1, 0, 1]
    ref = next(line for line in ax.get_lines() if line.get_label() == "reference")
    assert list(ref.get_ydata()) == pytest.approx([0.25, 0.5, 0.0])
    path = plots.save(fig, tmp_path / "stencil.svg")
    assert path.read_text().lstrip().startswith("<?xml") and "<svg" in path.read_text()


def test_moment_profiles(tmp_path):
    n = 40
    W = banded_matrix({-1: 0.3, 0: 0.5, 1: 0.2}, n) * (1 + 0.5 * np.sin(np.arange(n) / 6))[:, None]
    km = kernel_moments(W, max_order=2, period=n)
    fig = plots.plot_moments(km)
    assert len(fig.axes) == 3
    for k, ax in enumerate(fig.axes):
        x, y = _line(ax)
        assert ax.get_ylabel() == f"W_{k}" and ax.get_xlabel() == "q"
        np.testing.assert_allclose(y, km.moments[:, k])
        np.testing.assert_allclose(x, np.arange(n))
    assert plots.save(fig, tmp_path / "m.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_amplification_with_stability_boundary(layer):
    cert = stability(layer, {"U": 0.5, "D": 0.1, "R": 0.0}, omega=1.0)   # unstable: ω c² > 2d
    fig = plots.plot_amplification(cert)
    (ax,) = fig.axes
    theta, gain = _line(ax, 0)
    np.testing.assert_allclose(theta, cert.theta)
    assert theta.min() == 0 and theta.max() == pytest.approx(np.pi)
    np.testing.assert_allclose(gain, cert.gain)
    assert gain.max() > 1                                   # the curve crosses the boundary
    bx, by = _line(ax, 1)
    assert np.all(by == 1.0)                                # the stability boundary |G| = 1
    assert ax.get_ylabel() == "|G(θ)|" and "θ" in ax.get_xlabel()
    assert "UNSTABLE" in ax.get_title() and ax.get_ylim()[1] >= gain.max()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("stability boundary" in t for t in labels)


def test_trajectory_heatmap():
    L, n = 12, 30
    traj = np.outer(np.linspace(1, 0.5, L + 1), np.sin(np.linspace(0, np.pi, n)))
    fig = plots.plot_trajectory(traj)
    ax = fig.axes[0]
    (im,) = ax.get_images()
    np.testing.assert_allclose(im.get_array(), traj)
    assert im.get_extent()[2:] == [-0.5, L + 0.5]
    assert ax.get_xlabel() == "q" and ax.get_ylabel() == "layer t"
    assert len(fig.axes) == 2 and fig.axes[1].get_ylabel() == "z"          # the colorbar
    with pytest.raises(ValueError, match="shape"):
        plots.plot_trajectory(np.zeros(5))


def test_layer_losses_and_locality():
    losses = np.array([8.0, 4.0, 2.0, 1.0, 0.9, 0.88])
    fig = plots.plot_layer_losses(loss_profile(losses))
    (ax,) = fig.axes
    t, y = _line(ax)
    np.testing.assert_allclose(t, np.arange(6))
    np.testing.assert_allclose(y, losses)
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "layer t"
    assert _line(ax, 1)[0][0] == loss_profile(losses).depth()
    km = kernel_moments(banded_matrix({-1: 0.25, 0: 0.5, 1: 0.25}, 16), period=16)
    fig = plots.plot_locality(km)
    assert [p.get_height() for p in fig.axes[0].patches][:3] == pytest.approx([0.5, 0.5, 0.0])


def test_save_rejects_other_formats(tmp_path):
    with pytest.raises(ValueError, match="png or .svg"):
        plots.save(plots.plot_layer_losses([1.0, 0.5]), tmp_path / "x.pdf")
