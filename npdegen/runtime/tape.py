"""The tape API: a forward pass that keeps what its backward pass needs.

    tape = net.forward(x, theta, keep=True)      # tape.output is z_L
    dx, grads = net.backward(tape, cotangent)    # = net.vjp(x, theta, cotangent), no second forward

A tape owns its trajectory (or, with ``checkpoint=k``, its checkpoints and last segment): a buffer
set that no other live tape or call uses, so later calls on the network do not overwrite it; sets
are recycled through a small per-network pool once their tape is garbage. The backward of a
checkpointed tape recomputes its segments into the tape's own segment buffer, so such a tape can be
used once; a plain tape any number of times. Wrappers (PyTorch, JAX, Dask) use this to get
gradients without recomputing the forward pass.
"""
from __future__ import annotations

import threading
import weakref
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


class _Pool:
    """Buffer sets of tapes, recycled once the tape that held one is garbage: allocating and first
    touching L·batch·n fresh values costs about a forward sweep (measured: forward(keep=True) +
    backward 1.26–1.75× ``loss_and_grad`` on numba without recycling, benchmarks/RESULTS.md). A
    ``weakref.finalize`` on each tape gives its set back, so a set is never reused while a tape can
    still read it; at most ``keep`` free sets are held."""

    def __init__(self, keep: int = 2):
        self.free, self.keep, self.lock = [], keep, threading.RLock()   # a finalizer may run anywhere

    def take(self) -> dict:
        with self.lock:
            return self.free.pop() if self.free else {}

    def give(self, buffers: dict):
        with self.lock:
            if len(self.free) < self.keep:
                self.free.append(buffers)


def _pool(net) -> _Pool:
    pool = net.__dict__.get("_tape_pool")
    if pool is None:
        pool = net.__dict__["_tape_pool"] = _Pool()
    return pool


def record(net, x2d, theta, single) -> Tape:
    """Run the forward pass into a buffer set of the tape's own (from the network's pool)."""
    pool = _pool(net)
    buffers = pool.take()
    shared, net._buffers = net._buffers, buffers   # every buffer made during this call is the tape's
    try:
        stored = net._forward_for_gradient(x2d, theta)
    finally:
        net._buffers = shared
    out = net._final_state(stored).copy()
    try:
        net._finite("forward", None, output=out)
    except Exception:
        pool.give(buffers)
        raise
    tape = Tape(net=net, output=out[0] if single else out, stored=stored, theta=theta, single=single,
                shape=tuple(x2d.shape))
    weakref.finalize(tape, pool.give, buffers)
    return tape


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
