"""Hand-written references for the N-D and nonlinear layers (step IR), for ``bench_nd.py``.

Two workloads, each written several ways (all forward + gradient of ``0.5 Σ (z_L − y)²``; the
trajectory ``z_0 .. z_L`` is stored by the forward pass and the backward pass recomputes the
pre-activation from it, as npdegen does):

**(a) 2-D heterogeneous anisotropic ADR with a cross term** (periodic, spacing ``(hx, hy)``)::

    Z = z + R z − U z_x − V z_y + Dxx z_xx + 2 Dxy z_xy + Dyy z_yy
    z_next = (1 − ω) z + ω tanh(Z)

with central differences, i.e. a 9-point stencil ``Z[i, j] = Σ_o W_o[i, j] z[(i, j) + o]`` whose
weights at the row's site are (``a = 1/hx², c = 1/hy², e = 1/(2 hx hy)``)::

    W_00   = 1 + R − 2 a Dxx − 2 c Dyy
    W_+0   = a Dxx − U/(2 hx)      W_−0 = a Dxx + U/(2 hx)
    W_0+   = c Dyy − V/(2 hy)      W_0− = c Dyy + V/(2 hy)
    W_++ = W_−− = e Dxy            W_+− = W_−+ = −e Dxy

``x, y``: (batch, nx, ny); the coefficients ``theta = {"U", "V", "Dxx", "Dxy", "Dyy", "R"}``:
(nx, ny) each (heterogeneous). Gradient: ``s = ω f'(Z_t) λ_{t+1}``, ``dW_o += Σ_batch s z_t[· + o]``,
``λ_t[k] = (1 − ω) λ_{t+1}[k] + Σ_o W_o[k − o] s[k − o]`` (the transposed stencil, gathered), and
the parameter gradients are the chain rule through the weight formulas above.

**(b) nonlinear 1-D** ``Z = z + nu z_qq − z z_q`` (heterogeneous ``nu``, periodic, spacing h), with
``f = tanh`` or ``f = identity``::

    Z[i] = z[i] + nu[i] (z[i+1] − 2 z[i] + z[i−1])/h² − z[i] (z[i+1] − z[i−1])/(2h)
    g_nu += Σ_batch s (z[i+1] − 2 z[i] + z[i−1])/h²
    λ_t[k] = (1−ω) λ[k] + s[k] (1 − 2 nu[k]/h² − (z[k+1] − z[k−1])/(2h))
             + s[k−1] (nu[k−1]/h² − z[k−1]/(2h)) + s[k+1] (nu[k+1]/h² + z[k+1]/(2h))

Implementations (the computation dtype is that of ``x``; the loss is a Python float accumulated in
float64, gradients are arrays of the computation dtype):

``adr2d_numpy_rolls``     idiomatic NumPy, ``np.roll``, fresh temporaries, hand-written adjoint
``adr2d_numpy_buffered``  best hand-written NumPy: padded trajectory (halo filled by slice copies),
                          preallocated workspace kept between calls, ``out=`` everywhere, layers
                          processed in ~32 K-value blocks (all of the batch × a few rows), padded
                          ω-scaled weights so the transposed stencil is gathered from shifted views
``adr2d_torch_eager``     PyTorch autograd, ``torch.roll`` (``None`` without torch)
``adr2d_torch_compiled``  the same loss through ``torch.compile`` (``None`` without torch)
``burgers_numpy_rolls``, ``burgers_numpy_buffered``, ``burgers_torch_eager``,
``burgers_torch_compiled``: the same for (b); ``activation`` is ``"tanh"`` or ``"identity"``.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "PARAMS_2D", "OFFSETS_2D", "adr2d_weights", "adr2d_param_grads",
    "adr2d_numpy_rolls", "adr2d_numpy_buffered", "adr2d_torch_eager", "adr2d_torch_compiled",
    "burgers_numpy_rolls", "burgers_numpy_buffered", "burgers_torch_eager", "burgers_torch_compiled",
    "clear_workspace_cache",
]

PARAMS_2D = ("U", "V", "Dxx", "Dxy", "Dyy", "R")
#: the 9 offsets (di, dj) of the 2-D stencil, centre first
OFFSETS_2D = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (1, -1), (-1, 1))

# Block size (values per block) of the buffered references, as in references.py: the block
# temporaries should stay in L2.
BLOCK_ELEMS = 32768

_WS_CACHE: dict = {}


def clear_workspace_cache():
    _WS_CACHE.clear()


def _workspace(key, make, reuse):
    if not reuse:
        return make()
    ws = _WS_CACHE.get(key)
    if ws is None:
        _WS_CACHE.clear()                       # keep at most one problem alive
        ws = _WS_CACHE[key] = make()
    return ws


def _dtype_of(x):
    x = np.asarray(x)
    return x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float64)


def _spacing2(h):
    if isinstance(h, (tuple, list)):
        hx, hy = (float(v) for v in h)
    else:
        hx = hy = float(h)
    return hx, hy


# ===================================================================================== (a) 2-D ADR
def _prepare_2d(x, y, theta):
    dtype = _dtype_of(x)
    x = np.ascontiguousarray(x, dtype=dtype)
    y = np.ascontiguousarray(y, dtype=dtype)
    if x.ndim != 3 or y.shape != x.shape:
        raise ValueError(f"x and y must have the same shape (batch, nx, ny); got {x.shape} and {y.shape}")
    th = {}
    for k in PARAMS_2D:
        a = np.ascontiguousarray(theta[k], dtype=dtype)
        if a.shape != x.shape[1:]:
            raise ValueError(f"{k} must have shape {x.shape[1:]}; got {a.shape}")
        th[k] = a
    return dtype, x, y, th


def adr2d_weights(theta, h):
    """The 9 stencil weights {offset: (nx, ny) array} in the dtype of the coefficients."""
    hx, hy = _spacing2(h)
    U, V, Dxx, Dxy, Dyy, R = (theta[k] for k in PARAMS_2D)
    dt = U.dtype.type
    a, c, e = dt(1 / hx**2), dt(1 / hy**2), dt(1 / (2 * hx * hy))
    ux, vy = dt(1 / (2 * hx)), dt(1 / (2 * hy))
    return {
        (0, 0): dt(1) + R - dt(2) * a * Dxx - dt(2) * c * Dyy,
        (1, 0): a * Dxx - ux * U, (-1, 0): a * Dxx + ux * U,
        (0, 1): c * Dyy - vy * V, (0, -1): c * Dyy + vy * V,
        (1, 1): e * Dxy, (-1, -1): e * Dxy, (1, -1): -e * Dxy, (-1, 1): -e * Dxy,
    }


def adr2d_param_grads(dW, h):
    """Chain rule from the weight gradients {offset: array} to the coefficients."""
    hx, hy = _spacing2(h)
    dt = dW[(0, 0)].dtype.type
    a, c, e = dt(1 / hx**2), dt(1 / hy**2), dt(1 / (2 * hx * hy))
    ux, vy = dt(1 / (2 * hx)), dt(1 / (2 * hy))
    d0 = dW[(0, 0)]
    return {
        "U": ux * (dW[(-1, 0)] - dW[(1, 0)]),
        "V": vy * (dW[(0, -1)] - dW[(0, 1)]),
        "Dxx": a * (dW[(1, 0)] + dW[(-1, 0)] - dt(2) * d0),
        "Dyy": c * (dW[(0, 1)] + dW[(0, -1)] - dt(2) * d0),
        "Dxy": e * (dW[(1, 1)] + dW[(-1, -1)] - dW[(1, -1)] - dW[(-1, 1)]),
        "R": d0.copy(),
    }


def adr2d_numpy_rolls(x, y, theta, h=1.0, omega=0.5, L=16):
    """Idiomatic NumPy: ``np.roll`` for every neighbour, fresh temporaries, hand-written adjoint."""
    dtype, x, y, th = _prepare_2d(x, y, theta)
    L = int(L)
    w, omw = dtype.type(omega), dtype.type(1 - omega)
    W = adr2d_weights(th, h)

    def shifted(z, o):                 # z[(i, j) + o], periodic
        return np.roll(z, (-o[0], -o[1]), axis=(1, 2))

    def pre(z):
        return sum(W[o] * shifted(z, o) for o in OFFSETS_2D)

    traj = [x]
    z = x
    for _ in range(L):
        z = omw * z + w * np.tanh(pre(z))
        traj.append(z)
    r = z - y
    loss = 0.5 * float(np.sum(r.astype(np.float64) ** 2))

    lam = r
    dW = {o: np.zeros_like(W[o]) for o in OFFSETS_2D}
    for t in range(L - 1, -1, -1):
        zt = traj[t]
        T = np.tanh(pre(zt))
        s = w * (1 - T * T) * lam
        for o in OFFSETS_2D:
            dW[o] += np.sum(s * shifted(zt, o), axis=0)
        lam = omw * lam + sum(np.roll(W[o] * s, o, axis=(1, 2)) for o in OFFSETS_2D)   # W_o[k-o] s[k-o]
    return loss, adr2d_param_grads(dW, h)


class _Ws2D:
    """Buffers and precomputed views of one (batch, nx, ny, L, dtype, block) problem."""

    def __init__(self, batch, nx, ny, L, dtype, block_elems):
        e = np.empty
        self.traj = e((L + 1, batch, nx + 2, ny + 2), dtype)     # padded trajectory (1-wide halo)
        self.mu = e((batch, nx, ny), dtype)                      # omega * adjoint
        self.sp = e((batch, nx + 2, ny + 2), dtype)              # padded s of one layer
        self.W = {o: e((nx, ny), dtype) for o in OFFSETS_2D}     # weights
        self.wWp = {o: e((nx + 2, ny + 2), dtype) for o in OFFSETS_2D}   # omega * weights, padded
        self.dW = {o: e((nx, ny), dtype) for o in OFFSETS_2D}
        rows = max(1, min(nx, block_elems // max(1, batch * ny)))
        self.row_blocks = [(r0, min(nx, r0 + rows)) for r0 in range(0, nx, rows)]
        Zb = e((batch, rows, ny), dtype)
        Tb = e((batch, rows, ny), dtype)
        rb = e((rows, ny), dtype)
        self.blocks = []
        for r0, r1 in self.row_blocks:
            m = r1 - r0
            blk = dict(Z=Zb[:, :m], T=Tb[:, :m], r=rb[:m], mu=self.mu[:, r0:r1],
                       W=[self.W[o][r0:r1] for o in OFFSETS_2D],
                       dW=[self.dW[o][r0:r1] for o in OFFSETS_2D],
                       s=self.sp[:, r0 + 1:r1 + 1, 1:ny + 1],
                       # gather: W_o[k-o] s[k-o] is the padded array read at offset -o
                       wWs=[(self.wWp[o][1 - o[0] + r0:1 - o[0] + r1, 1 - o[1]:1 - o[1] + ny],
                             self.sp[:, 1 - o[0] + r0:1 - o[0] + r1, 1 - o[1]:1 - o[1] + ny])
                            for o in OFFSETS_2D])
            self.blocks.append(blk)
        # per layer and block: the 9 shifted views z_t[(i, j) + o] and the interior of z_{t+1}
        self.zviews = [[[self.traj[t, :, 1 + o[0] + r0:1 + o[0] + r1, 1 + o[1]:1 + o[1] + ny] for o in OFFSETS_2D]
                        for r0, r1 in self.row_blocks] for t in range(L + 1)]


def _fill_halo_2d(a):
    """Periodic halo of a padded (..., nx+2, ny+2) array, corners included (rows, then columns)."""
    a[..., 0, :] = a[..., -2, :]
    a[..., -1, :] = a[..., 1, :]
    a[..., :, 0] = a[..., :, -2]
    a[..., :, -1] = a[..., :, 1]


def adr2d_numpy_buffered(x, y, theta, h=1.0, omega=0.5, L=16, *, reuse_workspace=True, block_elems=None):
    """Best hand-written NumPy for the 2-D layer (see the module docstring); no allocation inside
    the layer loops, the workspace is kept between calls of the same size (as a compiled network
    keeps its buffers)."""
    dtype, x, y, th = _prepare_2d(x, y, theta)
    L = int(L)
    batch, nx, ny = x.shape
    be = int(block_elems or BLOCK_ELEMS)
    ws = _workspace(("2d", batch, nx, ny, L, dtype, be), lambda: _Ws2D(batch, nx, ny, L, dtype, be),
                    reuse_workspace)
    dt = dtype.type
    w, omw = dt(omega), dt(1 - omega)
    mul, add, sub, tanh, ein = np.multiply, np.add, np.subtract, np.tanh, np.einsum

    for o, arr in adr2d_weights(th, h).items():          # O(grid) work once per call
        np.copyto(ws.W[o], arr)
        mul(arr, w, out=ws.wWp[o][1:nx + 1, 1:ny + 1])
        _fill_halo_2d(ws.wWp[o])

    traj, blocks, zviews = ws.traj, ws.blocks, ws.zviews
    np.copyto(traj[0, :, 1:nx + 1, 1:ny + 1], x)
    _fill_halo_2d(traj[0])

    def preact(blk, zs):                                  # Z = sum_o W_o z[. + o]  -> blk["Z"]
        Z, T = blk["Z"], blk["T"]
        mul(zs[0], blk["W"][0], out=Z)
        for zo, Wo in zip(zs[1:], blk["W"][1:]):
            mul(zo, Wo, out=T)
            add(Z, T, out=Z)
        tanh(Z, out=Z)
        return Z

    for t in range(L):                                    # ---- forward
        for blk, zs, zn in zip(blocks, zviews[t], zviews[t + 1]):
            Z = preact(blk, zs)
            mul(Z, w, out=Z)
            out = zn[0]                                   # centre view of z_{t+1}
            mul(zs[0], omw, out=out)
            add(out, Z, out=out)
        _fill_halo_2d(traj[t + 1])

    mu = ws.mu                                            # ---- loss, adjoint seed
    sub(traj[L, :, 1:nx + 1, 1:ny + 1], y, out=mu)
    loss = 0.5 * float(ein("bij,bij->", mu, mu, dtype=np.float64))
    mul(mu, w, out=mu)                                    # mu = omega * lambda

    for a in ws.dW.values():
        a.fill(0)
    sp = ws.sp
    for t in range(L - 1, -1, -1):                        # ---- backward
        for blk, zs in zip(blocks, zviews[t]):            # pass 1: s and the weight gradients
            Z = preact(blk, zs)
            s, mb, r = blk["s"], blk["mu"], blk["r"]
            mul(Z, Z, out=Z)
            mul(Z, mb, out=Z)
            sub(mb, Z, out=s)                             # s = (1 - tanh^2) mu
            for zo, d in zip(zs, blk["dW"]):
                ein("bij,bij->ij", s, zo, out=r)
                add(d, r, out=d)
        _fill_halo_2d(sp)
        for blk in blocks:                                # pass 2: mu = (1-w) mu + sum_o wW_o[k-o] s[k-o]
            mb, T = blk["mu"], blk["T"]
            mul(mb, omw, out=mb)
            for wo, so in blk["wWs"]:
                mul(so, wo, out=T)
                add(mb, T, out=mb)
    return loss, adr2d_param_grads(ws.dW, h)


# ================================================================================ (b) nonlinear 1-D
def _prepare_1d(x, y, nu):
    dtype = _dtype_of(x)
    x = np.ascontiguousarray(x, dtype=dtype)
    y = np.ascontiguousarray(y, dtype=dtype)
    nu = np.ascontiguousarray(nu, dtype=dtype)
    if x.ndim != 2 or y.shape != x.shape or nu.shape != x.shape[1:]:
        raise ValueError(f"x, y must be (batch, n) and nu (n,); got {x.shape}, {y.shape}, {nu.shape}")
    return dtype, x, y, nu


def _check_activation(activation):
    if activation not in ("tanh", "identity"):
        raise ValueError(f"activation must be 'tanh' or 'identity', got {activation!r}")
    return activation == "tanh"


def burgers_numpy_rolls(x, y, nu, h=1.0, omega=0.5, L=32, activation="tanh"):
    """Idiomatic NumPy for (b): ``np.roll``, fresh temporaries, hand-written adjoint."""
    use_tanh = _check_activation(activation)
    dtype, x, y, nu = _prepare_1d(x, y, nu)
    L, dt = int(L), dtype.type
    w, omw = dt(omega), dt(1 - omega)
    ih2, i2h = dt(1 / h**2), dt(1 / (2 * h))

    def parts(z):
        zl, zr = np.roll(z, 1, axis=1), np.roll(z, -1, axis=1)
        lap, gq = zr - 2 * z + zl, zr - zl
        return lap, gq, z + nu * ih2 * lap - i2h * z * gq

    traj, z = [x], x
    for _ in range(L):
        Z = parts(z)[2]
        z = omw * z + w * (np.tanh(Z) if use_tanh else Z)
        traj.append(z)
    r = z - y
    loss = 0.5 * float(np.sum(r.astype(np.float64) ** 2))
    lam, gnu = r, np.zeros_like(nu)
    for t in range(L - 1, -1, -1):
        zt = traj[t]
        lap, gq, Z = parts(zt)
        s = w * lam * (1 - np.tanh(Z) ** 2) if use_tanh else w * lam
        gnu += ih2 * np.sum(s * lap, axis=0)
        lam = (omw * lam + s * (1 - 2 * ih2 * nu - i2h * gq)
               + np.roll(s * (ih2 * nu - i2h * zt), 1, axis=1)      # s[k-1] (nu[k-1]/h^2 - z[k-1]/2h)
               + np.roll(s * (ih2 * nu + i2h * zt), -1, axis=1))    # s[k+1] (nu[k+1]/h^2 + z[k+1]/2h)
    return loss, {"nu": gnu}


class _Ws1D:
    def __init__(self, batch, n, L, dtype, block_elems):
        e = np.empty
        self.traj = e((L + 1, batch, n + 2), dtype)
        self.mu = e((batch, n), dtype)
        self.PmQ = e((batch, n + 2), dtype)       # omega s (nu/h^2 - z/(2h)), padded
        self.PpQ = e((batch, n + 2), dtype)       # omega s (nu/h^2 + z/(2h)), padded
        self.wnu = e((n,), dtype)                 # omega nu / h^2
        self.cc = e((n,), dtype)                  # omega (1 - 2 nu/h^2)
        self.gnu = e((n,), dtype)
        rows = max(1, min(batch, block_elems // max(1, n)))
        cols = n if batch * n <= block_elems or n <= block_elems else max(1, block_elems // batch)
        if cols < n:
            blocks = [(slice(0, batch), c0, min(n, c0 + cols)) for c0 in range(0, n, cols)]
        else:
            blocks = [(slice(r0, min(batch, r0 + rows)), 0, n) for r0 in range(0, batch, rows)]
        nr = max(b.stop - b.start for b, _, _ in blocks)
        nc = max(c1 - c0 for _, c0, c1 in blocks)
        Zb, Tb, Gb, Sb = (e((nr, nc), dtype) for _ in range(4))
        rb = e((nc,), dtype)
        self.blocks = []
        for rs, c0, c1 in blocks:
            r, m = rs.stop - rs.start, c1 - c0
            cs = slice(c0, c1)
            self.blocks.append(dict(
                Z=Zb[:r, :m], T=Tb[:r, :m], lap=Gb[:r, :m], S=Sb[:r, :m], r=rb[:m], mu=self.mu[rs, cs],
                wnu=self.wnu[cs], cc=self.cc[cs], gnu=self.gnu[cs],
                PmQ=self.PmQ[rs, c0 + 1:c1 + 1], PpQ=self.PpQ[rs, c0 + 1:c1 + 1],
                PmQl=self.PmQ[rs, c0:c1], PpQr=self.PpQ[rs, c0 + 2:c1 + 2], cs=cs))
        self.zviews = [[(self.traj[t, rs, c0:c1], self.traj[t, rs, c0 + 1:c1 + 1], self.traj[t, rs, c0 + 2:c1 + 2])
                        for rs, c0, c1 in blocks] for t in range(L + 1)]


def _fill_halo_1d(a):
    a[..., 0] = a[..., -2]
    a[..., -1] = a[..., 1]


def burgers_numpy_buffered(x, y, nu, h=1.0, omega=0.5, L=32, activation="tanh", *, reuse_workspace=True,
                           block_elems=None):
    """Best hand-written NumPy for (b): padded trajectory, preallocated buffers kept between calls,
    ``out=`` everywhere, ~32 K-value blocks, ω folded into the adjoint (``mu = ω λ``); the adjoint's
    neighbour terms are gathered from two padded per-layer products."""
    use_tanh = _check_activation(activation)
    dtype, x, y, nu = _prepare_1d(x, y, nu)
    L = int(L)
    batch, n = x.shape
    be = int(block_elems or BLOCK_ELEMS)
    ws = _workspace(("1d", batch, n, L, dtype, be), lambda: _Ws1D(batch, n, L, dtype, be), reuse_workspace)
    dt = dtype.type
    w, omw = dt(omega), dt(1 - omega)
    ih2, i2h = dt(1 / h**2), dt(1 / (2 * h))
    wi2h = dt(omega / (2 * h))
    mul, add, sub, tanh, ein = np.multiply, np.add, np.subtract, np.tanh, np.einsum
    nuh = nu * ih2                                   # O(n), once per call
    mul(nuh, w, out=ws.wnu)
    np.copyto(ws.cc, w * (dt(1) - dt(2) * nuh))

    traj, blocks, zviews = ws.traj, ws.blocks, ws.zviews
    for blk in blocks:
        blk["nuh"] = nuh[blk["cs"]]
    np.copyto(traj[0][:, 1:n + 1], x)
    _fill_halo_1d(traj[0])

    def preact(blk, zl, zc, zr):                      # lap, (zr - zl) in T, Z; returns Z
        Z, T, lap = blk["Z"], blk["T"], blk["lap"]
        add(zr, zl, out=lap)
        sub(lap, zc, out=lap)
        sub(lap, zc, out=lap)                         # lap = zr - 2 zc + zl
        sub(zr, zl, out=T)                            # T = zr - zl
        mul(T, zc, out=Z)
        mul(Z, -i2h, out=Z)                           # - z (zr - zl)/2h
        add(Z, zc, out=Z)
        return Z

    for t in range(L):                                # ---- forward
        for blk, (zl, zc, zr), (_, out, _) in zip(blocks, zviews[t], zviews[t + 1]):
            Z = preact(blk, zl, zc, zr)
            lap = blk["lap"]
            mul(lap, blk["nuh"], out=lap)
            add(Z, lap, out=Z)
            if use_tanh:
                tanh(Z, out=Z)
            mul(Z, w, out=Z)
            mul(zc, omw, out=out)
            add(out, Z, out=out)
        _fill_halo_1d(traj[t + 1])

    mu = ws.mu                                        # ---- loss, adjoint seed
    sub(traj[L][:, 1:n + 1], y, out=mu)
    loss = 0.5 * float(ein("ij,ij->", mu, mu, dtype=np.float64))
    mul(mu, w, out=mu)

    ws.gnu.fill(0)
    for t in range(L - 1, -1, -1):                    # ---- backward
        # pass 1, per block: s, the nu gradient, the centre term of the adjoint, and the two
        # padded products P -/+ Q (P = omega s nu/h^2, Q = omega s z/(2h)) the neighbours gather
        for blk, (zl, zc, zr) in zip(blocks, zviews[t]):
            mb, S, T, lap, r = blk["mu"], blk["S"], blk["T"], blk["lap"], blk["r"]
            if use_tanh:
                Z = preact(blk, zl, zc, zr)            # also lap and T = zr - zl
                mul(lap, blk["nuh"], out=S)
                add(Z, S, out=Z)
                tanh(Z, out=Z)
                mul(Z, Z, out=Z)
                mul(Z, mb, out=Z)
                sub(mb, Z, out=S)                     # s = (1 - tanh^2) mu
            else:
                Z = blk["Z"]
                add(zr, zl, out=lap)
                sub(lap, zc, out=lap)
                sub(lap, zc, out=lap)
                sub(zr, zl, out=T)
                S = mb                                # s = mu (read before mu is overwritten below)
            ein("bi,bi->i", S, lap, out=r)
            add(blk["gnu"], r, out=blk["gnu"])
            mul(S, blk["wnu"], out=lap)               # lap <- P
            mul(S, zc, out=Z)
            mul(Z, wi2h, out=Z)                       # Z <- Q
            sub(lap, Z, out=blk["PmQ"])
            add(lap, Z, out=blk["PpQ"])
            mul(T, -wi2h, out=T)
            add(T, blk["cc"], out=T)                  # omega (1 - 2 nu/h^2 - (zr - zl)/(2h))
            mul(T, S, out=T)
            mul(mb, omw, out=mb)
            add(mb, T, out=mb)
        _fill_halo_1d(ws.PmQ)
        _fill_halo_1d(ws.PpQ)
        for blk in blocks:                            # pass 2: + (P - Q)[k-1] + (P + Q)[k+1]
            mb = blk["mu"]
            add(mb, blk["PmQl"], out=mb)
            add(mb, blk["PpQr"], out=mb)
    mul(ws.gnu, ih2, out=ws.gnu)
    return loss, {"nu": ws.gnu.copy()}


# ====================================================================================== PyTorch
try:  # pragma: no cover - depends on the environment
    import torch as _torch
except Exception:  # ImportError, or a broken install
    _torch = None


def _torch_adr2d_loss(x, y, U, V, Dxx, Dxy, Dyy, R, hx, hy, omega, L):
    a, c, e = 1 / hx**2, 1 / hy**2, 1 / (2 * hx * hy)
    W = {(0, 0): 1 + R - 2 * a * Dxx - 2 * c * Dyy,
         (1, 0): a * Dxx - U / (2 * hx), (-1, 0): a * Dxx + U / (2 * hx),
         (0, 1): c * Dyy - V / (2 * hy), (0, -1): c * Dyy + V / (2 * hy),
         (1, 1): e * Dxy, (-1, -1): e * Dxy, (1, -1): -e * Dxy, (-1, 1): -e * Dxy}
    z = x
    for _ in range(L):
        Z = W[(0, 0)] * z
        for o in OFFSETS_2D[1:]:
            Z = Z + W[o] * _torch.roll(z, shifts=(-o[0], -o[1]), dims=(1, 2))
        z = (1 - omega) * z + omega * _torch.tanh(Z)
    return 0.5 * ((z - y) ** 2).sum()


def _torch_burgers_loss(x, y, nu, h, omega, L, use_tanh):
    z = x
    for _ in range(L):
        zl, zr = _torch.roll(z, 1, dims=1), _torch.roll(z, -1, dims=1)
        Z = z + nu * (zr - 2 * z + zl) / h**2 - z * (zr - zl) / (2 * h)
        z = (1 - omega) * z + omega * (_torch.tanh(Z) if use_tanh else Z)
    return 0.5 * ((z - y) ** 2).sum()


def _torch_grad(fn, x, y, params, names):
    tx, ty = _torch.from_numpy(x), _torch.from_numpy(y)
    tp = [_torch.from_numpy(np.array(p)).requires_grad_(True) for p in params]
    loss = fn(tx, ty, *tp)
    grads = _torch.autograd.grad(loss, tp)
    return float(loss.detach()), {k: g.detach().numpy() for k, g in zip(names, grads)}


if _torch is not None:
    _COMPILED: dict = {}

    def _adr2d_torch(x, y, theta, h, omega, L, compiled):
        _, x, y, th = _prepare_2d(x, y, theta)
        hx, hy = _spacing2(h)
        key = ("2d", hx, hy, float(omega), int(L))

        def loss_fn(tx, ty, *p):
            return _torch_adr2d_loss(tx, ty, *p, hx, hy, float(omega), int(L))

        if compiled:
            fn = _COMPILED.get(key)
            if fn is None:
                fn = _COMPILED[key] = _torch.compile(loss_fn, dynamic=False)
        else:
            fn = loss_fn
        return _torch_grad(fn, x, y, [th[k] for k in PARAMS_2D], PARAMS_2D)

    def adr2d_torch_eager(x, y, theta, h=1.0, omega=0.5, L=16):
        """PyTorch autograd, eager, CPU (``torch.roll`` for the 8 neighbours)."""
        return _adr2d_torch(x, y, theta, h, omega, L, compiled=False)

    def adr2d_torch_compiled(x, y, theta, h=1.0, omega=0.5, L=16):
        """The same loss through ``torch.compile`` (L layers unrolled into one graph; the first call
        per shape compiles). Raises if compilation fails."""
        return _adr2d_torch(x, y, theta, h, omega, L, compiled=True)

    def _burgers_torch(x, y, nu, h, omega, L, activation, compiled):
        use_tanh = _check_activation(activation)
        _, x, y, nu = _prepare_1d(x, y, nu)
        key = ("1d", float(h), float(omega), int(L), use_tanh)

        def loss_fn(tx, ty, tnu):
            return _torch_burgers_loss(tx, ty, tnu, float(h), float(omega), int(L), use_tanh)

        if compiled:
            fn = _COMPILED.get(key)
            if fn is None:
                fn = _COMPILED[key] = _torch.compile(loss_fn, dynamic=False)
        else:
            fn = loss_fn
        return _torch_grad(fn, x, y, [nu], ("nu",))

    def burgers_torch_eager(x, y, nu, h=1.0, omega=0.5, L=32, activation="tanh"):
        """PyTorch autograd, eager, CPU, for (b)."""
        return _burgers_torch(x, y, nu, h, omega, L, activation, compiled=False)

    def burgers_torch_compiled(x, y, nu, h=1.0, omega=0.5, L=32, activation="tanh"):
        """(b) through ``torch.compile``. Raises if compilation fails."""
        return _burgers_torch(x, y, nu, h, omega, L, activation, compiled=True)

else:
    adr2d_torch_eager = adr2d_torch_compiled = None
    burgers_torch_eager = burgers_torch_compiled = None
