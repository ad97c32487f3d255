"""Code generation: the in-place ufunc printer, rendering, and the kernel cache."""
import itertools
import os

import numpy as np
import pytest
import sympy as sp
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from npdegen import NeuralPDE
from npdegen.codegen.step_render import StepOptions, render_step
from npdegen.codegen.ufuncs import ufunc_program
from npdegen.runtime import cache

Z = sp.Symbol("Z", real=True)


def run_program(program, values):
    """Execute a ufunc program with NumPy, checking that the input is never written."""
    env = {"Z": values.copy(), "out": np.full_like(values, np.nan)}
    env.update({f"t{i}": np.full_like(values, np.nan) for i in range(program.buffers)})
    for call in program.calls:
        args = [env[a] if a in env else eval(a, {"numpy": np, **env}) for a in call.args]  # noqa: S307
        getattr(np, call.func)(*args, out=env[call.out])
    np.testing.assert_array_equal(env["Z"], values)
    return env[program.result]


def reference(expr, values):
    f = sp.lambdify(Z, expr, modules=[{"Heaviside": lambda a, h=0.5: np.heaviside(a, h)}, "numpy"])
    return np.broadcast_to(f(values), values.shape)


leaves = st.sampled_from([Z, Z, sp.Integer(2), sp.Rational(1, 3), sp.Integer(-1)])


def extend(children):
    unary = st.sampled_from([sp.tanh, sp.sin, sp.cos, sp.atan, sp.Abs, lambda e: sp.exp(-e**2)])
    return st.one_of(
        st.builds(lambda a, b: a + b, children, children),
        st.builds(lambda a, b: a * b, children, children),
        st.builds(lambda a, b: a - b, children, children),
        st.builds(lambda a, b: a / (1 + b**2), children, children),
        st.builds(lambda a, k: a**k, children, st.sampled_from([2, 3, -2])),
        st.builds(lambda f, a: f(a), unary, children),
        st.builds(lambda a, b: sp.Max(a, b), children, children),
    )


@settings(max_examples=int(__import__("os").environ.get("NPDEGEN_FUZZ_EXAMPLES", 150)), deadline=None)
@given(st.recursive(leaves, extend, max_leaves=8))
def test_ufunc_program_matches_lambdify(expr):
    assume(not expr.has(sp.zoo, sp.nan, sp.oo, -sp.oo))
    values = np.linspace(-3.0, 3.0, 41) + 0.0123
    with np.errstate(all="ignore"):
        want = reference(expr, values)
        got = run_program(ufunc_program(expr, Z), values)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12, equal_nan=True)


def test_ufunc_program_for_activations_and_derivatives():
    from npdegen.spec.activations import ACTIVATION_SYMBOL as x, BUILTIN_ACTIVATIONS
    values = np.linspace(-40.0, 40.0, 801)
    for f in BUILTIN_ACTIVATIONS.values():
        for e in (f, f.diff(x)):
            e = e.subs(x, Z)
            got = run_program(ufunc_program(e, Z), values)
            assert np.all(np.isfinite(got)), e
            np.testing.assert_allclose(got, reference(e, values), rtol=1e-13, atol=1e-300)


def test_ufunc_program_falls_back_for_unknown_functions():
    e = sp.Piecewise((Z, Z > 0), (Z**2, True))
    values = np.linspace(-2, 2, 9)
    np.testing.assert_allclose(run_program(ufunc_program(e, Z), values), np.where(values > 0, values, values**2))


@pytest.fixture(scope="module")
def adr_ir():
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    U, D, R = sp.symbols("U D R")
    return NeuralPDE(z + R * z - U * z.diff(q) + sp.exp(D) * z.diff(q, 2), z, activation="softplus",
                     params={U: "heterogeneous", D: "homogeneous", R: "time-dependent"},
                     bias="time-dependent").lowered


@pytest.mark.parametrize("backend", ["numpy", "numba", "cupy"])
@pytest.mark.parametrize("boundary, dtype, normalise, train_omega", list(itertools.product(
    ("periodic", "dirichlet", "neumann"), ("float32", "float64"), (False, True), (False, True))))
def test_every_option_renders_valid_python(adr_ir, backend, boundary, dtype, normalise, train_omega):
    rendered = render_step(adr_ir, StepOptions(backend=backend, boundary=(boundary,), dtype=dtype,
                                               normalise=normalise, train_omega=train_omega))
    compile(rendered.source, "<kernel>", "exec")
    assert f"content-hash: {rendered.key}" in rendered.source


def test_cache_key_changes_with_every_option(adr_ir):
    keys = {render_step(adr_ir, StepOptions(backend=k, boundary=(b,), dtype=d, activations=a)).key
            for k in ("numpy", "numba") for b in ("periodic", "dirichlet", "neumann") for d in ("float32", "float64")
            for a in ("auto", "exact")}
    assert len(keys) == 24
    assert render_step(adr_ir, StepOptions()).key == render_step(adr_ir, StepOptions()).key


def test_checksum_detects_tampering():
    text = cache.stamp("x = 1\n")
    assert cache.verify(text)
    assert not cache.verify(text.replace("x = 1", "x = 2"))
    assert not cache.verify(text[:-3])
    assert not cache.verify("x = 1\n")


def test_corrupted_cache_entry_is_regenerated(tmp_path, monkeypatch):
    monkeypatch.setenv("NPDEGEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(cache, "_modules", {})
    made = []

    def make():
        made.append(1)
        return cache.stamp("VALUE = 42\n# key-abc\n")
    mod = cache.load_module("key-abc", "k", lambda: {".py": make()})
    assert mod.VALUE == 42 and len(made) == 1
    path = tmp_path / "k.py"
    path.write_text(path.read_text().replace("42", "666"))      # tampered: checksum fails
    monkeypatch.setattr(cache, "_modules", {})
    assert cache.load_module("key-abc", "k", lambda: {".py": make()}).VALUE == 42 and len(made) == 2
    path.write_text(path.read_text()[:20])                     # truncated
    monkeypatch.setattr(cache, "_modules", {})
    assert cache.load_module("key-abc", "k", lambda: {".py": make()}).VALUE == 42 and len(made) == 3
    monkeypatch.setattr(cache, "_modules", {})
    assert cache.load_module("key-abc", "k", lambda: {".py": make()}).VALUE == 42 and len(made) == 3   # reused


def test_atomic_write_leaves_no_temporaries(tmp_path):
    target = tmp_path / "sub" / "f.py"
    cache.write_atomic(target, "a = 1\n")
    cache.write_atomic(target, "a = 2\n")
    assert target.read_text() == "a = 2\n"
    assert os.listdir(target.parent) == ["f.py"]


def test_cache_dir_is_private(tmp_path, monkeypatch):
    monkeypatch.setenv("NPDEGEN_CACHE_DIR", str(tmp_path / "c"))
    path = cache.cache_dir()
    assert path.is_dir() and (path.stat().st_mode & 0o077) == 0
