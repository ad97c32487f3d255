"""PyTorch wrapper (issue 12, item 1): npdegen.torch.NeuralPDEModule."""
import copy

import numpy as np
import pytest
import sympy as sp

torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install npdegen[torch])")
from npdegen.torch import NeuralPDEModule, _Apply, _route  # noqa: E402

import npdegen  # noqa: E402

q, X, Y = sp.symbols("q x y")
z = sp.Function("z")(q)
U, D, R, nu = sp.symbols("U D R nu")

#: every family (and each family for the bias), over the three families' combinations
CONFIGS = {
    "het-U/hom-D/td-R/hom-b": ({U: "heterogeneous", D: "homogeneous", R: "time-dependent"}, "homogeneous", {}),
    "hom/het-b": ({U: "homogeneous", D: "homogeneous", R: "homogeneous"}, "heterogeneous", {}),
    "td-b/omega": ({U: "heterogeneous", D: "homogeneous"}, "time-dependent", {"train_omega": True}),
}


def _adr(params, bias, activation="tanh"):
    transform = z - U * z.diff(q) + D * z.diff(q, 2) + (R * z if R in params else 0)
    return npdegen.NeuralPDE(transform, z, activation=activation, params=params, bias=bias)


def _module(layer, values=None, **opts):
    return NeuralPDEModule(layer, seed=1, scale=0.1, values=values, **opts)


def _apply(module):
    return lambda x, *params: _Apply.apply(module, x, *params)


def _inputs(module, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, *module.grid, generator=g, dtype=module.dtype, requires_grad=True)
    return x, [p for p in module.parameters()]


def _gradcheck(module, batch=2):
    x, params = _inputs(module, batch)
    assert torch.autograd.gradcheck(_apply(module), (x, *params), eps=1e-6, atol=1e-7, rtol=1e-5)


def _numba_or_skip(backend):
    if backend == "numba":
        pytest.importorskip("numba", reason="numba is not installed")


def _matrix():
    """numpy: everything; numba: the first combination, periodic (its kernel is the one
    test_gradients_equal_loss_and_grad uses); the rest is marked slow (each numba boundary is a cold
    compile of ~5-10 s; the numba kernels' boundaries are checked against NumPy in test_step_numba.py)."""
    for backend in ("numpy", "numba"):
        for i, config in enumerate(CONFIGS):
            for boundary in ("periodic", "dirichlet", "neumann"):
                marks = [pytest.mark.slow] if backend == "numba" and (i or boundary != "periodic") else []
                yield pytest.param(config, boundary, backend, marks=marks, id=f"{backend}-{config}-{boundary}")


@pytest.mark.parametrize("config, boundary, backend", list(_matrix()))
def test_gradcheck_every_family_boundary_backend(config, boundary, backend):
    _numba_or_skip(backend)
    params, bias, opts = CONFIGS[config]
    module = _module(_adr(params, bias), values={"D": 0.2}, n=6, layers=3, omega=0.7, boundary=boundary,
                     backend=backend, **opts)
    assert [k for k, _ in module.named_parameters()] == list(module.net.shapes)
    _gradcheck(module)


def _layers_nd_nonlinear():
    f = sp.Function("z")(X, Y)
    yield "2-D", npdegen.NeuralPDE(f - U * f.diff(X) + D * (f.diff(X, 2) + f.diff(Y, 2)), f, activation="tanh",
                                   params={U: "heterogeneous", D: "homogeneous"}, bias="homogeneous"), \
        dict(n=(5, 4), layers=3, omega=0.7, boundary=("periodic", "neumann")), {"D": 0.1}
    yield "nonlinear", npdegen.NeuralPDE(z + nu * z.diff(q, 2) - z * z.diff(q) / 4, z, params={nu: "heterogeneous"}), \
        dict(n=7, layers=3, omega=0.8, boundary="dirichlet"), {"nu": 0.1}


@pytest.mark.parametrize("name, layer, opts, values", list(_layers_nd_nonlinear()), ids=lambda v: v if isinstance(v, str) else "")
def test_gradcheck_nd_and_nonlinear(name, layer, opts, values):
    module = _module(layer, values=values, **opts)
    _gradcheck(module)
    _equals_loss_and_grad(module)


def _equals_loss_and_grad(module, batch=3):
    x, params = _inputs(module, batch, seed=3)
    y = torch.randn(batch, *module.grid, dtype=module.dtype, generator=torch.Generator().manual_seed(4))
    loss = 0.5 * ((module(x) - y) ** 2).sum()
    loss.backward()
    ref_loss, ref = module.net.loss_and_grad(x.detach().numpy(), y.numpy(), module.numpy_params(), input_grad=True)
    assert abs(loss.item() - ref_loss) <= 1e-12 * max(1.0, abs(ref_loss))
    for k, p in [("x", x), *module.parameter_dict().items()]:
        np.testing.assert_allclose(p.grad.numpy(), ref[k], rtol=1e-12, atol=1e-12 * float(np.abs(ref[k]).max() + 1))


@pytest.mark.parametrize("config, backend", [(c, "numpy") for c in CONFIGS] + [(next(iter(CONFIGS)), "numba")])
def test_gradients_equal_loss_and_grad(config, backend):
    _numba_or_skip(backend)
    params, bias, opts = CONFIGS[config]
    module = _module(_adr(params, bias), values={"D": 0.2}, n=16, layers=5, omega=0.7, backend=backend, **opts)
    _equals_loss_and_grad(module)


@pytest.mark.parametrize("checkpoint", [None, 2])
def test_forward_and_backward_run_the_forward_kernel_once(checkpoint, monkeypatch):
    layer = _adr({U: "heterogeneous", D: "homogeneous", R: "time-dependent"}, "homogeneous")
    module = _module(layer, values={"D": 0.2}, n=16, layers=6, omega=0.7, checkpoint=checkpoint)
    net = module.net
    calls = []
    real = net.kernel.forward
    monkeypatch.setattr(net.kernel, "forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    x, _ = _inputs(module, 4)
    out = module(x)
    forwards = len(calls)
    (out ** 2).sum().backward()
    segments = 1 if checkpoint is None else -(-6 // checkpoint)
    assert forwards == segments                      # one forward sweep (segment by segment)
    # the backward only recomputes a checkpointed tape's earlier segments, as net.backward does
    assert len(calls) - forwards == segments - 1
    assert x.grad is not None and all(p.grad is not None for p in module.parameters())


def test_float32_shapes_and_leading_axes():
    layer = _adr({U: "heterogeneous", D: "homogeneous"}, None)
    module = _module(layer, values={"D": 0.2}, n=12, layers=4, omega=0.7, dtype="float32")
    assert module.dtype == torch.float32 and all(p.dtype == torch.float32 for p in module.parameters())
    x = torch.randn(2, 3, 12)
    out = module(x)
    assert out.shape == (2, 3, 12) and out.dtype == torch.float32
    np.testing.assert_array_equal(out.detach().numpy().reshape(6, 12),
                                  module.net.forward(x.numpy().reshape(6, 12), module.numpy_params()))
    single = module(x[0, 0])                          # one sample, shaped like the grid
    assert single.shape == (12,)
    np.testing.assert_array_equal(single.detach().numpy(), out[0, 0].detach().numpy())
    with pytest.raises(TypeError, match="float64.*float32"):
        module(x.double())
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 12\)"):
        module(torch.zeros(3, 11))
    module.double()                                   # casting the module is refused at the call, clearly
    with pytest.raises(TypeError, match="parameter 'D' is torch.float64"):
        module(x)


def test_device_routing_guards():
    """CPU tensors go to NumPy/numba networks, CUDA tensors to CuPy networks; the rest is refused."""
    assert _route(False, "cpu") == "numpy"
    assert _route(True, "cuda") == "cupy"
    with pytest.raises(TypeError, match="CUDA tensor was given to a CPU network"):
        _route(False, "cuda")
    with pytest.raises(TypeError, match="cpu tensor was given to a GPU network"):
        _route(True, "cpu")
    with pytest.raises(TypeError, match="not supported"):
        _route(False, "mps")


def test_init_values_state_dict_deepcopy_and_in_place_guard():
    layer = _adr({U: "heterogeneous", D: "homogeneous"}, "homogeneous")
    net = layer.compile(n=8, layers=3, omega=0.7)
    theta = {"U": np.linspace(-0.1, 0.1, 8), "D": 0.3, "b": 0.0}
    module = NeuralPDEModule(net, theta=theta)
    assert module.net is net and float(module.D.detach()) == 0.3 and module.U.shape == (8,)
    with pytest.raises(TypeError, match="already compiled"):
        NeuralPDEModule(net, n=8)
    clone = copy.deepcopy(module)
    assert clone.net is net and clone.U is not module.U
    with torch.no_grad():
        clone.D.add_(0.1)
    module.load_state_dict(clone.state_dict())
    assert float(module.D.detach()) == pytest.approx(0.4)
    x = torch.randn(2, 8, dtype=torch.float64)
    out = module(x)
    with torch.no_grad():
        module.U.add_(1.0)                            # the tape reads U's memory in the backward
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


def test_sequential_encoder_pde_decoder_trains_and_compiles():
    torch.manual_seed(0)
    n = 16
    layer = _adr({U: "heterogeneous", D: "homogeneous", R: "homogeneous"}, "homogeneous")
    pde = _module(layer, values={"D": 0.2}, n=n, layers=4, omega=0.7)
    model = torch.nn.Sequential(torch.nn.Linear(8, n, dtype=torch.float64), torch.nn.Tanh(), pde,
                                torch.nn.Linear(n, 4, dtype=torch.float64))
    x = torch.randn(32, 8, dtype=torch.float64)
    y = torch.sin(x[:, :4] * 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    assert pde.U.grad is not None and float(pde.U.grad.abs().sum()) > 0

    # torch.compile: the graph breaks around the layer, which runs eagerly; same values and gradients
    compiled = torch.compile(model, backend="aot_eager")
    xc = x.clone().requires_grad_()
    xe = x.clone().requires_grad_()
    out_c, out_e = compiled(xc), model(xe)
    torch.testing.assert_close(out_c, out_e, rtol=1e-13, atol=1e-13)
    out_c.sum().backward()
    out_e.sum().backward()
    torch.testing.assert_close(xc.grad, xe.grad, rtol=1e-12, atol=1e-13)


def test_data_parallel_style_batches():
    """Batch first: a batch split in chunks (as DataParallel scatters it) gives the same outputs and the
    summed gradients of the whole batch."""
    layer = _adr({U: "heterogeneous", D: "homogeneous"}, "heterogeneous")
    module = _module(layer, values={"D": 0.2}, n=10, layers=3, omega=0.7)
    x = torch.randn(6, 10, dtype=torch.float64)
    whole = module(x)
    whole.square().sum().backward()
    grads = {k: p.grad.clone() for k, p in module.parameter_dict().items()}
    module.zero_grad()
    parts = [module(c) for c in x.chunk(3)]
    torch.cat(parts).square().sum().backward()
    torch.testing.assert_close(torch.cat(parts), whole, rtol=0, atol=0)
    for k, p in module.parameter_dict().items():
        torch.testing.assert_close(p.grad, grads[k], rtol=1e-12, atol=1e-14)
    # nn.DataParallel itself (on a machine without GPUs it calls the module directly)
    torch.testing.assert_close(torch.nn.DataParallel(module)(x), whole, rtol=0, atol=0)


def test_recycled_buffers_are_never_shared_by_live_tapes():
    """Tapes draw trajectory buffers from a pool; a set returns only when its tape is freed."""
    layer = _adr({U: "heterogeneous", D: "homogeneous", R: "time-dependent"}, "homogeneous")
    module = _module(layer, values={"D": 0.2}, n=16, layers=4, omega=0.7)
    xs = [torch.randn(3, 16, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    for _ in range(2):                               # second round: the pool holds the first round's sets
        outs = [module(x) for x in xs]               # three live tapes
        for x, out in reversed(list(zip(xs, outs))):
            x.grad = None
            out.square().sum().backward()
            dx, _ = module.net.vjp(x.detach().numpy(), module.numpy_params(), 2 * out.detach().numpy())
            np.testing.assert_allclose(x.grad.numpy(), dx, rtol=1e-13, atol=1e-14)
        del outs, out
    pool = module.net._tape_pool                     # the network's tape pool (npdegen.runtime.tape)
    assert 1 <= len(pool.free) <= pool.keep


def test_inference_without_grad_keeps_no_tape(monkeypatch):
    layer = _adr({U: "heterogeneous", D: "homogeneous"}, "homogeneous")
    module = _module(layer, values={"D": 0.2}, n=8, layers=3, omega=0.7)
    twin = NeuralPDEModule(module.net, theta=module.numpy_params())
    assert twin._lock is module._lock                # one lock per network
    x = torch.randn(2, 8, dtype=torch.float64)
    with_grad = module(x)
    import npdegen.runtime.network as network
    monkeypatch.setattr(network, "record", lambda *a: pytest.fail("a tape was recorded"))
    with torch.no_grad():
        out = module(x)
    assert out.grad_fn is None
    torch.testing.assert_close(out, with_grad.detach(), rtol=0, atol=0)
    module.requires_grad_(False)
    assert module(x).grad_fn is None                 # frozen parameters, input without grad
