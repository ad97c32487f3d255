"""Figures of a layer's physics (matplotlib, headless: no pyplot, no display needed).

Every function returns a :class:`matplotlib.figure.Figure`; :func:`save` writes PNG or SVG.

* :func:`plot_stencil` — stencil weights w_j by offset (mean and range over sites);
* :func:`plot_moments` — moment profiles W_k(q) over the sites;
* :func:`plot_amplification` — |G(θ)| with the stability boundary |G| = 1;
* :func:`plot_trajectory` — z(q, t) over the layers as a heatmap;
* :func:`plot_layer_losses` — the per-layer loss and the depth that reaches 95% of its reduction;
* :func:`plot_locality` — weight mass against distance.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_stencil", "plot_moments", "plot_amplification", "plot_trajectory", "plot_layer_losses",
           "plot_locality", "save"]


def _figure(ncols=1, width=5.0, height=3.4):
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - matplotlib is optional
        raise ImportError("plots need matplotlib: pip install 'npdegen[plot]'") from exc
    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    return fig, [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]


def plot_stencil(stencil, title: str = "stencil weights", reference: dict | None = None,
                 reference_label: str = "reference"):
    """``stencil``: ``{offset: weight}``, a BandedFit, or ``(offsets, weights)`` with weights of
    shape ``(len(offsets),)`` or ``(sites, len(offsets))`` (bars: mean, error bars: range over
    sites). ``reference``: an optional ``{offset: weight}`` drawn as markers for comparison."""
    if hasattr(stencil, "offsets") and hasattr(stencil, "weights"):
        offsets, w = stencil.offsets, stencil.weights
    elif isinstance(stencil, dict):
        offsets, w = tuple(stencil), np.array([float(v) for v in stencil.values()])
    else:
        offsets, w = stencil
    w = np.atleast_2d(np.asarray(w, dtype=float))
    fig, (ax,) = _figure()
    mean = w.mean(axis=0)
    err = np.stack([mean - w.min(axis=0), w.max(axis=0) - mean]) if w.shape[0] > 1 else None
    ax.bar(offsets, mean, yerr=err, color=["C3" if v < 0 else "C0" for v in mean], capsize=3,
           label="weights" + (" (mean, range over rows)" if err is not None else ""))
    if reference:
        ax.plot(list(reference), [float(v) for v in reference.values()], "kD", ms=6, mfc="none",
                label=reference_label)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(list(offsets))
    ax.set_xlabel("offset j (grid cells)")
    ax.set_ylabel("weight w_j")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    return fig


def plot_moments(moments, coords=None, orders=None, title: str = "moment profiles"):
    """``moments``: a KernelMoments or an array ``(sites, K+1)``; one panel per order. For a
    KernelMoments with a noise floor each panel shades ± its noise uncertainty, marks the moments
    not resolved from zero, and the title names the floor and the support the moments are summed
    over."""
    M = np.asarray(getattr(moments, "moments", moments), dtype=float)
    q = np.asarray(coords if coords is not None else getattr(moments, "coords", np.arange(M.shape[0])), float)
    orders = list(range(M.shape[1])) if orders is None else list(orders)
    unc = getattr(moments, "uncertainty", None)
    noise = getattr(moments, "noise", None)
    resolved = getattr(moments, "resolved", np.ones(M.shape[1], bool))
    fig, axes = _figure(len(orders), width=2.8, height=2.8)
    for ax, k in zip(axes, orders):
        ax.plot(q, M[:, k], color=f"C{k}")
        if unc is not None and np.any(unc[:, k] > 0):
            ax.fill_between(q, M[:, k] - unc[:, k], M[:, k] + unc[:, k], color=f"C{k}", alpha=0.2, lw=0,
                            label="± noise")
        ax.set_xlabel("q")
        ax.set_ylabel(f"W_{k}")
        ax.set_title(f"W_{k}(q)" + ("" if resolved[k] else " (zero within noise)"))
    if noise is not None:
        title = f"{title}: summed within distance {noise.support}, far-field noise rms {noise.rms:.2g}"
    fig.suptitle(title)
    return fig


def plot_amplification(cert, title: str | None = None):
    """``cert``: a :class:`~npdegen.inspect.stability.Stability`; max over sites of |G(θ)|."""
    fig, (ax,) = _figure()
    ax.plot(cert.theta, cert.gain, color="C0", label="|G(θ)|")
    ax.axhline(1.0, color="C3", ls="--", label="stability boundary |G| = 1")
    top = max(1.05, float(np.max(cert.gain)) * 1.05)
    ax.axhspan(1.0, top, color="C3", alpha=0.08)
    ax.set_xlim(0, np.pi)
    ax.set_ylim(0, top)
    ax.set_xlabel("θ (radians per cell)")
    ax.set_ylabel("|G(θ)|")
    verdict = "stable" if cert.stable else "UNSTABLE"
    ax.set_title(title or f"von Neumann factor, ω = {cert.omega:g}: {verdict}")
    ax.legend(loc="best", fontsize=8)
    return fig


def plot_trajectory(trajectory, coords=None, title: str = "z(q, t) through the layers"):
    """``trajectory``: array ``(L+1, n)`` (z_0 … z_L), e.g. ``net.forward(x, θ, trajectory=True)``."""
    Z = np.asarray(trajectory, dtype=float)
    if Z.ndim != 2:
        raise ValueError(f"trajectory must have shape (L+1, n), got {Z.shape}")
    q = np.arange(Z.shape[1]) if coords is None else np.asarray(coords, float)
    fig, (ax,) = _figure()
    im = ax.imshow(Z, aspect="auto", origin="lower", cmap="viridis",
                   extent=(q[0], q[-1], -0.5, Z.shape[0] - 0.5))
    fig.colorbar(im, ax=ax, label="z")
    ax.set_xlabel("q")
    ax.set_ylabel("layer t")
    ax.set_title(title)
    return fig


def plot_layer_losses(profile, title: str = "loss by layer"):
    """``profile``: a LossProfile or an array of per-layer losses."""
    from .attractor import loss_profile
    prof = profile if hasattr(profile, "depth") else loss_profile(profile)
    fig, (ax,) = _figure()
    t = np.arange(len(prof.losses))
    ax.plot(t, prof.losses, "o-", ms=3)
    if np.all(prof.losses > 0):
        ax.set_yscale("log")
    d = prof.depth()
    ax.axvline(d, color="C2", ls=":", label=f"95% of the reduction at layer {d}")
    ax.set_xlabel("layer t")
    ax.set_ylabel("loss 0.5 Σ (z_t − y)²")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    return fig


def plot_locality(moments, title: str = "locality"):
    """Fraction of the weight mass Σ|W| at each index distance (a KernelMoments)."""
    mass = np.asarray(moments.locality, dtype=float)
    fig, (ax,) = _figure()
    ax.bar(np.arange(mass.size), mass, color="C1")
    ax.set_xlabel("distance |i − j| (sites)")
    ax.set_ylabel("fraction of Σ|W|")
    ax.set_title(f"{title}: 99% within {moments.locality_radius()} sites")
    return fig


def save(fig, path) -> Path:
    """Write ``fig`` as PNG or SVG (by the suffix of ``path``); returns the path."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("png", "svg"):
        raise ValueError(f"plots are written as .png or .svg, got {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format=fmt, dpi=120)
    return path
