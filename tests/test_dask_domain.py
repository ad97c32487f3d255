"""Domain decomposition (issue 15 item 3): a field chunked in space gives the unchunked results.

Reference: the same network on the whole field (``Network.forward`` / ``loss_and_grad``, themselves
tested against hand-written loops and finite differences elsewhere), float64, to 1e-12 — for every
boundary (and mixed ones per axis), homogeneous, heterogeneous and time-dependent parameters, a
nonlinear (Burgers-like ``z z_x``) and a linear layer, 1-D in 4 chunks, 2-D in 2×2, a 3-D smoke
test; halos deeper than a chunk, irregular and batch chunks, several rounds (``block``). The halo
plan is checked against index arithmetic written out here (``np.ix_`` with wrapped or clipped
ranges) and against ``dask.array.overlap``; its fold is the exact transpose (dot-product test).
"""
import functools

import numpy as np
import pytest
import sympy as sp
from hypothesis import assume, given, settings, strategies as st

da = pytest.importorskip("dask.array", reason="dask is not installed (pip install npdegen[dask])")
import dask  # noqa: E402

import npdegen  # noqa: E402
from npdegen.distributed.domain import forward_domain, loss_and_grad_domain, vjp_domain  # noqa: E402
from npdegen.distributed.halo import HaloPlan  # noqa: E402

q, x, y, w = sp.symbols("q x y w")
z1, z2, z3 = sp.Function("z")(q), sp.Function("z")(x, y), sp.Function("z")(x, y, w)
nu, U, R = sp.symbols("nu U R")
BOUNDARIES_2D = ["periodic", "dirichlet", "neumann", ("neumann", "periodic"), ("dirichlet", "neumann")]
BOUNDARIES_1D = ["periodic", "dirichlet", "neumann"]
TOL = dict(rtol=1e-12, atol=1e-12)


@pytest.fixture(autouse=True)
def _threads():
    with dask.config.set(scheduler="threads"):
        yield


def burgers_2d(**kw):
    """Nonlinear: viscous Burgers-like, heterogeneous ν, homogeneous U, time-dependent bias."""
    return npdegen.NeuralPDE(z2 + nu * (z2.diff(x, 2) + z2.diff(y, 2)) - U * z2 * z2.diff(x), z2,
                             activation="tanh", params={nu: "heterogeneous", U: "homogeneous"},
                             bias="time-dependent", **kw)


def adr_2d():
    """Linear, homogeneous: a 2-D advection-diffusion-reaction layer."""
    return npdegen.NeuralPDE(z2 + R * z2 - U * z2.diff(x) + nu * (z2.diff(x, 2) + z2.diff(y, 2)), z2,
                             params={nu: "homogeneous", U: "homogeneous", R: "homogeneous"}, bias="homogeneous")


def data(net, batch=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, *net.grid)), rng.standard_normal((batch, *net.grid))


def params(net, seed=1):
    values = {k: v for k, v in dict(nu=0.1, U=0.3, R=-0.05).items() if k in net.shapes}
    return net.init_params(seed=seed, scale=0.05, values=values)


def assert_matches(net, theta, X, Y, chunks, **kw):
    """Forward, loss, parameter and input gradients of the chunked run equal the unchunked ones."""
    xd = da.from_array(X, chunks=chunks)
    out = forward_domain(net, xd, theta, **kw)
    assert isinstance(out, da.Array) and out.chunks == xd.chunks
    np.testing.assert_allclose(out.compute(), net.forward(X, theta), **TOL)
    l0, g0 = net.loss_and_grad(X, Y, theta, input_grad=True)
    l1, g1 = loss_and_grad_domain(net, xd, Y, theta, input_grad=True, **kw)
    assert l1 == pytest.approx(l0, rel=1e-12, abs=1e-12)
    assert set(g1) == set(g0)
    assert isinstance(g1["x"], da.Array) and g1["x"].chunks == xd.chunks
    for k in g0:
        got = np.asarray(g1[k])
        assert got.shape == np.shape(g0[k]) and got.dtype == net.dtype, k
        np.testing.assert_allclose(got, g0[k], **TOL, err_msg=k)
    return g1


# ---------------------------------------------------------------------------------- acceptance
@pytest.mark.parametrize("boundary", BOUNDARIES_2D)
@pytest.mark.parametrize("make", [burgers_2d, adr_2d], ids=["burgers-nonlinear", "adr-linear"])
def test_2d_field_in_2x2_chunks_matches_unchunked(make, boundary):
    net = make().compile(n=(12, 10), spacing=(1.0, 0.8), layers=3, omega=0.8, boundary=boundary)
    X, Y = data(net)
    assert_matches(net, params(net), X, Y, chunks=(3, 6, 5))


@pytest.mark.parametrize("boundary", BOUNDARIES_1D)
def test_1d_linear_layer_in_4_chunks(boundary):
    layer = npdegen.NeuralPDE(z1 + R * z1 - U * z1.diff(q) + nu * z1.diff(q, 2), z1, activation="tanh",
                              params={nu: "heterogeneous", U: "homogeneous", R: "time-dependent"}, bias="heterogeneous")
    net = layer.compile(n=24, spacing=0.5, layers=4, omega=0.7, boundary=boundary)
    assert net.recipe[0]._linear_1d             # a 1-D linear layer (it has a 1-D kernel description)
    X, Y = data(net)
    assert_matches(net, params(net), X, Y, chunks=(3, 6))


@pytest.mark.parametrize("boundary", BOUNDARIES_1D)
def test_1d_nonlinear_layer_in_4_chunks(boundary):
    layer = npdegen.NeuralPDE(z1 - U * z1 * z1.diff(q) + nu * z1.diff(q, 2), z1, accuracy=4,
                              params={nu: "heterogeneous", U: "homogeneous"}, bias="time-dependent")
    net = layer.compile(n=28, spacing=0.5, layers=3, omega=0.9, boundary=boundary)
    assert net.halos == (2,)
    X, Y = data(net)
    assert_matches(net, params(net), X, Y, chunks=(2, 7))


def test_3d_smoke():
    layer = npdegen.NeuralPDE(z3 + nu * (z3.diff(x, 2) + z3.diff(y, 2) + z3.diff(w, 2)) - U * z3 * z3.diff(w), z3,
                              activation="tanh", params={nu: "heterogeneous", U: "homogeneous"}, bias="homogeneous")
    net = layer.compile(n=(6, 8, 7), layers=2, omega=0.8, boundary=("periodic", "neumann", "dirichlet"))
    X, Y = data(net, batch=2)
    assert_matches(net, params(net), X, Y, chunks=(2, 3, 4, (3, 4)))


# ---------------------------------------------------------------------------------- layouts
@pytest.mark.parametrize("boundary", ["periodic", "dirichlet", ("neumann", "periodic")])
@pytest.mark.parametrize("block", [1, 2, 5, None])
def test_rounds_and_halos_deeper_than_a_chunk(boundary, block):
    """L = 5 layers on chunks of 2-4 sites: with one exchange (block=5) the halo (5 sites) reaches
    past the neighbours (and around a periodic axis more than once); with block=1 or 2 (or None,
    here 1) there are 5 or 3 rounds."""
    net = burgers_2d().compile(n=(9, 8), layers=5, omega=0.6, boundary=boundary)
    X, Y = data(net, batch=2)
    assert_matches(net, params(net), X, Y, chunks=(1, (2, 4, 3), (3, 3, 2)), block=block)


@functools.lru_cache(maxsize=None)
def _burgers_1d():
    return npdegen.NeuralPDE(z1 - U * z1 * z1.diff(q) + nu * z1.diff(q, 2), z1, activation="tanh",
                             params={nu: "heterogeneous", U: "homogeneous"}, bias="time-dependent")


@settings(derandomize=True, max_examples=12, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=2, max_size=6), st.sampled_from(BOUNDARIES_1D),
       st.integers(1, 4), st.integers(1, 4))
def test_any_1d_chunking_matches_unchunked(chunks, boundary, layers, block):
    """Random chunkings (single sites included), boundaries, depths and rounds."""
    n = sum(chunks)
    assume(n > 2)
    net = _burgers_1d().compile(n=n, layers=layers, omega=0.7, boundary=boundary)
    X, Y = data(net, batch=2)
    try:
        assert_matches(net, params(net), X, Y, chunks=(1, tuple(chunks)), block=min(block, layers))
    except ValueError as exc:                  # a one-site chunk at a cut edge, one-layer rounds
        assert "larger chunks" in str(exc) and boundary != "periodic"


def test_unbatched_field_threads_train_omega_and_checkpoints():
    net = burgers_2d().compile(n=(10, 8), layers=4, omega=0.8, train_omega=True, checkpoint=2)
    theta = params(net)
    X, Y = data(net, batch=1)
    xd = da.from_array(X[0], chunks=(5, 4))
    np.testing.assert_allclose(forward_domain(net, xd, theta, threads=2).compute(), net.forward(X[0], theta), **TOL)
    l0, g0 = net.loss_and_grad(X[0], Y[0], theta, input_grad=True)
    l1, g1 = loss_and_grad_domain(net, xd, da.from_array(Y[0], chunks=(2, 8)), theta, input_grad=True, block=3)
    assert l1 == pytest.approx(l0, rel=1e-12) and g1["x"].shape == X[0].shape
    for k in g0:
        np.testing.assert_allclose(np.asarray(g1[k]), g0[k], **TOL, err_msg=k)


@pytest.mark.slow
@pytest.mark.parametrize("boundary", ["periodic", ("neumann", "dirichlet")])
def test_numba_backend(boundary):
    """The compiled kernels (slow: numba compiles them on first use)."""
    pytest.importorskip("numba")
    net = burgers_2d().compile(n=(12, 10), layers=3, omega=0.8, boundary=boundary, backend="numba")
    X, Y = data(net)
    assert_matches(net, params(net), X, Y, chunks=(2, 6, (4, 6)))


def test_without_input_gradient_and_float32():
    net = adr_2d().compile(n=(8, 8), layers=2, omega=0.5, boundary="neumann", dtype="float32")
    theta = params(net)
    X, Y = (a.astype(np.float32) for a in data(net))
    l0, g0 = net.loss_and_grad(X, Y, theta)
    l1, g1 = loss_and_grad_domain(net, da.from_array(X, chunks=(2, 4, 4)), Y, theta)
    assert set(g1) == set(g0) and l1 == pytest.approx(l0, rel=1e-5)
    for k in g0:
        assert g1[k].dtype == np.float32
        np.testing.assert_allclose(g1[k], g0[k], rtol=1e-4, atol=1e-4)


def test_the_graph_pickles_and_runs_after_a_round_trip():
    """What a worker receives: every task and literal of the graph pickles, and the unpickled graph
    (the network as its recipe, compiled again on load) computes the same blocks."""
    import pickle
    net = burgers_2d().compile(n=(8, 8), layers=2, omega=0.8, boundary=("dirichlet", "periodic"))
    theta = params(net)
    X, _ = data(net, batch=2)
    out = forward_domain(net, da.from_array(X, chunks=(2, 4, 4)), theta)
    graph = pickle.loads(pickle.dumps(dict(out.__dask_graph__())))
    blocks = dask.get(graph, out.__dask_keys__())      # nested lists of (batch, chunk) arrays
    np.testing.assert_allclose(np.block([[list(r) for r in b] for b in blocks]), net.forward(X, theta), **TOL)


@pytest.mark.slow
def test_distributed_workers_in_processes():
    """The network reaches worker processes as its recipe and compiles there (slow: starts a cluster)."""
    distributed = pytest.importorskip("distributed")
    net = burgers_2d().compile(n=(8, 8), layers=2, omega=0.8, boundary=("dirichlet", "periodic"))
    theta = params(net)
    X, Y = data(net, batch=2)
    with distributed.Client(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None):
        g = assert_matches(net, theta, X, Y, chunks=(2, 4, 4))
        assert isinstance(g["x"], da.Array)


@pytest.mark.parametrize("block", [None, 2])
def test_vjp_and_the_mean_loss(block):
    """vjp_domain equals Network.vjp; kind="mean" is Σ(z_L − y)²/count with gradient 2/count × the
    sum's (both through the rounds of block=2 too)."""
    net = burgers_2d().compile(n=(10, 9), layers=3, omega=0.8, boundary=("periodic", "neumann"))
    theta = params(net)
    X, Y = data(net, batch=2)
    xd = da.from_array(X, chunks=(1, 5, (4, 5)))
    dx0, g0 = net.vjp(X, theta, Y)
    dx1, g1 = vjp_domain(net, xd, theta, da.from_array(Y, chunks=(2, 10, 3)), block=block)
    assert isinstance(dx1, da.Array) and dx1.chunks == xd.chunks
    np.testing.assert_allclose(dx1.compute(), dx0, **TOL)
    for k in g0:
        np.testing.assert_allclose(g1[k], g0[k], **TOL, err_msg=k)
    l0, s0 = net.loss_and_grad(X, Y, theta, input_grad=True)
    lm, gm = loss_and_grad_domain(net, xd, Y, theta, input_grad=True, kind="mean", block=block)
    assert lm == pytest.approx(np.mean((net.forward(X, theta) - Y) ** 2), rel=1e-12)
    for k in s0:
        np.testing.assert_allclose(np.asarray(gm[k]), 2 * s0[k] / X.size, **TOL, err_msg=k)


def test_worker_threads_reuse_their_chunk_networks():
    """A second call on the same thread reuses the compiled chunk networks (and their buffers) and
    gives the same numbers; at most _KEEP networks are kept per thread."""
    from npdegen.distributed import domain
    net = burgers_2d().compile(n=(12, 9), layers=2, omega=0.8, boundary="dirichlet")
    theta = params(net)
    X, Y = data(net, batch=1)
    with dask.config.set(scheduler="sync"):                 # every task on this thread
        domain._LOCAL.__dict__.pop("nets", None)
        xd = da.from_array(X, chunks=(1, 6, (4, 5)))         # 2 extended shapes: (8, 6), (8, 7)
        first = loss_and_grad_domain(net, xd, Y, theta)
        kept = dict(domain._LOCAL.nets)
        again = loss_and_grad_domain(net, xd, Y, theta)
        assert sorted(k[1:] for k in kept) == [((8, 6), 2), ((8, 7), 2)]
        assert all(domain._LOCAL.nets[k] is v for k, v in kept.items())
        loss_and_grad_domain(net, da.from_array(X, chunks=(1, 4, (4, 5))), Y, theta)   # 6 shapes
        assert len(domain._LOCAL.nets) == domain._KEEP
    assert again[0] == first[0]
    for k in first[1]:
        np.testing.assert_array_equal(again[1][k], first[1][k])


def test_default_block_keeps_the_halo_within_half_a_chunk():
    from npdegen.distributed.domain import _default_block
    assert _default_block(16, (1, 1), ((2048, 2048), (2048, 2048))) == 16      # one deep halo
    assert _default_block(64, (1, 1), ((64,) * 4, (64,) * 4)) == 32          # 2 rounds of 32
    assert _default_block(32, (2, 1), ((64,) * 4, (256,))) == 16               # only split axes count
    assert _default_block(10, (1,), ((9, 8, 9),)) == 4                         # rounds of 4, 4, 2
    assert _default_block(10, (1,), ((9, 7, 9),)) == 3                         # 3, 3, 3, 1
    assert _default_block(5, (1,), ((1, 4),)) == 1


# ---------------------------------------------------------------------------------- the halo plan
def _reference_indices(chunks, depth, periodic, j):
    """Grid indices of extended block j along one axis, written out directly."""
    starts = np.concatenate([[0], np.cumsum(chunks)])
    n, s, e = starts[-1], starts[j], starts[j + 1]
    if len(chunks) == 1:
        return np.arange(s, e)
    if periodic:
        return np.arange(s - depth, e + depth) % n
    return np.arange(max(s - depth, 0), min(e + depth, n))


@settings(derandomize=True, max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.lists(st.integers(1, 5), min_size=1, max_size=4), st.integers(0, 7), st.booleans()),
                min_size=1, max_size=3), st.integers(0, 2))
def test_plan_gather_and_its_transpose(axes, seed):
    chunks = [a[0] for a in axes]
    plan = HaloPlan(chunks, [a[1] for a in axes], ["periodic" if a[2] else "dirichlet" for a in axes])
    rng = np.random.default_rng(seed)
    grid = tuple(sum(c) for c in chunks)
    arr = rng.standard_normal((2, *grid))
    total, dot_ext = np.zeros_like(arr), 0.0
    for idx in plan.blocks:
        ind = [_reference_indices(c, a[1], a[2], j) for c, a, j in zip(chunks, axes, idx)]
        ext = plan.extend(arr, idx)
        np.testing.assert_array_equal(ext, arr[(slice(None), *np.ix_(*ind))])
        inner = arr[(slice(None), *(slice(s, s + c[j]) for s, c, j in
                                     zip([sum(c[:j]) for c, j in zip(chunks, idx)], chunks, idx)))]
        np.testing.assert_array_equal(ext[(slice(None), *plan.inner(idx))], inner)
        cot = rng.standard_normal(ext.shape)
        dot_ext += float(np.sum(ext * cot))
        plan.fold_into(total, cot, idx)
    assert float(np.sum(arr * total)) == pytest.approx(dot_ext, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("boundary", ["periodic", "none"])
def test_plan_gather_equals_dask_overlap(boundary):
    """The extended blocks are those of dask.array.overlap (halo no deeper than a chunk)."""
    X = np.arange(2 * 12 * 10, dtype=float).reshape(2, 12, 10)
    xd = da.from_array(X, chunks=(2, (4, 5, 3), (5, 5)))
    plan = HaloPlan(xd.chunks[1:], (3, 2), ["periodic" if boundary == "periodic" else "neumann"] * 2)
    ov = da.overlap.overlap(xd, depth={0: 0, 1: 3, 2: 2}, boundary={0: "none", 1: boundary, 2: boundary})
    blocks = ov.to_delayed()
    for idx in plan.blocks:
        np.testing.assert_array_equal(blocks[(0, *idx)].compute(), plan.extend(X, idx))


# ---------------------------------------------------------------------------------- errors
def test_bad_input_is_refused_at_the_api():
    layer = adr_2d()
    net = layer.compile(n=(8, 8), layers=3)
    theta = params(net)
    X, Y = data(net)
    xd = da.from_array(X, chunks=(3, 4, 4))
    with pytest.raises(TypeError, match="dask array"):
        forward_domain(net, X, theta)
    with pytest.raises(ValueError, match="shape"):
        forward_domain(net, da.zeros((2, 8, 9), chunks=4), theta)
    with pytest.raises(ValueError, match="block"):
        forward_domain(net, xd, theta, block=4)
    with pytest.raises(ValueError, match="threads"):
        forward_domain(net, xd, theta, threads=0)
    with pytest.raises(ValueError, match="theta"):
        forward_domain(net, xd, {**theta, "nu": np.zeros(3)})
    with pytest.raises(ValueError, match="kind"):
        loss_and_grad_domain(net, xd, Y, theta, kind="relative")
    with pytest.raises(ValueError, match="cotangent has shape"):
        vjp_domain(net, xd, theta, Y[0])
    with pytest.raises(ValueError, match="y has shape"):
        loss_and_grad_domain(net, xd, Y[:, :4], theta)
    with pytest.raises(ValueError, match="larger chunks"):
        forward_domain(layer.compile(n=(8, 8), layers=3, boundary="dirichlet"),
                       da.from_array(X, chunks=(3, (1, 7), 8)), theta, block=1)
    with pytest.raises(ValueError, match="normalisation"):
        forward_domain(layer.compile(n=(8, 8), alpha=0.1), xd, theta)
    with pytest.raises(TypeError, match="Network"):
        forward_domain(object(), xd, theta)
    bad = X.copy()
    bad[0, 7, 7] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        forward_domain(net, da.from_array(bad, chunks=(3, 4, 4)), theta).compute()
    with pytest.raises(ValueError, match="y contains NaN"):
        loss_and_grad_domain(net, xd, np.where(np.isnan(bad), np.nan, Y), theta)
