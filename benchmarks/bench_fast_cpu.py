#!/usr/bin/env python
"""The fast CPU path (numba backend, issue 4), side by side with PyTorch and NumPy in one run.

Workload and data: those of ``bench_core.py`` (heterogeneous neural ADR, tanh, periodic, float32,
forward + gradient, h = 1, ω = 0.5). Sections, each printed and collected into one Markdown block
(``--append`` adds it to ``benchmarks/RESULTS.md``):

1. machine, load average, memory bandwidth (np.copyto one thread; a numba copy on 1 and all threads);
2. speed at (64, 4096, 32), (8, 262144, 16), (1, 4096, 256): npdegen numba (numba's threads and
   one thread), npdegen numpy, numpy_buffered, torch eager, torch.compile (first two sizes unless
   ``--compile-all``), timed in interleaved rounds (one call of each per round), median and min;
3. where the time goes (numba): forward vs backward, the activation's share (the same network
   with f = identity), parallel speed-up, achieved traffic / bandwidth;
4. thread crossover: one thread vs numba's threads as batch·n grows (L = 16);
5. JIT compile time, cold (fresh cache) and cached (a second process on the same cache);
6. checkpointing at (8, 262144, 64): peak memory (tracemalloc, first call of a fresh network, so
   the kept buffers count) and time, with and without ``checkpoint=8``.

    python benchmarks/bench_fast_cpu.py                 # everything (a few minutes)
    python benchmarks/bench_fast_cpu.py --quick         # small sizes, no torch.compile
    python benchmarks/bench_fast_cpu.py --append        # and append the Markdown to RESULTS.md
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(HERE), str(REPO)]
import bench_core as core  # noqa: E402
import references as ref  # noqa: E402

SIZES = ((64, 4096, 32), (8, 262144, 16), (1, 4096, 256))
QUICK = ((16, 1024, 8), (2, 16384, 4), (1, 1024, 64))
#: issue 4: forward + gradient at least 5x torch eager and 4x torch.compile at the first two
#: sizes; no slower than 4.5 ms at (1, 4096, 256)
TARGET_EAGER, TARGET_COMPILED, TARGET_SMALL_MS = 5.0, 4.0, 4.5


def layer(activation="tanh"):
    import sympy as sp

    import npdegen
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    U, D, R = sp.symbols("U D R")
    return npdegen.NeuralPDE(z + R * z - U * z.diff(q) + D * z.diff(q, 2), z, activation=activation,
                             params={U: "heterogeneous", D: "heterogeneous", R: "heterogeneous"},
                             bias="heterogeneous")


def npdegen_fn(net):
    def fn(x, y, U, D, R, b):
        loss, grads = net.loss_and_grad(x, y, {"U": U, "D": D, "R": R, "b": b})
        return loss, grads
    return fn


def compile_net(batch, n, L, backend="numba", threads=None, activation="tanh", **kw):
    return layer(activation).compile(n=n, spacing=core.H, layers=L, omega=core.OMEGA, boundary="periodic",
                                     dtype="float32", backend=backend, threads=threads, **kw)


# ---------------------------------------------------------------------------- 1. bandwidth
def numba_bandwidth(mib=256, repeat=5):
    """Copy bandwidth of a numba loop (bytes read + written / s) on 1 thread and on numba's threads."""
    import numba

    @numba.njit(parallel=True, error_model="numpy")
    def copy(a, b):
        for c in numba.prange(64):
            lo = numba.uintp(c * (a.size // 64))
            for i in range(numba.uintp(a.size // 64)):      # unsigned: vectorised, as in the kernels
                b[lo + i] = a[lo + i]
    a = np.ones(mib * 2**20 // 4, np.float32)
    b = np.empty_like(a)
    out = {}
    for threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):
        numba.set_num_threads(threads)
        copy(a, b)
        best = min(_timed(lambda: copy(a, b)) for _ in range(repeat))
        out[threads] = 2 * a.nbytes / best
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    return out


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------- 2. speed
def implementations(batch, n, L, args):
    impls = {}
    impls["npdegen numba"] = npdegen_fn(compile_net(batch, n, L))
    impls["npdegen numba, 1 thread"] = npdegen_fn(compile_net(batch, n, L, threads=1))
    if not args.quick:
        impls["npdegen numpy"] = npdegen_fn(compile_net(batch, n, L, backend="numpy"))
    impls["numpy_buffered"] = lambda *d: ref.numpy_buffered(*d, core.H, core.OMEGA, L)
    if ref.torch_eager is not None:
        impls["torch eager"] = lambda *d: ref.torch_eager(*d, core.H, core.OMEGA, L)
        if not args.quick and (args.compile_all or (batch, n, L) in SIZES[:2]):
            impls["torch.compile"] = lambda *d: ref.torch_compiled(*d, core.H, core.OMEGA, L)
    return impls


def speed(batch, n, L, args, bandwidth):
    data = core.make_data(batch, n, np.float32, seed=0)
    impls = implementations(batch, n, L, args)
    results, times = {}, {}
    for name, fn in list(impls.items()):
        try:
            t0 = time.perf_counter()
            results[name] = fn(*data)                     # warm-up: compile, caches
            print(f"  {name}: warm-up {time.perf_counter() - t0:.2f} s", flush=True)
            times[name] = []
        except Exception as exc:                           # torch.compile may fail on some set-ups
            print(f"  {name}: FAILED ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})")
            del impls[name]
    for _ in range(args.repeat):                          # interleaved: drift hits everyone alike
        for name, fn in impls.items():
            gc.collect()
            times[name].append(_timed(lambda: fn(*data)))
    loss0 = results["numpy_buffered"][0]
    rows = []
    traffic = core.minimal_traffic(batch, n, L, 4)
    for name in impls:
        med, best = statistics.median(times[name]), min(times[name])
        loss, grads = results[name]
        gerr = max(core.rel_err(np.asarray(grads[k]), results["numpy_buffered"][1][k]) for k in "UDRb")
        rows.append(dict(name=name, med=med, min=best, lerr=abs(loss - loss0) / abs(loss0), gerr=gerr,
                         gbs=traffic / med / 1e9, frac=traffic / med / bandwidth))
        print(f"  {name:26s} median {1e3 * med:9.2f} ms  min {1e3 * best:9.2f} ms   loss rel err {rows[-1]['lerr']:.1e}"
              f"  grad rel err {gerr:.1e}", flush=True)
    return rows


# ---------------------------------------------------------------------------- 3. where the time goes
def breakdown(batch, n, L, repeat, bandwidth):
    data = core.make_data(batch, n, np.float32, seed=0)
    x, y, U, D, R, b = data
    theta = {"U": U, "D": D, "R": R, "b": b}
    out = {}
    for label, kw in (("tanh", {}), ("identity", {"activation": "identity"}), ("tanh, 1 thread", {"threads": 1})):
        net = compile_net(batch, n, L, **kw)
        net.loss_and_grad(x, y, theta)
        fwd = statistics.median(_timed(lambda: net.forward(x, theta)) for _ in range(repeat))
        tot = statistics.median(_timed(lambda: net.loss_and_grad(x, y, theta)) for _ in range(repeat))
        out[label] = dict(forward=fwd, total=tot, parallel=net._workspace(batch)["parallel"])
        if label == "tanh":        # the kernels alone, on the network's own buffers: the rest is the Network
            checked, work = net.check_params(theta), net._workspace(batch)
            traj = net._trajectory(x)
            net.kernel.forward(traj, checked, core.H, core.OMEGA, 0.0, work)
            lam0 = traj[-1, :, 1:n + 1] - y
            grads = {k: np.zeros(v.shape, np.float32) for k, v in checked.items()}
            out[label]["kernel_fwd"] = statistics.median(
                _timed(lambda: net.kernel.forward(traj, checked, core.H, core.OMEGA, 0.0, work)) for _ in range(repeat))
            out[label]["kernel_adj"] = statistics.median(
                _timed(lambda: net.kernel.adjoint(traj, lam0.copy(), checked, core.H, core.OMEGA, 0.0, grads, work))
                for _ in range(repeat))
    sites = batch * n * L
    fwd_bytes, bwd_bytes = 4 * 2 * sites, 4 * 3 * sites           # read z, write z'; read z, lam, write lam'
    t = out["tanh"]
    t["fwd_frac"] = fwd_bytes / t["kernel_fwd"] / bandwidth
    t["bwd_frac"] = bwd_bytes / t["kernel_adj"] / bandwidth
    return out


# ---------------------------------------------------------------------------- 4. thread crossover
def crossover(repeat):
    import numba
    rows = []
    L = 16
    for batch, n in ((1, 1024), (1, 4096), (4, 4096), (16, 4096), (64, 4096), (8, 65536)):
        data = core.make_data(batch, n, np.float32, seed=0)
        x, y, U, D, R, b = data
        theta = {"U": U, "D": D, "R": R, "b": b}
        res = {}
        for threads in (1, numba.config.NUMBA_NUM_THREADS):
            net = compile_net(batch, n, L, threads=threads)
            saved = net.kernel.THREAD_MIN_SIZE
            net.kernel.THREAD_MIN_SIZE = 0                # parallel whenever threads > 1
            net._work.clear()
            net.loss_and_grad(x, y, theta)
            res[threads] = statistics.median(_timed(lambda: net.loss_and_grad(x, y, theta)) for _ in range(repeat))
            net.kernel.THREAD_MIN_SIZE = saved
        rows.append(dict(size=batch * n, batch=batch, n=n, serial=res[1], parallel=res[max(res)]))
        print(f"  batch*n = {batch * n:7d}: 1 thread {1e3 * res[1]:8.3f} ms   {max(res)} threads "
              f"{1e3 * res[max(res)]:8.3f} ms", flush=True)
    return rows


# ---------------------------------------------------------------------------- 5. compile time
CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import numpy as np, bench_fast_cpu as b
t1 = time.perf_counter()
net = b.compile_net(4, 1024, 4)
x = np.ones((4, 1024), np.float32)
theta = net.init_params()
t2 = time.perf_counter(); net.loss_and_grad(x, x, theta); t3 = time.perf_counter()
net.loss_and_grad(x, x, theta); t4 = time.perf_counter()
k = net.kernel
hits = sum(sum(d.stats.cache_hits.values()) for d in (k._forward_serial, k._adjoint_serial))
misses = sum(sum(d.stats.cache_misses.values()) for d in (k._forward_serial, k._adjoint_serial))
print(json.dumps(dict(imports=t1 - t0, render_load=t2 - t1, first_call=t3 - t2, steady=t4 - t3,
                      hits=hits, misses=misses)))
"""


def compile_times():
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NPDEGEN_CACHE_DIR=cache)
        runs = []
        for _ in range(2):
            out = subprocess.run([sys.executable, "-c", CHILD, str(HERE), str(REPO)], env=env, capture_output=True,
                                 text=True, check=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    for label, r in zip(("cold", "cached"), runs):
        print(f"  {label:6s}: imports {r['imports']:.2f} s, render+load {r['render_load']:.2f} s, first call "
              f"{r['first_call']:.2f} s (steady call {1e3 * r['steady']:.2f} ms), numba cache hits {r['hits']}, "
              f"misses {r['misses']}", flush=True)
    return runs


# ---------------------------------------------------------------------------- 6. checkpointing
def checkpointing(batch, n, L, k, repeat):
    """Peak memory of the first call of a fresh network each (its kept buffers count), then the time
    of both networks in interleaved calls."""
    data = core.make_data(batch, n, np.float32, seed=0)
    x, y, U, D, R, b = data
    theta = {"U": U, "D": D, "R": R, "b": b}
    out = {}
    for label, ck in (("all layers", None), (f"checkpoint={k}", k)):
        net = compile_net(batch, n, L, checkpoint=ck)
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        loss, _ = net.loss_and_grad(x, y, theta)          # first call: allocates the kept buffers
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
        out[label] = dict(peak=peak, loss=loss, times=[])
        del net
        gc.collect()
    nets = {label: compile_net(batch, n, L, checkpoint=ck) for label, ck in (("all layers", None), (f"checkpoint={k}", k))}
    for net in nets.values():
        net.loss_and_grad(x, y, theta)
    for _ in range(repeat):
        for label, net in nets.items():
            out[label]["times"].append(_timed(lambda: net.loss_and_grad(x, y, theta)))
    for label, r in out.items():
        r["time"] = statistics.median(r["times"])
        print(f"  {label:14s} peak {r['peak'] / 2**20:8.1f} MiB   time {1e3 * r['time']:8.1f} ms (median of {repeat}, "
              f"interleaved)   loss {r['loss']:.6e}", flush=True)
    return out


# ---------------------------------------------------------------------------- report
def markdown(meta, speeds, parts, cross, compiles, ckpt, args):
    L = [f"## Fast CPU backend (numba) — {meta['date']}", "",
         f"Machine: {meta['machine']}. numba {meta['numba']} (threading layer {meta['layer']}, "
         f"NUMBA_NUM_THREADS={meta['threads']}), torch {meta['torch']}. Load average (1 min): "
         f"{meta['load_start']:.2f} at start, {meta['load_end']:.2f} at the end (other engineers' test runs "
         f"share this machine). Bandwidth: np.copyto {meta['bw'] / 1e9:.1f} GB/s; numba copy "
         + ", ".join(f"{t} thread(s) {v / 1e9:.1f} GB/s" for t, v in meta["numba_bw"].items()) + ".",
         ]
    if speeds:
        L += ["", "Workload of bench_core.py: heterogeneous ADR, tanh, periodic, float32, forward + gradient; "
              f"interleaved rounds, {args.repeat} calls each; ms. 'vs numba' = median / median of npdegen numba.", "",
              "| size | implementation | median | min | vs numba | traffic % of bw | loss rel err | grad rel err |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    verdict = []
    for size, rows in speeds.items():
        fast = next(r for r in rows if r["name"] == "npdegen numba")
        for r in rows:
            L.append(f"| {'×'.join(map(str, size))} | {r['name']} | {1e3 * r['med']:.2f} | {1e3 * r['min']:.2f} | "
                     f"{r['med'] / fast['med']:.2f}× | {100 * r['frac']:.0f} % | {r['lerr']:.1e} | {r['gerr']:.1e} |")
        by = {r["name"]: r for r in rows}
        if size in SIZES[:2]:
            for other, target in (("torch eager", TARGET_EAGER), ("torch.compile", TARGET_COMPILED)):
                if other in by:
                    ratio = by[other]["med"] / fast["med"]
                    verdict.append(f"{'×'.join(map(str, size))}: {ratio:.1f}× faster than {other} "
                                   f"(target ≥ {target:.0f}×: {'met' if ratio >= target else 'NOT met'})")
        if size == SIZES[2]:
            verdict.append(f"1×4096×256: {1e3 * fast['med']:.2f} ms (target ≤ {TARGET_SMALL_MS} ms: "
                           f"{'met' if 1e3 * fast['med'] <= TARGET_SMALL_MS else 'NOT met'})")
    if verdict:
        L += ["", *("- " + v for v in verdict)]
    if parts:
        L += ["", "Where the time goes (numba, median ms; kernel = the generated forward / adjoint alone, the rest of "
              "fwd+grad is the Network: input checks, copying x in, the float64 loss, the non-finite guards, fresh "
              "gradient arrays; bw % = minimal traffic of the kernel / its time / copy bandwidth):", "",
              "| size | fwd+grad | kernel forward | kernel backward | Network | same with f = identity | one thread "
              "| fwd bw % | bwd bw % |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for size, p in parts.items():
            t, i, s = p["tanh"], p["identity"], p["tanh, 1 thread"]
            rest = t["total"] - t["kernel_fwd"] - t["kernel_adj"]
            L.append(f"| {'×'.join(map(str, size))} | {1e3 * t['total']:.2f} | {1e3 * t['kernel_fwd']:.2f} | "
                     f"{1e3 * t['kernel_adj']:.2f} | {1e3 * rest:.2f} | {1e3 * i['total']:.2f} | {1e3 * s['total']:.2f} | "
                     f"{100 * t['fwd_frac']:.0f} % | {100 * t['bwd_frac']:.0f} % |")
    if cross:
        L += ["", "Thread crossover (fwd+grad, L = 16, ms):", "", "| batch·n | 1 thread | threads |", "|---:|---:|---:|"]
        L += [f"| {r['size']} ({r['batch']}×{r['n']}) | {1e3 * r['serial']:.3f} | {1e3 * r['parallel']:.3f} |" for r in cross]
    if compiles:
        cold, warm = compiles
        L += ["", f"JIT compile (a fresh process, 4×1024×4): cold cache {cold['first_call']:.2f} s for the first "
              f"forward + gradient (render + load {cold['render_load']:.2f} s, numba cache misses {cold['misses']}); "
              f"second process on the same cache {warm['first_call']:.2f} s (render + load {warm['render_load']:.2f} s, "
              f"cache hits {warm['hits']}, misses {warm['misses']}). Imports {warm['imports']:.2f} s."]
    if ckpt:
        a, c = ckpt.values()
        L += ["", f"Checkpointing at {'×'.join(map(str, args.checkpoint_size))}, numba: "
              f"all layers {a['peak'] / 2**20:.0f} MiB / {1e3 * a['time']:.0f} ms; checkpoint={args.k} "
              f"{c['peak'] / 2**20:.0f} MiB / {1e3 * c['time']:.0f} ms: memory ÷{a['peak'] / c['peak']:.2f} "
              f"(target ≥ 3), time ×{c['time'] / a['time']:.2f} (target ≤ 1.6); losses equal: {a['loss'] == c['loss']}."]
    return "\n".join(L)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--compile-all", action="store_true", help="torch.compile at every size (L = 256 compiles slowly)")
    p.add_argument("--skip", default="", help="comma-separated sections to skip: speed,parts,crossover,compile,checkpoint")
    p.add_argument("--append", action="store_true", help="append the Markdown to benchmarks/RESULTS.md")
    p.add_argument("--k", type=int, default=8)
    args = p.parse_args(argv)
    args.checkpoint_size = (8, 262144, 64) if not args.quick else (2, 65536, 16)
    skip = set(filter(None, args.skip.split(",")))
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    import numba
    compile_net(4, 64, 2).loss_and_grad(np.ones((4, 64), np.float32), np.ones((4, 64), np.float32),
                                        compile_net(4, 64, 2).init_params())     # numba's threading layer starts
    meta = dict(date=datetime.date.today().isoformat(),
                machine=f"{core.cpu_name()}, {os.cpu_count()} CPUs, {platform.system()}, Python {platform.python_version()}, "
                        f"NumPy {np.__version__}",
                numba=numba.__version__, threads=numba.config.NUMBA_NUM_THREADS, torch=core.torch_version(),
                load_start=core.load_average() or float("nan"))
    print(core.load_note("start"))
    meta["bw"] = core.copy_bandwidth()
    meta["numba_bw"] = numba_bandwidth()
    try:
        meta["layer"] = numba.threading_layer()
    except ValueError:
        meta["layer"] = "not started"
    print(f"bandwidth: np.copyto {meta['bw'] / 1e9:.1f} GB/s; numba copy "
          + ", ".join(f"{t} thread(s) {v / 1e9:.1f} GB/s" for t, v in meta["numba_bw"].items()))
    sizes = QUICK if args.quick else SIZES
    speeds, parts, cross, compiles, ckpt = {}, {}, [], None, None
    if "speed" not in skip:
        for size in sizes:
            print(f"\n=== speed {size} ===", flush=True)
            speeds[size] = speed(*size, args, meta["bw"])
            ref.clear_workspace_cache()
    if "parts" not in skip:
        for size in sizes:
            print(f"\n=== where the time goes {size} ===", flush=True)
            parts[size] = breakdown(*size, args.repeat, meta["bw"])
            print("  " + "; ".join(f"{k}: fwd {1e3 * v['forward']:.2f} ms, total {1e3 * v['total']:.2f} ms"
                                   for k, v in parts[size].items()))
    if "crossover" not in skip:
        print("\n=== thread crossover ===")
        cross = crossover(args.repeat)
    if "compile" not in skip:
        print("\n=== compile time ===")
        compiles = compile_times()
    if "checkpoint" not in skip:
        print(f"\n=== checkpointing {args.checkpoint_size} ===")
        ckpt = checkpointing(*args.checkpoint_size, args.k, args.repeat)
    meta["load_end"] = core.load_average() or float("nan")
    print(core.load_note("end"))
    text = markdown(meta, speeds, parts, cross, compiles, ckpt, args)
    print("\n" + "-" * 30 + " Markdown " + "-" * 30 + "\n" + text)
    if args.append:
        path = HERE / "RESULTS.md"
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(("\n\n" if path.exists() and path.stat().st_size else "# Benchmark results\n\n") + text + "\n")
        print(f"\nappended to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
