"""Independent NumPy references for N-D (2-D, 3-D) and nonlinear neural-PDE layers.

Nothing here imports npdegen. The references are written from the contract alone:

* 1-D central finite-difference weights are solved here exactly (SymPy rationals, a Vandermonde
  system ``Σ_j w_j o_j^m = m! δ_{m,k}``); the tests check them against findiff.
* N-D weights of ``∂^α`` are tensor products: ``w(o) = Π_k a^{(α_k)}_{o_k} / Π_k Δ_k^{α_k}``.
* One layer ``t → t+1``: every derivative ``∂^α z`` that occurs in the transform is formed per
  site from the padded field, the transform is evaluated per site with the parameters of that
  site and layer, ``Z = T − b``, ``z_{t+1} = (1 − ω) z_t + ω f(Z)``.
* Boundaries per axis: ``periodic`` wraps, ``dirichlet`` reads 0 outside, ``neumann`` mirrors
  about the cell faces (``z[−k] = z[k−1]``, ``z[n−1+k] = z[n−k]``); corners compose the rules.

Two independent implementations of the derivative fields are given: :func:`derivative_fields`
(``np.pad`` and shifted views) and :func:`derivative_fields_loop` (plain Python loops with
explicit index logic, :func:`source_index`); the tests check one against the other.

All array code is written so that it also runs on complex arrays, which gives exact
(complex-step) Jacobian-vector products of the reference for analytic transforms and activations:
``J v = Im(step(z + i h v)) / h`` with ``h = 1e-30``.
"""
from __future__ import annotations

import itertools

import numpy as np
import sympy as sp

BOUNDARIES = ("periodic", "dirichlet", "neumann")
FAMILIES = ("homogeneous", "heterogeneous", "time-dependent")


# ---------------------------------------------------------------------------- 1-D weights
def central_offsets(order: int, accuracy: int) -> tuple:
    """Symmetric offsets of the smallest central stencil of ``d^order`` with even ``accuracy``."""
    if order == 0:
        return (0,)
    half = (order + 1) // 2 - 1 + accuracy // 2
    return tuple(range(-half, half + 1))


def fd_weights(order: int, offsets) -> dict:
    """Exact weights (spacing 1) of ``d^order/dq^order`` at 0 on ``offsets``: ``{offset: Rational}``."""
    offsets = [int(o) for o in offsets]
    m = len(offsets)
    A = sp.Matrix(m, m, lambda r, c: sp.Integer(offsets[c]) ** r)
    rhs = sp.Matrix(m, 1, lambda r, _: sp.factorial(order) if r == order else 0)
    sol = A.LUsolve(rhs)
    return {o: sp.Rational(sol[j]) for j, o in enumerate(offsets)}


def axis_weights(order: int, accuracy: int) -> dict:
    return fd_weights(order, central_offsets(order, accuracy))


def derivative_weights(alpha: tuple, accuracy: int) -> dict:
    """Tensor-product weights (spacing 1) of ``∂^α``: ``{offset tuple: Rational}``, zeros dropped."""
    per_axis = [sorted(axis_weights(a, accuracy).items()) for a in alpha]
    out = {}
    for combo in itertools.product(*per_axis):
        w = sp.Integer(1)
        for _, wk in combo:
            w *= wk
        if w != 0:
            out[tuple(o for o, _ in combo)] = w
    return out


def halo_of(alphas, accuracy: int) -> tuple:
    """Per-axis half-width of the union of the stencils of ``alphas``."""
    dim = len(next(iter(alphas)))
    return tuple(max(max(abs(o) for o in central_offsets(a[k], accuracy)) for a in alphas) for k in range(dim))


# ---------------------------------------------------------------------------- symbolic stencils
def spacing_symbols(coords) -> tuple:
    """``Delta_x, Delta_y, ...`` (positive), as the contract names them."""
    return tuple(sp.Symbol(f"Delta_{c}", positive=True) for c in coords)


def reference_stencil(terms: dict, dim: int, accuracy: int, spacing=None) -> dict:
    """``{offset tuple: weight}`` of ``Σ_α c_α ∂^α`` (``terms = {α: c_α}``).

    ``spacing``: a tuple of symbols (default ``Delta_0 ...`` must be passed by the caller as the
    layer's coordinates' symbols) or numbers."""
    if spacing is None:
        raise ValueError("pass the spacing symbols or numbers")
    out: dict = {}
    for alpha, coef in terms.items():
        assert len(alpha) == dim
        scale = sp.Integer(1)
        for d, a in zip(spacing, alpha):
            scale *= sp.sympify(d) ** a
        for o, w in derivative_weights(alpha, accuracy).items():
            out[o] = out.get(o, 0) + sp.sympify(coef) * w / scale
    return {o: sp.expand(e) for o, e in out.items()}


def multi_indices(dim: int, max_order: int) -> list:
    return [a for a in itertools.product(range(max_order + 1), repeat=dim) if sum(a) <= max_order]


def reference_moments(stencil: dict, spacing, max_order: int) -> dict:
    """``W_α = Σ_o Π_k (o_k Δ_k)^{α_k} w_o`` for all ``|α| ≤ max_order`` (no 1/α!)."""
    dim = len(spacing)
    out = {}
    for alpha in multi_indices(dim, max_order):
        total = 0
        for o, w in stencil.items():
            term = w
            for k in range(dim):
                term *= (o[k] * sp.sympify(spacing[k])) ** alpha[k]
            total += term
        out[alpha] = sp.expand(total)
    return out


def symbolic_mismatches(actual: dict, expected: dict) -> list:
    """Keys where two ``{key: expr}`` dicts differ (missing entries count as 0)."""
    bad = []
    for key in set(actual) | set(expected):
        a = sp.sympify(actual.get(key, 0))
        e = sp.sympify(expected.get(key, 0))
        if sp.simplify(sp.expand(a - e)) != 0:
            bad.append((key, a, e))
    return sorted(bad, key=lambda t: str(t[0]))


def numeric_stencil(stencil: dict, values: dict) -> dict:
    """Substitute ``{symbol name: number}`` and return ``{offset: float}``."""
    out = {}
    for o, e in stencil.items():
        e = sp.sympify(e)
        subs = {s: values[s.name] for s in e.free_symbols}
        out[tuple(int(v) for v in o) if isinstance(o, tuple) else int(o)] = float(e.xreplace(subs))
    return out


def stencil_matrix(stencil: dict, n: tuple, boundary="periodic") -> np.ndarray:
    """Dense matrix (C-order flattening) of a numeric homogeneous stencil with explicit index logic."""
    n = tuple(n)
    bnd = normalise_boundaries(boundary, len(n))
    N = int(np.prod(n))
    M = np.zeros((N, N))
    for i in itertools.product(*(range(m) for m in n)):
        row = np.ravel_multi_index(i, n)
        for o, w in stencil.items():
            src = source_multi_index(tuple(a + b for a, b in zip(i, o)), n, bnd)
            if src is not None:
                M[row, np.ravel_multi_index(src, n)] += w
    return M


# ---------------------------------------------------------------------------- boundaries
def normalise_boundaries(boundary, dim: int) -> tuple:
    if isinstance(boundary, str):
        return (boundary,) * dim
    boundary = tuple(boundary)
    assert len(boundary) == dim, (boundary, dim)
    return boundary


def source_index(k: int, n: int, boundary: str):
    """Which interior index ``z[k]`` reads along one axis (``None``: a Dirichlet zero)."""
    if 0 <= k < n:
        return k
    if boundary == "periodic":
        return k % n
    if boundary == "dirichlet":
        return None
    if boundary == "neumann":
        # z[-m] = z[m-1] (k = -m < 0);  z[n-1+m] = z[n-m] (k = n-1+m >= n)
        return -k - 1 if k < 0 else 2 * n - 1 - k
    raise ValueError(boundary)


def source_multi_index(k: tuple, n: tuple, boundaries: tuple):
    """The per-axis rules composed: a corner reads (m0(k0), m1(k1), ...), zero if any axis says so."""
    out = []
    for kk, nn, b in zip(k, n, boundaries):
        s = source_index(kk, nn, b)
        if s is None:
            return None
        out.append(s)
    return tuple(out)


_PAD_MODE = {"periodic": "wrap", "dirichlet": "constant", "neumann": "symmetric"}


def pad(z: np.ndarray, halo: tuple, boundaries: tuple) -> np.ndarray:
    """Pad the spatial axes of ``z`` (shape ``(batch, *n)``) axis by axis (corners compose)."""
    out = z
    for k, (h, b) in enumerate(zip(halo, boundaries)):
        if h == 0:
            continue
        width = [(0, 0)] * out.ndim
        width[k + 1] = (h, h)
        out = np.pad(out, width, mode=_PAD_MODE[b])
    return out


# ---------------------------------------------------------------------------- derivative fields
def derivative_fields(z, alphas, accuracy, spacing, boundaries) -> dict:
    """``{α: ∂^α z}`` for ``z`` of shape ``(batch, *n)`` via padding and shifted views."""
    n = z.shape[1:]
    dim = len(n)
    boundaries = normalise_boundaries(boundaries, dim)
    halo = halo_of(alphas, accuracy)
    zp = pad(z, halo, boundaries)
    out = {}
    for alpha in alphas:
        acc = np.zeros(z.shape, dtype=np.result_type(z.dtype, np.float64))
        scale = float(np.prod([float(spacing[k]) ** alpha[k] for k in range(dim)]))
        for o, w in derivative_weights(alpha, accuracy).items():
            view = zp[(slice(None),) + tuple(slice(halo[k] + o[k], halo[k] + o[k] + n[k]) for k in range(dim))]
            acc = acc + float(w) * view
        out[alpha] = acc / scale
    return out


def derivative_fields_loop(z, alphas, accuracy, spacing, boundaries) -> dict:
    """The same as :func:`derivative_fields` with explicit Python loops and index logic."""
    z = np.asarray(z)
    n = z.shape[1:]
    dim = len(n)
    boundaries = normalise_boundaries(boundaries, dim)
    out = {}
    for alpha in alphas:
        res = np.zeros(z.shape, dtype=np.result_type(z.dtype, np.float64))
        weights = derivative_weights(alpha, accuracy)
        scale = 1.0
        for k in range(dim):
            scale *= float(spacing[k]) ** alpha[k]
        for s in range(z.shape[0]):
            for i in itertools.product(*(range(m) for m in n)):
                total = 0.0
                for o, w in weights.items():
                    src = source_multi_index(tuple(a + b for a, b in zip(i, o)), n, boundaries)
                    if src is not None:
                        total += float(w) * z[(s,) + src]
                res[(s,) + i] = total / scale
        out[alpha] = res
    return out


# ---------------------------------------------------------------------------- activations
def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


ACTIVATIONS = {
    "identity": lambda x: x,
    "tanh": np.tanh,
    "sigmoid": _sigmoid,
    "softplus": lambda x: np.log1p(np.exp(x)),
    "square": lambda x: x * x,
    "relu": lambda x: np.maximum(x, 0.0),
}


# ---------------------------------------------------------------------------- the layer reference
def _derivative_alpha(d: sp.Derivative, coords) -> tuple:
    return tuple(d.variables.count(c) for c in coords)


class Reference:
    """Reference forward pass of ``z_{t+1} = (1-ω) z + ω f(T[z] - b)`` on a grid.

    ``transform``: SymPy expression in the field ``z(coords)``, its derivatives and the parameter
    symbols (possibly nonlinear in the field). ``params``: ``{symbol: family}`` of the transform's
    parameters; ``activation``: a name of :data:`ACTIVATIONS` or ``(expr, X, {symbol: family})``,
    an expression in the argument ``X`` and activation parameters. ``bias``: ``None`` or a family.
    """

    def __init__(self, transform, field, params, *, bias=None, activation="identity", accuracy=2):
        self.field = field
        self.coords = tuple(field.args)
        self.dim = len(self.coords)
        self.accuracy = accuracy
        self.bias = bias
        derivs = sorted(transform.atoms(sp.Derivative), key=sp.default_sort_key)
        zero = (0,) * self.dim
        self.alphas = [zero]
        self.placeholder = {zero: sp.Symbol("d_" + "_".join(map(str, zero)))}
        replace = {}
        for d in derivs:
            assert d.expr == field, d
            alpha = _derivative_alpha(d, self.coords)
            if alpha not in self.placeholder:
                self.placeholder[alpha] = sp.Symbol("d_" + "_".join(map(str, alpha)))
                self.alphas.append(alpha)
            replace[d] = self.placeholder[alpha]
        form = transform.xreplace(replace).xreplace({field: self.placeholder[zero]})
        assert not form.atoms(sp.Derivative)
        self.families = {s.name: fam for s, fam in params.items()}
        self.param_symbols = list(params)
        self.site = sp.lambdify([self.placeholder[a] for a in self.alphas] + self.param_symbols, form, "numpy")
        if isinstance(activation, str):
            self.act = ACTIVATIONS[activation]
            self.act_symbols = []
        else:
            expr, X, act_params = activation
            self.act_symbols = list(act_params)
            self.families.update({s.name: fam for s, fam in act_params.items()})
            fn = sp.lambdify([X] + self.act_symbols, expr, "numpy")
            self.act = fn
        if bias is not None:
            self.families["b"] = bias

    # parameters ------------------------------------------------------------------------------
    def value(self, theta, name, t):
        """The value of ``theta[name]`` in step ``t``: scalar or an array broadcasting over batch."""
        v = theta[name]
        fam = self.families[name]
        if fam == "homogeneous":
            return v if np.ndim(v) == 0 else v.reshape(())
        if fam == "heterogeneous":
            return v
        return v[t]

    # one step -------------------------------------------------------------------------------
    def pre(self, z, theta, t, spacing, boundaries, loop=False):
        z = np.asarray(z)
        fields = (derivative_fields_loop if loop else derivative_fields)(
            z, self.alphas, self.accuracy, spacing, boundaries)
        args = [fields[a] for a in self.alphas] + [self.value(theta, s.name, t) for s in self.param_symbols]
        Z = self.site(*args) * np.ones(z.shape)       # a constant form still gets the field's shape
        if self.bias is not None:
            Z = Z - self.value(theta, "b", t)
        return Z

    def step(self, z, theta, t, spacing, boundaries, omega, loop=False):
        Z = self.pre(z, theta, t, spacing, boundaries, loop=loop)
        fz = self.act(Z, *[self.value(theta, s.name, t) for s in self.act_symbols])
        return (1.0 - omega) * np.asarray(z) + omega * fz

    def forward(self, x, theta, layers, spacing, boundaries, omega, loop=False):
        """``x`` of shape ``(batch, *n)``; returns the trajectory ``(L+1, batch, *n)``."""
        x = np.asarray(x)
        traj = [x]
        for t in range(layers):
            traj.append(self.step(traj[-1], theta, t, spacing, boundaries, omega, loop=loop))
        return np.stack(traj)

    def loss(self, x, y, theta, layers, spacing, boundaries, omega):
        zL = self.forward(x, theta, layers, spacing, boundaries, omega)[-1]
        return 0.5 * np.sum((zL - y) ** 2)


# ---------------------------------------------------------------------------- helpers for tests
def complex_step(fun, h=1e-30):
    """``d/dε fun(ε)`` at 0 for a function analytic in ε, exact to rounding."""
    return np.imag(fun(1j * h)) / h


def assert_close(actual, expected, rel, what=""):
    expected = np.asarray(expected, np.float64)
    actual = np.asarray(actual)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    scale = max(float(np.max(np.abs(expected))), 1e-300)
    np.testing.assert_allclose(actual.astype(np.float64), expected, rtol=rel, atol=rel * scale, err_msg=what)


def inner(a, b) -> float:
    return float(np.sum(np.asarray(a, np.float64) * np.asarray(b, np.float64)))


def random_theta(rng, shapes: dict, values: dict, scale: float = 0.1) -> dict:
    """Parameters with the given shapes: ``values[k]`` plus ``scale``·uniform(-1, 1) noise."""
    return {k: np.asarray(values.get(k, 0.0) + scale * rng.uniform(-1, 1, shape), np.float64)
            for k, shape in shapes.items()}


def family_shape(family, n: tuple, layers: int) -> tuple:
    return {"homogeneous": (), "heterogeneous": tuple(n), "time-dependent": (layers,) + tuple(n)}[family]


def burgers_step_loop(z, dt, nu, dx, boundary):
    """Hand-written explicit central Burgers step for one 1-D sample (a list of floats).

    ``nu`` a float or a per-site list. Returns the new list."""
    n = len(z)
    out = []
    for i in range(n):
        im, ip = source_index(i - 1, n, boundary), source_index(i + 1, n, boundary)
        zm = 0.0 if im is None else z[im]
        zp = 0.0 if ip is None else z[ip]
        nui = nu[i] if isinstance(nu, (list, tuple, np.ndarray)) else nu
        zq = (zp - zm) / (2.0 * dx)
        zqq = (zp - 2.0 * z[i] + zm) / (dx * dx)
        out.append(z[i] - dt * z[i] * zq + dt * nui * zqq)
    return out




# ---------------------------------------------------------------------------- checks of a compiled network
# (they call the network's public methods only; the expected values come from the reference)
def probe_entries(shape, rng, count=3):
    """Index tuples to probe: corners of the grid and a random interior entry."""
    if shape == ():
        return [()]
    corners = [tuple(0 for _ in shape), tuple(s - 1 for s in shape)]
    mixed = tuple((s - 1) if k % 2 else 0 for k, s in enumerate(shape))
    rand = tuple(int(rng.integers(s)) for s in shape)
    return list(dict.fromkeys(corners + [mixed, rand]))[:count + 1]


def fd_check(net, theta, x0, y0, rng, keys=None, eps=1e-6):
    """Central differences of ``loss_and_grad``'s loss at a few entries of every key (and "x")."""
    loss, grads = net.loss_and_grad(x0, y0, theta, input_grad=True)
    assert set(grads) == set(theta) | {"x"}
    for k in theta:
        assert np.shape(grads[k]) == np.shape(theta[k]), k
    assert grads["x"].shape == x0.shape
    worst = 0.0
    for key in keys or sorted(grads):
        base = x0 if key == "x" else theta[key]
        for idx in probe_entries(np.shape(base), rng):
            def at(delta):
                if key == "x":
                    xx = np.array(x0, copy=True)
                    xx[idx] += delta
                    return net.loss_and_grad(xx, y0, theta)[0]
                th = {k: np.array(v, copy=True) for k, v in theta.items()}
                th[key][idx] += delta
                return net.loss_and_grad(x0, y0, th)[0]
            fd = (at(eps) - at(-eps)) / (2 * eps)
            g = float(grads[key][idx])
            err = abs(fd - g) / max(abs(fd), abs(g), 1e-2)
            assert err < 1e-6, (key, idx, fd, g, err)
            worst = max(worst, err)
    return loss, grads


def reference_jvp(ref, z, theta, t, v, spacing, boundary, omega=0.7):
    return complex_step(lambda e: ref.step(z + e * v, theta, t, spacing, boundary, omega))


def reference_jacobian(ref, zs, theta, t, spacing, boundary, omega=0.7):
    """Dense Jacobian of the reference step for one sample zs (shape n), by complex steps."""
    n = zs.shape
    N = zs.size
    E = np.eye(N).reshape((N,) + n)
    cols = complex_step(lambda e: ref.step(zs[None] + e * E, theta, t, spacing, boundary, omega))
    return cols.reshape(N, N).T          # J[i, j] = d step_i / d z_j


def check_state_adjoint(net, ref, theta, z, t, spacing, boundary, rng, full=True, omega=0.7):
    """Dot-product test of ``step_vjp``'s state part with ``J v`` from the reference (complex step),
    a finite-difference sanity check that this ``J`` is the network's, and ``Jᵀ w`` entry by entry."""
    v, wv = rng.standard_normal(z.shape), rng.standard_normal(z.shape)
    Jv = reference_jvp(ref, z, theta, t, v, spacing, boundary, omega)
    h = 1e-6
    fdJv = (net.step(z + h * v, theta, layer=t) - net.step(z - h * v, theta, layer=t)) / (2 * h)
    np.testing.assert_allclose(fdJv, Jv, rtol=1e-6, atol=1e-8)
    dz, _ = net.step_vjp(z, theta, wv, layer=t)
    assert dz.shape == z.shape
    lhs, rhs = inner(Jv, wv), inner(v, dz)
    assert abs(lhs - rhs) <= 1e-12 * np.linalg.norm(Jv) * np.linalg.norm(wv), (lhs, rhs)
    if full:
        for s in range(z.shape[0]):
            J = reference_jacobian(ref, z[s], theta, t, spacing, boundary, omega)
            JTw = (J.T @ wv[s].ravel()).reshape(z.shape[1:])
            np.testing.assert_allclose(dz[s], JTw, rtol=1e-12, atol=1e-12 * np.max(np.abs(JTw)))


def check_param_adjoint(net, ref, theta, z, t, spacing, boundary, rng, omega=0.7):
    """Parameter part of ``step_vjp``: ``⟨∂step/∂θ_k · δθ_k, w⟩ = ⟨δθ_k, g_k⟩`` key by key, the
    left side by a complex step through the reference."""
    wv = rng.standard_normal(z.shape)
    d = {k: rng.standard_normal(np.shape(v)) for k, v in theta.items()}
    _, grads = net.step_vjp(z, theta, wv, layer=t)
    assert set(grads) == set(theta)
    for k in theta:
        assert np.shape(grads[k]) == np.shape(theta[k]), k
    terms = {k: inner(d[k], grads[k]) for k in theta}
    scale = sum(abs(v) for v in terms.values())
    # key by key: a complex step in that key only
    for k in theta:
        def stepped(e, k=k):
            th = dict(theta)
            th[k] = np.asarray(theta[k], np.float64) + e * d[k]
            om = th["omega"] if "omega" in th else omega
            return ref.step(z, th, t, spacing, boundary, om)
        dk = complex_step(stepped)
        assert abs(inner(dk, wv) - terms[k]) <= 1e-12 * scale, (k, inner(dk, wv), terms[k])




def check_network_vjp(net, ref, theta, x0, layers, spacing, boundary, rng, omega=0.7):
    """``net.vjp`` of the whole network against complex-step directional derivatives of the
    reference's forward pass: input part ``⟨J_x v, c⟩ = ⟨v, dx⟩`` and parameter part key by key,
    1e-12 relative (Cauchy–Schwarz scale / ``Σ_k |⟨δθ_k, g_k⟩|``)."""
    c = rng.standard_normal(x0.shape)
    dx, grads = net.vjp(x0, theta, c)
    assert dx.shape == x0.shape and set(grads) == set(theta)
    v = rng.standard_normal(x0.shape)
    Jv = complex_step(lambda e: ref.forward(x0 + e * v, theta, layers, spacing, boundary, omega)[-1])
    assert abs(inner(Jv, c) - inner(v, dx)) <= 1e-12 * np.linalg.norm(Jv) * np.linalg.norm(c), \
        (inner(Jv, c), inner(v, dx))
    d = {k: rng.standard_normal(np.shape(val)) for k, val in theta.items()}
    terms = {k: inner(d[k], grads[k]) for k in theta}
    scale = sum(abs(val) for val in terms.values())
    for k in theta:
        def fwd(e, k=k):
            th = dict(theta)
            th[k] = np.asarray(theta[k], np.float64) + e * d[k]
            om = th["omega"] if "omega" in th else omega
            return ref.forward(x0, th, layers, spacing, boundary, om)[-1]
        dk = complex_step(fwd)
        assert abs(inner(dk, c) - terms[k]) <= 1e-12 * scale, (k, inner(dk, c), terms[k])
