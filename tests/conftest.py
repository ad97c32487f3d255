"""Shared fixtures: an isolated kernel cache and the neural ADR layer in its usual forms."""
import gc

import numpy as np
import pytest
import sympy as sp


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Every test session writes generated kernels into its own cache folder."""
    mp = pytest.MonkeyPatch()
    mp.setenv("NPDEGEN_CACHE_DIR", str(tmp_path_factory.mktemp("kernel-cache")))
    yield
    mp.undo()


@pytest.fixture
def adr():
    """Symbols of the neural ADR layer: (q, z, U, D, R)."""
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    U, D, R = sp.symbols("U D R")
    return q, z, U, D, R


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", default=False,
                     help="also run the tests marked slow (the full matrices; NPDEGEN_SLOW=1 does the same)")


def pytest_collection_finish(session):
    """Fewer full garbage collections in the one long test process. numba's compiles leave large cyclic
    graphs, and with the default thresholds (700, 10, 10) each full collection walks the whole heap
    (sympy, numba, torch, jax, all the tests' modules); after collection those modules go to the
    permanent generation (gc.freeze) and every generation is collected ~14x less often. No test calls
    or relies on the collector (when a cycle is freed changes no result)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def pytest_collection_modifyitems(config, items):
    """CI runs the fast suite; the full matrices (marked slow) run with --slow or NPDEGEN_SLOW=1."""
    import os
    if config.getoption("--slow") or os.environ.get("NPDEGEN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow matrix: run with --slow (or NPDEGEN_SLOW=1)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
