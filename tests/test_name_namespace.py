"""User names live in their own namespace in every generated kernel (issue 11, defect 1).

A parameter named like any identifier of a rendered template must neither change results nor break
compilation. Statically: for every identifier X that the rendered sources of all backends use, a
layer with a parameter named X renders sources in which X is never an identifier token (it appears
only as ``p_X``, ``_p_X``, ``theta_X``… and inside strings and comments). Dynamically: the names
the outside review found harmful run on NumPy and numba and equal a plain name's results, and the
CUDA sources compile with NVRTC.
"""
import io
import re
import tokenize

import numpy as np
import pytest
import sympy as sp

import npdegen
from npdegen.spec.names import RESERVED

q = sp.Symbol("q")
z = sp.Function("z")(q)
HARMFUL = ("one_m_omega", "w", "real", "entry", "bias", "site", "acc", "halo", "chunk", "sums", "coef", "kappa")
OPTIONS = dict(boundary="neumann", train_omega=True, alpha=0.1)


def layer_with(name, other="D"):
    A, D = sp.Symbol(name), sp.Symbol(other if name != other else "K")
    return npdegen.NeuralPDE(z + A ** 2 / 2 * z - A * z.diff(q) + D * z.diff(q, 2), z, activation="tanh",
                             params={A: "heterogeneous", D: "homogeneous"}, bias="heterogeneous", name="sweep")


def python_names(source):
    return {t.string for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type == tokenize.NAME}


def c_names(source):
    body = re.sub(r"//[^\n]*|/\*.*?\*/|\"(\\.|[^\"\\])*\"", " ", source, flags=re.S)
    return set(re.findall(r"\b[A-Za-z_]\w*\b", body))


def rendered(layer, backend):
    from npdegen.codegen.step_render import StepOptions, render_step
    code = StepOptions(backend=backend, boundary=("neumann",), normalise=True, train_omega=True)
    return render_step(layer.lowered, code).files


def identifiers(files):
    names = set()
    for suffix, text in files.items():
        names |= python_names(text) if suffix == ".py" else c_names(text)
    return names


def _valid_user_name(text):
    from npdegen.spec.names import validate_identifier
    try:
        validate_identifier(text)
    except (TypeError, ValueError):
        return False
    return text not in ("b", "omega")


@pytest.mark.parametrize("backend", ["numpy", "numba", "cupy"])
def test_no_user_name_can_collide_with_generated_code(backend):
    """Render with two sentinel parameter names: each appears only inside prefixed identifiers
    pre + name + suf, never bare; and no identifier the template writes itself has the form
    pre + (any acceptable user name) + suf. So no parameter name can collide, by construction."""
    a, d = "Qzxa", "Qzxd"
    names = identifiers(rendered(layer_with(a, d), backend))
    derived = {n for n in names if a in n or d in n}
    assert a not in names and d not in names, "a user name appears bare in generated code"
    forms = {(n[:n.index(s)], n[n.index(s) + len(s):]) for n in derived for s in (a, d) if s in n}
    assert ("p_", "") in forms
    fixed = names - derived
    clashes = [(t, pre, suf) for t in fixed for pre, suf in forms
               if t.startswith(pre) and t.endswith(suf) and len(t) > len(pre) + len(suf)
               and _valid_user_name(t[len(pre):len(t) - len(suf)])]
    assert not clashes, clashes


#: numba: each name is a cold compile (~5 s); one runs by default, the other two with --slow (the static
#: tests above prove for every backend that no name can collide)
@pytest.mark.parametrize("backend, names", [("numpy", HARMFUL), ("numba", ("one_m_omega",)),
                                            pytest.param("numba", ("bias", "w"), marks=pytest.mark.slow)],
                         ids=["numpy", "numba", "numba-more"])
def test_harmful_names_give_the_results_of_a_plain_name(backend, names):
    if backend == "numba":
        pytest.importorskip("numba")
    rng = np.random.default_rng(0)
    x0, y0 = rng.standard_normal((2, 3, 16))

    def run(name):
        net = layer_with(name).compile(n=16, layers=3, omega=0.7, backend=backend, **OPTIONS)
        theta = {name: np.full(16, 0.1), "D": np.array(0.2), "b": np.full(16, 0.01), "omega": np.array(0.7)}
        loss, grads = net.loss_and_grad(x0, y0, theta, input_grad=True)
        return loss, {("A" if k == name else k): v for k, v in grads.items()}
    ref_loss, ref = run("A")
    for name in names:
        loss, grads = run(name)
        assert loss == pytest.approx(ref_loss, rel=1e-12), name
        for k in ref:
            np.testing.assert_allclose(grads[k], ref[k], rtol=1e-10, atol=1e-12, err_msg=f"{name}: {k}")


def test_harmful_names_compile_with_nvrtc():
    cupy = pytest.importorskip("cupy")
    try:
        from cupy.cuda import nvrtc
        nvrtc.getVersion()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"NVRTC unavailable: {exc}")
    for name in HARMFUL:
        source = rendered(layer_with(name), "cupy")[".cu"]
        prog = nvrtc.createProgram(source, "sweep.cu", [], [])
        try:
            nvrtc.compileProgram(prog, ["--std=c++17"])
        except Exception as exc:  # noqa: BLE001
            pytest.fail(f"{name}: {exc}\n{nvrtc.getProgramLog(prog)}")
    del cupy


@pytest.mark.parametrize("backend", ["numpy", "numba", "cupy"])
def test_no_user_name_can_collide_with_generated_step_code(backend):
    """The same proof for the step-IR kernels (N-D, nonlinear, activation parameters)."""
    from npdegen.codegen.step_render import StepOptions, _TARGET_MODULES, render_step
    if backend not in _TARGET_MODULES:
        pytest.skip(f"no step-IR target for {backend} yet")
    x, y = sp.symbols("x y")
    f = sp.Function("z")(x, y)
    a, d, r, X = sp.Symbol("Qzxa"), sp.Symbol("Qzxd"), sp.Symbol("Qzxr"), sp.Symbol("X")
    layer = npdegen.NeuralPDE(f + a * f * f.diff(x) + d * f.diff(y, 2) + sp.exp(a * f) / 10, f,
                              activation=r * sp.tanh(X), bias="time-dependent",
                              params={a: "heterogeneous", d: "time-dependent", r: "homogeneous"})
    options = StepOptions(backend=backend, boundary=("periodic", "neumann"), normalise=True, train_omega=True)
    names = identifiers(render_step(layer.lowered, options).files)
    sentinels = ("Qzxa", "Qzxd", "Qzxr")
    assert not set(sentinels) & names
    derived = {n for n in names if any(s in n for s in sentinels)}
    forms = {(n[:n.index(s)], n[n.index(s) + len(s):]) for n in derived for s in sentinels if s in n}
    fixed = names - derived
    clashes = [(t, pre, suf) for t in fixed for pre, suf in forms
               if t.startswith(pre) and t.endswith(suf) and len(t) > len(pre) + len(suf)
               and _valid_user_name(t[len(pre):len(t) - len(suf)])]
    assert not clashes, clashes
