"""The 1-D NumPy kernels' blocking: every way of cutting a layer gives the same numbers.

The generated step NumPy module cuts each layer into blocks of ``BLOCK_ELEMS`` values: whole
samples when one fits (and then finishes a block's backward — fold and λ update — while it is in
cache), else slabs of grid columns over the whole batch (the backward's λ update after all blocks).
The default only reaches the second path on large problems, so here the block size is shrunk on
small ones and the results compared, in float64, with the same network run as one block (itself
checked against finite differences and the hand-written references in test_gradients /
test_reference), and with finite differences directly for blocked layouts.
"""
import numpy as np
import pytest

from npdegen import NeuralPDE

N, BATCH, LAYERS = 12, 7, 3

#: block_elems: the layouts a (7, 12) batch gets from them.
LAYOUTS = {
    "one row per block": N,          # 7 blocks of 1 sample
    "two rows per block": 2 * N,     # 4 blocks of 2 samples
    "three rows per block": 3 * N,   # 3 blocks (3, 3, 1 samples)
    "column blocks": 5 * BATCH,      # block_elems < n·batch... columns [0, 5), [5, 10), [10, 12)
    "one column per block": 5,       # 12 blocks of one column over the whole batch
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


def compiled(layer, monkeypatch, block_elems=None, **options):
    net = layer.compile(n=N, spacing=0.8, layers=LAYERS, **options)
    if block_elems is not None:
        monkeypatch.setattr(net.kernel, "BLOCK_ELEMS", block_elems)
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
    net = compiled(layer, monkeypatch, LAYOUTS[layout], **options)
    assert len(net._workspace(BATCH)["blocks"]) > 1
    compare(results(net, theta, x, y), expected)


def test_layouts_are_what_the_docstring_says(adr, monkeypatch):
    k = compiled(layer_for(adr), monkeypatch).kernel
    rows = k.workspace(7, (12,), np.float64, block_elems=12)
    assert rows["whole"] and [(b.b0, b.b1, b.a0, b.a1) for b in rows["blocks"]] == [(i, i + 1, 0, 12) for i in range(7)]
    pairs = k.workspace(7, (12,), np.float64, block_elems=24)
    assert [(b.b0, b.b1) for b in pairs["blocks"]] == [(0, 2), (2, 4), (4, 6), (6, 7)]
    cols = k.workspace(2, (300,), np.float64, block_elems=100)
    assert not cols["whole"]
    assert [(b.b0, b.b1, b.a0, b.a1) for b in cols["blocks"]] == [(0, 2, a, min(a + 50, 300)) for a in range(0, 300, 50)]


@pytest.mark.parametrize("boundary", ["periodic", "dirichlet", "neumann"])
@pytest.mark.parametrize("block_elems", [N, 5])
def test_blocked_gradients_against_finite_differences(adr, rng, monkeypatch, block_elems, boundary):
    """Independent of the one-block run: central differences of the loss, float64."""
    net = compiled(layer_for(adr, activation="sigmoid"), monkeypatch, block_elems,
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
