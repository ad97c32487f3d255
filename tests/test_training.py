"""Training the neural ADR layer (MODEL.md §3): recovery of known coefficients, the three
parameter families on a spatially varying target, layer-wise ("on the fly") training, and the
contract of ``npdegen.train`` (no mutation, ``trainable``, divergence reporting)."""
import numpy as np
import pytest
import sympy as sp

import npdegen
from npdegen import NeuralPDE, train

N, LAYERS, OMEGA, BATCH = 32, 8, 0.8, 16
TRUTH = {"U": 0.3, "D": 0.4, "R": -0.1}          # grid units (spacing 1): ω d = 0.32, ω c² ≪ 2d
START = {"U": 0.1, "D": 0.25, "R": 0.05}


def smooth_inputs(seed, batch=BATCH, n=N, modes=4):
    """Random smooth periodic profiles: a few sine modes with decaying amplitudes plus an offset."""
    rng = np.random.default_rng(seed)
    q = np.arange(n) / n
    out = 0.2 * rng.standard_normal((batch, 1)) + np.zeros((batch, n))
    for m in range(1, modes + 1):
        amp = rng.standard_normal((batch, 1)) / m
        phase = rng.uniform(0, 2 * np.pi, (batch, 1))
        out += amp * np.sin(2 * np.pi * m * q + phase)
    return out


def adr_net(families, activation="identity", bias=None, layers=LAYERS, omega=OMEGA):
    """ADR layer z + R z − U z_q + D z_qq with per-parameter families (a str: the same for all)."""
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    U, D, R = sp.symbols("U D R")
    if isinstance(families, str):
        families = {"U": families, "D": families, "R": families}
    layer = NeuralPDE(z + R * z - U * z.diff(q) + D * z.diff(q, 2), z, activation=activation,
                      params={U: families["U"], D: families["D"], R: families["R"]}, bias=bias)
    return layer.compile(n=N, spacing=1.0, layers=layers, omega=omega, boundary="periodic")


def scalars(d):
    return {k: np.array(v, dtype=float) for k, v in d.items()}


# ---------------------------------------------------------------------------- homogeneous recovery
@pytest.mark.parametrize("activation", ["identity", "tanh"])
def test_adam_recovers_homogeneous_coefficients(activation):
    net = adr_net("homogeneous", activation)
    x = smooth_inputs(0)
    y = net.forward(x, scalars(TRUTH))
    theta = scalars(START)
    loss0 = net.loss_and_grad(x, y, theta)[0]
    for lr, steps in [(0.02, 300), (0.004, 150), (1e-3, 100)]:     # a decaying schedule
        theta, hist = train(net, x, y, theta, steps=steps, optimizer="adam", lr=lr, progress=False)
    assert hist.final_loss < 1e-8 * loss0
    for k, v in TRUTH.items():
        assert abs(float(theta[k]) - v) <= 1e-3 * abs(v), (k, float(theta[k]), v)


@pytest.mark.parametrize("activation, lr", [("identity", 2e-4), ("tanh", 1e-3)])
def test_sgd_decreases_the_loss(activation, lr):
    net = adr_net("homogeneous", activation)
    x = smooth_inputs(1)
    y = net.forward(x, scalars(TRUTH))
    theta, hist = train(net, x, y, scalars(START), steps=40, optimizer="sgd", lr=lr, progress=False)
    assert len(hist.loss) == 40
    assert hist.loss[0] == pytest.approx(net.loss_and_grad(x, y, scalars(START))[0], rel=1e-12)
    assert hist.final_loss < 0.5 * hist.loss[0]
    assert np.all(np.diff(hist.loss) < 0)   # a small enough step: monotone descent
    # history.final_loss is the loss of the returned parameters
    assert hist.final_loss == pytest.approx(net.loss_and_grad(x, y, theta)[0], rel=1e-12)


# ---------------------------------------------------------------------------- families
def _varying_target(seed=2):
    """A target from an ADR process with smooth U(q), D(q) (a heterogeneous network)."""
    q = (np.arange(N) + 0.5) / N
    truth = {"U": 0.3 * np.cos(2 * np.pi * q), "D": 0.3 + 0.2 * np.sin(2 * np.pi * q),
             "R": np.full(N, -0.05)}
    x = smooth_inputs(seed)
    return x, adr_net("heterogeneous").forward(x, truth)


def test_richer_families_fit_a_spatially_varying_target_better():
    x, y = _varying_target()
    init = {"U": 0.0, "D": 0.3, "R": 0.0}
    final = {}
    for family in ("homogeneous", "heterogeneous", "time-dependent"):
        net = adr_net(family)
        theta0 = net.init_params(seed=0, scale=0.0, values=init)
        assert theta0["D"].shape == {"homogeneous": (), "heterogeneous": (N,),
                                     "time-dependent": (LAYERS, N)}[family]
        theta, hist = train(net, x, y, theta0, steps=300, optimizer="adam", lr=0.01, progress=False)
        assert hist.final_loss < hist.layer_loss[0]
        assert hist.final_loss < net.loss_and_grad(x, y, theta0)[0]
        final[family] = hist.final_loss
    assert final["heterogeneous"] < 0.5 * final["homogeneous"], final
    assert final["time-dependent"] < 0.5 * final["homogeneous"], final


# ---------------------------------------------------------------------------- layer-wise
def _td_net(**kw):
    return adr_net({"U": "time-dependent", "D": "time-dependent", "R": "homogeneous"},
                   bias="heterogeneous", **kw)


def test_layerwise_training_reduces_the_loss():
    x, y = _varying_target()
    net = _td_net()
    theta0 = net.init_params(seed=0, scale=0.0, values={"D": 0.3})
    untrained = net.layer_losses(x, y, theta0)
    theta, hist = train(net, x, y, theta0, steps=60, lr=0.03, method="layerwise", progress=False)
    assert hist.method == "layerwise"
    assert len(hist.loss) == 60 * LAYERS
    assert len(hist.layer_loss) == LAYERS + 1
    np.testing.assert_allclose(hist.layer_loss, net.layer_losses(x, y, theta), rtol=1e-12)
    assert hist.layer_loss[0] == pytest.approx(untrained[0])          # z_0 = x is not trained
    assert hist.final_loss < 0.25 * untrained[-1]
    assert np.all(np.diff(hist.layer_loss) < 0)   # each fitted layer moves z_t towards y
    # only the time-dependent family is trained: R (homogeneous) and b (heterogeneous) stay put
    for k in ("R", "b"):
        np.testing.assert_array_equal(theta[k], theta0[k])
    for k in ("U", "D"):
        assert theta[k].shape == (LAYERS, N)
        changed = np.any(theta[k] != theta0[k], axis=1)
        assert np.all(changed), (k, changed)   # every layer's row was fitted


def test_layerwise_first_layer_is_fitted_to_the_target():
    """Layer t is fitted with z_t fixed to reduce 0.5 Σ (z_{t+1} − y)²: with one layer,
    layerwise and full training optimise the same objective."""
    x, y = _varying_target()
    net = _td_net(layers=1)
    theta0 = net.init_params(seed=0, scale=0.0, values={"D": 0.3})
    th_lw, h_lw = train(net, x, y, theta0, steps=50, lr=0.01, method="layerwise", progress=False)
    th_full, h_full = train(net, x, y, theta0, steps=50, lr=0.01, trainable=["U", "D"], progress=False)
    np.testing.assert_allclose(h_lw.loss, h_full.loss, rtol=1e-10)
    for k in theta0:
        np.testing.assert_allclose(th_lw[k], th_full[k], rtol=1e-10, atol=1e-14)


def test_layerwise_trains_a_time_dependent_bias_too():
    x, y = _varying_target()
    net = adr_net({"U": "time-dependent", "D": "homogeneous", "R": "homogeneous"}, bias="time-dependent")
    theta0 = net.init_params(seed=0, scale=0.0, values={"D": 0.3})
    assert theta0["b"].shape == (LAYERS, N)
    theta, hist = train(net, x, y, theta0, steps=20, lr=0.01, method="layerwise", progress=False)
    for k in ("D", "R"):
        np.testing.assert_array_equal(theta[k], theta0[k])
    for k in ("U", "b"):
        assert np.all(np.any(theta[k] != theta0[k], axis=1)), k
    assert hist.final_loss < net.layer_losses(x, y, theta0)[-1]


def test_layerwise_needs_a_time_dependent_family():
    net = adr_net("heterogeneous")
    x = smooth_inputs(3)
    theta = net.init_params(seed=0, values={"D": 0.3})
    with pytest.raises(ValueError, match="time-dependent"):
        train(net, x, x, theta, steps=2, method="layerwise", progress=False)


# ---------------------------------------------------------------------------- contract
def test_input_theta_is_not_mutated():
    net = _td_net()
    x, y = _varying_target()
    theta0 = net.init_params(seed=4, scale=0.01, values={"D": 0.3})
    saved = {k: v.copy() for k, v in theta0.items()}
    for method in ("full", "layerwise"):
        for optimizer in ("adam", "sgd"):
            theta, _ = train(net, x, y, theta0, steps=3, lr=1e-3, optimizer=optimizer, method=method,
                             progress=False)
            for k in saved:
                np.testing.assert_array_equal(theta0[k], saved[k])
                assert theta[k] is not theta0[k]
    # the result does not alias the input: editing it in place leaves the input alone
    theta["R"][...] = 123.0
    theta["b"][...] = 123.0
    np.testing.assert_array_equal(theta0["R"], saved["R"])
    np.testing.assert_array_equal(theta0["b"], saved["b"])


def test_trainable_restricts_the_update():
    net = adr_net("homogeneous", bias="heterogeneous")
    x = smooth_inputs(5)
    y = net.forward(x, {**scalars(TRUTH), "b": np.zeros(N)})
    theta0 = {**scalars(START), "b": np.zeros(N)}
    theta, hist = train(net, x, y, theta0, steps=20, lr=0.01, trainable=["U"], progress=False)
    assert float(theta["U"]) != float(theta0["U"])
    for k in ("D", "R", "b"):
        np.testing.assert_array_equal(theta[k], theta0[k])
    with pytest.raises(ValueError, match="unknown"):
        train(net, x, y, theta0, steps=1, trainable=["V"], progress=False)


def test_divergence_raises_floating_point_error_naming_the_step():
    net = adr_net("homogeneous")
    x = smooth_inputs(6)
    y = net.forward(x, scalars(TRUTH))
    with pytest.raises(FloatingPointError, match=r"step \d+"):
        with np.errstate(all="ignore"):
            train(net, x, y, scalars(START), steps=50, optimizer="sgd", lr=1e3, progress=False)


@pytest.mark.parametrize("lr", [0.1, 1e3])
def test_layerwise_divergence_raises_floating_point_error_naming_the_step(lr):
    """Package bug: in layer-wise training a diverging layer surfaces as an input-validation
    ValueError ("cotangent contains NaN or inf" / "z contains NaN or inf") instead of the
    FloatingPointError that names the step. ``train`` calls ``net.step_vjp(z, theta, lam, t)``
    (which validates ``lam`` = z_{t+1} − y) *before* ``_check_finite``, and the state handed on to
    the next layer after the last update of a layer is never checked."""
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    U, D, R = sp.symbols("U D R")
    layer = NeuralPDE(z + R * z - U * z.diff(q) + D * z.diff(q, 2), z, activation="square",
                      params={U: "time-dependent", D: "time-dependent", R: "homogeneous"})
    net = layer.compile(n=N, spacing=1.0, layers=LAYERS, omega=OMEGA)
    x = smooth_inputs(0)
    theta0 = net.init_params(seed=0, values={"D": 0.3})
    with np.errstate(all="ignore"):
        with pytest.raises(FloatingPointError, match=r"step \d+"):
            train(net, x, 0.5 * x, theta0, steps=1, optimizer="sgd", lr=lr, method="layerwise",
                  progress=False)


def test_divergence_through_the_update_raises_floating_point_error():
    """Package bug: when the optimizer update itself overflows (finite loss and gradients, but
    θ − lr·g = ±inf), the next step reports ``ValueError: theta['R'] contains NaN or inf`` (the
    input check of ``loss_and_grad``) instead of a FloatingPointError naming the step: ``train``
    never checks the parameters it produced."""
    net = adr_net("homogeneous", "tanh")
    x = smooth_inputs(0)
    y = net.forward(x, scalars(TRUTH))
    with np.errstate(all="ignore"):
        with pytest.raises(FloatingPointError, match=r"step \d+"):
            train(net, x, y, scalars(START), steps=5, optimizer="sgd", lr=1e308, progress=False)


def test_train_validates_its_arguments():
    net = adr_net("homogeneous")
    x = smooth_inputs(7)
    theta = scalars(START)
    with pytest.raises(ValueError, match="method"):
        train(net, x, x, theta, steps=1, method="sideways", progress=False)
    with pytest.raises(ValueError, match="optimizer"):
        train(net, x, x, theta, steps=1, optimizer="rmsprop", progress=False)
    with pytest.raises(ValueError, match="lbfgs"):            # L-BFGS: full batch only
        train(net, x, x, theta, steps=1, optimizer="lbfgs", batch_size=2, progress=False)
    with pytest.raises(ValueError, match="loss"):
        train(net, x, x, theta, steps=1, loss="huber", progress=False)
    with pytest.raises(ValueError, match="backoff"):
        train(net, x, x, theta, steps=1, backoff=-1, progress=False)
    with pytest.raises(ValueError, match="bounds"):
        train(net, x, x, theta, steps=1, bounds={"V": (0, None)}, progress=False)
    with pytest.raises(ValueError, match="learning rate"):
        train(net, x, x, theta, steps=1, lr=-1.0, progress=False)
    with pytest.raises(ValueError, match="steps"):
        train(net, x, x, theta, steps=-1, progress=False)
    with pytest.raises(ValueError, match="shape"):
        train(net, x, x[:3], theta, steps=1, progress=False)
    theta2, hist = train(net, x, x, theta, steps=0, progress=False)
    assert hist.loss == [] and len(hist.layer_loss) == LAYERS + 1
    for k in theta:
        np.testing.assert_array_equal(theta2[k], theta[k])


def test_public_train_wraps_the_runtime_train_with_a_diagnosis():
    """npdegen.train is the runtime train plus a stability diagnosis of a divergence."""
    import inspect
    from npdegen.runtime import train as runtime
    assert npdegen.train is not runtime.train and npdegen.train.__wrapped__ is runtime.train
    assert inspect.signature(npdegen.train) == inspect.signature(runtime.train)
    assert npdegen.TrainHistory is runtime.TrainHistory and npdegen.TrainingDiverged is runtime.TrainingDiverged
    assert {"train", "TrainHistory", "TrainingDiverged"} <= set(npdegen.__all__)
    net = adr_net("homogeneous")
    x = smooth_inputs(3)
    kw = dict(steps=5, optimizer="sgd", lr=1e308, progress=False)
    with np.errstate(all="ignore"):
        with pytest.raises(npdegen.TrainingDiverged) as bare:
            runtime.train(net, x, 1e200 * x, scalars(START), **kw)
        with pytest.raises(npdegen.TrainingDiverged) as public:
            npdegen.train(net, x, 1e200 * x, scalars(START), **kw)
    assert "stability of the last finite parameters" not in str(bare.value)
    assert str(public.value).startswith(str(bare.value))
    assert "stability of the last finite parameters" in str(public.value)
    assert public.value.step == bare.value.step and public.value.where == bare.value.where
