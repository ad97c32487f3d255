"""Shared fixtures: an isolated kernel cache and the neural ADR layer in its usual forms."""
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
