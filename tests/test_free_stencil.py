"""Free stencils (weights as parameters), explicit shifted accesses, and text refused where SymPy would eval it."""
import numpy as np
import pytest
import sympy as sp

import npdegen
from npdegen import NeuralPDE

q, x, y = sp.symbols("q x y")


def _loop_forward_2d(weights, z, boundary):
    """Hand-written loop: Z[i, j] = sum_o w_o(i, j) z[i + o] with per-axis boundary reads."""
    from npdegen.grid import source
    nx, ny = z.shape
    out = np.zeros_like(z)
    for i in range(nx):
        for j in range(ny):
            for (ox, oy), w in weights.items():
                si, sj = source(i + ox, nx, boundary[0]), source(j + oy, ny, boundary[1])
                if si is not None and sj is not None:
                    out[i, j] += (w if np.ndim(w) == 0 else w[i, j]) * z[si, sj]
    return out


def test_free_stencil_1d_moments_are_the_weights_moments():
    layer = NeuralPDE.free_stencil([-1, 0, 1])
    w = sp.symbols("w_m1 w_0 w_p1")
    assert layer.stencil() == dict(zip((-1, 0, 1), w))
    m = layer.moments(2, spacing=1)
    assert m[0] == sum(w) and m[1] == w[2] - w[0] and m[2] == w[0] + w[2]


@pytest.mark.parametrize("boundary", [("periodic", "neumann"), ("dirichlet", "periodic")])
def test_free_stencil_2d_equals_a_loop_and_its_gradient_is_exact(boundary):
    offsets = [(0, 0), (1, 0), (-1, 0), (0, 2), (-1, -1)]
    layer = NeuralPDE.free_stencil(offsets, field=sp.Function("z")(x, y), family="heterogeneous")
    net = layer.compile(n=(6, 7), layers=1, boundary=boundary)
    theta = net.init_params(seed=0, scale=0.5)
    z0 = np.random.default_rng(1).standard_normal((6, 7))
    names = {o: "w" + npdegen.derive.discretise.access_name(o)[1:] for o in offsets}
    ref = _loop_forward_2d({o: theta[names[o]] for o in offsets}, z0, boundary)
    np.testing.assert_allclose(net.forward(z0, theta), ref, rtol=1e-13, atol=1e-14)
    # identity activation, one layer: d loss / d w_o(i) = (Z - y)(i) * z[i + o] exactly
    y0 = np.zeros_like(z0)
    _, grads = net.loss_and_grad(z0, y0, theta)
    for o in offsets:
        shifted = _loop_forward_2d({o: 1.0}, z0, boundary)
        np.testing.assert_allclose(grads[names[o]], ref * shifted, rtol=1e-12, atol=1e-14)


def test_shifted_accesses_are_local_terms():
    z = sp.Function("z")
    d = npdegen.SPACING
    a = sp.Symbol("a")
    layer = NeuralPDE(z(q) + a * z(q - d) * z(q + 2 * d), z(q), params={a: "homogeneous"})
    assert layer.step_ir.accesses == ((-1,), (0,), (2,))
    assert not layer.step_ir.linear
    net = layer.compile(n=8, layers=1)
    z0 = np.arange(8.0)
    out = net.forward(z0, {"a": np.array(0.5)})
    np.testing.assert_allclose(out, z0 + 0.5 * np.roll(z0, 1) * np.roll(z0, -2), rtol=1e-14)


@pytest.mark.parametrize("bad", [sp.Function("z")(q + 1), sp.Function("z")(q + sp.Rational(1, 2) * npdegen.SPACING),
                                 sp.Function("z")(2 * q)])
def test_non_grid_shifts_are_refused(bad):
    with pytest.raises(ValueError, match="non-local term"):
        NeuralPDE(sp.Function("z")(q) + bad, sp.Function("z")(q))


def test_free_stencil_bad_offsets():
    with pytest.raises(ValueError, match="distinct"):
        NeuralPDE.free_stencil([0, 0])
    with pytest.raises(ValueError, match="a tuple of 2 integers"):
        NeuralPDE.free_stencil([0, 1], field=sp.Function("z")(x, y))
    with pytest.raises(ValueError, match="non-local term"):
        NeuralPDE.free_stencil([0, 40])


@pytest.mark.parametrize("call", [
    lambda: NeuralPDE.from_moments({0: "__import__('os').getcwd()"}, offsets=(-1, 0, 1)),
    lambda: NeuralPDE.from_moments(["1", "2"], offsets=(-1, 0, 1)),
    lambda: NeuralPDE.free_stencil([-1, 0, 1]).stencil("__import__('os')"),
    lambda: NeuralPDE.free_stencil([-1, 0, 1]).moments(2, "__import__('os')"),
])
def test_text_never_reaches_sympify(call, monkeypatch):
    monkeypatch.setattr(sp, "sympify", lambda *a, **k: pytest.fail("sympify reached"))
    with pytest.raises(TypeError, match="text|numbers or SymPy"):
        call()


def test_nd_from_moments_has_exactly_the_prescribed_moments():
    R, U, V, Dxx, Dxy, Dyy, Dx = sp.symbols("R U V Dxx Dxy Dyy Dx")
    f = sp.Function("z")(x, y)
    given = {(0, 0): 1 + R, (1, 0): -U, (0, 1): -V, (2, 0): 2 * Dxx, (1, 1): 2 * Dxy, (0, 2): 2 * Dyy}
    layer = NeuralPDE.from_moments(given, offsets=(-1, 0, 1), field=f,
                                   params={s: "heterogeneous" for s in (R, U, V, Dxx, Dxy, Dyy)})
    moments = layer.moments(4)
    for alpha, value in moments.items():
        if max(alpha) <= 2:          # the box of 3x3 offsets fixes exactly these
            assert sp.simplify(value - given.get(alpha, 0)) == 0, alpha
    # the same layer written as a PDE has the same stencil (central differences of accuracy 2)
    pde = NeuralPDE(f + R * f - U * f.diff(x) - V * f.diff(y) + Dxx * f.diff(x, 2) + 2 * Dxy * f.diff(x, y)
                    + Dyy * f.diff(y, 2), f, params={s: "heterogeneous" for s in (R, U, V, Dxx, Dxy, Dyy)})
    a, b = layer.stencil((0.5, 2.0)), pde.stencil((0.5, 2.0))
    assert set(a) == set(b) and all(sp.simplify(a[o] - b[o]) == 0 for o in a)
    # per-axis offsets: one-sided in x
    layer = NeuralPDE.from_moments({(0, 0): 1, (1, 0): -Dx}, offsets=((-1, 0), (0,)), field=f, params={Dx: "homogeneous"})
    assert layer.stencil((1, 1)) == {(-1, 0): Dx, (0, 0): 1 - Dx}


@pytest.mark.parametrize("moments, offsets, match", [
    ({(3, 0): 1}, (-1, 0, 1), "alpha_k < that count"),
    ({(1,): 1}, (-1, 0, 1), "multi-indices: tuples of 2"),
    ({(0, 0): "1"}, (-1, 0, 1), "text"),
    ({(0, 0): 1}, ((-1, 0, 1),), "one tuple for every axis or 2 tuples"),
])
def test_nd_from_moments_bad_input(moments, offsets, match):
    with pytest.raises((ValueError, TypeError), match=match):
        NeuralPDE.from_moments(moments, offsets=offsets, field=sp.Function("z")(x, y))
