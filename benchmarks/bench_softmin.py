#!/usr/bin/env python
"""Soft-min (log-sum-exp) stencil layer: forward + gradient, npdegen (numba) against hand-written
PyTorch eager, in ONE run (every implementation once per round, the order rotated).

Workload (issue 13 item 4): 1-D, batch 64, n 4096, L 32, float32, periodic, ω = 1,
``Z_i = −ε log Σ_{j∈{−1,0,1}} exp(lw_j) exp(−z_{i+j}/ε)`` with trainable log-weights ``lw_j``
(homogeneous) and temperature ``ε = exp(s)``; ``loss = 0.5 Σ (z_L − y)²``, gradients w.r.t.
``lw_j`` and ``s``. x, y ~ N(0, 1), ε = 0.3, lw = (−0.2, 0.1, −0.3).

Implementations:

* ``torch_eager`` — PyTorch autograd, ``Z = −ε·logsumexp_j(lw_j − roll(z, −j)/ε)`` (``torch.logsumexp``
  max-shifts, as npdegen does), torch's default intra-op threads; ``torch_eager_1t`` one thread;
* ``npdegen_numba`` — :func:`npdegen.softmin_layer` compiled for numba (all cores);
  ``npdegen_numba_1t`` one thread; ``npdegen_numpy`` (information).

Reported: median / min over ``--repeat`` interleaved rounds after one warm-up, the ratios
``torch_eager / npdegen_numba`` and ``torch_eager_1t / npdegen_numba_1t`` (> 1: npdegen faster),
the load average, and agreement: every loss and gradient against ``npdegen_numpy`` in float64 on a
small size (1e-9) and the benchmark-size losses in float32 (1e-3 relative). Exit status 1 on a
disagreement. The issue's target is ratio ≥ 3.

    python benchmarks/bench_softmin.py              # the issue's size (about a minute; more when loaded)
    python benchmarks/bench_softmin.py --quick      # tiny sizes (smoke test)
    python benchmarks/bench_softmin.py --passes     # where a layer's time goes: forward, pass A, pass B
"""
from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TARGET = 3.0
EPS, LW = 0.3, {"lw_m1": -0.2, "lw_0": 0.1, "lw_p1": -0.3}
OFFSETS = (-1, 0, 1)


def make_data(batch, n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, n)).astype(dtype)
    y = rng.standard_normal((batch, n)).astype(dtype)
    theta = {"logeps": np.asarray(np.log(EPS), dtype=dtype), **{k: np.asarray(v, dtype=dtype) for k, v in LW.items()}}
    return x, y, theta


# ---------------------------------------------------------------------------- npdegen
def npdegen_fn(n, L, backend, dtype, threads=None):
    import sympy as sp

    import npdegen.softmin as sm
    s = sp.Symbol("logeps")
    layer = sm.softmin_layer(list(OFFSETS), eps=sp.exp(s), params={s: "homogeneous"}, name="bench_softmin")
    net = layer.compile(n=n, layers=L, boundary="periodic", backend=backend, dtype=np.dtype(dtype).name,
                        threads=threads)

    def fn(x, y, theta):
        loss, grads = net.loss_and_grad(x, y, theta)
        return float(loss), {k: np.asarray(v, dtype=np.float64) for k, v in grads.items()}
    return fn


# ---------------------------------------------------------------------------- torch
def torch_fn(n, L, dtype, threads=None):
    import torch

    def fn(x, y, theta):
        previous = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        try:
            s = torch.tensor(float(theta["logeps"]), dtype=getattr(torch, np.dtype(dtype).name), requires_grad=True)
            lw = torch.tensor([float(theta[k]) for k in ("lw_m1", "lw_0", "lw_p1")], dtype=s.dtype,
                              requires_grad=True)
            z = torch.from_numpy(x)
            eps = torch.exp(s)
            for _ in range(L):
                shifted = torch.stack([torch.roll(z, -o, dims=-1) for o in OFFSETS])     # z_{i+o}
                z = -eps * torch.logsumexp(lw[:, None, None] - shifted / eps, dim=0)
            loss = 0.5 * torch.sum((z - torch.from_numpy(y)) ** 2)
            loss.backward()
            g = lw.grad.double().numpy()
            return float(loss.detach()), {"logeps": np.float64(s.grad), "lw_m1": g[0], "lw_0": g[1], "lw_p1": g[2]}
        finally:
            torch.set_num_threads(previous)
    return fn


# ---------------------------------------------------------------------------- run
def implementations(n, L, dtype, args):
    out, missing = {}, []
    try:
        import torch  # noqa: F401
        out["torch_eager"] = torch_fn(n, L, dtype)
        out["torch_eager_1t"] = torch_fn(n, L, dtype, threads=1)
    except ImportError as exc:
        missing.append(("torch_eager", str(exc)))
    out["npdegen_numpy"] = npdegen_fn(n, L, "numpy", dtype)
    try:
        import numba  # noqa: F401
        out["npdegen_numba"] = npdegen_fn(n, L, "numba", dtype)
        out["npdegen_numba_1t"] = npdegen_fn(n, L, "numba", dtype, threads=1)
    except ImportError as exc:
        missing.append(("npdegen_numba", str(exc)))
    return out, missing


def agree(results: dict, rel: float, what: str) -> bool:
    ref_loss, ref_grads = results["npdegen_numpy"]
    ok = True
    for name, (loss, grads) in results.items():
        bad = abs(loss - ref_loss) > rel * max(1.0, abs(ref_loss))
        if rel < 1e-6:
            bad |= any(abs(grads[k] - ref_grads[k]) > rel * max(1.0, abs(ref_grads[k])) for k in ref_grads)
        if bad:
            print(f"  DISAGREEMENT ({what}): {name} loss {loss!r} vs npdegen_numpy {ref_loss!r}")
            ok = False
    return ok


def passes(n, batch, dtype, repeat=15):
    """Milliseconds per call (min of ``repeat``) of the numba kernel's serial forward, pass A and
    pass B on one layer of ``batch x n`` (where a layer's time goes; the kernels compiled once)."""
    import sympy as sp

    import npdegen.softmin as sm
    s = sp.Symbol("logeps")
    layer = sm.softmin_layer(list(OFFSETS), eps=sp.exp(s), params={s: "homogeneous"}, name="bench_softmin")
    kernel = layer.compile(n=n, layers=1, boundary="periodic", backend="numba", dtype=np.dtype(dtype).name,
                           threads=1).kernel
    rng = np.random.default_rng(0)
    zp = np.zeros((batch, n + 2), dtype)
    zp[:, 1:-1] = rng.standard_normal((batch, n))
    kernel.fill_halo(zp)
    zn, lam = np.zeros_like(zp), rng.standard_normal((batch, n)).astype(dtype)
    w, t = kernel.workspace(batch, (n,), dtype, 1), np.dtype(dtype).type
    k, values = w["kernels"], (t(np.log(EPS)), t(LW["lw_0"]), t(LW["lw_m1"]), t(LW["lw_p1"]))    # PARAMS order
    assert list(kernel.PARAMS) == ["logeps", "lw_0", "lw_m1", "lw_p1"], kernel.PARAMS
    calls = {"forward": lambda: k["forward"](zp, zn, w["W"], *values, t(1), t(1), t(0), w["shrink"], w["chunk"],
                                             w["group"]),
             "pass A": lambda: k["a"](zp, lam, w["s"], w["S"], w["go"], w["W"], w["J"], *values, t(1), t(1),
                                      w["chunk"]),
             "pass B": lambda: k["b"](zp, w["s"], w["Q"], lam, w["W"], w["J"], *values, t(1), t(0), w["shrink"],
                                      w["ratio"])}
    out = {}
    for name, call in calls.items():
        call()
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
        out[name] = 1e3 * min(times)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--passes", action="store_true", help="only time the numba kernel's passes (1 thread, one layer)")
    args = p.parse_args(argv)
    batch, n, L = (4, 128, 4) if args.quick else (64, 4096, 32)
    if args.passes:
        print(f"numba kernel passes, one layer of {batch} x {n}, float32, 1 thread, ms (min of 15); "
              f"load average {os.getloadavg()[0]:.1f}")
        for name, ms in passes(n, batch, np.float32).items():
            print(f"  {name:<8}{ms:8.3f} ms  ({ms * 1e6 / (batch * n):.2f} ns per site; x{L} layers: {ms * L:.1f} ms)")
        return 0
    print(f"soft-min stencil layer, forward + gradient: batch {batch}, n {n}, L {L}, float32; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

    small, _ = implementations(40, 5, np.float64, args)
    x, y, theta = make_data(3, 40, np.float64)
    ok = agree({k: f(x, y, theta) for k, f in small.items()}, 1e-9, "float64, small size")

    impls, missing = implementations(n, L, np.float32, args)
    for name, why in missing:
        print(f"  {name}: unavailable ({why})")
    x, y, theta = make_data(batch, n, np.float32)
    first = {name: f(x, y, theta) for name, f in impls.items()}            # warm-up (compiles)
    ok &= agree(first, 1e-3, "float32, benchmark size")
    times = {name: [] for name in impls}
    names = list(impls)
    for r in range(args.repeat):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t = time.perf_counter()
            impls[name](x, y, theta)
            times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{'implementation':<20}{'median s':>10}{'min s':>10}")
    for name in names:
        print(f"{name:<20}{med[name]:>10.3f}{min(times[name]):>10.3f}")
    for torch_name, ours in (("torch_eager", "npdegen_numba"), ("torch_eager_1t", "npdegen_numba_1t")):
        if torch_name in med and ours in med:
            ratio = med[torch_name] / med[ours]
            verdict = "met" if ratio >= TARGET else "NOT met"
            print(f"{torch_name} / {ours} = {ratio:.2f}  (target >= {TARGET:g}: {verdict})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
