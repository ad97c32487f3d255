"""Baselines for the experiments: a dense linear map, a translation-invariant linear map and 1-D and
2-D Fourier Neural Operators (Li et al. 2021), trained by our own code. The linear maps take any grid
(``(samples, *grid)``).

* ``DenseLinear``: ``Y ≈ X A`` by ridge-regularised least squares (``n²`` parameters) — the best
  linear layer of all, with no locality or physics.
* ``CirculantLinear``: ``Y ≈ k ⊛ X`` (periodic convolution), the best translation-invariant linear
  map: one least-squares fit per Fourier mode (``n`` real parameters) — what a homogeneous linear
  neural PDE of unlimited depth and width could reach at most.
* ``FNO1d``: lifting to ``width`` channels (with the grid coordinate as a second input), ``layers``
  Fourier layers ``v ← GELU(W v + F⁻¹(R · F v)_{modes})`` and a two-layer projection; with the
  defaults (width 64, 16 modes, 4 layers) about 0.55 M parameters. Trained with Adam and a cosine
  schedule on the relative L2 loss (PyTorch, CPU; ``pip install npdegen[torch]``).
* ``FNO2d``: the same on 2-D grids (:func:`FNO2d`; about 0.41 M parameters with width 20 and 8 × 8 modes
  per corner — a 0.5 M 2-D FNO has fewer channels than the 1-D one, its weights grow with modes²).
"""
from __future__ import annotations

import math
import time

import numpy as np

__all__ = ["DenseLinear", "CirculantLinear", "FNO1d", "FNO2d", "train_fno", "nrmse"]


def nrmse(pred, y) -> float:
    """Mean over samples of ``‖ŷ − y‖/‖y‖`` (the tasks' metric)."""
    pred, y = np.asarray(pred).reshape(len(y), -1), np.asarray(y).reshape(len(y), -1)
    return float(np.mean(np.linalg.norm(pred - y, axis=1) / np.maximum(np.linalg.norm(y, axis=1), 1e-300)))


class DenseLinear:
    """``Y = X A``: ridge least squares (``ridge`` relative to the largest singular value²)."""

    def __init__(self, ridge: float = 1e-10):
        self.ridge = ridge

    def fit(self, X, Y):
        """``X``, ``Y``: ``(samples, *grid)`` (an N-D grid is flattened: ``(n_x n_y)²`` parameters)."""
        X, Y = _flat(X), _flat(Y)
        lam = self.ridge * np.linalg.norm(X, 2) ** 2
        self.A_ = np.linalg.solve(X.T @ X + lam * np.eye(X.shape[1]), X.T @ Y)
        self.n_params_ = self.A_.size
        return self

    def predict(self, X):
        X = np.asarray(X, float)
        return (_flat(X) @ self.A_).reshape(X.shape)


def _flat(a):
    a = np.asarray(a, float)
    return a.reshape(len(a), -1)


class CirculantLinear:
    """``Y = k ⊛ X`` on a periodic grid: per Fourier mode ``ŷ = κ x̂`` by least squares."""

    def fit(self, X, Y):
        """``X``, ``Y``: ``(samples, *grid)``; N-D grids use the N-D transform (``n_x n_y`` parameters)."""
        X, Y = np.asarray(X, float), np.asarray(Y, float)
        axes = tuple(range(1, X.ndim))
        Xh, Yh = np.fft.rfftn(X, axes=axes), np.fft.rfftn(Y, axes=axes)
        den = np.sum(np.abs(Xh) ** 2, axis=0)
        ok = den > 1e-12 * den.max()          # modes at rounding level in every input carry nothing (kappa 0)
        self.kappa_ = np.where(ok, np.sum(np.conj(Xh) * Yh, axis=0) / np.where(ok, den, 1), 0)
        self.n_params_ = int(np.prod(X.shape[1:]))
        return self

    def predict(self, X):
        X = np.asarray(X, float)
        axes = tuple(range(1, X.ndim))
        return np.fft.irfftn(np.fft.rfftn(X, axes=axes) * self.kappa_, X.shape[1:], axes=axes)


def _torch():
    try:
        import torch
    except ImportError as exc:   # pragma: no cover - optional
        raise ImportError("the FNO baseline needs PyTorch: pip install 'npdegen[torch]'") from exc
    return torch


def FNO1d(width: int = 64, modes: int = 16, layers: int = 4, seed: int = 0):
    """A 1-D Fourier Neural Operator (see the module docstring); returns a ``torch.nn.Module``."""
    torch = _torch()
    nn = torch.nn

    class SpectralConv(nn.Module):
        def __init__(self):
            super().__init__()
            scale = 1 / (width * width)
            self.weight = nn.Parameter(scale * torch.randn(width, width, modes, dtype=torch.cfloat))

        def forward(self, v):
            vh = torch.fft.rfft(v, dim=-1)
            out = torch.zeros(v.shape[0], width, vh.shape[-1], dtype=torch.cfloat)
            m = min(modes, vh.shape[-1])
            out[..., :m] = torch.einsum("bim,iom->bom", vh[..., :m], self.weight[..., :m])
            return torch.fft.irfft(out, n=v.shape[-1], dim=-1)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lift = nn.Conv1d(2, width, 1)
            self.spectral = nn.ModuleList(SpectralConv() for _ in range(layers))
            self.pointwise = nn.ModuleList(nn.Conv1d(width, width, 1) for _ in range(layers))
            self.project = nn.Sequential(nn.Conv1d(width, 128, 1), nn.GELU(), nn.Conv1d(128, 1, 1))

        def forward(self, x):
            grid = torch.linspace(0, 1, x.shape[-1]).expand(x.shape[0], 1, -1)
            v = self.lift(torch.cat([x[:, None, :], grid], dim=1))
            for k, (spec, point) in enumerate(zip(self.spectral, self.pointwise)):
                v = spec(v) + point(v)
                if k < layers - 1:
                    v = torch.nn.functional.gelu(v)
            return self.project(v)[:, 0]

    torch.manual_seed(seed)
    return Net()


def FNO2d(width: int = 20, modes: int = 8, layers: int = 4, seed: int = 0):
    """A 2-D Fourier Neural Operator, the 1-D one's architecture on ``(samples, n_x, n_y)`` inputs: lifting
    (the field and both coordinates) to ``width`` channels, ``layers`` Fourier layers keeping the
    ``modes × modes`` lowest modes of both signs along the first axis (two weight blocks, as in Li et
    al.'s FNO2d) and ``modes`` along the second (the rfft axis), a two-layer projection. Defaults:
    about 0.41 M real parameters (width 20, 8 modes, 4 layers: 414,177)."""
    torch = _torch()
    nn = torch.nn

    class SpectralConv2d(nn.Module):
        def __init__(self):
            super().__init__()
            scale = 1 / (width * width)
            self.weight = nn.Parameter(scale * torch.randn(2, width, width, modes, modes, dtype=torch.cfloat))

        def forward(self, v):
            nx, ny = v.shape[-2:]
            vh = torch.fft.rfft2(v)
            out = torch.zeros(v.shape[0], width, nx, ny // 2 + 1, dtype=torch.cfloat)
            mx, my = min(modes, nx // 2), min(modes, ny // 2 + 1)
            out[..., :mx, :my] = torch.einsum("bixy,ioxy->boxy", vh[..., :mx, :my], self.weight[0, ..., :mx, :my])
            out[..., -mx:, :my] = torch.einsum("bixy,ioxy->boxy", vh[..., -mx:, :my], self.weight[1, ..., :mx, :my])
            return torch.fft.irfft2(out, s=(nx, ny))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lift = nn.Conv2d(3, width, 1)
            self.spectral = nn.ModuleList(SpectralConv2d() for _ in range(layers))
            self.pointwise = nn.ModuleList(nn.Conv2d(width, width, 1) for _ in range(layers))
            self.project = nn.Sequential(nn.Conv2d(width, 128, 1), nn.GELU(), nn.Conv2d(128, 1, 1))

        def forward(self, x):
            b, nx, ny = x.shape
            gx = torch.linspace(0, 1, nx)[:, None].expand(b, 1, nx, ny)
            gy = torch.linspace(0, 1, ny)[None, :].expand(b, 1, nx, ny)
            v = self.lift(torch.cat([x[:, None], gx, gy], dim=1))
            for k, (spec, point) in enumerate(zip(self.spectral, self.pointwise)):
                v = spec(v) + point(v)
                if k < layers - 1:
                    v = torch.nn.functional.gelu(v)
            return self.project(v)[:, 0]

    torch.manual_seed(seed)
    return Net()


def train_fno(model, X, Y, epochs: int = 500, batch: int = 32, lr: float = 1e-3, budget: float | None = None,
              seed: int = 0, threads: int | None = 1, loss: str = "relative") -> dict:
    """Adam + cosine schedule on the mean relative L2 loss (``loss="relative"``, the tasks' metric) or
    the pooled one (``"pooled"``: ``‖Ŷ − Y‖/‖Y‖`` per batch); stops at ``budget`` seconds if given.
    ``threads``: PyTorch's intra-op threads (None: leave as is). One thread is the default because on
    a machine whose cores are busy with other processes two spinning threads were measured 10x slower
    per epoch (31 s vs 3.2 s at load 11 on 2 cores). Returns ``{"seconds", "epochs", "n_params", "loss",
    "threads"}``."""
    torch = _torch()
    if loss not in ("relative", "pooled"):
        raise ValueError(f"loss must be 'relative' or 'pooled', got {loss!r}")
    if threads is not None:
        torch.set_num_threads(int(threads))
    X, Y = torch.as_tensor(np.asarray(X, np.float32)), torch.as_tensor(np.asarray(Y, np.float32))
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    gen = torch.Generator().manual_seed(seed)
    t0, done, last = time.perf_counter(), 0, math.nan
    for epoch in range(epochs):
        for idx in torch.randperm(len(X), generator=gen).split(batch):
            pred = model(X[idx])
            if loss == "relative":
                err, ref = (pred - Y[idx]).flatten(1), Y[idx].flatten(1)
                loss_t = torch.mean(torch.linalg.norm(err, dim=1) / torch.linalg.norm(ref, dim=1))
            else:
                loss_t = torch.linalg.norm(pred - Y[idx]) / torch.linalg.norm(Y[idx])
            opt.zero_grad()
            loss_t.backward()
            opt.step()
            last = float(loss_t.detach())
        sched.step()
        done = epoch + 1
        if budget is not None and time.perf_counter() - t0 > budget:
            break
    return {"seconds": time.perf_counter() - t0, "epochs": done, "loss": last, "threads": torch.get_num_threads(),
            "n_params": sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters())}


def fno_predict(model, X) -> np.ndarray:
    torch = _torch()
    with torch.no_grad():
        return model(torch.as_tensor(np.asarray(X, np.float32))).numpy().astype(float)
