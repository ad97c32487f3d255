"""Face coefficients of flux-form layers (npdegen.faces) against independent references.

* the forward equals a hand-written loop over faces (each face's flux computed once from the
  coefficients stored at its lower cell, added to one cell and subtracted from the other), 1-D and
  2-D, every boundary per axis, heterogeneous and time-dependent coefficients;
* Σ z is conserved to 1e-12 over 1,000 layers with a random positive face D and a face flux
  coefficient (periodic, zero-flux walls; 1-D and 2-D);
* gradients by every face coefficient equal central finite differences (float64), also with
  checkpointing and through step_vjp; the shift and its adjoint pass the dot-product test;
* NumPy ≡ numba ≡ the CUDA emulator;
* training recovers a known face-D profile;
* the certificate: CFL number with the max over faces against a closed form; its claims checked
  numerically (maximum principle/TVD for a face D, l1 contraction for a face velocity — and the
  maximum principle really fails there);
* wrappers (torch, JAX), pickling and TOML specs see only the user's parameters; the domain
  decomposition of npdegen.distributed equals the unchunked network;
* a face coefficient of the wrong shape is refused clearly.
"""
import pickle

import numpy as np
import pytest
import sympy as sp

import npdegen
from npdegen.conservation import conservation_law
from npdegen.runtime.fixed import shift, shift_adjoint
from test_conservation import riemann_flux
from test_cuda_compile import emulator  # noqa: F401
from test_step_cuda import compare, emulated_network

q, x, y = sp.symbols("q x y")
z = sp.Function("z")(q)
z2 = sp.Function("z")(x, y)
c = sp.Symbol("c", positive=True)
a, D = sp.symbols("a D")
BOUNDARIES = ("periodic", "neumann", "dirichlet")


def burgers(family="heterogeneous", method="godunov", d_family=None, name="faces"):
    return conservation_law(c * z ** 2 / 2, z, diffusion=D, params={c: family, D: d_family or family},
                            numerical_flux=method, name=name)


def flux2d(family="heterogeneous"):
    """Burgers along x, a linear flux a·z (velocity of either sign per face) along y."""
    return conservation_law((c * z2 ** 2 / 2, a * z2), z2, diffusion=D,
                            params={c: family, a: family, D: family}, name="faces2d")


# ---------------------------------------------------------------- the hand-written reference
def upwind(a_, b_, v):
    return np.maximum(v, 0) * a_ + np.minimum(v, 0) * b_


def reference_step(u, fluxes, coef, h, boundaries):
    """One step of the face-flux scheme by an explicit loop over the faces of every axis.

    ``fluxes[k](left, right, values)`` is the numerical flux through a face of axis ``k`` with the
    face's coefficients ``values`` (a dict); ``coef[name]`` is an array shaped like the grid whose
    entry at cell ``i`` belongs to the face between ``i`` and ``i + e_k``. The lo boundary face of a
    non-periodic axis takes the value stored at the first cell; ghost states are 0 (dirichlet)."""
    grid = u.shape[1:]
    out = u.copy()
    for k, (hk, bk) in enumerate(zip(h, boundaries)):
        n = grid[k]
        for i in np.ndindex(*grid):
            values = {name: v[i] for name, v in coef.items()}
            ui = u[(slice(None),) + i]
            if i[k] < n - 1 or bk == "periodic":
                j = list(i)
                j[k] = (i[k] + 1) % n
                uj = u[(slice(None),) + tuple(j)]
                phi = fluxes[k](ui, uj, values) / hk - values["D"] * (uj - ui) / hk ** 2
                out[(slice(None),) + i] -= phi
                out[(slice(None),) + tuple(j)] += phi
            elif bk == "dirichlet":            # the hi boundary face of the last cell, ghost 0 beyond
                out[(slice(None),) + i] -= fluxes[k](ui, 0 * ui, values) / hk - values["D"] * (0 - ui) / hk ** 2
            if i[k] == 0 and bk == "dirichlet":  # the lo boundary face of the first cell: value of cell 0
                out[(slice(None),) + i] += fluxes[k](0 * ui, ui, values) / hk - values["D"] * (ui - 0) / hk ** 2
    return out


def burgers_fluxes(method, dim=1):
    return [lambda l, r, v: riemann_flux(method, l, r, v["c"])] * dim


def run_reference(u, theta, fluxes, h, boundaries, layers):
    for t in range(layers):
        coef = {k: (v[t] if v.ndim == u.ndim else v) for k, v in theta.items()}    # time-dependent rows
        u = reference_step(u, fluxes, coef, h, boundaries)
    return u


def face_theta(rng, grid, layers=None, c_range=(0.02, 0.05), d_range=(0.001, 0.004), a_range=None):
    lead = () if layers is None else (layers,)
    theta = {"c": rng.uniform(*c_range, lead + tuple(grid)), "D": rng.uniform(*d_range, lead + tuple(grid))}
    if a_range is not None:
        theta["a"] = rng.uniform(*a_range, lead + tuple(grid))
    return theta


# ---------------------------------------------------------------- forward
@pytest.mark.parametrize("method", ["godunov", "engquist_osher", "rusanov", "central"])
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_1d_forward_equals_the_face_loop(method, boundary):
    rng = np.random.default_rng(1)
    u = rng.uniform(-1, 1, (3, 9))
    theta = face_theta(rng, (9,))
    net = burgers(method=method).compile(n=9, spacing=0.1, layers=3, boundary=boundary)
    expected = run_reference(u, theta, burgers_fluxes(method), (0.1,), (boundary,), 3)
    np.testing.assert_allclose(net.forward(u, theta), expected, rtol=0, atol=1e-14)


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_1d_time_dependent_face_coefficients_equal_the_loop(boundary):
    rng = np.random.default_rng(2)
    u = rng.uniform(-1, 1, (2, 8))
    theta = face_theta(rng, (8,), layers=4)
    net = burgers("time-dependent").compile(n=8, spacing=0.1, layers=4, boundary=boundary)
    expected = run_reference(u, theta, burgers_fluxes("godunov"), (0.1,), (boundary,), 4)
    np.testing.assert_allclose(net.forward(u, theta), expected, rtol=0, atol=1e-14)


@pytest.mark.parametrize("bx", BOUNDARIES)
@pytest.mark.parametrize("by", BOUNDARIES)
def test_2d_forward_equals_the_face_loop(bx, by):
    rng = np.random.default_rng(3)
    u = rng.uniform(-1, 1, (2, 5, 4))
    theta = face_theta(rng, (5, 4), a_range=(-0.04, 0.04))
    fluxes = [lambda l, r, v: riemann_flux("godunov", l, r, v["c"]), lambda l, r, v: upwind(l, r, v["a"])]
    net = flux2d().compile(n=(5, 4), spacing=(0.1, 0.2), layers=2, boundary=(bx, by))
    expected = run_reference(u, theta, fluxes, (0.1, 0.2), (bx, by), 2)
    np.testing.assert_allclose(net.forward(u, theta), expected, rtol=0, atol=1e-14)


def test_2d_time_dependent_equals_the_loop():
    rng = np.random.default_rng(4)
    u = rng.uniform(-1, 1, (2, 4, 5))
    theta = face_theta(rng, (4, 5), layers=3, a_range=(-0.04, 0.04))
    fluxes = [lambda l, r, v: riemann_flux("godunov", l, r, v["c"]), lambda l, r, v: upwind(l, r, v["a"])]
    net = flux2d("time-dependent").compile(n=(4, 5), spacing=(0.1, 0.1), layers=3, boundary=("neumann", "periodic"))
    expected = run_reference(u, theta, fluxes, (0.1, 0.1), ("neumann", "periodic"), 3)
    np.testing.assert_allclose(net.forward(u, theta), expected, rtol=0, atol=1e-14)


def test_constant_face_values_equal_the_homogeneous_layer():
    """A face coefficient constant over the sites is the homogeneous layer, on every boundary."""
    rng = np.random.default_rng(5)
    u = rng.uniform(-1, 1, (2, 12))
    for boundary in BOUNDARIES:
        het = burgers().compile(n=12, spacing=0.1, layers=5, boundary=boundary)
        hom = burgers("homogeneous").compile(n=12, spacing=0.1, layers=5, boundary=boundary)
        np.testing.assert_allclose(het.forward(u, {"c": np.full(12, 0.03), "D": np.full(12, 0.002)}),
                                   hom.forward(u, {"c": np.array(0.03), "D": np.array(0.002)}), rtol=0, atol=1e-15)


# ---------------------------------------------------------------- conservation
@pytest.mark.parametrize("boundary", ["periodic", "neumann"])
def test_mass_is_conserved_over_1000_layers_with_face_coefficients(boundary):
    rng = np.random.default_rng(6)
    u = rng.uniform(-1, 1, (3, 64))
    h = 1 / 64
    theta = {"c": rng.uniform(0.1, 1.0, 64) * 0.3 * h, "D": rng.uniform(0.1, 1.0, 64) * 0.2 * h * h}
    layer = burgers()
    assert layer.certificate(theta, h).stable
    out = layer.compile(n=64, spacing=h, layers=1000, boundary=boundary).forward(u, theta)
    np.testing.assert_allclose(out.sum(axis=1), u.sum(axis=1), rtol=0, atol=1e-12 * np.abs(u).sum(axis=1).max())
    assert np.abs(out - u).max() > 0.1                         # it did something
    leak = burgers().compile(n=64, spacing=h, layers=1000, boundary="dirichlet").forward(u, theta)
    assert np.abs(leak.sum(axis=1) - u.sum(axis=1)).max() > 1e-3    # open boundaries do let mass out


@pytest.mark.parametrize("boundary", [("periodic", "neumann"), ("neumann", "neumann"), ("periodic", "periodic")])
def test_mass_is_conserved_in_2d_over_1000_layers(boundary):
    rng = np.random.default_rng(7)
    u = rng.uniform(-1, 1, (2, 12, 10))
    theta = {"c": rng.uniform(0.001, 0.01, (12, 10)), "a": rng.uniform(-0.01, 0.01, (12, 10)),
             "D": rng.uniform(1e-5, 2e-4, (12, 10))}
    out = flux2d().compile(n=(12, 10), spacing=(0.1, 0.1), layers=1000, boundary=boundary).forward(u, theta)
    np.testing.assert_allclose(out.sum(axis=(1, 2)), u.sum(axis=(1, 2)), rtol=0, atol=1e-12 * np.abs(u).sum())
    assert np.abs(out - u).max() > 0.1


# ---------------------------------------------------------------- gradients
def fd_check(net, theta, u, target, rel=1e-6, eps=1e-6):
    """Every entry of every coefficient by central differences of the loss (float64)."""
    _, grads = net.loss_and_grad(u, target, theta)
    for key, value in theta.items():
        fd = np.zeros(value.shape)
        for idx in np.ndindex(*value.shape):
            step = eps * max(abs(value[idx]), 1e-3)
            hi, lo = {**theta, key: value.copy()}, {**theta, key: value.copy()}
            hi[key][idx] += step
            lo[key][idx] -= step
            fd[idx] = (net.loss_and_grad(u, target, hi)[0] - net.loss_and_grad(u, target, lo)[0]) / (2 * step)
        scale = np.abs(fd).max()
        assert scale > 0, key
        np.testing.assert_allclose(grads[key], fd, rtol=0, atol=rel * scale, err_msg=key)
    return grads


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("family", ["heterogeneous", "time-dependent"])
def test_gradients_by_face_coefficients_equal_finite_differences(boundary, family):
    rng = np.random.default_rng(8)
    u, target = rng.uniform(-1, 1, (2, 7)), rng.uniform(-1, 1, (2, 7))
    theta = face_theta(rng, (7,), layers=3 if family == "time-dependent" else None, c_range=(0.1, 0.3),
                       d_range=(0.05, 0.15))
    net = burgers(family, method="engquist_osher").compile(n=7, spacing=1.0, layers=3, boundary=boundary)
    grads = fd_check(net, theta, u, target)
    if boundary == "neumann":           # the hi wall face (stored at the last site) never enters
        assert np.all(grads["D"][..., -1] == 0) and np.all(grads["c"][..., -1] == 0)
    ck = net.recipe[0].compile(n=7, spacing=1.0, layers=3, boundary=boundary, checkpoint=2)
    for k, g in ck.loss_and_grad(u, target, theta)[1].items():
        np.testing.assert_allclose(g, grads[k], rtol=1e-12, atol=1e-15)


def test_2d_gradients_and_step_vjp_equal_finite_differences():
    rng = np.random.default_rng(9)
    u, target = rng.uniform(-1, 1, (2, 4, 3)), rng.uniform(-1, 1, (2, 4, 3))
    theta = face_theta(rng, (4, 3), c_range=(0.1, 0.3), d_range=(0.05, 0.1), a_range=(-0.3, 0.3))
    for boundary in [("periodic", "dirichlet"), ("neumann", "periodic")]:
        net = flux2d().compile(n=(4, 3), spacing=(1.0, 1.0), layers=2, boundary=boundary)
        fd_check(net, theta, u, target)
        lam, grads = net.step_vjp(u, theta, target, layer=1)
        for key in theta:                 # one directional derivative per coefficient through step()
            v = rng.standard_normal(theta[key].shape)
            fd = (np.sum(target * net.step(u, {**theta, key: theta[key] + 1e-6 * v}, 1))
                  - np.sum(target * net.step(u, {**theta, key: theta[key] - 1e-6 * v}, 1))) / 2e-6
            assert abs(fd - np.sum(grads[key] * v)) <= 1e-7 * max(1.0, abs(fd)), key


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_single_layer_step_and_step_vjp_with_time_dependent_faces(boundary):
    """step/step_vjp of layer t use (and differentiate) row t only: against the face loop and central
    differences; the other rows' gradients are exactly 0."""
    rng = np.random.default_rng(22)
    u, cot = rng.uniform(-1, 1, (2, 7)), rng.uniform(-1, 1, (2, 7))
    theta = face_theta(rng, (7,), layers=4, c_range=(0.1, 0.3), d_range=(0.05, 0.15))
    net = burgers("time-dependent").compile(n=7, spacing=1.0, layers=4, boundary=boundary)
    for t in (0, 2):
        row = {k: v[t] for k, v in theta.items()}
        np.testing.assert_allclose(net.step(u, theta, t), reference_step(u, burgers_fluxes("godunov"), row, (1.0,),
                                                                         (boundary,)), rtol=0, atol=1e-14)
        _, grads = net.step_vjp(u, theta, cot, layer=t)
        for key, value in theta.items():
            others = np.delete(grads[key], t, axis=0)
            assert np.all(others == 0), key
            fd = np.zeros(7)
            for i in range(7):
                hi, lo = {**theta, key: value.copy()}, {**theta, key: value.copy()}
                hi[key][t, i] += 1e-6
                lo[key][t, i] -= 1e-6
                fd[i] = np.sum(cot * (net.step(u, hi, t) - net.step(u, lo, t))) / 2e-6
            np.testing.assert_allclose(grads[key][t], fd, rtol=0, atol=1e-7 * np.abs(fd).max(), err_msg=key)


@pytest.mark.parametrize("periodic", [True, False])
def test_the_shift_adjoint_is_the_transpose(periodic):
    rng = np.random.default_rng(10)
    for shape, axis, dim in [((6,), 0, 1), ((3, 5, 4), 1, 2), ((5, 4), 0, 2), ((2, 5, 4), 0, 2)]:
        p, g = rng.standard_normal(shape), rng.standard_normal(shape)
        back = np.zeros(shape)
        shift_adjoint(g, back, axis, dim, periodic)
        assert abs(np.sum(shift(p, axis, dim, periodic) * g) - np.sum(p * back)) < 1e-12
        ax = len(shape) - dim + axis
        expected = np.roll(p, 1, axis=ax)
        if not periodic:
            np.moveaxis(expected, ax, 0)[0] = np.moveaxis(p, ax, 0)[0]
        np.testing.assert_array_equal(shift(p, axis, dim, periodic), expected)


# ---------------------------------------------------------------- backends
@pytest.mark.parametrize("family", ["heterogeneous", pytest.param("time-dependent", marks=pytest.mark.slow)])
def test_numba_equals_numpy(family):
    pytest.importorskip("numba")
    rng = np.random.default_rng(11)
    layer = flux2d(family)
    theta = face_theta(rng, (9, 7), layers=3 if family == "time-dependent" else None, c_range=(0.001, 0.01),
                       d_range=(1e-4, 5e-4), a_range=(-0.01, 0.01))
    u, target = rng.uniform(-1, 1, (3, 9, 7)), rng.uniform(-1, 1, (3, 9, 7))
    nets = [layer.compile(n=(9, 7), spacing=(0.1, 0.1), layers=3, boundary=("dirichlet", "neumann"), backend=b)
            for b in ("numpy", "numba")]
    (la, ga), (lb, gb) = (n.loss_and_grad(u, target, theta, input_grad=True) for n in nets)
    assert abs(la - lb) <= 1e-12 * abs(lb)
    for k in gb:
        np.testing.assert_allclose(ga[k], gb[k], rtol=1e-11, atol=1e-13)
    for t in (0, 2):                      # the single-layer kernels (one row of a time-dependent value)
        np.testing.assert_allclose(nets[0].step(u, theta, t), nets[1].step(u, theta, t), rtol=1e-13, atol=1e-15)
        (da_, sa), (db, sb) = (n.step_vjp(u, theta, target, layer=t) for n in nets)
        np.testing.assert_allclose(da_, db, rtol=1e-12, atol=1e-14)
        for k in sb:
            np.testing.assert_allclose(sa[k], sb[k], rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("family,boundary", [("heterogeneous", ("neumann",)), ("time-dependent", ("periodic",)),
                                             ("heterogeneous", ("dirichlet",))])
def test_cuda_emulation_equals_numpy_1d(emulator, family, boundary):  # noqa: F811
    from npdegen.codegen.step_render import StepOptions
    layer = burgers(family, name=f"faces_cu_{family[:3]}")
    options = StepOptions(backend="cupy", boundary=boundary, dtype="float64")
    cu, _ = emulated_network(layer, options, (13,), (0.1,), emulator, f"faces_{family[:3]}_{boundary[0]}",
                             layers=4, omega=0.8)
    ref = layer.compile(n=13, spacing=0.1, layers=4, omega=0.8, boundary=boundary)
    theta = face_theta(np.random.default_rng(12), (13,), layers=4 if family == "time-dependent" else None)
    compare(cu, ref, theta, layers=4)


def test_cuda_emulation_equals_numpy_2d(emulator):  # noqa: F811
    from npdegen.codegen.step_render import StepOptions
    layer = flux2d()
    options = StepOptions(backend="cupy", boundary=("periodic", "dirichlet"), dtype="float64")
    cu, _ = emulated_network(layer, options, (6, 5), (0.1, 0.1), emulator, "faces2d", layers=3, omega=1.0)
    ref = layer.compile(n=(6, 5), spacing=(0.1, 0.1), layers=3, boundary=("periodic", "dirichlet"))
    compare(cu, ref, face_theta(np.random.default_rng(13), (6, 5), a_range=(-0.02, 0.02)), layers=3)


# ---------------------------------------------------------------- training
def test_training_recovers_a_face_diffusion_profile():
    n, h, layers = 16, 1.0, 6
    faces = np.arange(n) + 0.5
    true = {"D": 0.05 + 0.04 * np.sin(2 * np.pi * faces / n), "c": np.array(0.2)}
    layer = burgers(family="homogeneous", d_family="heterogeneous", name="faces_fit")
    net = layer.compile(n=n, spacing=h, layers=layers, boundary="periodic")
    rng = np.random.default_rng(14)
    xs = rng.uniform(-1, 1, (24, n))
    ys = net.forward(xs, true)
    start = {"D": np.full(n, 0.05), "c": np.array(0.2)}
    fitted, _ = npdegen.train(net, xs, ys, start, steps=200, optimizer="lbfgs", trainable=["D"])
    assert np.abs(fitted["D"] - true["D"]).max() < 1e-6 * np.abs(true["D"]).max()    # measured 5e-9
    assert np.abs(start["D"] - true["D"]).max() > 0.03


# ---------------------------------------------------------------- the certificate
def test_certificate_takes_the_max_over_faces():
    rng = np.random.default_rng(15)
    h = 0.1
    cs, ds = rng.uniform(0.005, 0.03, 20), rng.uniform(0.0, 0.001, 20)
    cert = burgers().certificate({"c": cs, "D": ds}, h, state_range=(-1, 1))
    assert cert.cfl == pytest.approx(cs.max() / h + 2 * ds.max() / h ** 2, rel=1e-12)
    assert cert.stable and cert.face_flux and cert.gain_norm == "l1" and cert.max_gain == 1.0
    assert cert.positive and not cert.tvd and not cert.maximum_principle   # g(0) = 0 at every face
    # a linear flux whose velocity changes sign between faces: outflow on both faces of a cell
    vel = sp.Symbol("v")
    lin = conservation_law(vel * z, z, params={vel: "heterogeneous"}, name="faces_lin")
    v = np.array([0.3, -0.2, 0.1, 0.25])
    assert lin.certificate({"v": v}, 1.0).cfl == pytest.approx(0.3 + 0.2)
    assert lin.certificate({"v": np.abs(v)}, 1.0).cfl == pytest.approx(0.3)
    # time-dependent: per layer, the worst layer counts
    td = burgers("time-dependent").certificate({"c": np.array([[0.01, 0.02], [0.005, 0.005]]),
                                                "D": np.array([[0.0, 0.0], [0.002, 0.001]])}, h)
    assert td.cfl == pytest.approx(max(0.02 / h, 0.005 / h + 2 * 0.002 / h ** 2))
    # a face D only: the flux coefficient is shared, so the maximum principle holds (l-infinity)
    only_d = burgers(family="homogeneous", d_family="heterogeneous")
    cert = only_d.certificate({"c": np.array(0.02), "D": ds}, h)
    assert cert.stable and cert.maximum_principle and cert.tvd and cert.gain_norm == "l-infinity"
    assert cert.cfl == pytest.approx(0.02 / h + 2 * ds.max() / h ** 2)
    assert not burgers(method="rusanov").certificate({"c": cs, "D": ds}, h).stable   # not proved for rusanov
    bad = burgers().certificate({"c": cs * 10, "D": ds}, h)
    assert not bad.stable and bad.max_gain == np.inf and "NOT certified" in str(bad)


def test_certified_claims_hold_numerically():
    rng = np.random.default_rng(16)
    n, h = 32, 1 / 32
    # face D, shared flux coefficient: maximum principle and TVD
    layer = burgers(family="homogeneous", d_family="heterogeneous", name="faces_mp")
    theta = {"c": np.array(0.4 * h), "D": rng.uniform(0, 0.25, n) * h * h}
    assert layer.certificate(theta, h).maximum_principle
    net = layer.compile(n=n, spacing=h, layers=1, boundary="periodic")
    u = rng.uniform(-1, 1, (4, n))
    tv = lambda w: np.abs(np.diff(w, axis=1, append=w[:, :1])).sum(axis=1)
    for _ in range(30):
        v = net.forward(u, theta)
        assert v.max() <= u.max() + 1e-14 and v.min() >= u.min() - 1e-14 and np.all(tv(v) <= tv(u) + 1e-12)
        u = v
    # face velocity of both signs: an l1 contraction, but the maximum principle fails (compression)
    vel = sp.Symbol("v")
    lin = conservation_law(vel * z, z, diffusion=D, params={vel: "heterogeneous", D: "heterogeneous"},
                           name="faces_l1")
    theta = {"v": 0.4 * np.sin(2 * np.pi * np.arange(n) / n) * h, "D": rng.uniform(0, 0.05, n) * h * h}
    cert = lin.certificate(theta, h)
    assert cert.stable and cert.gain_norm == "l1" and not cert.maximum_principle
    net = lin.compile(n=n, spacing=h, layers=1, boundary="periodic")
    u, w = rng.uniform(0, 1, (4, n)), rng.uniform(0, 1, (4, n))
    grew = False
    for _ in range(40):
        u2, w2 = net.forward(u, theta), net.forward(w, theta)
        assert np.all(np.abs(u2 - w2).sum(axis=1) <= np.abs(u - w).sum(axis=1) + 1e-12)
        assert u2.min() >= -1e-14                       # positive: g(0) = 0 on every face
        grew |= bool(u2.max() > u.max() + 1e-3)
        u, w = u2, w2
    assert grew


def test_npdegen_stability_returns_the_face_certificate():
    from npdegen.inspect.stability import stability_monitor
    net = burgers().compile(n=16, spacing=0.1, layers=2)
    theta = {"c": np.full(16, 0.02), "D": np.full(16, 0.001)}
    cert = npdegen.stability(net, theta)
    assert cert.stable and cert.max_gain == 1.0 and cert.cfl == pytest.approx(0.02 / 0.1 + 2 * 0.001 / 0.01)
    monitor = stability_monitor(net)
    assert monitor(theta) is None
    assert "CFL" in monitor({**theta, "c": np.full(16, 0.2)})


# ---------------------------------------------------------------- wrappers, pickling, specs, errors
def test_wrappers_and_pickles_see_only_user_parameters():
    net = burgers().compile(n=10, spacing=0.1, layers=3, boundary="neumann")
    assert set(net.shapes) == {"c", "D"} and set(net.init_params()) == {"c", "D"}
    rng = np.random.default_rng(17)
    theta = face_theta(rng, (10,))
    u, target = rng.uniform(-1, 1, (2, 10)), rng.uniform(-1, 1, (2, 10))
    again = pickle.loads(pickle.dumps(net))
    np.testing.assert_array_equal(again.forward(u, theta), net.forward(u, theta))
    loss, grads = net.loss_and_grad(u, target, theta)
    assert set(grads) == {"c", "D"}
    tape = net.forward(u, theta, keep=True)
    _, tgrads = net.backward(tape, tape.output - target)
    for k in grads:
        np.testing.assert_allclose(tgrads[k], grads[k], rtol=1e-13, atol=1e-16)
    torch = pytest.importorskip("torch")
    from npdegen.torch import NeuralPDEModule
    module = NeuralPDEModule(net, theta=theta)
    assert {name for name, _ in module.named_parameters()} == {"c", "D"}
    out = module(torch.tensor(u))
    (0.5 * ((out - torch.tensor(target)) ** 2).sum()).backward()
    for name, p in module.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), grads[name], rtol=1e-12, atol=1e-16)


def test_jax_wrapper_sees_only_user_parameters():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    from npdegen.jax import neural_pde
    apply = neural_pde(burgers(), n=8, spacing=0.1, layers=2, boundary="periodic")
    theta = {k: jax.numpy.asarray(v) for k, v in face_theta(np.random.default_rng(18), (8,)).items()}
    u = jax.numpy.asarray(np.random.default_rng(19).uniform(-1, 1, (2, 8)))
    grads = jax.grad(lambda th: 0.5 * (apply(th, u) ** 2).sum())(theta)
    assert set(grads) == {"c", "D"}
    _, ref = apply.net.loss_and_grad(np.asarray(u), np.zeros((2, 8)), {k: np.asarray(v) for k, v in theta.items()})
    for k in ref:
        np.testing.assert_allclose(np.asarray(grads[k]), ref[k], rtol=1e-12, atol=1e-16)


def test_toml_spec_with_face_coefficients(tmp_path):
    path = tmp_path / "faces.toml"
    path.write_text('[layer]\nkind = "conservation_law"\nname = "faces_toml"\nfield = "z"\ncoordinate = "q"\n'
                    'flux = "c*z**2/2"\ndiffusion = "D"\npositive = ["c"]\n\n[layer.params]\n'
                    'c = "heterogeneous"\nD = "time-dependent"\n\n[compile]\nboundary = "neumann"\n')
    layer, options = npdegen.load_spec(path)
    assert layer.face_params == {"c": "heterogeneous", "D": "time-dependent"}
    net = layer.compile(n=6, spacing=0.1, layers=2, **options)
    assert net.shapes == {"c": (6,), "D": (2, 6)}
    rng = np.random.default_rng(20)
    theta = {"c": rng.uniform(0.01, 0.03, 6), "D": rng.uniform(0.001, 0.002, (2, 6))}
    u = rng.uniform(-1, 1, (2, 6))
    expected = run_reference(u, theta, burgers_fluxes("godunov"), (0.1,), ("neumann",), 2)
    np.testing.assert_allclose(net.forward(u, theta), expected, rtol=0, atol=1e-14)


def test_a_face_coefficient_of_the_wrong_shape_is_refused():
    net = burgers().compile(n=8, spacing=0.1, layers=2)
    good = {"c": np.full(8, 0.02), "D": np.full(8, 0.001)}
    with pytest.raises(ValueError, match=r"theta\['c'\] has shape \(7,\); a heterogeneous parameter needs \(8,\)"):
        net.forward(np.zeros(8), {**good, "c": np.full(7, 0.02)})
    with pytest.raises(ValueError, match=r"theta\['D'\] has shape \(\); a heterogeneous parameter needs \(8,\)"):
        net.forward(np.zeros(8), {**good, "D": np.array(0.001)})
    with pytest.raises(ValueError, match="c_face_lo_q"):        # a derived field is no parameter
        net.forward(np.zeros(8), {**good, "c_face_lo_q": np.full(8, 0.02)})
    td = burgers("time-dependent").compile(n=8, spacing=0.1, layers=2)
    with pytest.raises(ValueError, match=r"time-dependent parameter needs \(2, 8\)"):
        td.forward(np.zeros(8), {"c": np.full(8, 0.02), "D": np.full((2, 8), 0.001)})
    with pytest.raises(ValueError, match="heterogeneous coefficient needs a 1-D grid array"):
        burgers().certificate({"c": np.full((2, 8), 0.02), "D": np.full(8, 0.001)}, 0.1)
    with pytest.raises(ValueError, match="do not fit together"):
        burgers().certificate({"c": np.full(8, 0.02), "D": np.full(7, 0.001)}, 0.1)


@pytest.mark.parametrize("boundary", [("periodic", "neumann"), ("dirichlet", "periodic")])
def test_domain_decomposition_with_face_coefficients(boundary):
    """Chunked in space (npdegen.distributed): each block shifts its own gathered coefficients, whose
    wrong lo face at an inner block edge stays in the halo like the boundary rule there."""
    da = pytest.importorskip("dask.array")
    import dask
    from npdegen.distributed.domain import forward_domain, loss_and_grad_domain
    rng = np.random.default_rng(21)
    net = flux2d().compile(n=(12, 10), spacing=(0.1, 0.1), layers=3, boundary=boundary)
    theta = face_theta(rng, (12, 10), c_range=(0.005, 0.02), d_range=(1e-4, 5e-4), a_range=(-0.02, 0.02))
    X, Y = rng.uniform(-1, 1, (3, 12, 10)), rng.uniform(-1, 1, (3, 12, 10))
    with dask.config.set(scheduler="threads"):
        xd = da.from_array(X, chunks=(3, 6, 5))
        np.testing.assert_allclose(forward_domain(net, xd, theta).compute(), net.forward(X, theta),
                                   rtol=1e-12, atol=1e-13)
        l0, g0 = net.loss_and_grad(X, Y, theta)
        l1, g1 = loss_and_grad_domain(net, xd, Y, theta)
    assert l1 == pytest.approx(l0, rel=1e-12)
    for k in g0:
        np.testing.assert_allclose(np.asarray(g1[k]), g0[k], rtol=1e-11, atol=1e-13, err_msg=k)
