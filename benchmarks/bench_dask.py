#!/usr/bin/env python
"""Scaling of data-parallel training on Dask (issue 15, item 5): ``npdegen.distributed.loss_and_grad``.

Measures, on a ``LocalCluster`` of 1 and 2 worker processes (one thread each, serial kernels):

1. **block cost**: one ``loss_and_grad`` call over the whole batch vs blocks of 32, 8, 2 samples (in
   this process, one thread): what the canonical blocks of the fixed-order sum cost;
2. **strong scaling**: time per gradient of a fixed batch (default 256 × 4096 × 32, the issue's size)
   on 1 and 2 workers, the data persisted on the workers, next to this process alone (1 and 2
   kernel threads); the issue's target is ≥ 1.6× from 1 to 2 workers;
3. **weak scaling**: ``batch/2`` samples per worker;
4. **overheads**, from Dask's task stream of one call on 2 workers: compute of the chunk tasks per
   worker, the merge/root tasks of the reduction, transfers, and the rest (scheduling, θ and the
   network shipped, the client's round trip); message sizes (a chunk's tree piece, θ); task latency
   and worker-to-worker bandwidth measured on the cluster;
5. **a cost model** fed with those numbers, extrapolated to 8–64 workers (simulated, not measured):

   T(P) = t_s·N/P + λ·(2 + ⌈log₂P⌉) + s·(2P + 2) + ⌈log₂P⌉·(S/β + m) + P·|θ|/β

   with t_s the compute per sample on one worker, λ a task's round-trip latency (submission,
   the chunk tasks' wave, each level of the reduction tree), s the scheduler's cost per task
   (P chunk tasks, P − 1 merges, the root, θ, the network), S the bytes of a tree piece sent per
   merge level, m a merge's compute, |θ| the parameter bytes every worker fetches, β the bandwidth.

Run: ``python benchmarks/bench_dask.py`` (minutes), ``--quick`` (small sizes, a smoke run).
Ends with Markdown for benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import pickle
import platform
import statistics
import time

import numpy as np


def layer():
    import sympy as sp

    import npdegen
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    U, D, R = sp.symbols("U D R")
    return npdegen.NeuralPDE(z + R * z - U * z.diff(q) + D * z.diff(q, 2), z, activation="tanh",
                             params={U: "heterogeneous", D: "heterogeneous", R: "heterogeneous"},
                             bias="heterogeneous")


def _median(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def _data(batch, n, chunk, dtype):
    import dask.array as da
    x = da.random.default_rng(0).standard_normal((batch, n), chunks=(chunk, -1)).astype(dtype)
    return x, da.tanh(x + 0.1)


def block_cost(net, theta, batch, repeat):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, net.n)).astype(net.dtype)
    y = np.tanh(x)
    out = {}
    for block in (batch, 32, 8, 2):
        def run():
            for s in range(0, batch, block):
                net.loss_and_grad(x[s:s + block], y[s:s + block], theta)
        run()
        out[block] = _median(run, repeat)[0]
    return out


def in_process(recipe, theta, batch, repeat, threads):
    net = recipe[0].compile(**{**recipe[1], "threads": threads})
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, net.n)).astype(net.dtype)
    y = np.tanh(x)
    net.loss_and_grad(x, y, theta)
    return _median(lambda: net.loss_and_grad(x, y, theta), repeat)[0]


def _thetas(theta):
    """``theta`` nudged by 1e-12 per call: Dask's keys hash θ, so a repeated call would find its result
    still in the cluster's memory instead of computing it (a training step always has a new θ)."""
    for i in range(1, 1 << 30):
        yield {k: v + 1e-12 * i if k == "b" else v for k, v in theta.items()}


def on_cluster(net, theta, workers, batch, repeat, args, stream=False):
    """Median time per gradient on ``workers`` local worker processes and the task stream of one more
    call; with ``stream``, also latency, scheduler cost per task and bandwidth."""
    import dask
    from distributed import Client, LocalCluster, get_task_stream

    import npdegen.distributed as dd
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        x, y = _data(batch, net.n, batch // workers, net.dtype)
        x, y = client.persist([x, y])
        thetas = _thetas(theta)
        dd.loss_and_grad(net, x, y, next(thetas), client=client)      # warm-up: workers compile, cache
        median, times = _median(lambda: dd.loss_and_grad(net, x, y, next(thetas), client=client), repeat)
        result = {"median": median, "times": times}
        with get_task_stream(client) as ts:
            t0 = time.perf_counter()
            dd.loss_and_grad(net, x, y, next(thetas), client=client)
            result["wall"] = time.perf_counter() - t0
        result["tasks"] = ts.data
        if stream:
            result["latency"] = _median(lambda: dask.compute(dask.delayed(int, pure=False)(1), scheduler=client),
                                        repeat)[0]
            result["per_task"] = _scheduler_cost(client)
            result["bandwidth"] = _bandwidth(client)
        return result


def _scheduler_cost(client, tasks=400):
    import dask
    graph = [dask.delayed(int, pure=False)(i) for i in range(tasks)]
    dask.compute(graph, scheduler=client)
    t0 = time.perf_counter()
    dask.compute(graph, scheduler=client)
    return (time.perf_counter() - t0) / tasks


def _nbytes(v):
    return v.nbytes


def _bandwidth(client, mib=64):
    """Bytes/s of one array fetched by a worker from another (a task's latency included)."""
    a, b = list(client.scheduler_info()["workers"])[:2]
    best = math.inf
    for _ in range(3):
        data = client.submit(np.ones, mib * 2**17, pure=False, workers=[a])
        client.submit(_nbytes, data, workers=[a], pure=False).result()          # made on a
        t0 = time.perf_counter()
        client.submit(_nbytes, data, workers=[b], pure=False).result()          # fetched by b
        best = min(best, time.perf_counter() - t0)
        del data
    return mib * 2**20 / best


def overheads(run, net, theta, batch):
    """Chunk compute per worker, reduction tasks, transfers and the rest, from one call's task stream."""
    per_worker, reduce_s, transfer_s = {}, 0.0, 0.0
    for task in run["tasks"]:
        name = str(task["key"])
        for ss in task["startstops"]:
            span = ss["stop"] - ss["start"]
            if ss["action"] == "transfer":
                transfer_s += span
            elif ss["action"] == "compute" and "_chunk" in name:
                per_worker[task["worker"]] = per_worker.get(task["worker"], 0.0) + span
            elif ss["action"] == "compute" and ("_merge" in name or "_root" in name):
                reduce_s += span
    compute = max(per_worker.values())
    from npdegen.distributed import data_parallel as dp
    from npdegen.distributed.shipping import ship
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch // 2, net.n)).astype(net.dtype)
    piece, _ = dp._chunk(ship(net), theta, x, np.tanh(x), 0, -(-batch // dp.DEFAULT_BLOCK), dp.DEFAULT_BLOCK,
                         "sum", False)
    return {"compute": compute, "per_worker": per_worker, "reduce": reduce_s, "transfer": transfer_s,
            "rest": run["wall"] - compute - reduce_s, "piece_bytes": len(pickle.dumps(piece)),
            "theta_bytes": sum(v.nbytes for v in theta.values()), "nodes": len(piece)}


def model(P, N, t_s, lam, s, S, beta, m, theta_bytes):
    levels = math.ceil(math.log2(P)) if P > 1 else 0
    return (t_s * N / P + lam * (2 + levels) + s * (2 * P + 2) + levels * (S / beta + m)
            + P * theta_bytes / beta)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--n", type=int, default=4096)
    p.add_argument("--layers", type=int, default=32)
    p.add_argument("--backend", default="numba")
    p.add_argument("--dtype", default="float64")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="batch 32, n 512, L 8, repeat 3")
    args = p.parse_args()
    if args.quick:
        args.batch, args.n, args.layers, args.repeat = 32, 512, 8, 3
    options = dict(n=args.n, layers=args.layers, omega=0.5, boundary="periodic", backend=args.backend,
                   dtype=args.dtype, threads=1)
    net = layer().compile(**options)
    theta = net.init_params(seed=0, scale=0.01, values={"D": 0.1})
    N = args.batch
    load = os.getloadavg()[0]
    print(f"# {N} x {args.n} x {args.layers}, {args.dtype}, backend {net.backend.name}, load {load:.1f}", flush=True)

    blocks = block_cost(net, theta, N, args.repeat)
    print("block cost (one thread):", {k: f"{v * 1e3:.1f} ms" for k, v in blocks.items()}, flush=True)
    local = {t: in_process(net.recipe, theta, N, args.repeat, t) for t in (1, 2)}
    print("this process:", {t: f"{v * 1e3:.1f} ms" for t, v in local.items()}, flush=True)
    strong = {1: on_cluster(net, theta, 1, N, args.repeat, args)}
    strong[2] = on_cluster(net, theta, 2, N, args.repeat, args, stream=True)
    weak = {1: on_cluster(net, theta, 1, N // 2, args.repeat, args)["median"], 2: strong[2]["median"]}
    for P, r in strong.items():
        print(f"strong, {P} worker(s): {r['median'] * 1e3:.1f} ms  (runs {[round(t * 1e3) for t in r['times']]})")
    speedup = strong[1]["median"] / strong[2]["median"]
    print(f"speed-up 1 -> 2 workers: {speedup:.2f}x (target >= 1.6x); weak efficiency {weak[1] / weak[2]:.2f}")

    o = overheads(strong[2], net, theta, N)
    lam, s, beta = strong[2]["latency"], strong[2]["per_task"], strong[2]["bandwidth"]
    o1 = overheads(strong[1], net, theta, N)
    merges = [t for t in strong[2]["tasks"] if "_merge" in str(t["key"]) or "_root" in str(t["key"])]
    m = o["reduce"] / max(1, len(merges))
    print(f"2 workers, one call: wall {strong[2]['wall'] * 1e3:.1f} ms, chunk compute (slowest worker) "
          f"{o['compute'] * 1e3:.1f} ms, reduction tasks {o['reduce'] * 1e3:.2f} ms, "
          f"transfers {o['transfer'] * 1e3:.1f} ms, rest {o['rest'] * 1e3:.1f} ms; "
          f"piece {o['piece_bytes']} B ({o['nodes']} node), theta {o['theta_bytes']} B")
    print(f"latency {lam * 1e3:.2f} ms, scheduler {s * 1e6:.0f} us/task, bandwidth {beta / 2**20:.0f} MiB/s")

    compute_s = o1["compute"] / N                                 # kernel compute per sample, 1 worker
    print(f"1 worker, one call: wall {strong[1]['wall'] * 1e3:.1f} ms, chunk compute {o1['compute'] * 1e3:.1f} ms")
    for P in (1, 2):
        predicted = model(P, N, compute_s, lam, s, o["piece_bytes"], beta, m, o["theta_bytes"])
        print(f"model check, {P} worker(s): model {predicted * 1e3:.1f} ms, "
              f"measured {strong[P]['median'] * 1e3:.1f} ms")
    rows = []
    for P in (1, 2, 8, 16, 32, 64):
        for label, total in (("strong", N), ("strong", 16 * N), ("weak", N // 2 * P)):
            if total // P < 1:
                continue
            t = model(P, total, compute_s, lam, s, o["piece_bytes"], beta, m, o["theta_bytes"])
            t1 = model(1, total if label == "strong" else N // 2, compute_s, lam, s, o["piece_bytes"], beta, m,
                       o["theta_bytes"])
            rows.append((label, total, P, t, t1 / t if label == "strong" else t1 / t))
    print("\n### Model (simulated from the measured numbers above)\n")
    print("| scaling | batch | workers | model ms | speed-up (strong) / efficiency (weak) |\n|---|---:|---:|---:|---:|")
    for label, total, P, t, r in rows:
        print(f"| {label} | {total} | {P} | {t * 1e3:.1f} | {r:.2f} |")

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"\n### Measured, {stamp}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load {load:.1f}\n")
    print(f"{N} × {args.n} × {args.layers}, {args.dtype}, backend {net.backend.name}, serial kernels, "
          f"median of {args.repeat}\n")
    print("| run | ms per gradient | vs 1 worker |\n|---|---:|---:|")
    print(f"| this process, 1 kernel thread | {local[1] * 1e3:.1f} | |")
    print(f"| this process, 2 kernel threads | {local[2] * 1e3:.1f} | |")
    for P in (1, 2):
        print(f"| LocalCluster, {P} worker(s) | {strong[P]['median'] * 1e3:.1f} | "
              f"{strong[1]['median'] / strong[P]['median']:.2f}x |")
    print(f"| weak: {N // 2} on 1 worker / {N} on 2 | {weak[1] * 1e3:.1f} / {weak[2] * 1e3:.1f} | "
          f"efficiency {weak[1] / weak[2]:.2f} |")
    print("\nBlocks (one thread, this process): " + ", ".join(
        f"{k} samples {v * 1e3:.1f} ms ({v / blocks[N] - 1:+.0%})" for k, v in blocks.items()))


if __name__ == "__main__":
    main()
