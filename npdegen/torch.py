"""PyTorch: a compiled npdegen network as an ``nn.Module``.

    from npdegen.torch import NeuralPDEModule
    pde = NeuralPDEModule(layer, n=256, layers=16, omega=0.8)      # compile options as layer.compile
    model = torch.nn.Sequential(encoder, pde, decoder)            # x: (..., *grid), batch first

The module holds one ``nn.Parameter`` per entry of ``net.init_params()`` (same names: ``pde.U``,
``pde.b``, ``pde.omega``; ``named_parameters()`` lists them), initialised from ``init_params`` (seed,
scale, values) or from ``theta=``. Its forward runs the generated forward kernel once through a
``torch.autograd.Function`` and keeps the tape (``net.forward(x, theta, keep=True)``); the backward
runs the generated adjoint over that tape (``net.backward``), never a second forward pass.

* Arrays: CPU tensors are handed to the NumPy / numba kernels as zero-copy NumPy views (the output
  and the gradients come back as zero-copy tensors over the network's arrays); CUDA tensors go to a
  ``backend="cupy"`` network through DLPack, on the GPU. A CPU tensor for a CuPy network, or a CUDA
  tensor for a CPU network, is refused with a clear error (no silent host copies).
* dtype: the tensors must have the network's dtype (``float32`` or ``float64``): a mismatch raises a
  ``TypeError`` (no silent cast; ``NeuralPDEModule(..., dtype="float64")`` compiles a float64 network,
  ``x.to(pde.dtype)`` casts the input).
* Shapes: the input is ``(*lead, *grid)``; all leading axes are flattened into the batch (so a
  ``(batch, channels, n)`` input runs ``batch·channels`` samples) and restored on the output.
* ``torch.compile``: the call is wrapped in ``torch.compiler.disable``, so a compiled model graph-
  breaks around the layer and runs it eagerly (the kernels are NumPy / numba / CuPy, not traceable).
* ``DataParallel``: replicas share the compiled network; calls into it hold a lock (a ``Network``
  keeps workspaces between calls and is not thread-safe).
* Memory: a tape holds the trajectory (or, with ``checkpoint=k``, its checkpoints) until autograd
  frees the graph; its buffers then return to the network's tape pool (npdegen.runtime.tape).
  Without gradients (``torch.no_grad()``, nothing requiring grad) the forward keeps no tape.
  A checkpointed network's tape can be replayed once: a second ``backward(retain_graph=True)`` over
  the same graph (or ``gradcheck``) raises; use ``checkpoint=None`` for that.
* The CUDA route (DLPack to CuPy, on PyTorch's current stream) is written and its guards are tested,
  but it has not yet run on a GPU.
"""
from __future__ import annotations

import copy
import threading
import weakref

import numpy as np
import torch
from torch import nn

from .runtime.network import Network

__all__ = ["NeuralPDEModule"]

_DTYPES = {np.dtype("float32"): torch.float32, np.dtype("float64"): torch.float64}


def _route(on_gpu: bool, device_type: str) -> str:
    """Which array library a tensor on ``device_type`` is handed to, for a network on the GPU
    (``backend="cupy"``) or not: ``"numpy"`` or ``"cupy"``; anything else is refused."""
    if device_type == "cpu" and not on_gpu:
        return "numpy"
    if device_type == "cuda" and on_gpu:
        return "cupy"
    if device_type == "cuda":
        raise TypeError("NeuralPDEModule: a CUDA tensor was given to a CPU network (NumPy/numba kernels); "
                        "compile it with backend='cupy' or move the model to the CPU")
    if on_gpu:
        raise TypeError(f"NeuralPDEModule: a {device_type} tensor was given to a GPU network (backend='cupy'); "
                        "move the model and its inputs to CUDA (model.cuda()) or compile with backend='numpy'")
    raise TypeError(f"NeuralPDEModule: tensors on {device_type!r} are not supported (CPU, or CUDA with CuPy)")


def _to_array(t: torch.Tensor, route: str):
    """A zero-copy NumPy (CPU) or CuPy (CUDA, DLPack) view of a detached, contiguous tensor."""
    t = t.detach()
    if not t.is_contiguous():
        t = t.contiguous()
    if route == "numpy":
        return t.numpy()
    import cupy
    return cupy.from_dlpack(t)


def _to_tensor(a, route: str) -> torch.Tensor:
    if route == "numpy":
        a = np.asarray(a)
        if not a.flags.writeable:               # torch.from_numpy wants a writable array
            a = a.copy()
        return torch.from_numpy(a)
    return torch.from_dlpack(a)


class _GpuStream:
    """Run CuPy on PyTorch's current CUDA stream (and device) while the network is called."""

    def __init__(self, route, device):
        self.route, self.device, self.ctx = route, device, []

    def __enter__(self):
        if self.route == "cupy":
            import cupy
            dev = cupy.cuda.Device(self.device.index if self.device.index is not None else torch.cuda.current_device())
            stream = cupy.cuda.ExternalStream(torch.cuda.current_stream(self.device).cuda_stream)
            for c in (dev, stream):
                c.__enter__()
                self.ctx.append(c)
        return self

    def __exit__(self, *exc):
        while self.ctx:
            self.ctx.pop().__exit__(*exc)


class _Apply(torch.autograd.Function):
    """z_L = net(x; θ) with the adjoint of the kept tape as its backward."""

    @staticmethod
    def forward(ctx, module, x, *params):
        net = module.net
        route, lead = _checked(module, x, params)
        with module._lock, _GpuStream(route, x.device):
            x2d, theta = _arrays(module, x, params, route)
            tape = net.forward(x2d, theta, keep=True)       # the tape's buffers come from the network's pool
        ctx.tape, ctx.route, ctx.module, ctx.device = tape, route, module, x.device
        ctx.x_shape = x.shape
        # the tape reads the parameters' memory in its backward: saving them lets autograd detect
        # an in-place update between forward and backward (as for any saved tensor)
        ctx.save_for_backward(*params)
        return _to_tensor(tape.output, route).reshape(*lead, *net.grid)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        ctx.saved_tensors                          # raises if a parameter was modified in place
        module, route = ctx.module, ctx.route
        net = module.net
        with module._lock, _GpuStream(route, ctx.device):
            ct = _to_array(grad_output.to(_DTYPES[net.dtype]), route).reshape(-1, *net.grid)
            dx, grads = net.backward(ctx.tape, ct)
        dx = _to_tensor(dx, route).reshape(ctx.x_shape) if ctx.needs_input_grad[1] else None
        out = [_to_tensor(grads[k], route) if ctx.needs_input_grad[2 + i] else None
               for i, k in enumerate(module._names)]
        return (None, dx, *out)


@torch.compiler.disable
def _call(module, x, params):
    if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params)):
        return _Apply.apply(module, x, *params)
    return _inference(module, x, params)


def _inference(module, x, params):
    """No gradient wanted (``torch.no_grad()``, frozen inputs and parameters): a plain forward, no tape."""
    route, lead = _checked(module, x, params)
    with module._lock, _GpuStream(route, x.device):
        out = module.net.forward(*_arrays(module, x, params, route))
    return _to_tensor(out, route).reshape(*lead, *module.net.grid)


def _checked(module, x, params):
    """The route of the call (``"numpy"`` / ``"cupy"``) and the input's leading axes, after checking
    the devices and dtypes of the input and the parameters."""
    route = _route(module._on_gpu, x.device.type)
    module._check_dtype(x, "input")
    for name, p in zip(module._names, params):
        module._check_dtype(p, f"parameter {name!r}")
        _route(module._on_gpu, p.device.type)
    return route, x.shape[:x.dim() - len(module.net.grid)]


def _arrays(module, x, params, route):
    """``(x2d, theta)``: zero-copy array views of the input (batch flattened) and the parameters."""
    x2d = _to_array(x, route).reshape(-1, *module.net.grid)
    return x2d, {k: _to_array(p, route) for k, p in zip(module._names, params)}


_LOCKS = weakref.WeakKeyDictionary()


def _lock_for(net) -> threading.Lock:
    """One lock per compiled network, shared by every module (and replica) that runs it."""
    return _LOCKS.setdefault(net, threading.Lock())


class NeuralPDEModule(nn.Module):
    """An npdegen layer as an ``nn.Module``; see the module docstring.

    ``layer`` is a :class:`~npdegen.NeuralPDE` (compiled here with ``compile_options``, as
    ``layer.compile(**compile_options)``) or an already compiled :class:`~npdegen.runtime.network.Network`.
    ``theta``: initial values (a dict of arrays/tensors shaped as ``net.shapes``); otherwise
    ``net.init_params(seed, scale, values)``.
    """

    def __init__(self, layer, *, theta: dict | None = None, seed: int = 0, scale: float = 0.01,
                 values: dict | None = None, **compile_options):
        super().__init__()
        if isinstance(layer, Network):
            if compile_options:
                raise TypeError(f"NeuralPDEModule: compile options {sorted(compile_options)} given with an "
                                "already compiled network")
            net = layer
        else:
            net = layer.compile(**compile_options)
        self.net = net
        self._on_gpu = net.backend.name == "cupy"
        self._lock = _lock_for(net)
        self.dtype = _DTYPES.get(np.dtype(net.dtype))
        if self.dtype is None:
            raise TypeError(f"NeuralPDEModule supports float32 and float64 networks, not {net.dtype}")
        if theta is None:
            theta = net.init_params(seed=seed, scale=scale, values=values)
        else:
            theta = {k: v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v for k, v in theta.items()}
            theta = net.check_params(theta)
        self._names = tuple(net.shapes)
        for k in self._names:
            if hasattr(self, k) and k not in self._parameters:
                raise ValueError(f"NeuralPDEModule: parameter name {k!r} clashes with an nn.Module attribute; "
                                 "rename the symbol")
            value = theta[k]
            tensor = torch.from_dlpack(value) if self._on_gpu else torch.from_numpy(np.array(value, copy=True))
            self.register_parameter(k, nn.Parameter(tensor))

    def _check_dtype(self, t: torch.Tensor, what: str):
        if t.dtype != self.dtype:
            raise TypeError(f"NeuralPDEModule: the {what} is {t.dtype}, the network computes in {self.dtype}; "
                            f"cast it (.to({self.dtype})) or compile the layer with dtype="
                            f"'{str(t.dtype).removeprefix('torch.')}'")

    @property
    def grid(self) -> tuple:
        return tuple(self.net.grid)

    def parameter_dict(self) -> dict:
        """``{name: parameter}`` in the network's order."""
        return {k: getattr(self, k) for k in self._names}

    def numpy_params(self) -> dict:
        """The parameters as a ``theta`` dict of NumPy (or CuPy) copies, for ``net.forward`` and friends."""
        if self._on_gpu:
            import cupy
            return {k: cupy.from_dlpack(p.detach()).copy() for k, p in self.parameter_dict().items()}
        return {k: p.detach().cpu().numpy().copy() for k, p in self.parameter_dict().items()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = len(self.net.grid)
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"NeuralPDEModule: the input must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() < d or tuple(x.shape[x.dim() - d:]) != tuple(self.net.grid):
            raise ValueError(f"NeuralPDEModule: the input must have shape (..., {', '.join(map(str, self.net.grid))}), "
                             f"got {tuple(x.shape)}")
        return _call(self, x, [getattr(self, k) for k in self._names])

    def __deepcopy__(self, memo):
        """Copies share the compiled network (and its lock and buffer pool); parameters are copied."""
        memo[id(self.net)], memo[id(self._lock)] = self.net, self._lock
        new = self.__class__.__new__(self.__class__)
        memo[id(self)] = new
        new.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return new

    def extra_repr(self) -> str:
        return repr(self.net)
