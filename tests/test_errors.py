"""Bad input gets a clear ValueError/TypeError naming the problem, never a deep crash or a NaN."""
import numpy as np
import pytest
import sympy as sp

from npdegen import NeuralPDE, train

q = sp.Symbol("q")
z = sp.Function("z")(q)
U, D, R = sp.symbols("U D R")
ADR = z + R * z - U * z.diff(q) + D * z.diff(q, 2)
HOM = {U: "homogeneous", D: "homogeneous", R: "homogeneous"}


@pytest.mark.parametrize("transform, match", [
    (D * z + z.subs(q, q + 1) * R, "unknown function.*non-local"),
    (D * z**2 + R * sp.exp(z) * z.diff(q, 2) + R, "without the field"),
    (D * z + R, "without the field"),
    (q * D * z, "coordinate"),
    (sp.Function("u")(q) + D * z, "unknown function"),
    (D * z.diff(q, 9), "exceeds the limit"),
    (D * sp.Integer(0) * z, "does not contain the field"),
])
def test_bad_transforms(transform, match):
    with pytest.raises(ValueError, match=match):
        NeuralPDE(transform, z, params={D: "homogeneous", R: "homogeneous"})


def test_transform_must_be_sympy():
    with pytest.raises(TypeError, match="SymPy expression"):
        NeuralPDE("z + D*z_qq", z, params={D: "homogeneous"})


def test_field_must_be_a_function_of_one_to_three_coordinates():
    with pytest.raises(TypeError, match="undefined function"):
        NeuralPDE(D * q, q, params={D: "homogeneous"})
    x, y, w, v = sp.symbols("x y w v")
    f = sp.Function("z")(x, y, w, v)
    with pytest.raises(ValueError, match="1 to 3 coordinate symbols"):
        NeuralPDE(D * f, f, params={D: "homogeneous"})
    g = sp.Function("z")(x, x)
    with pytest.raises(ValueError, match="distinct"):
        NeuralPDE(D * g, g, params={D: "homogeneous"})


def test_nonlinear_transforms_are_layers():
    """Since the step IR, a local nonlinear transform is a layer (it was refused before)."""
    for transform in (D * z**2, sp.tanh(z) + D * z.diff(q, 2), z * z.diff(q) + D * z):
        layer = NeuralPDE(transform, z, params={D: "homogeneous"})
        assert not layer.step_ir.linear
        with pytest.raises(ValueError, match="nonlinear in the field: it has no fixed stencil"):
            layer.stencil()


def test_unknown_activation():
    with pytest.raises(ValueError, match="unknown activation 'tahn'"):
        NeuralPDE(ADR, z, activation="tahn", params=HOM)


def test_activation_of_two_symbols():
    a, b = sp.symbols("a b")
    with pytest.raises(ValueError, match="exactly one argument symbol"):
        NeuralPDE(ADR, z, activation=a * b, params=HOM)


def test_parameter_without_family():
    with pytest.raises(ValueError, match="'R' appears in the transform but has no family"):
        NeuralPDE(ADR, z, params={U: "homogeneous", D: "homogeneous"})


def test_bad_family_and_unused_parameter():
    with pytest.raises(ValueError, match="family must be one of"):
        NeuralPDE(ADR, z, params={**HOM, U: "constant"})
    K = sp.Symbol("K")
    with pytest.raises(ValueError, match="do not appear"):
        NeuralPDE(ADR, z, params={**HOM, K: "homogeneous"})
    with pytest.raises(ValueError, match="bias: family"):
        NeuralPDE(ADR, z, params=HOM, bias="global")


def test_reserved_parameter_names():
    b = sp.Symbol("b")
    with pytest.raises(ValueError, match="reserved"):
        NeuralPDE(z + b * z, z, params={b: "homogeneous"})
    lam = sp.Symbol("lambda")
    with pytest.raises(ValueError):
        NeuralPDE(z + lam * z, z, params={lam: "homogeneous"})


def test_too_few_offsets_for_accuracy():
    with pytest.raises(ValueError, match="accuracy"):
        NeuralPDE(ADR, z, params=HOM, offsets=(-1, 0, 1), accuracy=4)
    with pytest.raises(ValueError, match="at least 3 offsets"):
        NeuralPDE(D * z.diff(q, 2), z, params={D: "homogeneous"}, offsets=(0, 1), accuracy=None)
    with pytest.raises(ValueError, match="even accuracy"):
        NeuralPDE(ADR, z, params=HOM, accuracy=3)


@pytest.fixture(scope="module")
def net():
    return NeuralPDE(ADR, z, params={U: "heterogeneous", D: "homogeneous", R: "time-dependent"},
                     bias="heterogeneous").compile(n=8, layers=2, omega=0.5)


@pytest.mark.parametrize("kwargs, match", [
    ({"n": 2}, "n must be > 2"),
    ({"n": 8.0}, "n must be an integer"),
    ({"n": 8, "layers": 0}, "layers must be a positive integer"),
    ({"n": 8, "omega": float("nan")}, "omega must be a positive finite"),
    ({"n": 8, "spacing": -1.0}, "spacing must be a positive finite"),
    ({"n": 8, "boundary": "wrap"}, "unknown boundary"),
    ({"n": 8, "dtype": "float16"}, "dtype must be one of"),
    ({"n": 8, "backend": "fortran"}, "unknown backend"),
    ({"n": 8, "alpha": -1.0}, "alpha must be"),
])
def test_bad_compile_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NeuralPDE(ADR, z, params=HOM).compile(**kwargs)


def test_shapes_that_do_not_match(net):
    theta = net.init_params(seed=0)
    with pytest.raises(ValueError, match=r"shape \(batch, 8\) or \(8,\)"):
        net.forward(np.zeros((2, 9)), theta)
    with pytest.raises(ValueError, match="expected the shape of x"):
        net.loss_and_grad(np.zeros((2, 8)), np.zeros((3, 8)), theta)
    bad = dict(theta, U=np.zeros(7))
    with pytest.raises(ValueError, match=r"theta\['U'\] has shape \(7,\); a heterogeneous parameter needs \(8,\)"):
        net.forward(np.zeros(8), bad)
    bad = dict(theta, R=np.zeros(8))
    with pytest.raises(ValueError, match=r"time-dependent parameter needs \(2, 8\)"):
        net.forward(np.zeros(8), bad)
    with pytest.raises(ValueError, match="missing"):
        net.forward(np.zeros(8), {k: v for k, v in theta.items() if k != "b"})
    with pytest.raises(ValueError, match="unexpected"):
        net.forward(np.zeros(8), dict(theta, K=np.zeros(())))
    with pytest.raises(ValueError, match="layer must be an integer"):
        net.step(np.zeros(8), theta, layer=2)


def test_nan_and_non_numeric_inputs(net):
    theta = net.init_params(seed=0)
    x = np.zeros((2, 8))
    x[1, 3] = np.nan
    with pytest.raises(ValueError, match="x contains NaN"):
        net.forward(x, theta)
    with pytest.raises(ValueError, match="y contains NaN"):
        net.loss_and_grad(np.zeros(8), np.full(8, np.inf), theta)
    with pytest.raises(ValueError, match=r"theta\['D'\] contains NaN"):
        net.forward(np.zeros(8), dict(theta, D=np.array(np.nan)))
    with pytest.raises(TypeError, match="real numbers"):
        net.forward(np.array(["a"] * 8), theta)
    with pytest.raises(TypeError, match="dict"):
        net.forward(np.zeros(8), [1, 2])


def test_training_arguments(net):
    theta = net.init_params(seed=0)
    x = np.zeros((2, 8))
    with pytest.raises(ValueError, match="optimizer"):
        train(net, x, x, theta, steps=1, optimizer="rmsprop")
    with pytest.raises(ValueError, match="learning rate"):
        train(net, x, x, theta, steps=1, lr=-1)
    with pytest.raises(ValueError, match="method"):
        train(net, x, x, theta, steps=1, method="greedy")
    with pytest.raises(ValueError, match="trainable"):
        train(net, x, x, theta, steps=1, trainable=["K"])


def test_from_moments_bad_input():
    with pytest.raises(ValueError, match="integers >= 0"):
        NeuralPDE.from_moments({-1: 1}, offsets=(-1, 0, 1))
    with pytest.raises(TypeError, match="mapping"):
        NeuralPDE.from_moments(3, offsets=(-1, 0, 1))
    with pytest.raises(ValueError, match="offsets"):
        NeuralPDE.from_moments({0: 1}, offsets=())


def test_non_finite_results_are_refused_with_the_layer():
    from npdegen.runtime.network import NonFiniteError
    net = NeuralPDE(z + D * z.diff(q, 2), z, activation="square", params={D: "homogeneous"}).compile(n=8, layers=12)
    theta = {"D": np.asarray(0.1)}
    x = np.full(8, 1e3)
    with np.errstate(all="ignore"):
        with pytest.raises(NonFiniteError, match=r"first overflows at layer \d+ of 12") as info:
            net.forward(x, theta, trajectory=True)
        assert "npdegen.stability" in str(info.value)
        with pytest.raises(FloatingPointError, match="non-finite values in output"):
            net.forward(x, theta)
        with pytest.raises(FloatingPointError, match="loss_and_grad"):
            net.loss_and_grad(x, x, theta)


def test_values_are_checked_after_the_dtype_cast():
    """Issue 11, defect 7: 1e39 is finite in float64 but inf in float32."""
    net = NeuralPDE(ADR, z, params=HOM, bias="homogeneous").compile(n=8, dtype="float32")
    theta = {"U": 0.1, "D": 0.1, "R": 0.0, "b": 1e39}
    with pytest.raises(ValueError, match=r"theta\['b'\] overflows float32"):
        net.forward(np.zeros(8), theta)
    with pytest.raises(ValueError, match="x overflows float32"):
        net.forward(np.full(8, 1e39), {**theta, "b": 0.0})


def test_small_papercuts():
    """Issue 11, defect 9: empty batches, bool layer indices, NumPy integer sizes."""
    layer = NeuralPDE(ADR, z, params=HOM)
    net = layer.compile(n=np.int64(8), layers=2)
    theta = net.init_params()
    with pytest.raises(ValueError, match="no samples"):
        net.forward(np.zeros((0, 8)), theta)
    with pytest.raises(ValueError, match="layer must be an integer"):
        net.step(np.zeros(8), theta, True)
    assert net.step(np.zeros(8), theta, np.int64(1)).shape == (8,)
    assert "- b" not in repr(layer)


def test_omega_outside_the_stable_range_needs_an_opt_in():
    """Issue 11, defect 8: omega >= 2 amplifies through the leak alone."""
    layer = NeuralPDE(ADR, z, params=HOM)
    for omega in (2.0, 10.0, 1e6):
        with pytest.raises(ValueError, match="outside \\(0, 2\\).*allow_unstable=True"):
            layer.compile(n=8, omega=omega)
    assert layer.compile(n=8, omega=10.0, allow_unstable=True).omega == 10.0


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_overflowing_weights_raise_on_every_backend(backend):
    """Issue 11, defect 7: U = 3e38 makes U/(2 Delta) inf in float32 and inf - inf a NaN; the numba
    fast tanh clamp used to turn that NaN into a finite 0.99999976 (max(nan, -8) is -8)."""
    if backend == "numba":
        pytest.importorskip("numba")
    from npdegen.runtime.network import NonFiniteError
    net = NeuralPDE(ADR, z, activation="tanh", params=HOM).compile(n=16, spacing=0.1, dtype="float32", backend=backend)
    x = np.sin(np.linspace(0, 6, 16))
    with pytest.raises(NonFiniteError):
        net.forward(x, {"U": 3e38, "D": 0.0, "R": 0.0})
    assert np.all(np.isfinite(net.forward(x, {"U": 0.03, "D": 0.001, "R": 0.0})))
