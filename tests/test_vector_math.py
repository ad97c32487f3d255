"""The vectorisable tanh (float64), exp and log (float32, float64) of the numba kernels
(npdegen.codegen.vector_math), against math.tanh / math.exp / math.log."""
import math
import re

import numpy as np
import pytest
import sympy as sp

from npdegen.codegen.vector_math import VTANH_SOURCE, Tanh64, exp_log_source, vector_activation, vector_sources

numba = pytest.importorskip("numba")


@pytest.fixture(scope="module")
def vtanh():
    ns = {"numba": numba, "math": math,
          "_JIT": dict(cache=False, nogil=True, error_model="numpy", boundscheck=False, fastmath={"contract"})}
    exec(VTANH_SOURCE, ns)
    fn = ns["_vtanh"]

    @numba.njit
    def apply(xs, out):
        for i in range(xs.size):
            out[i] = fn(xs[i])
    return apply


def test_within_a_few_ulp_of_tanh_everywhere(vtanh):
    rng = np.random.default_rng(0)
    xs = np.concatenate([np.linspace(-25, 25, 100001), np.logspace(-300, 1.3, 20000),
                         -np.logspace(-300, 1.3, 20000), 3 * rng.standard_normal(50000),
                         [0.0, -0.0, 0.625, -0.625, np.nextafter(0.625, 0), 18.7, 19.0, 5e-324]])
    out = np.empty_like(xs)
    vtanh(xs, out)
    ref = np.array([math.tanh(v) for v in xs])
    ulp = np.abs(out - ref) / np.spacing(np.maximum(np.abs(ref), np.finfo(float).tiny))
    assert ulp.max() <= 4, (ulp.max(), xs[np.argmax(ulp)])
    assert np.all(np.sign(out) == np.sign(ref))


def test_special_values(vtanh):
    xs = np.array([np.nan, np.inf, -np.inf, 1e300, -1e300])
    out = np.empty_like(xs)
    vtanh(xs, out)
    assert np.isnan(out[0]) and list(out[1:]) == [1.0, -1.0, 1.0, -1.0]


def test_sympy_side():
    x = sp.Symbol("x", real=True)
    assert vector_activation(sp.tanh(x) + sp.exp(x)) == Tanh64(x) + sp.exp(x)
    assert sp.diff(Tanh64(2 * x), x) == 2 * (1 - Tanh64(2 * x) ** 2)
    assert Tanh64(sp.Integer(0)) == 0


@pytest.mark.parametrize("activation", ["tanh", pytest.param("sigmoid", marks=pytest.mark.slow)])
def test_float64_numba_layers_equal_numpy(activation):
    import npdegen
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    U, D = sp.symbols("U D")
    layer = npdegen.NeuralPDE(z - U * z.diff(q) + D * z.diff(q, 2), z, activation=activation,
                              params={U: "heterogeneous", D: "homogeneous"})
    rng = np.random.default_rng(1)
    x0, y0 = 2 * rng.standard_normal((2, 3, 32))
    results = []
    for backend in ("numpy", "numba"):
        net = layer.compile(n=32, layers=6, omega=0.7, backend=backend)
        assert backend == "numpy" or net.kernel.ACTIVATIONS == "vector"
        theta = net.init_params(seed=0, scale=0.1, values={"D": 0.2})
        results.append(net.loss_and_grad(x0, y0, theta, input_grad=True))
    (l0, g0), (l1, g1) = results
    assert l1 == pytest.approx(l0, rel=1e-13)
    for k in g0:
        np.testing.assert_allclose(g1[k], g0[k], rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------- exp and log
def _compiled(dtype):
    """The kernel's _vexp/_vlog for ``dtype`` (the source the template inlines), applied to arrays."""
    ns = {"numba": numba, "math": math, "numpy": np, "_F": getattr(np, dtype),
          "_JIT": dict(cache=False, nogil=True, error_model="numpy", boundscheck=False, fastmath={"contract"})}
    exec(exp_log_source(dtype), ns)
    vexp, vlog = ns["_vexp"], ns["_vlog"]

    @numba.njit(**ns["_JIT"])              # the kernels' flags (FMA contraction)
    def apply(xs, which):
        out = np.empty_like(xs)
        for i in range(xs.size):
            out[i] = vexp(xs[i]) if which == 0 else vlog(xs[i])
        return out
    return apply


@pytest.fixture(scope="module", params=["float32", "float64"])
def explog(request):
    return request.param, _compiled(request.param)


def _ulps(out, ref, dtype):
    """|out − ref| in units of the dtype's spacing at ref (ref: float64; subnormal steps below tiny)."""
    spacing = np.spacing(np.maximum(np.abs(ref), np.finfo(dtype).tiny).astype(dtype)).astype(np.float64)
    return np.abs(out.astype(np.float64) - ref) / spacing


def _inputs(dtype):
    """float32: every 509th bit pattern (all binades, both signs); float64: uniform over the exp
    range, normals, log-uniform positives down to the subnormals, and around 0 and 1."""
    if dtype == "float32":
        v = np.arange(0, 2**32, 509, dtype=np.uint64).astype(np.uint32).view(np.float32)
        return v[np.isfinite(v)]
    rng = np.random.default_rng(0)
    return np.concatenate([rng.uniform(-750, 715, 500_000), rng.standard_normal(500_000),
                           np.exp(rng.uniform(-744, 709, 500_000)), np.linspace(-1, 1, 200_001),
                           1 + np.linspace(-1e-6, 1e-6, 2001), [5e-324, 1e-310, 2.2250738585072014e-308]])


def _math_exp(v):
    try:
        return math.exp(v)
    except OverflowError:
        return math.inf


def test_exp_within_one_ulp_of_math_exp(explog):
    dtype, apply = explog
    x = _inputs(dtype)
    x = x[(x > -110) & (x < 95)] if dtype == "float32" else x
    out = apply(x, 0)
    ref = np.array([_math_exp(v) for v in x.astype(np.float64)])
    finite = ref <= np.finfo(dtype).max
    assert np.all(np.isinf(out[~finite]))                  # overflow to +inf where the dtype does
    assert _ulps(out[finite], ref[finite], dtype).max() <= 1.0     # measured: 0.92 (float32), 1.0 (float64)
    assert np.all(out >= 0)


def test_log_within_one_ulp_of_math_log(explog):
    dtype, apply = explog
    x = np.abs(_inputs(dtype))
    x = x[x > 0]
    out = apply(x, 1)
    ref = np.array([math.log(v) for v in x.astype(np.float64)])
    assert _ulps(out, ref, dtype).max() <= 1.0             # measured: 0.83 (float32), 1.0 (float64)


def test_exp_log_special_values(explog):
    dtype, apply = explog
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -1.0, 1.0], dtype=dtype)
    e, lg = apply(x, 0), apply(x, 1)
    assert list(e[:4]) == [1.0, 1.0, np.inf, 0.0] and np.isnan(e[4])
    assert list(lg[:3]) == [-np.inf, -np.inf, np.inf] and np.isnan(lg[3]) and np.isnan(lg[4]) and np.isnan(lg[5])
    assert lg[6] == 0.0


def test_exp_log_loops_vectorise(explog):
    """The compiled loop uses packed SIMD arithmetic and calls no libm exp/log (a loop with
    math.exp, compiled the same way, does: the check can fail)."""
    dtype, _ = explog
    ns = {"numba": numba, "math": math, "numpy": np, "_F": getattr(np, dtype),
          "_JIT": dict(cache=False, nogil=True, error_model="numpy", boundscheck=False, fastmath={"contract"})}
    exec(exp_log_source(dtype), ns)
    vexp, vlog = ns["_vexp"], ns["_vlog"]

    def asm_of(fn):
        loop = numba.njit(**ns["_JIT"])(fn)
        xs = np.linspace(-3, 3, 64).astype(dtype)
        loop(xs, np.empty_like(xs))
        return loop.inspect_asm(loop.signatures[0])

    def ours(xs, out):
        for i in range(xs.size):
            out[i] = vlog(vexp(xs[i]) + xs[i] * xs[i])

    def libm(xs, out):
        for i in range(xs.size):
            out[i] = math.log(math.exp(xs[i]) + xs[i] * xs[i])
    libm_call = re.compile(r"\$(exp|log)f?\b")          # the address of libm's exp/log, called per value
    packed = re.compile(rf"\b(v?fmadd\d+|v?mul|v?add){'ps' if dtype == 'float32' else 'pd'}\s")
    asm = asm_of(ours)
    assert packed.search(asm) and not libm_call.search(asm)
    assert libm_call.search(asm_of(libm))


def test_printer_writes_vector_calls_outside_exact_mode():
    from npdegen.codegen.numba_printer import NumbaPrinter
    x = sp.Symbol("x", real=True)
    vec, plain = NumbaPrinter({"vector_math": True}), NumbaPrinter()
    assert vec.doprint(sp.exp(-x) + sp.log(1 + x)) == "_vlog(x + _F(1.0)) + _vexp(-x)" and vec.used == {"exp", "log"}
    assert plain.doprint(sp.exp(x)) == "math.exp(x)" and plain.used == set()
    assert "def _vexp" in vector_sources({"exp"}, "float32") and "def _vtanh" not in vector_sources({"exp"}, "float32")
    assert vector_sources(set(), "float64") == ""
    with pytest.raises(ValueError, match="float32 and float64"):
        exp_log_source("float16")
