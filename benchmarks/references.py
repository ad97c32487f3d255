"""Hand-written reference implementations of the neural ADR network.

Every implementation has the signature::

    loss_and_grad(x, y, U, D, R, b, h, omega, L) -> (loss, {"U": gU, "D": gD, "R": gR, "b": gb})

Maths (periodic grid of n sites, spacing h; ``x``/``y`` have shape (batch, n);
``U, D, R, b`` have shape (n,)).  Stencil weights per site i::

    A_i = U_i/(2h) + D_i/h**2          multiplies z[i-1]
    C_i = 1 + R_i - 2 D_i/h**2         multiplies z[i]
    B_i = -U_i/(2h) + D_i/h**2         multiplies z[i+1]

One layer::

    Z      = A*z[i-1] + C*z[i] + B*z[i+1] - b      (periodic wrap)
    z_next = (1 - omega)*z + omega*tanh(Z)

``z_0 = x``, the output is ``z_L`` and ``loss = 0.5*sum((z_L - y)**2)``.

Gradient (adjoint sweep, t = L-1 .. 0, ``lam_L = z_L - y``)::

    s       = omega*(1 - tanh(Z_t)**2)*lam_{t+1}
    dA_i   += sum_batch s[:, i]*z_t[:, i-1]
    dC_i   += sum_batch s[:, i]*z_t[:, i]
    dB_i   += sum_batch s[:, i]*z_t[:, i+1]
    db_i   -= sum_batch s[:, i]
    lam_t[k] = (1-omega)*lam_{t+1}[k] + A[k+1] s[k+1] + C[k] s[k] + B[k-1] s[k-1]

and finally ``gU = (dA - dB)/(2h)``, ``gD = (dA + dB - 2 dC)/h**2``,
``gR = dC``.  The forward pass stores the trajectory ``z_0 .. z_L``; the
backward pass recomputes ``Z_t`` (and its tanh) from the stored ``z_t``.

The computation dtype is taken from ``x`` (float32 or float64); all other
inputs are cast to it.  The loss is returned as a Python float, gradients as
NumPy arrays of the computation dtype.

Implementations
---------------
``numpy_idiomatic``  straightforward NumPy with ``np.roll``.
``numpy_buffered``   the "best hand-written NumPy" reference: preallocated,
                     padded buffers, ``out=`` everywhere, no allocation inside
                     the layer loops, cache blocking of large layers.
``torch_eager``      PyTorch autograd on CPU, eager mode (``None`` if torch
                     cannot be imported).
``torch_compiled``   the same function through ``torch.compile`` (``None`` if
                     torch is missing; a failing compile raises at call time,
                     callers are expected to catch it and skip).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "numpy_idiomatic",
    "numpy_buffered",
    "torch_eager",
    "torch_compiled",
    "IMPLEMENTATIONS",
    "available",
]


def _prepare(x, y, U, D, R, b):
    x = np.asarray(x)
    dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    x = np.ascontiguousarray(x, dtype=dtype)
    y = np.ascontiguousarray(y, dtype=dtype)
    U, D, R, b = (np.ascontiguousarray(a, dtype=dtype) for a in (U, D, R, b))
    if x.ndim != 2 or y.shape != x.shape:
        raise ValueError(f"x and y must have the same shape (batch, n); got {x.shape} and {y.shape}")
    n = x.shape[1]
    for name, a in zip("UDRb", (U, D, R, b)):
        if a.shape != (n,):
            raise ValueError(f"{name} must have shape ({n},); got {a.shape}")
    return dtype, x, y, U, D, R, b


def _stencil(U, D, R, h):
    """Return (A, C, B) in the dtype of U."""
    dt = U.dtype.type
    inv2h = dt(1.0 / (2.0 * h))
    invh2 = dt(1.0 / (h * h))
    A = U * inv2h + D * invh2
    C = dt(1.0) + R - dt(2.0) * invh2 * D
    B = -U * inv2h + D * invh2
    return A, C, B


def _finish(dA, dB, dC, db, h):
    dt = dA.dtype.type
    inv2h = dt(1.0 / (2.0 * h))
    invh2 = dt(1.0 / (h * h))
    return {
        "U": (dA - dB) * inv2h,
        "D": (dA + dB - dt(2.0) * dC) * invh2,
        "R": dC.copy(),
        "b": db.copy(),
    }


# ---------------------------------------------------------------------------
# 1. idiomatic NumPy
# ---------------------------------------------------------------------------

def numpy_idiomatic(x, y, U, D, R, b, h, omega, L):
    """Straightforward NumPy (np.roll, fresh temporaries everywhere)."""
    dtype, x, y, U, D, R, b = _prepare(x, y, U, D, R, b)
    L = int(L)
    w = dtype.type(omega)
    one_m_w = dtype.type(1.0 - omega)
    A, C, B = _stencil(U, D, R, h)

    def pre(z):
        return A * np.roll(z, 1, axis=1) + C * z + B * np.roll(z, -1, axis=1) - b

    traj = [x]
    z = x
    for _ in range(L):
        z = one_m_w * z + w * np.tanh(pre(z))
        traj.append(z)

    r = z - y
    loss = 0.5 * float(np.sum(r.astype(np.float64) ** 2))

    lam = r
    dA = np.zeros_like(A)
    dB = np.zeros_like(A)
    dC = np.zeros_like(A)
    db = np.zeros_like(A)
    for t in range(L - 1, -1, -1):
        zt = traj[t]
        T = np.tanh(pre(zt))
        s = w * (1 - T * T) * lam
        dA += np.sum(s * np.roll(zt, 1, axis=1), axis=0)
        dC += np.sum(s * zt, axis=0)
        dB += np.sum(s * np.roll(zt, -1, axis=1), axis=0)
        db -= np.sum(s, axis=0)
        lam = (one_m_w * lam
               + np.roll(A * s, -1, axis=1)   # A[k+1] s[k+1]
               + C * s
               + np.roll(B * s, 1, axis=1))   # B[k-1] s[k-1]
    return loss, _finish(dA, dB, dC, db, h)


# ---------------------------------------------------------------------------
# 2. buffered NumPy ("best hand-written NumPy")
# ---------------------------------------------------------------------------

# Target number of elements per block: the block temporaries (a few arrays of
# this size) should stay in L2.  Measured on a 2-core Sapphire Rapids VM
# (2 MiB L2 per core), float32: 32K elements was best (16K: +15-60 %,
# 64K: about the same, whole layers of 1-8 MiB: +30-100 %).
BLOCK_ELEMS = 32768


def _blocks(batch, n, block_elems):
    """Partition a (batch, n) array into (row slice, c0, c1) blocks."""
    if batch * n <= block_elems:
        return [(slice(0, batch), 0, n)]
    if n <= block_elems:
        rows = max(1, block_elems // n)
        return [(slice(r0, min(batch, r0 + rows)), 0, n) for r0 in range(0, batch, rows)]
    # long rows: the full batch, column chunks
    cols = max(1, block_elems // batch)
    return [(slice(0, batch), c0, min(n, c0 + cols)) for c0 in range(0, n, cols)]


class _Block:
    """Views of one block: everything that does not depend on the layer."""

    __slots__ = ("A", "C", "B", "b", "wA1", "wC", "wB1", "Z", "T", "r",
                 "dA", "dB", "dC", "db", "mu", "s", "sl", "sc", "sr")


class _Workspace:
    """All buffers of one (batch, n, L, dtype, block_elems) problem, and the
    views the layer loops use (built once, so the loops only call ufuncs)."""

    def __init__(self, batch, n, L, dtype, block_elems):
        blocks = _blocks(batch, n, block_elems)
        rows = max(bs.stop - bs.start for bs, _, _ in blocks)
        cols = max(c1 - c0 for _, c0, c1 in blocks)
        e = np.empty
        # padded trajectory: column 0 is the left halo (= z[:, n-1]),
        # column n+1 the right halo (= z[:, 0]); z_t = traj[t, :, 1:n+1]
        self.traj = e((L + 1, batch, n + 2), dtype)
        self.mu = e((batch, n), dtype)             # omega * adjoint
        self.sp = e((batch, n + 2), dtype)         # padded s of one layer
        Zb = e((rows, cols), dtype)                # block temporaries
        Tb = e((rows, cols), dtype)
        rb = e((cols,), dtype)
        self.A = e((n,), dtype)
        self.B = e((n,), dtype)
        self.C = e((n,), dtype)
        self.bb = e((n,), dtype)
        self.wAp = e((n + 2,), dtype)              # omega*A, padded
        self.wBp = e((n + 2,), dtype)              # omega*B, padded
        self.wC = e((n,), dtype)                   # omega*C
        self.dA = e((n,), dtype)
        self.dB = e((n,), dtype)
        self.dC = e((n,), dtype)
        self.db = e((n,), dtype)
        self.blocks = []
        for rs, c0, c1 in blocks:
            k = _Block()
            nr, m = rs.stop - rs.start, c1 - c0
            cs = slice(c0, c1)
            k.A, k.C, k.B, k.b = self.A[cs], self.C[cs], self.B[cs], self.bb[cs]
            k.wA1 = self.wAp[c0 + 2:c1 + 2]        # omega*A[k+1]
            k.wC = self.wC[cs]
            k.wB1 = self.wBp[c0:c1]                # omega*B[k-1]
            k.Z, k.T, k.r = Zb[:nr, :m], Tb[:nr, :m], rb[:m]
            k.dA, k.dB, k.dC, k.db = self.dA[cs], self.dB[cs], self.dC[cs], self.db[cs]
            k.mu = self.mu[rs, cs]
            k.sl = self.sp[rs, c0:c1]
            k.sc = self.sp[rs, c0 + 1:c1 + 1]
            k.sr = self.sp[rs, c0 + 2:c1 + 2]
            k.s = k.sc
            self.blocks.append(k)
        # per layer and block: (z[i-1], z[i], z[i+1]) views of the trajectory
        self.zviews = [
            [(self.traj[t, rs, c0:c1], self.traj[t, rs, c0 + 1:c1 + 1], self.traj[t, rs, c0 + 2:c1 + 2])
             for rs, c0, c1 in blocks]
            for t in range(L + 1)
        ]


_WS_CACHE: dict = {}


def _workspace(key, reuse):
    if reuse:
        ws = _WS_CACHE.get(key)
        if ws is None:
            _WS_CACHE.clear()              # keep at most one problem alive
            ws = _WS_CACHE[key] = _Workspace(*key)
        return ws
    return _Workspace(*key)


def clear_workspace_cache():
    _WS_CACHE.clear()


def numpy_buffered(x, y, U, D, R, b, h, omega, L, *, reuse_workspace=True,
                   block_elems=None, reuse_tanh=False):
    """NumPy with preallocated padded buffers and ``out=`` everywhere.

    * one padded trajectory buffer ``(L+1, batch, n+2)``; the halo columns are
      filled by slice copies after every layer, so the neighbour reads are
      plain shifted views (no ``np.roll``);
    * the stencil weights are padded too, so the adjoint's ``A[k+1] s[k+1]``
      and ``B[k-1] s[k-1]`` are shifted views as well;
    * the adjoint is carried as ``mu = omega*lam`` (omega folded into the
      adjoint stencil weights), which saves one pass per layer;
    * every layer is processed in cache-sized blocks (rows of the batch, or
      column chunks for long rows): the block temporaries stay in L2;
    * all views used in the loops are built once with the workspace, the
      loops only call ufuncs (matters when layers are small);
    * batch reductions use ``np.einsum('bi,bi->i', ...)`` (no temporary;
      measured faster than ``(a*b).sum(0)``);
    * no allocation inside the layer loops.  With ``reuse_workspace=True``
      (default) the buffers are also kept between calls with the same problem
      size, as a compiled network object would do.

    Single-threaded: splitting the blocks of a layer over 2 threads (NumPy
    releases the GIL in ufunc loops) gave no speed-up on the 2-vCPU VM these
    references were tuned on, so that code was dropped.

    ``reuse_tanh=True`` (not the default, and not the algorithm the other
    implementations use) skips the recomputation of ``tanh(Z_t)`` in the
    backward pass and reads it off the trajectory instead,
    ``tanh(Z_t) = (z_{t+1} - (1-omega) z_t)/omega`` (fine for omega not tiny).
    """
    dtype, x, y, U, D, R, b = _prepare(x, y, U, D, R, b)
    L = int(L)
    batch, n = x.shape
    be = int(block_elems or BLOCK_ELEMS)
    ws = _workspace((batch, n, L, dtype, be), reuse_workspace)
    dt = dtype.type
    w = dt(omega)
    one_m_w = dt(1.0 - omega)
    inv2h = dt(1.0 / (2.0 * h))
    invh2 = dt(1.0 / (h * h))
    mul, add, sub, tanh, ein, red = (np.multiply, np.add, np.subtract, np.tanh,
                                     np.einsum, np.add.reduce)

    # ---- stencil weights (O(n) work, once per call) ---------------------
    A, B, C = ws.A, ws.B, ws.C
    mul(D, invh2, out=C)                  # C used as scratch: D/h^2
    mul(U, inv2h, out=A)
    sub(C, A, out=B)                      # B = D/h^2 - U/2h
    add(C, A, out=A)                      # A = D/h^2 + U/2h
    mul(C, dt(-2.0), out=C)
    add(C, R, out=C)
    add(C, dt(1.0), out=C)                # C = 1 + R - 2 D/h^2
    np.copyto(ws.bb, b)
    wAp, wBp = ws.wAp, ws.wBp
    mul(A, w, out=wAp[1:n + 1])
    mul(B, w, out=wBp[1:n + 1])
    mul(C, w, out=ws.wC)
    for p in (wAp, wBp):
        p[0] = p[n]
        p[n + 1] = p[1]

    traj = ws.traj
    blocks = ws.blocks
    zviews = ws.zviews

    # ---- forward --------------------------------------------------------
    z0 = traj[0]
    np.copyto(z0[:, 1:n + 1], x)
    z0[:, 0] = z0[:, n]
    z0[:, n + 1] = z0[:, 1]
    for t in range(L):
        for k, (zl, zc, zr), (_, out, _) in zip(blocks, zviews[t], zviews[t + 1]):
            Z, T = k.Z, k.T
            mul(zl, k.A, out=Z)                   # A z[i-1]
            mul(zc, k.C, out=T)                   # C z[i]
            add(Z, T, out=Z)
            mul(zr, k.B, out=T)                   # B z[i+1]
            add(Z, T, out=Z)
            sub(Z, k.b, out=Z)
            tanh(Z, out=Z)
            mul(Z, w, out=Z)
            mul(zc, one_m_w, out=out)
            add(out, Z, out=out)                  # (1-w) z + w tanh(Z)
        zn = traj[t + 1]
        zn[:, 0] = zn[:, n]
        zn[:, n + 1] = zn[:, 1]

    # ---- loss and seed of the adjoint -----------------------------------
    mu = ws.mu
    sub(traj[L][:, 1:n + 1], y, out=mu)
    loss = 0.5 * float(np.einsum("ij,ij->", mu, mu, dtype=np.float64))  # no float64 copy
    mul(mu, w, out=mu)                    # mu_L = omega * (z_L - y)

    # ---- backward -------------------------------------------------------
    for a in (ws.dA, ws.dB, ws.dC, ws.db):
        a.fill(0)
    sp = ws.sp
    inv_w = dt(1.0 / omega)
    omw_w = dt((1.0 - omega) / omega)
    for t in range(L - 1, -1, -1):
        # pass 1: s = (1 - tanh(Z_t)^2) mu  and the coefficient gradients
        for k, (zl, zc, zr), (_, zn, _) in zip(blocks, zviews[t], zviews[t + 1]):
            Z, T, s, mb, r = k.Z, k.T, k.s, k.mu, k.r
            if reuse_tanh:
                # tanh(Z_t) = (z_{t+1} - (1-omega) z_t)/omega, off the trajectory
                mul(zn, inv_w, out=Z)
                mul(zc, omw_w, out=T)
                sub(Z, T, out=Z)
            else:
                mul(zl, k.A, out=Z)
                mul(zc, k.C, out=T)
                add(Z, T, out=Z)
                mul(zr, k.B, out=T)
                add(Z, T, out=Z)
                sub(Z, k.b, out=Z)
                tanh(Z, out=Z)
            mul(Z, Z, out=Z)
            mul(Z, mb, out=Z)
            sub(mb, Z, out=s)                     # s = (1 - T^2) mu
            ein("bi,bi->i", s, zl, out=r)
            add(k.dA, r, out=k.dA)
            ein("bi,bi->i", s, zc, out=r)
            add(k.dC, r, out=k.dC)
            ein("bi,bi->i", s, zr, out=r)
            add(k.dB, r, out=k.dB)
            red(s, axis=0, out=r)
            sub(k.db, r, out=k.db)
        sp[:, 0] = sp[:, n]
        sp[:, n + 1] = sp[:, 1]
        # pass 2: mu <- (1-w) mu + wA[k+1] s[k+1] + wC[k] s[k] + wB[k-1] s[k-1]
        for k in blocks:
            T, mb = k.T, k.mu
            mul(mb, one_m_w, out=mb)
            mul(k.sr, k.wA1, out=T)
            add(mb, T, out=mb)
            mul(k.sc, k.wC, out=T)
            add(mb, T, out=mb)
            mul(k.sl, k.wB1, out=T)
            add(mb, T, out=mb)

    dA, dB, dC = ws.dA, ws.dB, ws.dC
    return loss, {
        "U": (dA - dB) * inv2h,
        "D": (dA + dB - dt(2.0) * dC) * invh2,
        "R": dC.copy(),
        "b": ws.db.copy(),
    }


# ---------------------------------------------------------------------------
# 3. PyTorch (eager and compiled)
# ---------------------------------------------------------------------------

try:  # pragma: no cover - depends on the environment
    import torch as _torch
except Exception:  # ImportError, or a broken install
    _torch = None


def _torch_loss(x, y, U, D, R, b, h, omega, L):
    inv2h = 1.0 / (2.0 * h)
    invh2 = 1.0 / (h * h)
    A = U * inv2h + D * invh2
    C = 1.0 + R - 2.0 * invh2 * D
    B = -U * inv2h + D * invh2
    z = x
    for _ in range(L):
        Z = A * _torch.roll(z, 1, dims=1) + C * z + B * _torch.roll(z, -1, dims=1) - b
        z = (1.0 - omega) * z + omega * _torch.tanh(Z)
    return 0.5 * ((z - y) ** 2).sum()


def _torch_run(fn, x, y, U, D, R, b, h, omega, L):
    dtype, x, y, U, D, R, b = _prepare(x, y, U, D, R, b)
    tx = _torch.from_numpy(x)
    ty = _torch.from_numpy(y)
    params = [_torch.from_numpy(a.copy()).requires_grad_(True) for a in (U, D, R, b)]
    loss = fn(tx, ty, *params)
    grads = _torch.autograd.grad(loss, params)
    return float(loss.detach()), {k: g.detach().numpy() for k, g in zip("UDRb", grads)}


if _torch is not None:

    def torch_eager(x, y, U, D, R, b, h, omega, L):
        """PyTorch autograd, eager mode, CPU (torch.roll)."""
        L = int(L)

        def fn(tx, ty, U_, D_, R_, b_):
            return _torch_loss(tx, ty, U_, D_, R_, b_, float(h), float(omega), L)

        return _torch_run(fn, x, y, U, D, R, b, h, omega, L)

    _COMPILED: dict = {}

    def torch_compiled(x, y, U, D, R, b, h, omega, L):
        """The same loss through ``torch.compile`` (one compiled graph per
        (h, omega, L); the L layers are unrolled into that graph).  The first
        call per shape compiles and is slow.  Raises if compilation fails."""
        L = int(L)
        key = (float(h), float(omega), L)
        fn = _COMPILED.get(key)
        if fn is None:
            hh, ww = key[0], key[1]

            def loss_fn(tx, ty, U_, D_, R_, b_):
                return _torch_loss(tx, ty, U_, D_, R_, b_, hh, ww, L)

            fn = _COMPILED[key] = _torch.compile(loss_fn, dynamic=False)
        return _torch_run(fn, x, y, U, D, R, b, h, omega, L)

else:
    torch_eager = None
    torch_compiled = None


IMPLEMENTATIONS = {
    "numpy_idiomatic": numpy_idiomatic,
    "numpy_buffered": numpy_buffered,
    "torch_eager": torch_eager,
    "torch_compiled": torch_compiled,
}


def available():
    """Names of the implementations that can be called here."""
    return [k for k, f in IMPLEMENTATIONS.items() if f is not None]
