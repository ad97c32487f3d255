"""Vectorisable activation forms (npdegen.codegen.fast_forms) and how the numba target prints them.

Accuracy is measured on the code numba compiles: the target's printed assignments for ``f`` (the
same text the kernel template inlines) are compiled into a loop, in float32 and float64, and
compared with float64 references over the whole float32 range. The error measure is
``|f_fast(x) − f(x)| / max(1, |f(x)|)`` (absolute where |f| ≤ 1, as for tanh and sigmoid).
"""
import math
import re

import numpy as np
import pytest
import sympy as sp

from npdegen.codegen.vector_math import vector_activation

from npdegen import NeuralPDE
from npdegen.codegen.fast_forms import SOFTPLUS_CLAMP, TANH_CLAMP, expand_forms, fast_activation
from npdegen.codegen.numba_printer import choose_forms
from npdegen.codegen.step_numba import numba_step_context
from npdegen.codegen.step_render import StepOptions, render_step
from npdegen.spec.activations import ACTIVATION_SYMBOL, BUILTIN_ACTIVATIONS

x = ACTIVATION_SYMBOL
#: Bounds asserted here and stated in the fast_forms docstring (float32 / float64 "fast").
BOUNDS = {"tanh": (3.8e-7, 2.1e-7), "sigmoid": (1.9e-7, 1.1e-7), "softplus": (1.5e-7, 1.8e-8)}


def layer_of(activation):
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    return NeuralPDE(z + z.diff(q, 2), z, activation=activation)


def kernel_ir(activation):
    return layer_of(activation).kernel_ir


def NumbaOptions(backend="numba", dtype="float64", activations="auto"):
    """The step options of a numba kernel (the activation mode is one of them)."""
    return StepOptions(backend=backend, dtype=dtype, activations=activations)


def activation_forms(ir, options):
    """``(form, f, f')`` as the numba kernel computes ``ir.f`` for ``options``."""
    return choose_forms(ir.f, x, options)


# ---------------------------------------------------------------------------- the forms (no numba needed)
def test_rules_rewrite_the_builtins():
    tanh_form = fast_activation(BUILTIN_ACTIVATIONS["tanh"])
    assert not tanh_form.has(sp.tanh) and expand_forms(tanh_form).has(sp.Min, sp.Max)
    assert not fast_activation(BUILTIN_ACTIVATIONS["sigmoid"]).has(sp.tanh)
    softplus = fast_activation(BUILTIN_ACTIVATIONS["softplus"])
    assert not softplus.has(sp.exp) and softplus.has(sp.Max)
    for name in ("identity", "relu", "square"):
        assert fast_activation(BUILTIN_ACTIVATIONS[name]) == BUILTIN_ACTIVATIONS[name]
    assert fast_activation(sp.exp(x) + sp.tanh(2 * x)) .has(sp.exp)        # only the patterns are rewritten
    assert not fast_activation(sp.exp(x) + sp.tanh(2 * x)).has(sp.tanh)


def test_derivative_is_sympy_diff_of_the_form_used():
    for name in ("tanh", "sigmoid", "softplus"):
        ir = kernel_ir(name)
        form, f, fprime = activation_forms(ir, NumbaOptions(backend="numba", dtype="float32"))
        assert form == "fast" and f == fast_activation(ir.f)
        assert sp.simplify(fprime - sp.diff(f, x)) == 0
        form64, f64, _ = activation_forms(ir, NumbaOptions(backend="numba", dtype="float64"))
        assert f64 == vector_activation(ir.f)            # float64: tanh vectorised, the rest libm
        assert form64 == ("vector" if ir.f.has(sp.tanh) else "exact")
        assert activation_forms(ir, NumbaOptions(backend="numba", dtype="float64", activations="exact"))[1] == ir.f
        assert activation_forms(ir, NumbaOptions(backend="numba", dtype="float64", activations="fast"))[0] == "fast"
        assert activation_forms(ir, NumbaOptions(backend="numba", dtype="float32", activations="exact"))[0] == "exact"
    assert activation_forms(kernel_ir("relu"), NumbaOptions(backend="numba", dtype="float32"))[0] == "exact"


def test_clamps_make_the_forms_saturate():
    """Beyond the clamps the forms are constant; the softplus tail's SymPy derivative is 0 there."""
    t = fast_activation(sp.tanh(x))
    assert float(expand_forms(t).subs(x, 100)) == float(expand_forms(t).subs(x, TANH_CLAMP + 1)) \
        == pytest.approx(1, abs=3e-7)
    g = fast_activation(BUILTIN_ACTIVATIONS["softplus"])
    assert float(g.subs(x, -SOFTPLUS_CLAMP - 5)) == pytest.approx(0, abs=2e-8)
    assert sp.diff(expand_forms(g), x).subs(x, -SOFTPLUS_CLAMP - 5) == 0


def test_tanh_derivative_is_the_identity_of_the_true_function():
    """f' of the fast tanh is 1 - T^2 with T the fast form (as Tanh64 in float64): within 4.6e-7 of
    the exact tanh' everywhere (the clamp: tanh'(8) = 4.5e-7), and of the derivative of the computed
    form, written out independently here (quotient rule, then the clamp's 0 beyond |x| = 8)."""
    t = fast_activation(sp.tanh(x))
    assert sp.diff(t, x) == 1 - t**2
    xs = np.concatenate([np.linspace(-30, 30, 120001), [-TANH_CLAMP, TANH_CLAMP, 0.0]])
    fprime = sp.lambdify(x, expand_forms(sp.diff(t, x)), "numpy")(xs)
    assert np.max(np.abs(fprime - (1 - np.tanh(xs) ** 2))) < 4.6e-7
    explicit = sp.lambdify(x, sp.diff(expand_forms(t), x), "numpy")(xs)       # d/dx of the rational
    assert np.max(np.abs(fprime - explicit)) < 9e-7
    sig = fast_activation(BUILTIN_ACTIVATIONS["sigmoid"])
    s_prime = sp.lambdify(x, expand_forms(sp.diff(sig, x)), "numpy")(xs)
    exact = 0.25 * (1 - np.tanh(xs / 2) ** 2)
    assert np.max(np.abs(s_prime - exact)) < 1.2e-7


def test_modes_change_code_and_key():
    low = layer_of("tanh").lowered
    auto32 = render_step(low, NumbaOptions(backend="numba", dtype="float32"))
    exact32 = render_step(low, NumbaOptions(backend="numba", dtype="float32", activations="exact"))
    auto64 = render_step(low, NumbaOptions(backend="numba", dtype="float64"))
    exact64 = render_step(low, NumbaOptions(backend="numba", dtype="float64", activations="exact"))
    assert "math.tanh" not in auto32.source and "math.tanh" in exact32.source and "math.tanh" not in auto64.source
    assert "fast_forms" in auto32.source and "_vtanh, a vectorisable" in auto64.source and "_vtanh(" in auto64.source
    assert "math.tanh" in exact64.source and "_vtanh" not in exact64.source
    assert len({auto32.key, exact32.key, auto64.key, exact64.key}) == 4
    with pytest.raises(ValueError, match="activations"):
        NumbaOptions(backend="numba", activations="approximate")


def test_float32_code_has_no_bare_numbers():
    """Every number is printed typed as the kernel dtype (a bare 0.5 or 2 would promote float32
    loops to float64): activation forms, weights and Jacobians of the ADR layer."""
    q, (U, D, R) = sp.Symbol("q"), sp.symbols("U D R")
    z = sp.Function("z")(q)
    layer = NeuralPDE(z + R * z - U * z.diff(q) + D * z.diff(q, 2), z, activation="softplus",
                      params={U: "heterogeneous", D: "homogeneous", R: "time-dependent"}, bias="heterogeneous")
    ctx = numba_step_context(layer.lowered, NumbaOptions(backend="numba", dtype="float32"))
    blocks = [ctx["pre"], ctx["forward_act"], ctx["adjoint_act"], *(b for _, b in ctx["coef_bodies"]),
              *(J["body"] for J in ctx["jacobians"]), *(g["body"] for g in ctx["gradients"])]
    codes = [rhs for a in blocks for _, rhs in a["temps"]] + [r for a in blocks for r in a["results"]]
    codes += [rhs for t in ctx["gather"] for _, rhs in t["temps"]] + [t["result"] for t in ctx["gather"]]
    assert any("_F(" in code for code in codes)
    for code in codes:
        bare = re.sub(r"_F\([^()]*\)", "", code)
        bare = re.sub(r"\b[A-Za-z_]\w*", "", bare)   # names: locals such as _ca3, w0, z_m1, Delta0
        assert not re.search(r"\d", bare), code


# ---------------------------------------------------------------------------- accuracy on compiled code
#: float64 references, evaluated inside the same compiled loop (v: the input as float64)
REFERENCE = {"tanh": "math.tanh(v)", "sigmoid": "0.5 * (1.0 + math.tanh(0.5 * v))",
             "softplus": "max(v, 0.0) + math.log1p(math.exp(-abs(v)))"}


def error_kernel(name, dtype, mode="auto"):
    """A compiled loop: the numba target's printed f (the text the kernel template inlines) on every
    value, against the float64 reference; returns the largest error."""
    nb = pytest.importorskip("numba", reason="numba is not installed (pip install 'npdegen[fast]')")
    act = numba_step_context(layer_of(name).lowered, NumbaOptions(backend="numba", dtype=dtype,
                                                                 activations=mode))["forward_act"]
    lines = ["def worst(values):", "    e = 0.0", "    for i in range(values.shape[0]):", "        _Z = values[i]"]
    lines += [f"        {lhs} = {rhs}" for lhs, rhs in act["temps"]]
    lines += [f"        fast = {act['results'][0]}", "        v = numba.float64(values[i])", f"        ref = {REFERENCE[name]}",
              "        e = max(e, abs(numba.float64(fast) - ref) / max(1.0, abs(ref)))", "    return e"]
    scope = {"_F": getattr(np, dtype), "math": math, "numba": nb}
    exec(compile("\n".join(lines), f"<{name}-{dtype}>", "exec"), scope)
    return nb.njit(error_model="numpy")(scope["worst"])


def float32_sweep(stride=251):
    """Every float32 bit pattern with the given stride (all binades, both signs), finite."""
    v = np.arange(0, 2**32, stride, dtype=np.uint64).astype(np.uint32).view(np.float32)
    return v[np.isfinite(v)]


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_fast_forms_accuracy_float32(name):
    """A 1/251 sweep of all float32 values plus a dense grid where the forms are curved."""
    values = np.concatenate([float32_sweep(), np.linspace(-20, 20, 400_001, dtype=np.float32)])
    err = error_kernel(name, "float32")(values)
    assert err <= BOUNDS[name][0], err
    assert err <= 1e-6        # the bound for tanh and sigmoid


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_fast_forms_accuracy_float64_on_request(name):
    values = np.concatenate([float32_sweep(4099).astype(np.float64), np.linspace(-20, 20, 100_001)])
    assert error_kernel(name, "float64", "fast")(values) <= BOUNDS[name][1]


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_exact_forms_are_libm(name):
    assert error_kernel(name, "float64", "exact")(np.linspace(-30, 30, 10_001)) <= 4e-16


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_fast_forms_accuracy_float32_exhaustive(name):
    """Every float32 with 2**-12 <= |x| <= c (c = 8 for tanh, 16 for sigmoid, 18 for softplus), both
    signs, in chunks of 2**24. Beyond c the forms are constant and the error falls; below 2**-12 they
    are x·P(0)/Q(0) + O(x³) (covered by the sweep above)."""
    worst = error_kernel(name, "float32")
    clamp = {"tanh": TANH_CLAMP, "sigmoid": 2 * TANH_CLAMP, "softplus": SOFTPLUS_CLAMP}[name]
    lo, hi = (int(np.array(v, np.float32).view(np.uint32)) for v in (2.0**-12, clamp))
    err = 0.0
    for sign in (0,) if name == "tanh" else (0, 1 << 31):     # the tanh form is exactly odd
        for start in range(lo, hi + 1, 1 << 24):
            bits = np.arange(start, min(start + (1 << 24), hi + 1), dtype=np.uint32) | np.uint32(sign)
            err = max(err, worst(bits.view(np.float32)))
    assert err <= BOUNDS[name][0], err
