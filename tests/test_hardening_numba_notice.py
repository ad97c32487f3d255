"""Issue 11, "first numba use compiles silently for 10-20 s": a numba kernel without cached machine
code is announced by one WARNING line on the "npdegen" logger (stderr when logging is not configured,
so notebooks show it too); a second load in the process and a fresh process with a warm cache stay
silent. The kernels here are loaded, never run: numba compiles lazily, so these tests take seconds."""
import logging
import os
import subprocess
import sys
import textwrap

import pytest
import sympy as sp

import npdegen
from npdegen.runtime import cache

numba = pytest.importorskip("numba")
NOTICE = "compiling numba kernel"


@pytest.fixture
def folder(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("NPDEGEN_CACHE_DIR", str(path))
    monkeypatch.setattr(cache, "_modules", {})
    return path


def notices(caplog):
    return [r for r in caplog.records if r.name == "npdegen" and NOTICE in r.getMessage()]


def adr_1d():
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    U, D, R = sp.symbols("U D R")
    return npdegen.NeuralPDE(z + R * z - U * z.diff(q) + D * z.diff(q, 2), z, activation="tanh",
                             params={U: "homogeneous", D: "homogeneous", R: "homogeneous"})


def adr_2d():
    x, y = sp.symbols("x y")
    z = sp.Function("z")(x, y)
    D = sp.Symbol("D")
    return npdegen.NeuralPDE(z + D * (z.diff(x, 2) + z.diff(y, 2)), z, params={D: "homogeneous"})


@pytest.mark.parametrize("make, n", [(adr_1d, 16), (adr_2d, (8, 8))], ids=["1-D", "step IR 2-D"])
def test_first_load_says_so_once(folder, caplog, make, n):
    layer = make()
    with caplog.at_level(logging.WARNING, logger="npdegen"):
        net = layer.compile(n=n, layers=2, backend="numba")
        first = notices(caplog)
        layer.compile(n=n, layers=2, backend="numba")          # same process: the module is reused
    assert len(first) == 1 and len(notices(caplog)) == 1
    msg = first[0].getMessage()
    assert msg.startswith("npdegen: compiling numba kernel ") and "first use" in msg and "cached afterwards" in msg
    assert "\n" not in msg and first[0].levelno == logging.WARNING
    stem = msg.split("kernel ", 1)[1].split(" ", 1)[0]
    assert (folder / f"{stem}.py").is_file() and "numba" in stem
    assert net.kernel.__file__ == str(folder / f"{stem}.py")


def test_numpy_kernels_are_silent(folder, caplog):
    with caplog.at_level(logging.WARNING, logger="npdegen"):
        adr_1d().compile(n=16, layers=2, backend="numpy")
    assert not notices(caplog)


def _module(body_extra=""):
    return ("import numba\n\n@numba.njit(cache=True)\ndef plus_one(x):\n    return x + 1\n\n"
            + body_extra + "# key-notice\n")


def test_warm_numba_cache_is_silent(folder, caplog):
    """Once numba has written its index for the kernel, a reload (as in a fresh process) is silent;
    a rewritten kernel file (stale index) is announced again."""
    make = lambda body: (lambda: {".py": cache.stamp(body)})
    with caplog.at_level(logging.WARNING, logger="npdegen"):
        mod = cache.load_module("key-notice", "nb", make(_module()))
        assert len(notices(caplog)) == 1
        assert mod.plus_one(41) == 42                           # compiles and writes numba's index
        assert any(p.name.startswith("nb.") and p.suffix == ".nbi" for p in (folder / "__pycache__").iterdir())
        cache._modules.clear()
        cache.load_module("key-notice", "nb", make(_module()))
        assert len(notices(caplog)) == 1
        cache._modules.clear()                                  # new content: the file is rewritten
        cache.load_module("key-notice-2", "nb", make(_module("# v2 key-notice-2\n")))
        assert len(notices(caplog)) == 2


def test_fresh_process_with_warm_cache_is_silent_and_stderr_shows_the_line(tmp_path):
    """Without any logging configuration (a notebook, a script) the line reaches stderr; a second
    process on the same cache prints nothing."""
    env = {**os.environ, "NPDEGEN_CACHE_DIR": str(tmp_path / "cache")}
    script = textwrap.dedent("""
        import numpy as np, sympy as sp, npdegen
        q = sp.Symbol("q"); z = sp.Function("z")(q); D = sp.Symbol("D")
        layer = npdegen.NeuralPDE(z + D * z.diff(q, 2), z, params={D: "homogeneous"})
        net = layer.compile(n=8, layers=1, backend="numba")
        net.kernel.fill_halo(np.zeros((1, 10)))        # compiles one function: numba writes its index
        print("ok")
    """)
    runs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
            for _ in range(2)]
    for r in runs:
        assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
    assert runs[0].stderr.count(NOTICE) == 1, runs[0].stderr
    assert NOTICE not in runs[1].stderr, runs[1].stderr
