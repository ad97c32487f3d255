"""Robust runtime: exact resume from checkpoints, a cache shared by many processes, cache CLI."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

import npdegen
from npdegen import NeuralPDE, train
from npdegen.cli import main
from npdegen.runtime import cache

q = sp.Symbol("q")
z = sp.Function("z")(q)
U, D, R = sp.symbols("U D R")


def network(family="heterogeneous"):
    layer = NeuralPDE(z + R * z - U * z.diff(q) + D * z.diff(q, 2), z, activation="tanh",
                      params={U: family, D: family, R: family}, bias=family)
    return layer.compile(n=16, layers=4, omega=0.7, dtype="float64")


@pytest.fixture
def data():
    rng = np.random.default_rng(3)
    return rng.standard_normal((4, 16)), 0.5 * rng.standard_normal((4, 16))


@pytest.mark.parametrize("method, family, optimizer, extra", [
    ("full", "heterogeneous", "adam", {}),
    ("full", "homogeneous", "sgd", {"momentum": 0.9}),
    ("layerwise", "time-dependent", "adam", {}),
])
def test_resume_reproduces_the_uninterrupted_run_bit_for_bit(tmp_path, data, method, family, optimizer, extra):
    net = network(family)
    x, y = data
    theta0 = net.init_params(seed=2, scale=0.05, values={"D": 0.1})
    kw = dict(steps=12, optimizer=optimizer, lr=0.01, method=method, **extra)
    whole, hist_whole = train(net, x, y, theta0, **kw)
    ckpt = tmp_path / "run.npz"
    # interrupted after 7 optimizer steps (mid-layer for layerwise: 12 steps per layer)
    with pytest.raises(KeyboardInterrupt):
        calls = {"n": 0}
        real = net.loss_and_grad if method == "full" else net.step_vjp

        def interrupting(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] > 7:
                raise KeyboardInterrupt
            return real(*args, **kwargs)
        setattr(net, "loss_and_grad" if method == "full" else "step_vjp", interrupting)
        try:
            train(net, x, y, theta0, checkpoint=ckpt, checkpoint_every=1, **kw)
        finally:
            setattr(net, "loss_and_grad" if method == "full" else "step_vjp", real)
    resumed, hist_resumed = train(net, x, y, theta0, resume=ckpt, **kw)
    for k in whole:
        assert np.array_equal(whole[k], resumed[k]), k
    assert hist_whole.loss == hist_resumed.loss


def test_resume_refuses_other_settings_and_bad_files(tmp_path, data):
    net = network()
    x, y = data
    theta0 = net.init_params(seed=2)
    ckpt = tmp_path / "run.npz"
    train(net, x, y, theta0, steps=2, checkpoint=ckpt)
    with pytest.raises(ValueError, match="other settings"):
        train(net, x, y, theta0, steps=2, lr=0.5, resume=ckpt)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not an npdegen training checkpoint"):
        train(net, x, y, theta0, steps=2, resume=bad)


def test_divergence_names_step_and_layer(data):
    net = network("time-dependent")
    x, y = data
    theta0 = net.init_params(seed=2, values={"D": 0.1})
    with pytest.raises(FloatingPointError, match=r"step \d+ \(layer \d") as info:
        with np.errstate(all="ignore"):
            train(net, x, 1e200 * np.ones_like(y), theta0, steps=50, optimizer="sgd", lr=1e30, method="layerwise")
    assert "stability of the last finite parameters" in str(info.value)
    assert "binding constraint" in str(info.value)


WORKER = textwrap.dedent("""
    import sys, numpy as np, sympy as sp
    from npdegen import NeuralPDE
    from npdegen.runtime import cache
    q = sp.Symbol("q"); z = sp.Function("z")(q); D = sp.Symbol("D")
    worker = int(sys.argv[1])
    for rep in range(20):
        cache._modules.clear()                      # force a fresh look at the files every time
        k = (worker + rep) % 3                      # same and different kernels across processes
        layer = NeuralPDE(z + D * z.diff(q, 2) * (k + 1), z, params={D: "homogeneous"}, name=f"shared{k}")
        net = layer.compile(n=12, layers=2, omega=0.5)
        out = net.forward(np.linspace(0, 1, 12), {"D": np.asarray(0.1)})
        expected = np.linspace(0, 1, 12)
        assert np.all(np.isfinite(out)), out
    print("ok")
""")


def subprocess_env(monkeypatch):
    """The environment for a child Python that imports this npdegen (also from a source tree);
    skips the test where even then the child cannot import it."""
    root = str(Path(npdegen.__file__).resolve().parent.parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    probe = subprocess.run([sys.executable, "-c", "import npdegen"], capture_output=True, text=True)
    if probe.returncode:
        pytest.skip(f"a child Python cannot import npdegen: {probe.stderr.strip().splitlines()[-1:]}")


def test_many_processes_share_the_cache_safely(tmp_path, monkeypatch):
    monkeypatch.setenv("NPDEGEN_CACHE_DIR", str(tmp_path / "cache"))
    subprocess_env(monkeypatch)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    procs = [subprocess.Popen([sys.executable, str(script), str(i)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(8)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0 and out.strip() == "ok", err
    names = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert not [n for n in names if n.endswith(".tmp")], names                   # no temporaries left
    kernels = [tmp_path / "cache" / n for n in names if n[0].isalpha()]
    assert len(kernels) == 3 and all(cache.verify(f.read_text()) for f in kernels)
    assert set(names) - {k.name for k in kernels} == {cache.KEY_NAME, cache.NUMBA_FOLDER}


def test_cache_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NPDEGEN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "_modules", {})
    network()
    assert main(["cache", "info"]) == 0
    assert "files:   1" in capsys.readouterr().out
    path = next((tmp_path / "cache").glob("*.py"))
    path.write_text(path.read_text() + "# tampered\n")
    main(["cache", "info"])
    assert "corrupt" in capsys.readouterr().out
    (tmp_path / "cache" / "notes.txt").write_text("not ours")
    assert main(["cache", "clear"]) == 0
    assert "removed 1" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(
        [cache.KEY_NAME, cache.NUMBA_FOLDER, "notes.txt"])


@pytest.mark.parametrize("boundary", ["periodic", pytest.param("dirichlet", marks=pytest.mark.slow),
                                      pytest.param("neumann", marks=pytest.mark.slow)])
def test_threads_give_bit_identical_results(monkeypatch, boundary):
    """numba's threads split the grid into chunks: a site's sums over the batch are owned by one
    thread and added in a fixed order, so one or two threads give the same bits."""
    numba = pytest.importorskip("numba", reason="numba is not installed (pip install 'npdegen[fast]')")
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one numba thread")
    from npdegen.runtime.network import Network
    monkeypatch.setattr(Network, "THREAD_MIN_SIZE", 0)
    layer = NeuralPDE(z + R * z - U * z.diff(q) + D * z.diff(q, 2), z, activation="softplus",
                      params={U: "heterogeneous", D: "homogeneous", R: "time-dependent"}, bias="heterogeneous")
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 3000)), rng.standard_normal((64, 3000))
    results = []
    for threads in (1, 2):
        net = layer.compile(n=3000, layers=3, omega=0.7, boundary=boundary, threads=threads, train_omega=True,
                            backend="numba")
        monkeypatch.setattr(net.kernel, "THREAD_MIN_SIZE", 0)
        assert net._workspace(64)["parallel"] == (threads > 1)
        theta = net.init_params(seed=1, scale=0.05, values={"D": 0.2})
        results.append(net.loss_and_grad(x, y, theta, input_grad=True))
    (l1, g1), (l3, g3) = results
    assert l1 == l3
    for k in g1:
        assert np.array_equal(g1[k], g3[k]), k
