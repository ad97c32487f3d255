"""The NumPy kernels' blocking: every way of cutting a layer gives the same numbers.

The generated NumPy module cuts each layer into blocks (whole rows when rows are short, else
columns over the whole batch), fuses the backward of a block of rows, sends sums over the batch
to a bounded number of partial sums, and splits blocks across threads. The defaults only reach
most of these paths on large problems, so here the block size and slot count are shrunk on small
ones and the results compared, in float64, with the same network run as one block (itself checked
against finite differences and the hand-written references in test_gradients / test_reference),
and with finite differences directly for one blocked layout.
"""
import numpy as np
import pytest

from npdegen import NeuralPDE
from npdegen.runtime.network import Network

N, BATCH, LAYERS = 12, 7, 3

#: (block_elems, slots, min_columns): the layouts a (7, 12) batch gets from them.
LAYOUTS = {
    "one row per block, shared slots": (N, 3, 64),      # 7 blocks of 1 row into 3 slots
    "two rows per block, shared slots": (2 * N, 2, 64),  # 4 blocks of 2 rows into 2 slots
    "rows, a slot per block": (3 * N, 16, 64),          # 3 blocks (3, 3, 1 rows)
    "one column block": (5, 16, 64),                    # block_elems < n: columns, one block of 12
    "column blocks": (5, 16, 5),                        # columns [0, 5), [5, 10), [10, 12)
}


def layer_for(adr, activation="tanh", bias="heterogeneous"):
    q, z, U, D, R = adr
    return NeuralPDE(z + R * z - U * z.diff(q) + D * z.diff(q, 2), z, activation=activation,
                     params={U: "heterogeneous", D: "homogeneous", R: "time-dependent"}, bias=bias)


def results(net, theta, x, y, rng_seed=3):
    rng = np.random.default_rng(rng_seed)
    cot = rng.standard_normal(x.shape)
    loss, grads = net.loss_and_grad(x, y, theta, input_grad=True)
    out = {"loss": np.array(loss), "traj": net.forward(x, theta, trajectory=True),
           "step": net.step(x, theta, 1)}
    out.update({f"grad {k}": v for k, v in grads.items()})
    dz, step_grads = net.step_vjp(x, theta, cot, 1)
    out["step_vjp x"] = dz
    out.update({f"step_vjp {k}": v for k, v in step_grads.items()})
    return out


def compare(a, b, rel=1e-12):
    assert a.keys() == b.keys()
    for k in a:
        scale = max(np.max(np.abs(b[k])), 1e-30)
        np.testing.assert_allclose(a[k], b[k], rtol=rel, atol=rel * scale, err_msg=k)


def compiled(layer, monkeypatch, block_elems=None, slots=None, min_columns=None, threads=1, **options):
    net = layer.compile(n=N, spacing=0.8, layers=LAYERS, threads=threads, **options)
    if min_columns is not None:
        monkeypatch.setattr(net.kernel, "MIN_COLUMNS", min_columns)
    if block_elems is not None:
        monkeypatch.setattr(net.kernel, "BLOCK_ELEMS", block_elems)
    if slots is not None:
        monkeypatch.setattr(net.kernel, "SLOTS", slots)
    monkeypatch.setattr(Network, "THREAD_MIN_SIZE", 0)
    return net


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("boundary", ["periodic", "dirichlet", "neumann"])
@pytest.mark.parametrize("omega, alpha, train_omega", [(1.0, None, False), (0.7, 0.1, True)])
def test_blocked_layouts_match_one_block(adr, rng, monkeypatch, layout, boundary, omega, alpha, train_omega):
    layer = layer_for(adr)
    options = dict(omega=omega, boundary=boundary, alpha=alpha, train_omega=train_omega)
    x, y = rng.uniform(-1, 1, (BATCH, N)), rng.uniform(-1, 1, (BATCH, N))
    whole = compiled(layer, monkeypatch, **options)
    theta = whole.init_params(seed=1, scale=0.05, values={"D": 0.2, "U": 0.3})
    expected = results(whole, theta, x, y)
    assert len(whole._workspace(BATCH)["blocks"]) == 1
    for threads in (1, 3):
        net = compiled(layer, monkeypatch, *LAYOUTS[layout], threads=threads, **options)
        compare(results(net, theta, x, y), expected)


def test_layouts_are_what_the_docstring_says(adr, monkeypatch):
    net = compiled(layer_for(adr), monkeypatch, threads=3)
    k = net.kernel
    rows = k.workspace(7, 12, np.float64, threads=3, block_elems=12)
    assert rows["whole_rows"] and [(b.r0, b.r1, b.c0, b.c1) for b in rows["blocks"]] == [(i, i + 1, 0, 12) for i in range(7)]
    assert rows["partial"].shape[0] == min(7, k.SLOTS)
    cols = k.workspace(2, 300, np.float64, threads=2, block_elems=100)
    assert not cols["whole_rows"] and cols["partial"].shape[0] == 1
    assert [(b.c0, b.c1) for b in cols["blocks"]] == [(0, 64), (64, 128), (128, 192), (192, 256), (256, 300)]
    assert len(cols["groups"]) == 2 and sum(len(g) for g in cols["groups"]) == 5
    many = k.workspace(100, 12, np.float64, threads=1, block_elems=12)
    assert many["partial"].shape[0] == k.SLOTS        # 100 one-row blocks share SLOTS partial sums
    assert sum(b.accumulate for b in many["blocks"]) == 100 - k.SLOTS


def test_threads_do_not_change_the_bits_of_shared_slots(adr, rng, monkeypatch):
    """Blocks add into their slot in a fixed order whatever thread runs them."""
    layer = layer_for(adr, activation="softplus", bias="time-dependent")
    x, y = rng.uniform(-1, 1, (BATCH, N)), rng.uniform(-1, 1, (BATCH, N))
    outs = []
    for threads in (1, 2, 3):
        net = compiled(layer, monkeypatch, N, 3, threads=threads, omega=0.6, train_omega=True)
        assert len(net._workspace(BATCH)["groups"]) == threads
        theta = net.init_params(seed=2, scale=0.05, values={"D": 0.2})
        outs.append(net.loss_and_grad(x, y, theta, input_grad=True))
    for loss, grads in outs[1:]:
        assert loss == outs[0][0]
        for k in grads:
            assert np.array_equal(grads[k], outs[0][1][k]), k


@pytest.mark.parametrize("boundary", ["periodic", "dirichlet", "neumann"])
@pytest.mark.parametrize("block_elems", [N, 5])
def test_blocked_gradients_against_finite_differences(adr, rng, monkeypatch, block_elems, boundary):
    """Independent of the one-block run: central differences of the loss, float64."""
    net = compiled(layer_for(adr, activation="sigmoid"), monkeypatch, block_elems, 2, 5, threads=2,
                   omega=0.8, boundary=boundary, alpha=0.05, train_omega=True)
    theta = net.init_params(seed=4, scale=0.1, values={"D": 0.2, "U": 0.3})
    x, y = rng.uniform(-1, 1, (BATCH, N)), rng.uniform(-1, 1, (BATCH, N))
    _, grads = net.loss_and_grad(x, y, theta, input_grad=True)
    eps = 1e-6
    for key in [*theta, "x"]:
        base = x if key == "x" else theta[key]
        flat = base.reshape(-1)
        for i in rng.choice(flat.size, size=min(flat.size, 4), replace=False):
            plus, minus = base.copy(), base.copy()
            plus.reshape(-1)[i] += eps
            minus.reshape(-1)[i] -= eps
            if key == "x":
                fd = (net.loss_and_grad(plus, y, theta)[0] - net.loss_and_grad(minus, y, theta)[0]) / (2 * eps)
            else:
                fd = (net.loss_and_grad(x, y, {**theta, key: plus})[0]
                      - net.loss_and_grad(x, y, {**theta, key: minus})[0]) / (2 * eps)
            g = grads[key].reshape(-1)[i]
            assert abs(fd - g) / max(abs(fd), abs(g), 1e-2) < 1e-6, (key, i, fd, g)
