"""A compiled network as it travels to Dask workers, and the worker's own copy of it.

A :class:`~npdegen.runtime.network.Network` pickles as its recipe — the layer (its spec) and the
compile options, under a kilobyte — and compiles again when unpickled: a worker loads the kernel
from its own cache (a hit where the kernel was built before, else it generates and caches it).
:class:`Shipped` wraps that pickle once per network (:func:`ship`) with its SHA-256, so that every
task of a graph refers to one small object, and :meth:`Shipped.network` returns the worker's copy:

* one copy per worker *thread* (a Network keeps workspaces between calls and is not thread-safe),
  kept for the next task (the last few networks per thread);
* with ``threads=1``: the copy's kernel runs serially, whatever the worker machine's core count,
  so that a block's result depends on its samples only (Dask's worker threads give the parallelism).

Every copy is made by unpickling (the threaded scheduler's threads too): a fresh object, nothing
shared with the caller's network; from a warm cache that costs ~10 ms, once per thread and network.
"""
from __future__ import annotations

import collections
import hashlib
import pickle
import threading
import weakref

__all__ = ["Shipped", "ship", "local_networks"]

_KEEP = 4                               # networks kept per worker thread
_local = threading.local()
_shipped: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_copies: "weakref.WeakSet" = weakref.WeakSet()     # every copy made in this process, for diagnostics
_lock = threading.Lock()


class Shipped:
    """A network's pickle (``payload``) and its SHA-256 (``digest``); see the module docstring."""

    def __init__(self, net):
        self.payload = pickle.dumps(net, protocol=pickle.HIGHEST_PROTOCOL)
        self.digest = hashlib.sha256(self.payload).hexdigest()

    def __dask_tokenize__(self):
        return ("npdegen-network", self.digest)

    def network(self):
        """This thread's serial copy of the network (compiled on first use in a worker)."""
        nets = getattr(_local, "networks", None)
        if nets is None:
            nets = _local.networks = collections.OrderedDict()
        net = nets.get(self.digest)
        if net is None:
            if hashlib.sha256(self.payload).hexdigest() != self.digest:
                raise ValueError("the shipped network does not match its checksum")
            net = pickle.loads(self.payload)
            net.threads = 1                     # before its first workspace is made
            nets[self.digest] = net
            _copies.add(net)
            while len(nets) > _KEEP:
                nets.popitem(last=False)
        nets.move_to_end(self.digest)
        return net

    def __repr__(self):
        return f"Shipped({self.digest[:12]}, {len(self.payload)} bytes)"


def ship(net) -> Shipped:
    """The :class:`Shipped` form of ``net`` (made once per network object and reused)."""
    with _lock:
        shipped = _shipped.get(net)
        if shipped is None:
            shipped = _shipped[net] = Shipped(net)
    return shipped


def local_networks() -> list:
    """The worker copies alive in this process, any thread, as plain data (for ``client.run``):
    ``[{"network": repr, "kernel": path of the loaded kernel module, "threads": …}, …]``."""
    return [{"network": repr(n), "kernel": getattr(n.kernel, "__file__", None), "threads": n.threads}
            for n in list(_copies)]
