"""Dask with CuPy chunks on GPU workers (issue 15 item 4). Marked ``gpu``; without CuPy, a usable
device or dask.distributed the module is skipped with one line saying why.

References, float64: the same network compiled with ``backend="cupy"`` in one process on the whole
array (itself checked against the NumPy backend in test_cuda_gpu.py) and the NumPy backend's
single-process run, both to 1e-12 relative to the largest entry. Checked:

1. Data-parallel loss_and_grad (sum, mean, relative; input gradient), vjp and forward of a
   ``dask.array`` of CuPy chunks, on the threaded scheduler, a LocalCluster of 2 worker threads and
   one of 2 worker processes (CuPy arrays serialised between them): results are CuPy arrays (the
   forward a dask array of CuPy chunks), bit-identical for every chunking and scheduler.
2. A bag of CuPy ``(x, y)`` shards.
3. Domain decomposition: a 2-D field of CuPy chunks split 2×2 on every boundary (and mixed), a 1-D
   field in 4 chunks with several rounds: forward, loss, parameter and input gradients equal to the
   unchunked CuPy and NumPy runs; the input gradient stays a dask array of CuPy chunks.
4. Mismatches on real arrays: CuPy chunks for a NumPy network and NumPy chunks for a CuPy network
   are TypeErrors naming both modules.
5. dask-cuda's LocalCUDACluster, where dask-cuda is installed (else that test skips).
"""
import numpy as np
import pytest
import sympy as sp

cupy = pytest.importorskip("cupy", reason="CuPy is not installed (pip install 'npdegen[cuda]')")
from npdegen.runtime.cupy_backend import gpu_status  # noqa: E402

_cupy, _WHY = gpu_status()
if _cupy is None:
    pytest.skip(_WHY, allow_module_level=True)
pytest.importorskip("distributed", reason="dask[distributed] not installed (pip install 'npdegen[dask]')")
import dask  # noqa: E402
import dask.array as da  # noqa: E402
import dask.bag as db  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402

import npdegen  # noqa: E402
from npdegen.distributed.arrays import module_name  # noqa: E402

pytestmark = pytest.mark.gpu
q, x, y = sp.symbols("q x y")
z1, z2 = sp.Function("z")(q), sp.Function("z")(x, y)
nu, U, D, R = sp.symbols("nu U D R")
CHUNKINGS = [37, 5, (3, 20, 14), (16, 21)]


def adr_1d():
    return npdegen.NeuralPDE(z1 + R * z1 - U * z1.diff(q) + D * z1.diff(q, 2), z1, activation="tanh",
                             params={U: "heterogeneous", D: "homogeneous", R: "heterogeneous"}, bias="time-dependent")


def burgers_2d():
    return npdegen.NeuralPDE(z2 + nu * (z2.diff(x, 2) + z2.diff(y, 2)) - U * z2 * z2.diff(x), z2, activation="tanh",
                             params={nu: "heterogeneous", U: "homogeneous"}, bias="time-dependent")


def pair(layer, **kw):
    """The layer compiled for the GPU and for the host, alike otherwise."""
    return layer.compile(backend="cupy", **kw), layer.compile(backend="numpy", **kw)


def host(a):
    return cupy.asnumpy(a) if isinstance(a, cupy.ndarray) else np.asarray(a)


def close(got, want, tol=1e-12):
    """Every array of ``got`` equals ``want``'s to ``tol`` relative to the largest entry (1 at least)."""
    assert sorted(got) == sorted(want)
    scale = max(1.0, *(float(np.max(np.abs(host(v)))) for v in want.values()))
    for k in want:
        assert np.max(np.abs(host(got[k]) - host(want[k]))) <= tol * scale, k


def data(net, batch, seed=0):
    rng = np.random.default_rng(seed)
    xs = rng.standard_normal((batch, *net.grid))
    return xs, np.tanh(xs + 0.3 * rng.standard_normal(xs.shape))


def theta_of(net, seed=1):
    values = {k: v for k, v in dict(nu=0.1, U=0.3, D=0.1, R=-0.05).items() if k in net.shapes}
    return {k: host(v) for k, v in net.init_params(seed=seed, scale=0.05, values=values).items()}


def on_gpu(a, chunks):
    out = da.from_array(cupy.asarray(a), chunks=chunks)
    assert module_name(out) == "cupy"
    return out


@pytest.fixture(scope="module")
def nets1d():
    return pair(adr_1d(), n=32, layers=4, omega=0.5, boundary="neumann")


@pytest.fixture(scope="module")
def clients():
    """The schedulers: threads, 2 worker threads, 2 worker processes (CuPy arrays serialised)."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as c1, \
            Client(c1, set_as_default=False) as threads, \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as c2, \
            Client(c2, set_as_default=False) as procs:
        yield {"threads": "threads", "2 worker threads": threads, "2 worker processes": procs}


# ---------------------------------------------------------------------------------- data-parallel
def test_data_parallel_gradients_equal_single_process_cupy_and_numpy(nets1d, clients):
    gpu, cpu = nets1d
    xs, ys = data(gpu, 37)
    theta = theta_of(cpu)
    l_gpu, g_gpu = gpu.loss_and_grad(cupy.asarray(xs), cupy.asarray(ys), theta, input_grad=True)
    l_cpu, g_cpu = cpu.loss_and_grad(xs, ys, theta, input_grad=True)
    first = None
    for name, client in clients.items():
        for chunks in CHUNKINGS:
            xd = on_gpu(xs, (chunks, -1))
            loss, grads = npdegen.distributed.loss_and_grad(gpu, xd, cupy.asarray(ys), theta, input_grad=True,
                                                            client=client)
            assert isinstance(loss, float)
            assert all(isinstance(g, cupy.ndarray) for g in grads.values()), (name, chunks)
            assert loss == pytest.approx(l_gpu, rel=1e-12) and loss == pytest.approx(l_cpu, rel=1e-12)
            close(grads, g_gpu)
            close(grads, g_cpu)
            if first is None:
                first = (loss, {k: host(v) for k, v in grads.items()})
            assert loss == first[0], (name, chunks)                       # bit-identical
            for k, v in grads.items():
                np.testing.assert_array_equal(host(v), first[1][k], err_msg=f"{k} {name} {chunks}")


@pytest.mark.parametrize("kind", ["mean", "relative"])
def test_data_parallel_losses_equal_the_numpy_chunks(nets1d, clients, kind):
    gpu, cpu = nets1d
    xs, ys = data(gpu, 29, seed=2)
    theta = theta_of(cpu)
    want = npdegen.distributed.loss_and_grad(cpu, da.from_array(xs, chunks=(8, -1)), ys, theta, kind=kind,
                                             client="threads")
    got = npdegen.distributed.loss_and_grad(gpu, on_gpu(xs, (13, -1)), on_gpu(ys, (7, -1)), theta, kind=kind,
                                            client=clients["2 worker processes"])
    assert got[0] == pytest.approx(want[0], rel=1e-12)
    close(got[1], want[1])


def test_forward_and_vjp_keep_cupy_chunks(nets1d, clients):
    gpu, cpu = nets1d
    xs, ys = data(gpu, 19, seed=3)
    theta = theta_of(cpu)
    xd = on_gpu(xs, (6, -1))
    out = gpu.forward(xd, theta)
    assert module_name(out) == "cupy"
    z = out.compute(scheduler=clients["2 worker threads"])
    assert isinstance(z, cupy.ndarray)
    close({"z": z}, {"z": gpu.forward(cupy.asarray(xs), theta)})
    close({"z": z}, {"z": cpu.forward(xs, theta)})
    traj = gpu.forward(xd, theta, trajectory=True).compute()
    close({"t": traj}, {"t": cpu.forward(xs, theta, trajectory=True)})
    dx, grads = gpu.vjp(xd, theta, on_gpu(ys, (5, -1)))
    dx0, g0 = cpu.vjp(xs, theta, ys)
    assert isinstance(dx, cupy.ndarray)
    close({"x": dx, **grads}, {"x": dx0, **g0})


def test_bag_of_cupy_shards(nets1d):
    gpu, cpu = nets1d
    xs, ys = data(gpu, 30, seed=4)
    theta = theta_of(cpu)
    bounds = (0, 7, 19, 30)
    shards = [(cupy.asarray(xs[a:b]), cupy.asarray(ys[a:b])) for a, b in zip(bounds, bounds[1:])]
    loss, grads = gpu.loss_and_grad(db.from_sequence(shards, npartitions=2), None, theta)
    l0, g0 = cpu.loss_and_grad(xs, ys, theta)
    assert loss == pytest.approx(l0, rel=1e-12)
    assert all(isinstance(g, cupy.ndarray) for g in grads.values())
    close(grads, g0)


# ---------------------------------------------------------------------------------- domain decomposition
def check_domain(gpu, cpu, xs, ys, chunks, scheduler="threads", **kw):
    from npdegen.distributed.domain import forward_domain, loss_and_grad_domain
    theta = theta_of(cpu)
    xd = on_gpu(xs, chunks)
    with dask.config.set(scheduler=scheduler):
        out = forward_domain(gpu, xd, theta, **kw)
        assert module_name(out) == "cupy" and out.chunks == xd.chunks
        z = out.compute()
        assert isinstance(z, cupy.ndarray)
        close({"z": z}, {"z": gpu.forward(cupy.asarray(xs), theta)})
        close({"z": z}, {"z": cpu.forward(xs, theta)})
        loss, grads = loss_and_grad_domain(gpu, xd, cupy.asarray(ys), theta, input_grad=True, **kw)
        dx = grads.pop("x")
        assert module_name(dx) == "cupy" and dx.chunks == xd.chunks
        assert all(isinstance(g, cupy.ndarray) for g in grads.values())
        grads["x"] = dx.compute()
        assert isinstance(grads["x"], cupy.ndarray)
    l_gpu, g_gpu = gpu.loss_and_grad(cupy.asarray(xs), cupy.asarray(ys), theta, input_grad=True)
    l_cpu, g_cpu = cpu.loss_and_grad(xs, ys, theta, input_grad=True)
    assert loss == pytest.approx(l_gpu, rel=1e-12) and loss == pytest.approx(l_cpu, rel=1e-12)
    close(grads, g_gpu)
    close(grads, g_cpu)


@pytest.mark.parametrize("boundary", ["periodic", "dirichlet", "neumann", ("neumann", "periodic")])
def test_domain_2d_cupy_chunks_2x2(boundary):
    gpu, cpu = pair(burgers_2d(), n=(12, 10), spacing=(1.0, 0.8), layers=3, omega=0.8, boundary=boundary)
    xs, ys = data(gpu, 3)
    check_domain(gpu, cpu, xs, ys, (2, 6, 5))


def test_domain_1d_cupy_chunks_several_rounds_on_worker_processes(clients):
    gpu, cpu = pair(adr_1d(), n=40, spacing=0.5, layers=4, omega=0.7, boundary="dirichlet")
    xs, ys = data(gpu, 2, seed=5)
    check_domain(gpu, cpu, xs, ys, (1, 10), scheduler=clients["2 worker processes"], block=2)


# ---------------------------------------------------------------------------------- mismatches
def test_mismatched_modules_are_refused(nets1d):
    gpu, cpu = nets1d
    xs, ys = data(gpu, 8)
    theta = theta_of(cpu)
    with pytest.raises(TypeError, match=r"x has CuPy chunks \(cupy\) but the network runs NumPy kernels"):
        cpu.loss_and_grad(on_gpu(xs, (4, -1)), ys, theta)
    with pytest.raises(TypeError, match=r"x has CuPy chunks \(cupy\) but the network runs NumPy kernels"):
        cpu.forward(on_gpu(xs, (4, 16)), theta)
    with pytest.raises(TypeError, match=r"x has NumPy chunks \(numpy\) but the network runs CuPy kernels"):
        gpu.loss_and_grad(da.from_array(xs, chunks=(4, -1)), cupy.asarray(ys), theta)
    with pytest.raises(TypeError, match=r"y has NumPy arrays \(numpy\) but the network runs CuPy kernels"):
        gpu.loss_and_grad(on_gpu(xs, (4, -1)), ys, theta)
    with pytest.raises(TypeError, match=r"x has NumPy chunks \(numpy\) but the network runs CuPy kernels"):
        gpu.forward(da.from_array(xs, chunks=(4, 16)), theta)


def test_local_cuda_cluster(nets1d):
    dask_cuda = pytest.importorskip("dask_cuda", reason="dask-cuda is not installed (pip install dask-cuda)")
    gpu, cpu = nets1d
    xs, ys = data(gpu, 21, seed=6)
    theta = theta_of(cpu)
    with dask_cuda.LocalCUDACluster(n_workers=1, dashboard_address=":0") as cluster, Client(cluster) as client:
        loss, grads = gpu.loss_and_grad(on_gpu(xs, (8, -1)), cupy.asarray(ys), theta)   # the default client
        assert client.run(lambda: __import__("cupy").cuda.runtime.getDeviceCount())
    l0, g0 = cpu.loss_and_grad(xs, ys, theta)
    assert loss == pytest.approx(l0, rel=1e-12)
    close(grads, g0)
