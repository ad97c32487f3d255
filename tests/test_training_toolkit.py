"""Issue 12, item 4: optimizers, schedules, clipping, AdamW's decay, early stopping, backoff after
an overflow, the stability constraint, progress output, callbacks and checkpoint/resume with the
new optimizers (bit for bit)."""
import io
import json
import logging
import math

import numpy as np
import pytest
import sympy as sp

import npdegen
from npdegen import NeuralPDE
from npdegen.optim import (SGD, Adam, AdamW, Cosine, EarlyStopping, Progress, ReduceOnPlateau, StepDecay, Tracker,
                           clip_by_global_norm, clip_by_value)
from npdegen.runtime import checkpoint as ck
from npdegen.runtime.network import NonFiniteError

q = sp.Symbol("q")
z = sp.Function("z")(q)
U, D, R = sp.symbols("U D R")
N = 32
TRUTH = {"U": np.array(0.3), "D": np.array(0.4), "R": np.array(-0.1)}
START = {"U": np.array(0.1), "D": np.array(0.25), "R": np.array(-0.05)}     # stable (certified)


def adr(family="homogeneous", activation="identity", layers=8):
    layer = NeuralPDE(z + R * z - U * z.diff(q) + D * z.diff(q, 2), z, activation=activation,
                      params={U: family, D: family, R: family})
    return layer.compile(n=N, layers=layers, omega=0.8)


def data(seed=0, batch=16, net=None, noise=0.0):
    rng = np.random.default_rng(seed)
    qq = np.arange(N) / N
    x = sum(rng.standard_normal((batch, 1)) / m * np.sin(2 * np.pi * m * qq + rng.uniform(0, 6.3, (batch, 1)))
            for m in range(1, 5))
    net = net or adr()
    return x, net.forward(x, TRUTH) + noise * rng.standard_normal(x.shape)


# ---------------------------------------------------------------------------- schedules and clipping
def test_schedules():
    cos = Cosine(total=10, floor=0.1)
    assert cos(0) == 1.0 and cos(10) == pytest.approx(0.1) and cos(20) == pytest.approx(0.1)
    assert cos(5) == pytest.approx(0.55)
    warm = Cosine(total=10, warmup=4)
    assert [warm(t) for t in range(4)] == [0.25, 0.5, 0.75, 1.0] and warm(4) == 1.0
    step = StepDecay(every=3, gamma=0.5)
    assert [step(t) for t in range(7)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]
    plateau = ReduceOnPlateau(factor=0.5, patience=2)
    for metric in [1.0, 0.5, 0.5, 0.5, 0.5]:        # reduced after more than `patience` bad epochs
        plateau.observe(metric)
    assert plateau(0) == 0.5 and plateau.wait == 0
    state = plateau.state_dict()
    other = ReduceOnPlateau(factor=0.5, patience=2)
    other.load_state_dict(state)
    assert (other.best, other.wait, other.current) == (0.5, 0, 0.5)


def test_schedule_drives_the_learning_rate_of_training():
    net = adr()
    x, y = data(net=net)
    tracker = Tracker()
    opt = Adam(lr=0.01, schedule=StepDecay(every=5, gamma=0.1))
    npdegen.train(net, x, y, START, steps=12, optimizer=opt, callbacks=[tracker], progress=False)
    lrs = [e["lr"] for e in tracker.epochs]          # full batch: one epoch per step, lr of the next update
    np.testing.assert_allclose(lrs, [0.01] * 4 + [1e-3] * 5 + [1e-4] * 3, rtol=1e-12)
    assert opt.t == 0                                # the caller's optimizer object is not used up


def test_clipping():
    grads = {"a": np.array([3.0, 0.0]), "b": np.array(4.0)}
    clipped = clip_by_global_norm(grads, 1.0, ["a", "b"])
    np.testing.assert_allclose(clipped["a"], [0.6, 0.0])
    assert float(clipped["b"]) == pytest.approx(0.8)
    assert clip_by_global_norm(grads, 10.0, ["a", "b"]) is grads
    np.testing.assert_array_equal(clip_by_value(grads, 1.0, ["a"])["a"], [1.0, 0.0])
    # SGD with clip_norm moves by at most lr * clip_norm
    theta = {"a": np.zeros(2), "b": np.array(0.0)}
    new = SGD(lr=0.1, clip_norm=1.0).update(theta, grads, ["a", "b"])
    step = math.sqrt(np.sum(new["a"] ** 2) + float(new["b"]) ** 2)
    assert step == pytest.approx(0.1)
    with pytest.raises(ValueError, match="clip_norm"):
        SGD(lr=0.1, clip_norm=-1.0)


def test_adamw_decouples_the_weight_decay():
    theta = {"w": np.array([1.0, -2.0])}
    zero = {"w": np.zeros(2)}
    w = AdamW(lr=0.1, weight_decay=0.5)
    new = w.update(theta, zero, ["w"])                 # zero gradient: pure decay θ(1 − lr·wd)
    np.testing.assert_allclose(new["w"], [0.95, -1.9], rtol=1e-15)
    coupled = Adam(lr=0.1, weight_decay=0.5).update(theta, zero, ["w"])
    np.testing.assert_allclose(coupled["w"], [0.9, -1.9], rtol=1e-7)   # L2 through Adam's normalisation: ±lr
    assert AdamW(lr=0.1, weight_decay=0.0).update(theta, zero, ["w"])["w"].tolist() == [1.0, -2.0]
    # AdamW through train shrinks an unused parameter towards 0
    net = adr()
    x, y = data(net=net)
    th, _ = npdegen.train(net, x, y, START, steps=20, optimizer="adamw", lr=0.01, weight_decay=0.1, progress=False)
    th0, _ = npdegen.train(net, x, y, START, steps=20, optimizer="adam", lr=0.01, progress=False)
    assert not all(np.array_equal(th[k], th0[k]) for k in th)


# ---------------------------------------------------------------------------- callbacks
def test_early_stopping_on_a_validation_set_restores_the_best():
    net = adr()
    x, y = data(0, net=net, noise=0.3)
    xv, yv = data(1, net=net, noise=0.3)
    stop = EarlyStopping(patience=3)
    theta, hist = npdegen.train(net, x, y, START, steps=2000, lr=0.05, validation=(xv, yv), callbacks=[stop],
                                progress=False)
    assert hist.stopped is not None and hist.stopped < 2000 and len(hist.loss) == hist.stopped
    assert len(hist.val_loss) == hist.stopped
    assert stop.best == min(hist.val_loss)
    best = int(np.argmin(hist.val_loss))
    assert hist.stopped == best + 1 + 3
    assert all(np.array_equal(theta[k], stop.best_theta[k]) for k in theta)
    assert npdegen.runtime.data.evaluate(net, xv, yv, theta) == pytest.approx(stop.best, rel=1e-12)


def test_callback_protocol_and_stop():
    class Recorder:
        def __init__(self):
            self.calls = []

        def on_train_begin(self, info):
            self.calls.append(("begin", info["steps"]))

        def on_step(self, step, loss, theta):
            self.calls.append(("step", step))
            return step == 4                            # ask to stop after step 4

        def on_train_end(self, history):
            self.calls.append(("end", len(history.loss)))
    net = adr()
    x, y = data(net=net)
    rec = Recorder()
    _, hist = npdegen.train(net, x, y, START, steps=10, callbacks=[rec], progress=False)
    assert rec.calls == [("begin", 10)] + [("step", i) for i in range(5)] + [("end", 5)]
    assert hist.stopped == 5


def test_progress_shows_rate_and_time_left(caplog):
    net = adr()
    x, y = data(net=net)
    out = io.StringIO()
    npdegen.train(net, x, y, START, steps=5, progress=Progress(mode="line", stream=out, interval=0.0))
    text = out.getvalue()
    assert text.count("\r") == 5 and "5/5 (100%)" in text and "steps/s" in text and "left" in text
    with caplog.at_level(logging.INFO, logger="npdegen.train"):
        npdegen.train(net, x, y, START, steps=3, progress=Progress(mode="log", interval=0.0))
    lines = [r.getMessage() for r in caplog.records if r.name == "npdegen.train"]
    assert len(lines) == 3 and lines[-1].startswith("train 3/3") and "elapsed" in lines[-1]
    tqdm = pytest.importorskip("tqdm")
    out = io.StringIO()
    npdegen.train(net, x, y, START, steps=3, progress=Progress(mode="tqdm", stream=out))
    assert "3/3" in out.getvalue()


# ---------------------------------------------------------------------------- divergence
def test_backoff_after_an_overflow_instead_of_stopping():
    net = adr()
    x, y = data(net=net)
    real = net.loss_and_grad

    def wall(x, y, theta, **kw):                      # forced overflow beyond D = 0.42 (truth: 0.4)
        if float(theta["D"]) > 0.42:
            raise NonFiniteError("loss_and_grad: non-finite values in output (forced)")
        return real(x, y, theta, **kw)
    net.loss_and_grad = wall
    with pytest.raises(npdegen.TrainingDiverged, match="forced"):
        npdegen.train(net, x, y, START, steps=40, lr=0.05, progress=False)
    theta, hist = npdegen.train(net, x, y, START, steps=40, lr=0.05, backoff=20, progress=False)
    assert hist.backoffs and len(hist.loss) == 40 and float(theta["D"]) <= 0.42
    assert hist.final_loss < 0.5 * hist.loss[0]
    del net.loss_and_grad
    # a real overflow (SGD far too fast): the run completes with finite values instead of raising
    with np.errstate(all="ignore"):
        with pytest.raises(npdegen.TrainingDiverged):
            npdegen.train(net, x, y, START, steps=50, optimizer="sgd", lr=0.5, progress=False)
        theta, hist = npdegen.train(net, x, y, START, steps=50, optimizer="sgd", lr=0.5, backoff=30, progress=False)
        assert hist.backoffs and len(hist.loss) == 50 and np.all(np.isfinite(hist.loss))
        assert all(np.isfinite(v).all() for v in theta.values())
        with pytest.raises(npdegen.TrainingDiverged):       # a budget too small still raises
            npdegen.train(net, x, y, START, steps=50, optimizer="sgd", lr=1e3, backoff=1, progress=False)


def test_stability_constraint_keeps_every_iterate_certified():
    net = adr()
    x, y = data(net=net)
    tracker = Tracker(params=True)
    npdegen.train(net, x, y, START, steps=15, optimizer="sgd", lr=0.05, constraint="stable", callbacks=[tracker],
                  progress=False)
    assert all(npdegen.stability(net, th).stable for th in tracker.theta)
    free = Tracker(params=True)
    with np.errstate(all="ignore"):
        try:
            npdegen.train(net, x, y, START, steps=15, optimizer="sgd", lr=0.05, callbacks=[free], progress=False)
        except npdegen.TrainingDiverged:
            pass
    assert not all(npdegen.stability(net, th).stable for th in free.theta)    # without it, it leaves


# ---------------------------------------------------------------------------- checkpoints
OPTIMIZERS = {
    "adamw-cosine-clip": lambda: AdamW(lr=0.02, weight_decay=0.01, schedule=Cosine(total=12), clip_norm=5.0),
    "sgd-momentum-step": lambda: SGD(lr=1e-3, momentum=0.9, schedule=StepDecay(every=4, gamma=0.5), clip_value=50.0),
    "adam-plateau": lambda: Adam(lr=0.02, schedule=ReduceOnPlateau(factor=0.5, patience=1)),
}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_checkpoint_resume_with_the_new_optimizers_is_bit_identical(tmp_path, name):
    net = adr()
    x, y = data(net=net, noise=0.2, batch=24)
    xv, yv = data(1, net=net, noise=0.2)
    kw = dict(steps=12, batch_size=8, validation=(xv, yv), loss="mean", progress=False)
    whole, hist = npdegen.train(net, x, y, START, optimizer=OPTIMIZERS[name](), **kw)
    for stop in (1, 5, 6, 11):
        path = tmp_path / f"{name}-{stop}.npz"
        with pytest.raises(KeyboardInterrupt):
            npdegen.train(net, x, y, START, optimizer=OPTIMIZERS[name](), checkpoint=path, checkpoint_every=1,
                          callbacks=[_Interrupt(stop)], **kw)
        resumed, rh = npdegen.train(net, x, y, START, optimizer=OPTIMIZERS[name](), resume=path, **kw)
        assert all(np.array_equal(resumed[k], whole[k]) for k in whole), (name, stop)
        assert rh.loss == hist.loss and rh.val_loss == hist.val_loss
    theta, state, meta, _ = ck.load_checkpoint(path)
    assert meta["optimizer"] == OPTIMIZERS[name]().name


class _Interrupt:
    def __init__(self, after):
        self.after = after

    def on_step(self, step, loss, theta):
        if step + 1 > self.after:
            raise KeyboardInterrupt


def _rewrite(path, target, change):
    with np.load(path, allow_pickle=False) as d:
        arrays = {k: d[k] for k in d.files}
    change(arrays)
    np.savez(target, **arrays)
    return target


@pytest.mark.parametrize("change, message", [
    (lambda a: a.__setitem__("opt/scale", np.asarray(2.0)), "scale must lie in"),
    (lambda a: a.__setitem__("opt/scale", np.asarray(1)), "scalar float"),
    (lambda a: a.__setitem__("opt/sched/best", np.asarray(np.nan)), "schedule state"),
    (lambda a: a.__setitem__("opt/sched/best", np.zeros(2)), "schedule state"),
    (lambda a: a.__setitem__("opt/t", np.asarray(2)), "step count t must be 3"),
])
def test_resume_validates_the_new_optimizer_state(tmp_path, change, message):
    net = adr()
    x, y = data(net=net)
    path = tmp_path / "run.npz"
    opt = lambda: AdamW(lr=0.01, schedule=ReduceOnPlateau())  # noqa: E731
    npdegen.train(net, x, y, START, steps=3, optimizer=opt(), checkpoint=path, progress=False)
    bad = _rewrite(path, tmp_path / "bad.npz", change)
    with pytest.raises(ValueError, match=message):
        npdegen.train(net, x, y, START, steps=3, optimizer=opt(), resume=bad, progress=False)
    again, _ = npdegen.train(net, x, y, START, steps=3, optimizer=opt(), resume=path, progress=False)
    whole, _ = npdegen.train(net, x, y, START, steps=3, optimizer=opt(), progress=False)
    assert all(np.array_equal(again[k], whole[k]) for k in whole)


def test_backoff_state_survives_a_checkpoint(tmp_path):
    net = adr()
    x, y = data(net=net)
    kw = dict(steps=30, optimizer="sgd", lr=0.5, backoff=30, progress=False)
    with np.errstate(all="ignore"):
        whole, hist = npdegen.train(net, x, y, START, **kw)
        stop = hist.backoffs[0] + 3
        path = tmp_path / "b.npz"
        with pytest.raises(KeyboardInterrupt):
            npdegen.train(net, x, y, START, checkpoint=path, checkpoint_every=1, callbacks=[_Interrupt(stop)], **kw)
        meta = ck.load_checkpoint(path)[2]
        assert meta["backoffs"] and ck.load_checkpoint(path)[1]["scale"] < 1
        resumed, rh = npdegen.train(net, x, y, START, resume=path, **kw)
    assert all(np.array_equal(resumed[k], whole[k]) for k in whole) and rh.backoffs == hist.backoffs


def test_progress_is_on_by_default_in_a_notebook(monkeypatch, capsys):
    """Issue 11: the progress display appeared only on a terminal; an IPython kernel counts too."""
    import sys
    import types
    net = adr()
    x, y = data(net=net)
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    npdegen.train(net, x, y, START, steps=3)
    err = capsys.readouterr().err
    assert "3/3" in err
