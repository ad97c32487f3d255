"""Data-parallel training on Dask (issue 15, item 2): the batch split across workers, gradients summed
in a fixed order. References: the single-process network (to 1e-12, float64) and a hand-written
recursive pairwise sum for the reduction order; bit-identity asserted across chunkings, worker
counts, schedulers and a worker killed mid-run."""
import os
import pickle
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("distributed", reason="dask[distributed] not installed (pip install 'npdegen[dask]')")
import dask.array as da  # noqa: E402
import dask.bag as db  # noqa: E402
from distributed import Client, LocalCluster, get_task_stream  # noqa: E402

import npdegen  # noqa: E402
import npdegen.distributed as dd  # noqa: E402
from npdegen.distributed import data_parallel as dp  # noqa: E402
from npdegen.distributed.shipping import local_networks  # noqa: E402
from npdegen.distributed.tree import Tree  # noqa: E402
from npdegen.runtime.data import loss_and_grad as local_loss_and_grad  # noqa: E402

CHUNKINGS = [37, 5, 8, (3, 20, 14), 1, (16, 21)]


def _cluster(workers, processes=False):
    return LocalCluster(n_workers=workers, threads_per_worker=1, processes=processes, dashboard_address=":0")


@pytest.fixture(scope="module")
def net1d():
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    U, D, R = sp.symbols("U D R")
    layer = npdegen.NeuralPDE(z + R * z - U * z.diff(q) + D * z.diff(q, 2), z, activation="tanh",
                              params={U: "heterogeneous", D: "homogeneous", R: "heterogeneous"},
                              bias="time-dependent")
    return layer.compile(n=32, layers=4, omega=0.5, boundary="neumann")


@pytest.fixture(scope="module")
def net2d():
    x, y = sp.symbols("x y")
    f = sp.Function("z")(x, y)
    nu, rho, X = sp.symbols("nu rho X")
    layer = npdegen.NeuralPDE(f + nu * f.diff(y, 2) - f * f.diff(x) / 10, f, activation=rho * sp.tanh(X),
                              params={nu: "heterogeneous", rho: "homogeneous"})
    return layer.compile(n=(6, 5), spacing=(1.0, 0.5), layers=3, boundary=("periodic", "dirichlet"))


def _data(net, batch=37, seed=0):
    rng = np.random.default_rng(seed)
    theta = net.init_params(seed=1, scale=0.1, values={k: 0.1 for k in ("D", "nu", "rho") if k in net.shapes})
    x = rng.standard_normal((batch, *net.grid))
    return x, np.tanh(x + 0.3 * rng.standard_normal(x.shape)), theta


def _dask(a, chunks):
    return da.from_array(a, chunks=(chunks,) + tuple(-1 for _ in a.shape[1:]))


def _close(got, want, tol=1e-12):
    scale = max(1.0, *(float(np.max(np.abs(v))) for v in want.values()))
    for k in want:
        assert np.max(np.abs(got[k] - want[k])) <= tol * scale, k


def _same(a, b):
    assert a[0] == b[0]
    assert sorted(a[1]) == sorted(b[1])
    for k in a[1]:
        np.testing.assert_array_equal(a[1][k], b[1][k])


# ---------------------------------------------------------------------------------------- the order
def _pairwise(values, lo, size, m):
    """Hand-written reference of the dyadic tree: the leaves [lo, lo + size) ∩ [0, m), summed."""
    if size == 1:
        return values[lo]
    half = size // 2
    if lo + half >= m:
        return _pairwise(values, lo, half, m)
    return _pairwise(values, lo, half, m) + _pairwise(values, lo + half, half, m)


@settings(derandomize=True, max_examples=40, deadline=None)
@given(st.data())
def test_tree_is_one_order_for_every_partition_and_merge_order(data):
    m = data.draw(st.integers(1, 40))
    exps = data.draw(st.lists(st.integers(-20, 20), min_size=m, max_size=m))
    values = [float((-1) ** i * 1.37 ** e * 10.0 ** (e % 7)) for i, e in enumerate(exps)]   # non-associative
    tree = Tree(m, lambda a, b: a + b)
    want = _pairwise(values, 0, 1 << tree.levels, m)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, m - 1)), max_size=6)) if m > 1 else []))
    bounds = [0, *[c for c in cuts if 0 < c < m], m]
    pieces = [tree.leaf_piece(a, values[a:b]) for a, b in zip(bounds, bounds[1:])]
    order = data.draw(st.permutations(range(len(pieces))))
    assert tree.root(tree.merge(*[pieces[i] for i in order])) == want
    assert all(len(p) <= 2 * max(1, (b - a).bit_length()) for p, a, b in zip(pieces, bounds, bounds[1:]))


def test_tree_refuses_missing_and_repeated_leaves():
    tree = Tree(5, lambda a, b: a + b)
    with pytest.raises(ValueError, match="cover 3 of 5 leaves"):
        tree.root(tree.leaf_piece(0, [1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="given twice"):
        tree.merge(tree.leaf_piece(0, [1.0, 2.0]), tree.leaf_piece(1, [2.0]))
    with pytest.raises(ValueError, match="at least one leaf"):
        Tree(0, None)


def test_aligned_chunks_move_boundaries_to_blocks():
    assert dp.aligned((5, 5, 5, 5, 5, 5, 5, 2), 8) == (8, 8, 8, 8, 5)
    assert dp.aligned((37,), 8) == (37,)
    assert dp.aligned((16, 21), 8) == (16, 21)
    assert dp.aligned((3, 3, 3), 8) == (8, 1)         # 3 -> 0 (gone), 6 -> 8


# ---------------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("which", ["net1d", "net2d"])
def test_gradients_bit_identical_for_any_chunking_and_workers(which, request):
    net = request.getfixturevalue(which)
    x, y, theta = _data(net)
    want = net.loss_and_grad(x, y, theta)
    results = [net.loss_and_grad(_dask(x, c), _dask(y, c), theta) for c in CHUNKINGS]   # threaded scheduler
    for workers in (1, 2, 3) if which == "net1d" else (2,):
        with _cluster(workers) as cluster, Client(cluster) as client:
            with get_task_stream(client) as stream:
                for c in (CHUNKINGS if workers == 2 else CHUNKINGS[:3]):
                    results.append(dd.loss_and_grad(net, _dask(x, c), y, theta, client=client))
            assert any("_chunk" in str(t["key"]) for t in stream.data)      # it ran on the cluster
            results.append(net.loss_and_grad(_dask(x, 6), y, theta))        # the current client
    assert abs(results[0][0] - want[0]) <= 1e-12 * want[0]
    _close(results[0][1], want[1])
    for r in results[1:]:
        _same(r, results[0])


def test_vjp_forward_and_input_gradient_match_one_process(net1d):
    x, y, theta = _data(net1d)
    c = np.random.default_rng(3).standard_normal(x.shape)
    dx, grads = net1d.vjp(_dask(x, 7), theta, _dask(c, 9))
    dx0, grads0 = net1d.vjp(x, theta, c)
    np.testing.assert_allclose(dx, dx0, rtol=0, atol=1e-12)
    _close(grads, grads0)
    _same((0.0, net1d.vjp(_dask(x, 37), theta, c)[1]), (0.0, grads))
    loss, g = net1d.loss_and_grad(_dask(x, 7), y, theta, input_grad=True)
    np.testing.assert_allclose(g["x"], net1d.loss_and_grad(x, y, theta, input_grad=True)[1]["x"], rtol=0, atol=1e-12)
    out = net1d.forward(_dask(x, 5), theta)
    assert isinstance(out, da.Array) and out.chunks[0] == (5,) * 7 + (2,)
    np.testing.assert_allclose(out.compute(), net1d.forward(x, theta), rtol=0, atol=1e-12)
    traj = net1d.forward(_dask(x, 5), theta, trajectory=True)
    np.testing.assert_allclose(traj.compute(), net1d.forward(x, theta, trajectory=True), rtol=0, atol=1e-12)
    one = net1d.loss_and_grad(da.from_array(x[3]), y[3], theta, input_grad=True)
    ref = net1d.loss_and_grad(x[3], y[3], theta, input_grad=True)
    assert one[1]["x"].shape == (32,) and abs(one[0] - ref[0]) <= 1e-12 * ref[0]
    np.testing.assert_allclose(net1d.forward(da.from_array(x[3]), theta).compute(), net1d.forward(x[3], theta),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ["mean", "relative"])
def test_averaged_losses_match_the_training_losses(net2d, kind):
    x, y, theta = _data(net2d, batch=21)
    want = local_loss_and_grad(net2d, x, y, theta, kind)
    got = [local_loss_and_grad(net2d, _dask(x, c), _dask(y, c), theta, kind) for c in (4, 21, (9, 12))]
    assert abs(got[0][0] - want[0]) <= 1e-12 * want[0]
    _close(got[0][1], want[1])
    for r in got[1:]:
        _same(r, got[0])


def test_shards_in_a_bag_or_a_list(net1d):
    x, y, theta = _data(net1d)
    shards = [(x[:10], y[:10]), (x[10:11], y[10:11]), (x[11:30], y[11:30]), (x[30:], y[30:])]
    want = net1d.loss_and_grad(x, y, theta)
    listed = dd.loss_and_grad(net1d, shards, None, theta)
    assert abs(listed[0] - want[0]) <= 1e-12 * want[0]
    _close(listed[1], want[1])
    for parts in (1, 2, 4):
        _same(net1d.loss_and_grad(db.from_sequence(shards, npartitions=parts), None, theta), listed)
    outs = net1d.forward(db.from_sequence([x[:5], x[5:]], npartitions=2), theta).compute(scheduler="threads")
    np.testing.assert_allclose(np.concatenate(outs), net1d.forward(x, theta), rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------- training
def test_training_on_a_cluster_reaches_the_one_process_parameters(net1d):
    x, y, theta = _data(net1d)
    runs = {}
    for batch_size in (None, 12):
        kw = dict(steps=8, lr=2e-2, progress=False, batch_size=batch_size)
        local, _ = npdegen.train(net1d, x, y, theta, **kw)
        threaded, hist = npdegen.train(net1d, _dask(x, 8), _dask(y, 8), theta, **kw)
        runs[batch_size] = threaded, hist
        assert hist.layer_loss is None and len(hist.loss) == 8
        _close(threaded, local, 1e-10)
        assert max(float(np.max(np.abs(threaded[k] - theta[k]))) for k in theta) > 1e-3    # it trained
    with _cluster(2) as cluster, Client(cluster):
        for batch_size in (None, 12):
            kw = dict(steps=8, lr=2e-2, progress=False, batch_size=batch_size)
            on_cluster, hist = npdegen.train(net1d, _dask(x, 5), _dask(y, 5), theta, **kw)
            _same((0.0, on_cluster), (0.0, runs[batch_size][0]))
            assert hist.loss == runs[batch_size][1].loss
        bag = db.from_sequence([(x[:20], y[:20]), (x[20:], y[20:])], npartitions=2)
        from_bag, _ = npdegen.train(net1d, bag, None, theta, steps=3, lr=2e-2, progress=False)
    _close(from_bag, npdegen.train(net1d, x, y, theta, steps=3, lr=2e-2, progress=False)[0], 1e-10)


# ---------------------------------------------------------------------------------------- faults
@pytest.mark.slow            # a process cluster: 10-45 s on 2 cores (run with --slow)
def test_a_worker_killed_mid_run_is_retried_with_the_same_result(net1d):
    net = net1d.recipe[0].compile(n=2048, layers=32, omega=0.5, boundary="neumann")
    theta = _data(net, batch=1)[2]
    xd = da.random.default_rng(0).standard_normal((96, 2048), chunks=(16, -1))     # made on the workers
    yd = da.tanh(xd + 0.1)
    want = dd.loss_and_grad(net, xd, yd, theta, client="sync")
    payload = len(dd.ship(net).payload)
    assert payload < 10_000                                 # the recipe travels, not a kernel
    with _cluster(2, processes=True) as cluster, Client(cluster) as client:
        pids = client.run(os.getpid)
        result, errors = {}, []

        def run():
            try:
                result["value"] = dd.loss_and_grad(net, xd, yd, theta, client=client)
            except Exception as exc:                        # pragma: no cover - reported below
                errors.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        deadline, victim = time.monotonic() + 60, None
        while victim is None and time.monotonic() < deadline:
            busy = [a for a, keys in client.processing().items() if any("_chunk" in str(k) for k in keys)]
            victim = busy[0] if busy else time.sleep(0.005)
        assert victim is not None, "no chunk task was ever running"
        running = thread.is_alive()
        os.kill(pids[victim], signal.SIGKILL)
        thread.join(120)
        assert running and not thread.is_alive() and not errors, errors
        _same(result["value"], want)
        assert pids[victim] not in client.run(os.getpid).values()      # that worker process is gone
        copies = [c for per in client.run(local_networks).values() for c in per]
    cache = os.environ["NPDEGEN_CACHE_DIR"]     # each worker compiled the recipe from the (shared) cache
    assert copies and all(c["network"] == repr(net) and c["kernel"].startswith(cache) and c["threads"] == 1
                          for c in copies)


# ---------------------------------------------------------------------------------------- routing, errors
def test_runtime_does_not_import_dask():
    code = "import sys, npdegen; assert 'dask' not in sys.modules and 'npdegen.distributed' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_grid_chunks_go_to_domain_decomposition(net1d, monkeypatch):
    import npdegen.distributed.domain as domain
    x, y, theta = _data(net1d, batch=4)
    calls = []
    monkeypatch.setattr(domain, "forward_domain", lambda *a, **k: calls.append("forward") or "f")
    monkeypatch.setattr(domain, "loss_and_grad_domain", lambda *a, **k: calls.append(k) or "g")
    monkeypatch.setattr(domain, "vjp_domain", lambda *a, **k: calls.append("vjp") or "v")
    xg = da.from_array(x, chunks=(4, 16))
    assert net1d.forward(xg, theta) == "f" and net1d.loss_and_grad(xg, y, theta, input_grad=True) == "g"
    assert net1d.vjp(xg, theta, x) == "v"
    assert calls == ["forward", {"input_grad": True, "kind": "sum"}, "vjp"]
    with pytest.raises(NotImplementedError, match="relative"):
        dd.dispatch(net1d, "loss_and_grad", xg, y, theta, kind="relative")
    monkeypatch.setitem(sys.modules, "npdegen.distributed.domain", None)
    with pytest.raises(NotImplementedError, match="domain decomposition"):
        net1d.forward(xg, theta)
    np.testing.assert_allclose(dd.forward(net1d, xg, theta).compute(), net1d.forward(x, theta), atol=1e-12)


def test_bad_input_is_refused_at_the_api(net1d):
    x, y, theta = _data(net1d, batch=6)
    xd = _dask(x, 3)
    with pytest.raises(ValueError, match="shape"):
        net1d.loss_and_grad(xd, y[:, :5], theta)
    with pytest.raises(ValueError, match="must have shape"):
        net1d.loss_and_grad(_dask(x[:, :5], 3), y[:, :5], theta)
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        net1d.loss_and_grad(xd[xd[:, 0] > 0], y, theta)
    with pytest.raises(ValueError, match="keep=True"):
        net1d.forward(xd, theta, keep=True)
    with pytest.raises(ValueError, match="block"):
        dd.loss_and_grad(net1d, xd, y, theta, block=0)
    with pytest.raises(ValueError, match="kind"):
        dd.loss_and_grad(net1d, xd, y, theta, kind="max")
    with pytest.raises(TypeError, match="client"):
        dd.loss_and_grad(net1d, xd, y, theta, client=3)
    with pytest.raises(TypeError, match="y cannot be a bag"):
        net1d.loss_and_grad(xd, db.from_sequence([y]), theta)
    with pytest.raises(ValueError, match="no batch_size"):
        npdegen.train(net1d, db.from_sequence([(x, y)]), None, theta, steps=1, batch_size=2, progress=False)
    bad = x.copy()
    bad[4, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        net1d.loss_and_grad(_dask(bad, 3), y, theta)
    with pytest.raises(ValueError, match="pairs"):
        dd.loss_and_grad(net1d, [x], None, theta)
    assert pickle.loads(pickle.dumps(dd.ship(net1d))).network().threads == 1
