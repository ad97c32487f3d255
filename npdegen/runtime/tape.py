"""The tape API: a forward pass that keeps what its backward pass needs.

    tape = net.forward(x, theta, keep=True)      # tape.output is z_L
    dx, grads = net.backward(tape, cotangent)    # = net.vjp(x, theta, cotangent), no second forward

A tape owns its trajectory (or, with ``checkpoint=k``, its checkpoints and last segment): buffers
allocated for it alone, so later calls on the network do not overwrite it. The backward of a
checkpointed tape recomputes its segments into the tape's own segment buffer, so such a tape can be
used once; a plain tape any number of times. Wrappers (PyTorch, JAX, Dask) use this to get
gradients without recomputing the forward pass.
"""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Tape", "record"]


@dataclass(eq=False)
class Tape:
    """What :meth:`Network.forward(..., keep=True) <npdegen.runtime.network.Network.forward>` kept."""
    net: object
    output: object            # z_L, shaped like the input
    stored: object = field(repr=False)
    theta: dict = field(repr=False)
    single: bool = False
    shape: tuple = ()         # (batch, *grid) of the run
    used: bool = False


def record(net, x2d, theta, single) -> Tape:
    """Run the forward pass into buffers of its own and return the tape."""
    shared = net._buffers
    net._buffers = {}                  # every buffer made during this call belongs to the tape
    try:
        stored = net._forward_for_gradient(x2d, theta)
    finally:
        net._buffers = shared
    out = net._final_state(stored).copy()
    net._finite("forward", None, output=out)
    return Tape(net=net, output=out[0] if single else out, stored=stored, theta=theta, single=single,
                shape=tuple(x2d.shape))


def replay(net, tape: Tape, cotangent):
    """``(dx, grads)`` from a tape and the cotangent of its output."""
    if not isinstance(tape, Tape) or tape.net is not net:
        raise ValueError("backward needs a tape made by this network's forward(..., keep=True)")
    if tape.used and net._checkpointed:
        raise ValueError("this checkpointed tape was already used: its segment buffer was recomputed; "
                         "run forward(..., keep=True) again")
    lam, _ = net._states(cotangent, "cotangent")
    if tuple(lam.shape) != tape.shape:
        raise ValueError(f"cotangent has shape {tuple(getattr(cotangent, 'shape', ()))}, the tape's output "
                         f"{tuple(tape.output.shape)}")
    tape.used = True
    dx, grads = net._adjoint(tape.stored, lam.copy(), tape.theta, tape.single)
    net._finite("backward", None, input_gradient=dx, gradients=grads)
    return dx, grads
