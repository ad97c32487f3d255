"""The array module of dask chunks (issue 15 item 4, the part a CPU can check).

``npdegen.distributed.arrays`` tells NumPy from CuPy chunks by the class of a dask array's
``_meta`` and refuses a network of the other module. Without a GPU no CuPy array can be made, so
the CuPy side is played by ``FakeCupyArray``: NumPy memory under a class whose module is ``cupy``,
which is exactly what the module choice reads (``type(meta).__module__``) and nothing more. Checked:

* the choice itself: NumPy arrays, dask arrays of NumPy chunks, host lists → numpy; fake CuPy
  arrays and dask arrays of them → cupy; other array types refused;
* NumPy chunks with NumPy-module networks (numpy and numba backends) run and give the
  single-process results with results of NumPy type (forward meta, gradients, input gradients);
* every entry point (data-parallel forward / vjp / loss_and_grad, a bag of shards, domain
  decomposition, ``y`` and cotangents in memory or chunked) refuses CuPy chunks for a NumPy
  network and NumPy chunks for a CuPy network (a network whose ``xp`` is a namespace named cupy),
  with a TypeError naming both modules and the explicit conversion;
* the halo gather, fold, extension and gradient sums allocate with the chunk's module: with a
  recording namespace registered as ``cupy`` they call it for fake CuPy parts (and give the NumPy
  gather's values), and never for NumPy parts.

The same paths on a real GPU are tests/test_distributed_gpu.py (skipped without one).
"""
import types

import numpy as np
import pytest
import sympy as sp

pytest.importorskip("distributed", reason="dask[distributed] not installed (pip install 'npdegen[dask]')")
import dask  # noqa: E402
import dask.array as da  # noqa: E402
import dask.bag as db  # noqa: E402

import npdegen  # noqa: E402
from npdegen.distributed import arrays, domain  # noqa: E402
from npdegen.distributed.data_parallel import batch_arrays  # noqa: E402
from npdegen.distributed.arrays import array_module, module_name, network_module, require  # noqa: E402
from npdegen.distributed.halo import HaloPlan  # noqa: E402


class FakeCupyArray(np.ndarray):
    """NumPy memory under a class named as CuPy's (what ``module_name`` reads)."""
    __module__ = "cupy"

    def get(self):                              # cupy.ndarray.get: the host copy
        return np.array(self.view(np.ndarray))


def fake(a):
    return np.asarray(a).view(FakeCupyArray)


class Recorder:
    """An array namespace that forwards to NumPy and records which functions were asked for."""
    __name__ = "cupy"

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        self.calls.append(name)
        return getattr(np, name)


@pytest.fixture(autouse=True)
def _threads():
    with dask.config.set(scheduler="threads"):
        yield


@pytest.fixture(scope="module")
def layer1d():
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    U, D = sp.symbols("U D")
    return npdegen.NeuralPDE(z - U * z.diff(q) + D * z.diff(q, 2), z, activation="tanh",
                             params={U: "heterogeneous", D: "homogeneous"}, bias="time-dependent")


@pytest.fixture(scope="module")
def net(layer1d):
    return layer1d.compile(n=24, layers=3, omega=0.7, boundary="dirichlet")


def _data(net, batch=12, seed=0):
    rng = np.random.default_rng(seed)
    theta = net.init_params(seed=1, scale=0.1, values={"D": 0.1})
    x = rng.standard_normal((batch, *net.grid))
    return x, np.tanh(x + 0.2 * rng.standard_normal(x.shape)), theta


def _cupy_net(net, monkeypatch):
    """``net`` seen as a CuPy network (its ``xp`` and backend named cupy); nothing of it runs here."""
    ns = types.ModuleType("cupy")
    monkeypatch.setattr(net, "xp", ns)
    monkeypatch.setattr(net, "backend", types.SimpleNamespace(name="cupy", xp=ns))
    return net


# ---------------------------------------------------------------------------------- the choice
def test_module_of_arrays_and_chunks():
    a = np.zeros((4, 3))
    assert module_name(a) == "numpy" and array_module(a) is np
    assert module_name(da.from_array(a, chunks=2)) == "numpy"
    assert module_name([[1.0, 2.0]]) == "numpy" and module_name(2.5) == "numpy"
    assert module_name(np.ma.masked_array(a)) == "numpy"                     # numpy.ma: still NumPy
    f = fake(a)
    assert module_name(f) == "cupy"
    xf = da.from_array(f, chunks=(2, 3), asarray=False)
    assert type(xf._meta) is FakeCupyArray and module_name(xf) == "cupy"
    assert module_name(xf.rechunk((1, 3))[None]) == "cupy"                  # kept through rechunk/indexing
    with pytest.raises(TypeError, match="NumPy or CuPy"):
        module_name(types.SimpleNamespace(shape=(3,)))


def test_array_module_imports_and_caches_the_registered_module(monkeypatch):
    rec = Recorder()
    monkeypatch.setitem(arrays.MODULES, "cupy", rec)
    assert array_module(fake([1.0])) is rec
    monkeypatch.delitem(arrays.MODULES, "cupy")
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed")
    assert array_module(fake([1.0])) is cupy and arrays.MODULES["cupy"] is cupy    # imported on first use


def test_parameters_go_into_the_graph_as_host_arrays():
    theta = {"U": fake(np.arange(3.0)), "D": np.float64(0.5), "b": np.ones((2, 3))}
    out = arrays.host_params(theta)
    assert type(out["U"]) is np.ndarray and out["D"] is theta["D"] and out["b"] is theta["b"]
    np.testing.assert_array_equal(out["U"], [0.0, 1.0, 2.0])


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_numpy_chunks_numpy_network_run_with_numpy_results(layer1d, backend):
    if backend == "numba":
        pytest.importorskip("numba", reason="numba is not installed")
    net = layer1d.compile(n=24, layers=3, omega=0.7, boundary="dirichlet", backend=backend)
    assert network_module(net) == "numpy" and require(net, x=np.zeros(3)) == "numpy"
    x, y, theta = _data(net)
    xd = da.from_array(x, chunks=(5, -1))
    out = net.forward(xd, theta)
    assert module_name(out) == "numpy"
    np.testing.assert_allclose(out.compute(), net.forward(x, theta), rtol=1e-12, atol=1e-12)
    l0, g0 = net.loss_and_grad(x, y, theta, input_grad=True)
    l1, g1 = net.loss_and_grad(xd, y, theta, input_grad=True)
    assert l1 == pytest.approx(l0, rel=1e-12)
    for k in g0:
        assert type(g1[k]) is np.ndarray, k
        np.testing.assert_allclose(g1[k], g0[k], rtol=1e-12, atol=1e-12, err_msg=k)
    xs = da.from_array(x, chunks=(5, 8))                                     # chunked in space: domain route
    out = net.forward(xs, theta)
    assert module_name(out) == "numpy" and type(out.compute()) is np.ndarray
    l2, g2 = net.loss_and_grad(xs, y, theta, input_grad=True)
    assert l2 == pytest.approx(l0, rel=1e-12) and module_name(g2["x"]) == "numpy"
    for k in g0:
        np.testing.assert_allclose(np.asarray(g2[k]), g0[k], rtol=1e-12, atol=1e-12, err_msg=k)


# ---------------------------------------------------------------------------------- mismatches
CUPY_FOR_NUMPY = r"x has CuPy chunks \(cupy\) but the network runs NumPy kernels \(backend 'numpy', module numpy\)"


def test_cupy_chunks_for_a_numpy_network_are_refused_everywhere(net):
    x, y, theta = _data(net)
    xf = da.from_array(fake(x), chunks=(5, -1), asarray=False)
    xs = da.from_array(fake(x), chunks=(5, 8), asarray=False)               # chunked in space
    for call in (lambda: net.forward(xf, theta), lambda: net.loss_and_grad(xf, y, theta),
                 lambda: net.vjp(xf, theta, y), lambda: net.forward(xs, theta),
                 lambda: net.loss_and_grad(xs, y, theta), lambda: net.vjp(xs, theta, y)):
        with pytest.raises(TypeError, match=CUPY_FOR_NUMPY) as err:
            call()
        assert "backend='cupy'" in str(err.value) and "cupy.asnumpy" in str(err.value)
    xd, xn = da.from_array(x, chunks=(5, -1)), da.from_array(x, chunks=(5, 8))
    for yy, kind in ((fake(y), "arrays"), (da.from_array(fake(y), chunks=(4, -1), asarray=False), "chunks")):
        for xx in (xd, xn):
            with pytest.raises(TypeError, match=f"y has CuPy {kind}"):
                net.loss_and_grad(xx, yy, theta)
            with pytest.raises(TypeError, match=f"cotangent has CuPy {kind}"):
                net.vjp(xx, theta, yy)


def test_bag_items_of_the_other_module_are_refused_on_the_worker(net):
    x, y, theta = _data(net)
    shards = db.from_sequence([(x[:6], y[:6]), (fake(x[6:]), y[6:])], npartitions=2)
    with pytest.raises(TypeError, match=r"a shard's x has CuPy arrays \(cupy\) but the network runs NumPy"):
        net.loss_and_grad(shards, None, theta)
    with pytest.raises(TypeError, match=r"x has CuPy arrays \(cupy\)"):
        net.forward(db.from_sequence([x[:3], fake(x[3:6])], npartitions=2), theta).compute()


def test_numpy_chunks_for_a_cupy_network_are_refused(layer1d, monkeypatch):
    net = layer1d.compile(n=24, layers=3, omega=0.7, boundary="dirichlet")
    x, y, theta = _data(net)
    net = _cupy_net(net, monkeypatch)
    msg = r"x has NumPy chunks \(numpy\) but the network runs CuPy kernels \(backend 'cupy', module cupy\)"
    with pytest.raises(TypeError, match=msg) as err:                        # data-parallel
        batch_arrays(net, da.from_array(x, chunks=(5, -1)), y)
    assert "x.map_blocks(cupy.asarray)" in str(err.value)
    with pytest.raises(TypeError, match=msg):                               # domain decomposition
        domain._setup(net, da.from_array(x, chunks=(5, 8)), theta, None, 1)
    xf = da.from_array(fake(x), chunks=(5, -1), asarray=False)
    with pytest.raises(TypeError, match=r"y has NumPy arrays \(numpy\) but the network runs CuPy"):
        batch_arrays(net, xf, y)           # CuPy x, host y
    with pytest.raises(TypeError, match=r"y has NumPy arrays"):
        domain._like_x(net, xf, False, y, "y")


# ---------------------------------------------------------------------------------- the chunk's module
def test_halo_gather_and_fold_allocate_with_the_chunks_module(monkeypatch):
    rec = Recorder()
    monkeypatch.setitem(arrays.MODULES, "cupy", rec)
    rng = np.random.default_rng(3)
    field = rng.standard_normal((2, 9, 7))
    plan = HaloPlan(((4, 5), (3, 4)), (2, 1), ("periodic", "dirichlet"))
    starts = [(0, 4), (0, 3)]
    blocks = {idx: field[:, starts[0][idx[0]]:starts[0][idx[0]] + plan.chunks[0][idx[0]],
                         starts[1][idx[1]]:starts[1][idx[1]] + plan.chunks[1][idx[1]]] for idx in plan.blocks}
    for idx in plan.blocks:
        pieces = list(plan.pieces(idx))
        spec = domain._Spec(1, tuple((s, d) for _, s, d in pieces), (2, *plan.ext_shape(idx)), np.float64)
        want = plan.extend(field, idx)                                     # the gather by global indices
        assert rec.calls == []                                             # NumPy parts: numpy, not the recorder
        got = domain._assemble([fake(blocks[src]) for src, _, _ in pieces], spec)
        assert rec.calls == ["empty"]
        np.testing.assert_array_equal(got, want)
        rec.calls.clear()
        got = plan.extend(fake(field), idx)                                # a parameter's extension
        assert rec.calls == ["empty"]
        np.testing.assert_array_equal(got, want)
        rec.calls.clear()
        # the fold P^T: the extended block summed back onto its owners, as fold_into does
        ext, acc = rng.standard_normal(want.shape), np.zeros_like(field)
        plan.fold_into(acc, ext, idx)
        for owner in plan.blocks:
            entries = plan.folds[owner]
            parts = [fake(ext) if src == idx else fake(np.zeros((2, *plan.ext_shape(src)))) for src, _, _ in entries]
            spec = domain._Spec(0, tuple((s, d) for _, s, d in entries), (2, *blocks[owner].shape[1:]), np.float64)
            got = domain._assemble(parts, spec, True)
            assert rec.calls == ["zeros"]
            rec.calls.clear()
            np.testing.assert_array_equal(got, acc[:, starts[0][owner[0]]:starts[0][owner[0]] + plan.chunks[0][owner[0]],
                                                   starts[1][owner[1]]:starts[1][owner[1]] + plan.chunks[1][owner[1]]])


def test_gradient_sums_allocate_with_the_chunks_module(monkeypatch):
    rec = Recorder()
    monkeypatch.setitem(arrays.MODULES, "cupy", rec)
    g1, g2 = fake(np.arange(6.0).reshape(2, 3)), fake(np.ones((1, 3)))
    acc = domain._accumulate({"b": "time-dependent", "U": "homogeneous"}, 4, [(0, 2), (2, 3)],
                             [{"b": g1, "U": fake(1.0)}, {"b": g2, "U": fake(2.0)}])
    assert rec.calls == ["zeros"]
    np.testing.assert_array_equal(acc["b"], [[0, 1, 2], [3, 4, 5], [1, 1, 1], [0, 0, 0]])
    assert float(acc["U"]) == 3.0
