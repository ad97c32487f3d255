"""The hand-written benchmark references (benchmarks/references.py) agree with
each other and with finite differences.  These are correctness tests only;
nothing here is timed."""

import pathlib
import sys

import numpy as np
import pytest

_BENCH = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"
if str(_BENCH) not in sys.path:
    sys.path.insert(0, str(_BENCH))

import references as ref  # noqa: E402

# torch emits a DeprecationWarning from its own internals when torch.compile loads
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

H = 0.9
OMEGA = 0.7
L = 4


def _case(dtype=np.float64, batch=3, n=16, seed=1234):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, n))
    y = rng.normal(size=(batch, n))
    U = rng.uniform(-0.5, 0.5, n)
    D = rng.uniform(0.05, 0.4, n)
    R = rng.uniform(-0.3, 0.3, n)
    b = rng.uniform(-0.3, 0.3, n)
    return tuple(np.asarray(a, dtype=dtype) for a in (x, y, U, D, R, b))


def _close(a, b, rtol):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    scale = max(np.max(np.abs(b)), 1e-300)
    return np.max(np.abs(a - b)) / scale <= rtol


def _check_agree(got, want, rtol):
    (lg, gg), (lw, gw) = got, want
    assert abs(lg - lw) <= rtol * abs(lw), (lg, lw)
    assert set(gg) == {"U", "D", "R", "b"}
    for k in "UDRb":
        assert gg[k].shape == gw[k].shape
        assert _close(gg[k], gw[k], rtol), (k, gg[k], gw[k])


def test_buffered_matches_idiomatic_float64():
    args = _case()
    want = ref.numpy_idiomatic(*args, H, OMEGA, L)
    got = ref.numpy_buffered(*args, H, OMEGA, L)
    _check_agree(got, want, 1e-10)


@pytest.mark.parametrize("shape, block", [((3, 16), 8), ((3, 16), 20), ((5, 7), 14), ((1, 33), 5)])
@pytest.mark.parametrize("reuse", [True, False])
def test_buffered_blocking_and_reuse(shape, block, reuse):
    """Row blocks, column chunks and single-block paths give the same result,
    and a reused workspace does not leak state between calls."""
    args = _case(batch=shape[0], n=shape[1], seed=7)
    want = ref.numpy_idiomatic(*args, H, OMEGA, 5)
    for _ in range(2):
        got = ref.numpy_buffered(*args, H, OMEGA, 5, block_elems=block, reuse_workspace=reuse)
        _check_agree(got, want, 1e-10)
    ref.clear_workspace_cache()


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-9), (np.float32, 1e-4)])
def test_buffered_reuse_tanh_variant(dtype, rtol):
    """tanh(Z_t) read off the trajectory instead of recomputed: same result."""
    args = _case(dtype)
    want = ref.numpy_idiomatic(*_case(np.float64), H, OMEGA, L)
    got = ref.numpy_buffered(*args, H, OMEGA, L, reuse_tanh=True)
    _check_agree(got, want, rtol)


def test_buffered_does_not_alias_returned_gradients():
    args = _case()
    l1, g1 = ref.numpy_buffered(*args, H, OMEGA, L)
    saved = {k: v.copy() for k, v in g1.items()}
    args2 = _case(seed=99)
    ref.numpy_buffered(*args2, H, OMEGA, L)
    for k in "UDRb":
        np.testing.assert_array_equal(g1[k], saved[k])


@pytest.mark.parametrize("name", ["numpy_idiomatic", "numpy_buffered", "torch_eager", "torch_compiled"])
def test_float32_dtype_and_agreement(name):
    if name.startswith("torch"):
        pytest.importorskip("torch")
    fn = ref.IMPLEMENTATIONS[name]
    args32 = _case(np.float32)
    try:
        loss, grads = fn(*args32, H, OMEGA, L)
    except Exception as exc:  # torch.compile may be unusable (no compiler)
        if name == "torch_compiled":
            pytest.skip(f"torch.compile unavailable: {exc!r}")
        raise
    for k in "UDRb":
        assert grads[k].dtype == np.float32
    want = ref.numpy_idiomatic(*_case(np.float64), H, OMEGA, L)
    _check_agree((loss, grads), want, 1e-4)


def test_torch_eager_matches_float64():
    pytest.importorskip("torch")
    args = _case()
    want = ref.numpy_idiomatic(*args, H, OMEGA, L)
    got = ref.torch_eager(*args, H, OMEGA, L)
    _check_agree(got, want, 1e-10)
    for k in "UDRb":
        assert got[1][k].dtype == np.float64


def test_torch_compiled_matches_float64():
    pytest.importorskip("torch")
    args = _case()
    want = ref.numpy_idiomatic(*args, H, OMEGA, L)
    try:
        got = ref.torch_compiled(*args, H, OMEGA, L)
    except Exception as exc:
        pytest.skip(f"torch.compile unavailable: {exc!r}")
    _check_agree(got, want, 1e-10)


def test_idiomatic_gradient_matches_finite_differences():
    x, y, U, D, R, b = _case()
    params = {"U": U, "D": D, "R": R, "b": b}
    _, grads = ref.numpy_idiomatic(x, y, U, D, R, b, H, OMEGA, L)

    def loss_with(name, i, delta):
        p = {k: v.copy() for k, v in params.items()}
        p[name][i] += delta
        return ref.numpy_idiomatic(x, y, p["U"], p["D"], p["R"], p["b"], H, OMEGA, L)[0]

    eps = 1e-6
    for name in "UDRb":
        for i in (0, 5, 15):  # includes both periodic ends
            fd = (loss_with(name, i, eps) - loss_with(name, i, -eps)) / (2 * eps)
            an = grads[name][i]
            assert abs(fd - an) <= 1e-6 * max(abs(an), 1e-3), (name, i, fd, an)


def test_idiomatic_loss_definition():
    """Independent check of the forward pass for one layer, written as loops."""
    x, y, U, D, R, b = _case(n=6, batch=2)
    n = x.shape[1]
    A = U / (2 * H) + D / H**2
    C = 1 + R - 2 * D / H**2
    B = -U / (2 * H) + D / H**2
    z = np.empty_like(x)
    for k in range(x.shape[0]):
        for i in range(n):
            Z = A[i] * x[k, i - 1] + C[i] * x[k, i] + B[i] * x[k, (i + 1) % n] - b[i]
            z[k, i] = (1 - OMEGA) * x[k, i] + OMEGA * np.tanh(Z)
    want = 0.5 * np.sum((z - y) ** 2)
    got, _ = ref.numpy_idiomatic(x, y, U, D, R, b, H, OMEGA, 1)
    assert abs(got - want) <= 1e-12 * abs(want)
