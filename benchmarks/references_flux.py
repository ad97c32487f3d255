r"""Hand-written references for the flux-form Burgers layer (``npdegen.conservation_law``), for
``bench_nd.py``'s ``burgers-flux`` and ``burgers-rusanov`` workloads.

The layer (periodic, spacing ``h``, identity activation, homogeneous ``c > 0`` and ``nu``)::

    Φ_f    = F(z_f, z_{f+1}) − (nu/h) (z_{f+1} − z_f)            face f between cells f and f+1
    Z_i    = z_i − (Φ_i − Φ_{i−1}) / h
    z_next = (1 − ω) z + ω Z  =  z − ω (Φ_i − Φ_{i−1}) / h

with the numerical flux of ``g(u) = c u²/2`` (``a`` left, ``b`` right of the face)::

    godunov   F(a, b) = c/2 · max(max(a, 0)², min(b, 0)²) = c/2 · max(a, −b, 0)²
    rusanov   F(a, b) = c/2 · ((a² + b²)/2 − max(|a|, |b|) (b − a))

(the Godunov form is the exact Riemann flux of a convex flux with sonic point 0; ``max(a, −b, 0)``
is the same number because both squares are of non-negative values). Loss ``0.5 Σ (z_L − y)²``.

Adjoint, with ``s = ω λ_{t+1}`` and ``D_f = (s_{f+1} − s_f)/h`` (the face difference; every face is
counted once, periodic)::

    λ_t[k]  = (1 − ω) λ_{t+1}[k] + s_k + D_k ∂Φ_k/∂a + D_{k−1} ∂Φ_{k−1}/∂b
    ∂L/∂c   = Σ_t Σ_faces D_f F_f / c          ∂L/∂nu = −Σ_t Σ_faces D_f (z_{f+1} − z_f)/h

    godunov:  ∂F/∂a = c m (1 + σ)/2,   ∂F/∂b = −c m (1 − σ)/2,   m = max(a, −b, 0), σ = sign(a + b)
    rusanov:  ∂F/∂a = c/2 (a + μ − (b − a) sign(a) (1 + τ)/2)
              ∂F/∂b = c/2 (b − μ − (b − a) sign(b) (1 − τ)/2),   μ = max(|a|, |b|), τ = sign(|a| − |b|)

The ``(1 ± σ)/2`` factors split a tie (``a = −b``; ``|a| = |b|``) half and half, as SymPy's
``Heaviside(0) = 1/2`` in npdegen and ``torch.maximum``'s gradient do. Since ``s = ω λ``, the
adjoint is carried as ``mu = ω λ``: ``mu_t = mu + ω (D_k ∂Φ_k/∂a + D_{k−1} ∂Φ_{k−1}/∂b)``.

Implementations (computation dtype of ``x``; loss a Python float accumulated in float64; gradients
0-d arrays of the computation dtype):

``flux_numpy_buffered``   padded trajectory ``(L+1, batch, n+2)`` (halo by slice copies), face
                          arrays ``(rows, n+1)`` in ~64 K-value row blocks, workspace kept between
                          calls, ``out=`` everywhere, ω and 1/h folded into the face coefficients,
                          per-face batch reductions by ``einsum`` summed once at the end
``flux_torch_eager``      PyTorch autograd over ``torch.roll`` / ``clamp`` / ``maximum`` (``None``
                          without torch)
``flux_torch_compiled``   the same loss through ``torch.compile`` (``None`` without torch)
"""
from __future__ import annotations

import numpy as np

__all__ = ["FLUXES", "face_flux", "flux_numpy_buffered", "flux_torch_eager", "flux_torch_compiled",
           "clear_workspace_cache"]

FLUXES = ("godunov", "rusanov")
#: values per row block of the buffered reference: 16 rows of 4096 (eight face buffers of 256 KiB in
#: float32 stay in L3, and NumPy's per-call overhead is spread over 64 K values; 32 K–256 K measured
#: within noise of each other at 64×4096×32)
BLOCK_ELEMS = 65536

_WS: dict = {}


def clear_workspace_cache():
    _WS.clear()


def _check(flux):
    if flux not in FLUXES:
        raise ValueError(f"flux must be one of {FLUXES}, got {flux!r}")


def face_flux(a, b, c, flux="godunov"):
    """``F(a, b)`` of the module docstring (NumPy, elementwise)."""
    _check(flux)
    if flux == "godunov":
        return c / 2 * np.maximum(np.maximum(a, 0) ** 2, np.minimum(b, 0) ** 2)
    return c / 2 * ((a * a + b * b) / 2 - np.maximum(np.abs(a), np.abs(b)) * (b - a))


def _prepare(x, y, c, nu):
    x = np.asarray(x)
    dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    x = np.ascontiguousarray(x, dtype=dtype)
    y = np.ascontiguousarray(y, dtype=dtype)
    if x.ndim != 2 or y.shape != x.shape:
        raise ValueError(f"x and y must be (batch, n) of the same shape; got {x.shape} and {y.shape}")
    c, nu = (np.asarray(v, dtype=np.float64) for v in (c, nu))
    if c.shape != () or nu.shape != ():
        raise ValueError(f"c and nu are homogeneous: scalars, got shapes {c.shape} and {nu.shape}")
    if not c > 0:
        raise ValueError(f"c must be positive (the flux c u²/2 is then convex), got {float(c)}")
    return dtype, x, y, float(c), float(nu)


class _Ws:
    """Buffers of one (batch, n, L, dtype, block) problem: the padded trajectory and adjoint, eight
    face buffers of one row block, the per-face reductions."""

    def __init__(self, batch, n, L, dtype, block_elems):
        e = np.empty
        self.traj = e((L + 1, batch, n + 2), dtype)
        self.mu = e((batch, n + 2), dtype)
        self.gc = e(n + 1, dtype)                 # Σ_batch D̂ · 2F/c per face
        self.gnu = e(n + 1, dtype)                # Σ_batch D̂ · (b − a) per face
        self.red = e(n + 1, dtype)
        rows = max(1, min(batch, block_elems // (n + 1)))
        self.rows = [slice(r0, min(batch, r0 + rows)) for r0 in range(0, batch, rows)]
        self.buf = [e((rows, n + 1), dtype) for _ in range(8)]


def _fill_halo(a):
    a[..., 0] = a[..., -2]
    a[..., -1] = a[..., 1]


def _forward_faces(flux, zl, zr, k, beta, P, T, M):
    """P = ω/h · Φ on the faces (k = ωc/(2h), beta = ω nu/h²)."""
    mul, sub, add, mx = np.multiply, np.subtract, np.add, np.maximum
    if flux == "godunov":                         # k m² − beta (b − a)
        np.negative(zr, out=T)
        mx(T, zl, out=T)
        mx(T, 0, out=T)
        mul(T, T, out=T)
        mul(T, k, out=T)
        sub(zr, zl, out=P)
        mul(P, beta, out=P)
        sub(T, P, out=P)
        return
    mul(zl, zl, out=T)                            # k/2 (a² + b²) − (b − a)(k μ + beta)
    mul(zr, zr, out=P)
    add(T, P, out=T)
    mul(T, k / 2, out=T)
    np.abs(zl, out=P)
    np.abs(zr, out=M)
    mx(P, M, out=P)
    mul(P, k, out=P)
    add(P, beta, out=P)
    sub(zr, zl, out=M)
    mul(P, M, out=P)
    sub(T, P, out=P)


def _backward_faces(flux, zl, zr, k, beta, X, Y, Fc, Dd, T, M):
    """X = ω/h ∂Φ/∂a, Y = ω/h ∂Φ/∂b, Fc = 2F/c, Dd = b − a on the faces."""
    mul, sub, add, mx, sign = np.multiply, np.subtract, np.add, np.maximum, np.sign
    sub(zr, zl, out=Dd)
    if flux == "godunov":
        np.negative(zr, out=M)
        mx(M, zl, out=M)
        mx(M, 0, out=M)                           # m
        mul(M, M, out=Fc)
        add(zl, zr, out=T)
        sign(T, out=T)                            # σ
        mul(M, k, out=M)                          # k m
        mul(M, T, out=T)                          # k m σ
        add(M, T, out=X)
        add(X, beta, out=X)                       # k m (1 + σ) + beta
        sub(T, M, out=Y)
        sub(Y, beta, out=Y)                       # −k m (1 − σ) − beta
        return
    np.abs(zl, out=X)
    np.abs(zr, out=Y)
    mx(X, Y, out=M)                               # μ
    sub(X, Y, out=X)
    sign(X, out=X)                                # τ
    mul(zl, zl, out=Y)
    mul(zr, zr, out=T)
    add(Y, T, out=Y)
    mul(Y, 0.5, out=Y)
    mul(M, Dd, out=T)
    sub(Y, T, out=Fc)                             # (a² + b²)/2 − μ (b − a)
    sign(zr, out=Y)
    sub(1, X, out=T)
    mul(Y, T, out=Y)
    mul(Y, Dd, out=Y)
    mul(Y, -0.5, out=Y)
    sub(Y, M, out=Y)
    add(Y, zr, out=Y)
    mul(Y, k, out=Y)
    sub(Y, beta, out=Y)                           # k (b − μ − (b − a) sign(b)(1 − τ)/2) − beta
    sign(zl, out=T)
    add(X, 1, out=X)
    mul(X, T, out=X)
    mul(X, Dd, out=X)
    mul(X, -0.5, out=X)
    add(X, M, out=X)
    add(X, zl, out=X)
    mul(X, k, out=X)
    add(X, beta, out=X)                           # k (a + μ − (b − a) sign(a)(1 + τ)/2) + beta


def flux_numpy_buffered(x, y, c, nu, h=1.0, omega=0.5, L=32, flux="godunov", *, reuse_workspace=True,
                        block_elems=None, input_grad=False):
    """Best hand-written NumPy for the flux-form layer (module docstring); returns
    ``(loss, {"c": ..., "nu": ...})`` (and ``"x"``: ``λ_0 = mu_0 / ω``, with ``input_grad``)."""
    _check(flux)
    dtype, x, y, c, nu = _prepare(x, y, c, nu)
    L = int(L)
    batch, n = x.shape
    be = int(block_elems or BLOCK_ELEMS)
    key = (batch, n, L, dtype, be)
    ws = _WS.get(key) if reuse_workspace else None
    if ws is None:
        ws = _Ws(batch, n, L, dtype, be)
        if reuse_workspace:
            _WS.clear()
            _WS[key] = ws
    dt = dtype.type
    k, beta = dt(omega * c / (2 * h)), dt(omega * nu / h ** 2)
    sub, add, ein = np.subtract, np.add, np.einsum
    traj, mu = ws.traj, ws.mu
    np.copyto(traj[0, :, 1:n + 1], x)
    _fill_halo(traj[0])
    for t in range(L):                                        # ---- forward
        for rs in ws.rows:
            r = rs.stop - rs.start
            P, T, M = (b[:r] for b in ws.buf[:3])
            zp = traj[t, rs]
            _forward_faces(flux, zp[:, :n + 1], zp[:, 1:], k, beta, P, T, M)
            zn = traj[t + 1, rs, 1:n + 1]
            sub(zp[:, 1:n + 1], P[:, 1:], out=zn)              # z − ω/h (Φ_i − Φ_{i−1})
            add(zn, P[:, :n], out=zn)
        _fill_halo(traj[t + 1])

    inner = mu[:, 1:n + 1]
    sub(traj[L, :, 1:n + 1], y, out=inner)
    loss = 0.5 * float(ein("ij,ij->", inner, inner, dtype=np.float64))
    np.multiply(inner, dt(omega), out=inner)                  # mu = ω λ
    _fill_halo(mu)
    ws.gc.fill(0)
    ws.gnu.fill(0)
    for t in range(L - 1, -1, -1):                            # ---- backward
        for rs in ws.rows:
            r = rs.stop - rs.start
            Dh, X, Y, Fc, Dd, T, M = (b[:r] for b in ws.buf[:7])
            zp, mr = traj[t, rs], mu[rs]
            sub(mr[:, 1:], mr[:, :n + 1], out=Dh)              # D̂ = s_{f+1} − s_f
            _backward_faces(flux, zp[:, :n + 1], zp[:, 1:], k, beta, X, Y, Fc, Dd, T, M)
            ein("bi,bi->i", Dh, Fc, out=ws.red)
            add(ws.gc, ws.red, out=ws.gc)
            ein("bi,bi->i", Dh, Dd, out=ws.red)
            add(ws.gnu, ws.red, out=ws.gnu)
            np.multiply(X, Dh, out=X)
            np.multiply(Y, Dh, out=Y)
            mi = mr[:, 1:n + 1]
            add(mi, X[:, 1:], out=mi)                          # D_k ∂Φ_k/∂a (face k = right of cell k)
            add(mi, Y[:, :n], out=mi)                          # D_{k−1} ∂Φ_{k−1}/∂b
        _fill_halo(mu)
    gc = np.sum(ws.gc[1:], dtype=np.float64) / (2 * h)        # faces 1..n: each face once
    gnu = -np.sum(ws.gnu[1:], dtype=np.float64) / h ** 2
    grads = {"c": np.asarray(gc, dtype=dtype), "nu": np.asarray(gnu, dtype=dtype)}
    if input_grad:
        grads["x"] = mu[:, 1:n + 1] / dt(omega)
    return loss, grads


# ====================================================================================== PyTorch
try:  # pragma: no cover - depends on the environment
    import torch as _torch
except Exception:  # ImportError, or a broken install
    _torch = None


def _torch_flux_loss(x, y, c, nu, h, omega, L, flux):
    """The layer as a PyTorch user writes it: rolls, clamp/maximum, autograd for the adjoint."""
    z = x
    for _ in range(L):
        zr = _torch.roll(z, -1, dims=1)                       # the face right of cell i: a = z_i, b = z_{i+1}
        if flux == "godunov":
            F = c / 2 * _torch.maximum(_torch.clamp(z, min=0) ** 2, _torch.clamp(zr, max=0) ** 2)
        else:
            F = c / 2 * ((z * z + zr * zr) / 2 - _torch.maximum(z.abs(), zr.abs()) * (zr - z))
        phi = F - nu / h * (zr - z)
        Z = z - (phi - _torch.roll(phi, 1, dims=1)) / h
        z = (1 - omega) * z + omega * Z
    return 0.5 * ((z - y) ** 2).sum()


if _torch is not None:
    _COMPILED: dict = {}

    def _flux_torch(x, y, c, nu, h, omega, L, flux, compiled, input_grad=False):
        _check(flux)
        dtype, x, y, c, nu = _prepare(x, y, c, nu)
        key = (float(h), float(omega), int(L), flux)

        def loss_fn(tx, ty, tc, tnu):
            return _torch_flux_loss(tx, ty, tc, tnu, float(h), float(omega), int(L), flux)

        fn = loss_fn
        if compiled:
            fn = _COMPILED.get(key)
            if fn is None:
                fn = _COMPILED[key] = _torch.compile(loss_fn, dynamic=False)
        tx, ty = _torch.from_numpy(x).requires_grad_(input_grad), _torch.from_numpy(y)
        tp = [_torch.tensor(v, dtype=tx.dtype, requires_grad=True) for v in (c, nu)]
        loss = fn(tx, ty, *tp)
        grads = _torch.autograd.grad(loss, tp + ([tx] if input_grad else []))
        return float(loss.detach()), {k: g.detach().numpy() for k, g in zip(("c", "nu", "x"), grads)}

    def flux_torch_eager(x, y, c, nu, h=1.0, omega=0.5, L=32, flux="godunov", *, input_grad=False):
        """PyTorch autograd, eager, CPU (``input_grad``: also ``"x"``)."""
        return _flux_torch(x, y, c, nu, h, omega, L, flux, compiled=False, input_grad=input_grad)

    def flux_torch_compiled(x, y, c, nu, h=1.0, omega=0.5, L=32, flux="godunov"):
        """The same loss through ``torch.compile`` (the L layers unrolled; the first call per shape
        compiles). Raises if compilation fails."""
        return _flux_torch(x, y, c, nu, h, omega, L, flux, compiled=True)

else:
    flux_torch_eager = flux_torch_compiled = None
