"""L-BFGS with checkpoints, validation, early stopping, callbacks and monitors (issue 12), and the
clear errors where L-BFGS cannot apply."""
import numpy as np
import pytest
import sympy as sp

import npdegen
from npdegen import NeuralPDE, train
from npdegen.runtime.data import evaluate

pytest.importorskip("scipy")

q = sp.Symbol("q")
z = sp.Function("z")(q)
U, D, R = sp.symbols("U D R")


def network(family="heterogeneous", n=16, layers=4, activation="tanh"):
    layer = NeuralPDE(z + R * z - U * z.diff(q) + D * z.diff(q, 2), z, activation=activation,
                      params={U: family, D: family, R: family})
    return layer.compile(n=n, layers=layers, omega=0.7, boundary="periodic")


def task(net, samples=6, noise=0.0, seed=3):
    rng = np.random.default_rng(seed)
    n = net.grid[0]
    sites = (np.arange(n) + 0.5) / n
    truth = {"U": 0.2 * np.cos(2 * np.pi * sites), "D": 0.3 + 0.1 * np.sin(2 * np.pi * sites),
             "R": -0.05 + 0.0 * sites}
    x = rng.standard_normal((samples, n))
    y = net.forward(x, truth) + noise * rng.standard_normal((samples, n))
    start = {"U": np.zeros(n), "D": np.full(n, 0.25), "R": np.zeros(n)}
    return x, y, start


def interrupted(net, after, calls=None, **kw):
    """Run ``train`` and raise KeyboardInterrupt at the ``after``-th evaluation of the loss."""
    calls = {"n": 0} if calls is None else calls
    real = net.loss_and_grad

    def counting(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > after:
            raise KeyboardInterrupt
        return real(*args, **kwargs)
    net.loss_and_grad = counting
    try:
        return train(net, **kw)
    finally:
        del net.loss_and_grad


@pytest.mark.parametrize("every", [None, 4])
def test_lbfgs_resume_repeats_the_uninterrupted_run_bit_for_bit(tmp_path, every):
    net = network()
    x, y, start = task(net)
    kw = dict(x=x, y=y, theta=start, steps=30, optimizer="lbfgs", checkpoint_every=every, progress=False,
              bounds={"D": (0, None)})
    calls = {"n": 0}
    whole, hist = interrupted(net, 10 ** 9, calls, **kw)          # counts the loss evaluations
    assert hist.info["iterations"] == 30 and len(hist.info["levels"]) == 5      # 1, 2, 4, 8, 16 knots
    total = calls["n"]
    resumed_some = 0
    for after in (3, total // 3, 2 * total // 3, total - 2):
        path = tmp_path / f"run{after}.npz"
        with pytest.raises(KeyboardInterrupt):
            interrupted(net, after, checkpoint=path, **kw)
        if not path.exists():                 # interrupted before the first checkpoint
            continue
        resumed_some += 1
        again, hist2 = train(net, resume=path, **kw)
        for k in whole:
            assert np.array_equal(again[k], whole[k]), (after, k)
        assert hist2.loss == hist.loss and hist2.info["iterations"] == 30
        assert [lv["iterations"] for lv in hist2.info["levels"]] == [lv["iterations"] for lv in hist.info["levels"]]
    assert resumed_some >= 3
    # a finished run resumes to itself; other settings are refused
    path = tmp_path / "done.npz"
    train(net, checkpoint=path, **kw)
    again, _ = train(net, resume=path, **kw)
    assert all(np.array_equal(again[k], whole[k]) for k in whole)
    with pytest.raises(ValueError, match="other settings"):
        train(net, resume=path, **{**kw, "memory": 7})
    with pytest.raises(ValueError, match="other settings"):
        train(net, resume=path, **{**kw, "optimizer": "adam"})


def test_checkpoint_every_restarts_lbfgs_at_the_same_points_with_or_without_a_file(tmp_path):
    net = network()
    x, y, start = task(net)
    kw = dict(steps=12, optimizer="lbfgs", checkpoint_every=5, progress=False, levels=1)
    a, ha = train(net, x, y, start, **kw)
    b, hb = train(net, x, y, start, checkpoint=tmp_path / "c.npz", **kw)
    assert all(np.array_equal(a[k], b[k]) for k in a) and ha.loss == hb.loss
    c, hc = train(net, x, y, start, **{**kw, "checkpoint_every": None})
    assert hc.loss[:6] == ha.loss[:6] and hc.loss[6:] != ha.loss[6:]       # pieces 0-4 are the same run


def test_lbfgs_validation_and_early_stopping_restore_the_best_iterate():
    """A heterogeneous fit of few noisy samples overfits: the validation loss (clean held-out
    samples) turns up; EarlyStopping stops L-BFGS and returns the iterate with the lowest one."""
    net = network(n=32, layers=4, activation="identity")
    x, y, start = task(net, samples=3, noise=0.2, seed=4)
    xv, yv, _ = task(net, samples=16, seed=9)
    tracker = npdegen.optim.Tracker(params=True)
    stopper = npdegen.optim.EarlyStopping(patience=5)
    theta, hist = train(net, x, y, start, steps=300, optimizer="lbfgs", validation=(xv, yv),
                        callbacks=[tracker, stopper], progress=False, levels=1)
    its = hist.info["iterations"]
    assert len(hist.val_loss) == its == len(tracker.epochs) == len(hist.loss) - 1
    assert hist.stopped == its < 300 and stopper.stopped_epoch == its - 1
    best = int(np.argmin(hist.val_loss))
    assert best >= 1 and hist.val_loss[best] < 0.6 * evaluate(net, xv, yv, start)      # it did improve first
    assert stopper.best_epoch == best and its - 1 - best == 5
    assert all(np.array_equal(theta[k], tracker.theta[best][k]) for k in theta)
    assert evaluate(net, xv, yv, theta) == pytest.approx(hist.val_loss[best], rel=1e-12)
    assert hist.val_loss[-1] > hist.val_loss[best]
    for i in (0, best):                         # the logged value is the loss of that iterate
        assert tracker.epochs[i]["val_loss"] == pytest.approx(evaluate(net, xv, yv, tracker.theta[i]), rel=1e-12)


def test_lbfgs_monitor_and_a_stopping_callback():
    net = network()
    x, y, start = task(net)
    seen = []

    def monitor(theta):
        seen.append(float(theta["D"].mean()))
        return "left the region" if len(seen) == 3 else None

    class StopAt:
        def on_step(self, step, loss, theta):
            return step == 6

    with pytest.warns(RuntimeWarning, match="left the region"):
        theta, hist = train(net, x, y, start, steps=40, optimizer="lbfgs", monitor=monitor,
                            callbacks=[StopAt()], progress=False)
    assert hist.stopped == 7 and hist.info["iterations"] == 7 and len(seen) == 7
    assert not hist.info["success"] and hist.info["message"] == "stopped by a callback"
    assert hist.layer_loss[-1] == pytest.approx(hist.loss[-1], rel=1e-12)


def test_what_lbfgs_cannot_do_is_refused_clearly():
    net = network()
    x, y, start = task(net)
    kw = dict(steps=2, optimizer="lbfgs", progress=False)
    with pytest.raises(ValueError, match="whole data set"):
        train(net, x, y, start, batch_size=2, **kw)
    with pytest.raises(ValueError, match="whole data set"):
        train(net, [(x, y)], None, start, **kw)
    with pytest.raises(ValueError, match="whole data set"):
        train(net, x, y, start, method="layerwise", trainable=["D"], **kw)
    with pytest.raises(ValueError, match="constraint"):
        train(net, x, y, start, constraint=lambda old, new: new, **kw)
    with pytest.raises(ValueError, match="backoff"):
        train(net, x, y, start, backoff=2, **kw)
    with pytest.raises(ValueError, match="options"):
        train(net, x, y, start, momentum=0.9, **kw)
    for bad in ({"levels": 0}, {"levels": "fine"}, {"memory": 0}, {"probes": 1.5}, {"precondition": "yes"},
                {"max_evaluations": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            train(net, x, y, start, **kw, **bad)
    theta, hist = train(net, x, y, start, steps=0, optimizer="lbfgs", progress=False)
    assert all(np.array_equal(theta[k], start[k]) for k in start) and len(hist.loss) == 1
    _, hist = train(net, x, y, start, steps=20, optimizer="lbfgs", progress=False, levels=2, max_evaluations=9)
    assert hist.info["evaluations"] <= 9 + 1 and len(hist.info["levels"]) <= 2
