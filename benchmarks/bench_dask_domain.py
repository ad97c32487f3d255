#!/usr/bin/env python
"""Domain decomposition on Dask (issue 15 item 3): forward + gradient of a 2-D field in chunks
against the same network on the whole field in one process.

Workload: 2-D heterogeneous ADR, ``Z = z + R z − U z_x − V z_y + D (z_xx + z_yy) − b``, tanh,
ω = 0.5, periodic (``--boundary``), ``loss = 0.5 Σ (z_L − y)²``, gradients w.r.t. every
coefficient and the input; batch ``--batch``, grid ``--n``², ``--layers`` L, ``--dtype``, backend
``--backend`` (numba by default). Contestants, each once per round (order rotated), median/min over
``--repeat`` rounds after one warm-up:

* ``single``: ``net.loss_and_grad`` on the whole field (NumPy arrays; the kernel's own threads,
  all cores).
* ``domain B=…``: ``loss_and_grad_domain`` on a dask array in ``--chunks``² chunks, threaded
  scheduler with one thread per core, one kernel thread per chunk; ``B`` layers per halo
  exchange (``B = L``: one deep halo; ``B = 1``: an exchange per layer, L rounds).
* ``forward`` variants of both (``net.forward`` and ``forward_domain(...).compute()``).

Reported: time, time per value (ns per batch·site·layer), the ratio to ``single``, the redundant
work of the halos (extended sites / sites, per round), graph construction time, and agreement of
the loss and gradients with ``single`` (relative). Ends with the issue's target (domain
forward + gradient within 1.5× of single-process time per value) and a Markdown block for
``benchmarks/RESULTS.md``.

    python benchmarks/bench_dask_domain.py                       # 4096², 2×2 chunks, L 16, float32
    python benchmarks/bench_dask_domain.py --n 2048 --layers 8 --blocks 8,4,1
    python benchmarks/bench_dask_domain.py --quick               # tiny, numpy backend (smoke test)
"""
from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import platform
import statistics
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import dask  # noqa: E402
import dask.array as da  # noqa: E402
import sympy as sp  # noqa: E402

import npdegen  # noqa: E402
from npdegen.distributed.domain import forward_domain, loss_and_grad_domain  # noqa: E402
from npdegen.distributed.halo import HaloPlan  # noqa: E402

TARGET = 1.5        # domain forward + gradient within 1.5x of single-process time per value


def layer():
    x, y = sp.symbols("x y")
    z = sp.Function("z")(x, y)
    R, U, V, D = sp.symbols("R U V D")
    return npdegen.NeuralPDE(z + R * z - U * z.diff(x) - V * z.diff(y) + D * (z.diff(x, 2) + z.diff(y, 2)), z,
                             activation="tanh", params={s: "heterogeneous" for s in (R, U, V, D)},
                             bias="homogeneous", name="adr2d_domain")


def data(net, batch, seed=0):
    rng = np.random.default_rng(seed)
    grid, dt = net.grid, net.dtype
    theta = {"R": rng.uniform(-0.05, 0.05, grid), "U": rng.uniform(-0.1, 0.1, grid),
             "V": rng.uniform(-0.1, 0.1, grid), "D": rng.uniform(0.05, 0.15, grid), "b": np.asarray(0.01)}
    x, y = rng.standard_normal((batch, *grid)), rng.standard_normal((batch, *grid))
    return x.astype(dt), y.astype(dt), {k: np.asarray(v, dt) for k, v in theta.items()}


def redundancy(net, chunks, block):
    """Extended sites / sites of one round (the halo's extra compute)."""
    plan = HaloPlan(chunks, [block * h for h in net.halos], [net.options.boundary] * 2
                 if isinstance(net.options.boundary, str) else net.options.boundary)
    return sum(np.prod(plan.ext_shape(i)) for i in plan.blocks) / np.prod(net.grid)


def timed(fn, repeat, names):
    """Median and min seconds of each contestant over ``repeat`` rotated rounds (after a warm-up)."""
    out = {k: [] for k in names}
    for k in names:
        fn[k]()
    for r in range(repeat):
        order = names[r % len(names):] + names[:r % len(names)]
        for k in order:
            t = time.perf_counter()
            fn[k]()
            out[k].append(time.perf_counter() - t)
    return {k: (statistics.median(v), min(v)) for k, v in out.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=4096)
    p.add_argument("--chunks", type=int, default=2, help="chunks per axis (default 2: 2x2 = 4 chunks)")
    p.add_argument("--layers", type=int, default=16)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--backend", default="numba")
    p.add_argument("--boundary", default="periodic")
    p.add_argument("--blocks", default="", help="layers per exchange to time, e.g. 16,4,1 (default L,L/4,1)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="dask threads")
    p.add_argument("--quick", action="store_true", help="n 64, L 4, numpy backend")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.layers, args.backend, args.repeat = 64, 4, "numpy", 2
    L = args.layers
    blocks = [int(b) for b in args.blocks.split(",")] if args.blocks else sorted({L, max(L // 4, 1), 1}, reverse=True)
    net = layer().compile(n=(args.n, args.n), layers=L, omega=0.5, boundary=args.boundary, dtype=args.dtype,
                          backend=args.backend)
    x, y, theta = data(net, args.batch)
    c = -(-args.n // args.chunks)
    xd = da.from_array(x, chunks=(args.batch, c, c)).persist()
    yd = da.from_array(y, chunks=(args.batch, c, c)).persist()
    values = args.batch * args.n ** 2 * L
    results = {}

    fns = {"single": lambda: results.__setitem__("single", net.loss_and_grad(x, y, theta, input_grad=True)),
           "single forward": lambda: net.forward(x, theta)}
    for b in blocks:
        def run(b=b):
            loss, g = loss_and_grad_domain(net, xd, yd, theta, input_grad=True, block=b)
            results[f"domain B={b}"] = (loss, {**g, "x": g["x"].compute()})
        fns[f"domain B={b}"] = run
        fns[f"domain B={b} forward"] = lambda b=b: forward_domain(net, xd, theta, block=b).compute()
    with dask.config.set(scheduler="threads", num_workers=args.workers):
        times = timed(fns, args.repeat, list(fns))
        t_graph = {}
        for b in blocks:
            with dask.config.set(scheduler="sync"):
                t = time.perf_counter()
                forward_domain(net, xd, theta, block=b).__dask_graph__()
                t_graph[b] = time.perf_counter() - t
    l0, g0 = results["single"]
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load "
               f"{os.getloadavg()[0]:.1f}, Python {platform.python_version()}, NumPy {np.__version__}, "
               f"dask {dask.__version__}")
    head = (f"batch {args.batch}, {args.n}², L {L}, {args.dtype}, {args.backend}, {args.boundary}, "
            f"{args.chunks}×{args.chunks} chunks, {args.workers} dask threads")
    lines = [f"### Domain decomposition, {head} ({datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC)", "",
             f"{machine}; median/min of {args.repeat} rotated rounds after a warm-up.", "",
             "| run | median s | min s | ns/value | × single | halo work | agreement |", "|---|---:|---:|---:|---:|---:|---:|"]
    worst = {}
    for k, (med, mn) in times.items():
        fwd = k.endswith("forward")
        base = times["single forward" if fwd else "single"][0]
        b = int(k.split("=")[1].split()[0]) if "B=" in k else None
        work = f"{redundancy(net, xd.chunks[1:], b):.3f}" if b else "1"
        agree = ""
        if k in results and k != "single":
            loss, g = results[k]
            rel = max([abs(loss - l0) / abs(l0)] + [float(np.max(np.abs(np.asarray(g[q], np.float64) - g0[q])) /
                                                           max(float(np.max(np.abs(g0[q]))), 1e-30)) for q in g0])
            agree = f"{rel:.1e}"
            worst[k] = rel
        lines.append(f"| {k} | {med:.3f} | {mn:.3f} | {med / values * 1e9:.2f} | {med / base:.2f} | {work} | {agree} |")
    lines += ["", "Graph construction (forward, s): " + ", ".join(f"B={b}: {t:.3f}" for b, t in t_graph.items())]
    deep = times[f"domain B={L}"][0] / times["single"][0] if L in blocks else float("nan")
    lines += ["", f"Target: domain forward + gradient within {TARGET}× of single-process time per value: "
              f"{deep:.2f}× with one deep halo (B={L}) — {'met' if deep <= TARGET else 'NOT met'}"
              + (" (quick: tiny sizes, overhead only; the target is for 4096²)." if args.quick else ".")]
    print("\n".join(lines))
    tol = 1e-3 if args.dtype == "float32" else 1e-10
    bad = {k: v for k, v in worst.items() if not v <= tol}
    if bad:
        print(f"DISAGREEMENT beyond {tol}: {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
