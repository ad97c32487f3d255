#!/usr/bin/env python
"""N-D and nonlinear layers (step IR): forward + gradient, npdegen side by side with hand-written
NumPy and PyTorch, in ONE run (every implementation once per round, the order rotated).

Workloads (float32, ω = 0.5, periodic, ``loss = 0.5 Σ (z_L − y)²``, gradients w.r.t. all
coefficients; references in ``references_nd.py``):

(a) ``adr2d``: 2-D heterogeneous anisotropic ADR with a cross term,
    ``Z = z + R z − U z_x − V z_y + Dxx z_xx + 2 Dxy z_xy + Dyy z_yy``, tanh, batch 8, 512×512,
    L = 16, spacing (1, 1). Implementations: ``numpy_rolls``, ``numpy_buffered``, ``torch_eager``,
    ``torch_compiled``, ``npdegen_numpy``, ``npdegen_numba`` (and ``npdegen_numba_1t``, one thread).
(b) ``burgers-tanh`` / ``burgers-identity``: nonlinear 1-D ``Z = z + nu z_qq − z z_q``
    (heterogeneous nu ∈ [0.1, 0.2], spacing 1, data 0.1·N(0, 1): the trajectory decays, no blow-up),
    batch 64, n 4096, L 32. Implementations: ``numpy_buffered``, ``torch_eager``, ``torch_compiled``,
    ``npdegen_numpy``, ``npdegen_numba`` (and ``npdegen_numba_1t``).
(c) ``burgers-flux`` / ``burgers-rusanov``: the flux-form layer
    ``npdegen.conservation_law(c z²/2, z, diffusion=nu)`` with the Godunov / Rusanov numerical flux,
    ``z' = z − ω (Φ_i − Φ_{i−1})/h``, ``Φ = F(z_i, z_{i+1}) − nu (z_{i+1} − z_i)/h``, homogeneous
    ``c = 0.9`` and ``nu = 0.15`` (gradients w.r.t. both), identity activation, data 0.1·N(0, 1)
    (flux CFL number ≈ 0.75), batch 64, n 4096, L 32; references in ``references_flux.py``. Same
    implementations as (b).

Reported per workload: median / min wall time and median CPU time (``time.process_time``, all
threads of the process: on a loaded machine it excludes the waits for a CPU) over ``--repeat``
interleaved rounds after one warm-up, ratios to ``numpy_buffered`` and ``torch_eager``, "minimal
traffic" bandwidth (as bench_core: per layer read + write z forward, read z_t and λ + write λ
backward; plus x, y, the coefficients read and their gradients written) as a fraction of the
np.copyto bandwidth, peak extra memory (tracemalloc; NumPy-allocated memory only: numpy_buffered
with a cold workspace, npdegen on the first call of a freshly compiled network, so the buffers it
keeps count) and that peak beyond the stored trajectory, in MiB and in units of batch·grid values; agreement of every loss and gradient
with ``numpy_buffered`` at the benchmark size (float32) and, separately, on a small size in float64
(all implementations, 1e-9). The 1-D fast path (bench_core's ADR at 64×4096×32, numba) is timed in
the same run for the bandwidth comparison. Ends with the issue's targets, met or not, and a
Markdown block for ``benchmarks/RESULTS.md``. Exit status 1 if any loss disagrees.

    python benchmarks/bench_nd.py                      # everything (minutes; torch.compile is slow)
    python benchmarks/bench_nd.py --quick              # tiny sizes, no torch.compile (smoke test)
    python benchmarks/bench_nd.py --torch-threads 1 --repeat 7 --only adr2d
"""
from __future__ import annotations

import argparse
import datetime
import gc
import os
import pathlib
import platform
import statistics
import sys
import time
import tracemalloc
import warnings

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(HERE), str(REPO)]
import bench_core as core  # noqa: E402
import references_flux as ref_flux  # noqa: E402
import references_nd as ref  # noqa: E402

OMEGA = 0.5
BUFFERED, EAGER = "numpy_buffered", "torch_eager"
#: flux-form workloads and their numerical flux
FLUX = {"burgers-flux": "godunov", "burgers-rusanov": "rusanov"}
SIZES = {"adr2d": (8, (512, 512), 16), "burgers-tanh": (64, (4096,), 32), "burgers-identity": (64, (4096,), 32),
         "burgers-flux": (64, (4096,), 32), "burgers-rusanov": (64, (4096,), 32)}
QUICK = {"adr2d": (2, (16, 24), 3), "burgers-tanh": (4, (64,), 4), "burgers-identity": (4, (64,), 4),
         "burgers-flux": (4, (64,), 4), "burgers-rusanov": (4, (64,), 4)}
F64 = {"adr2d": (2, (12, 10), 3), "burgers-tanh": (3, (40,), 4), "burgers-identity": (3, (40,), 4),
       "burgers-flux": (3, (40,), 4), "burgers-rusanov": (3, (40,), 4)}
#: the homogeneous coefficients of the flux workloads (CFL c·max|z| + 2 nu ≈ 0.75 for 0.1·N(0, 1) data)
FLUX_THETA = {"c": 0.9, "nu": 0.15}
#: the issue's targets
TARGET_EAGER = 5.0            # numba >= 5x torch eager (every workload; issue 13 for the flux layer)
TARGET_BW_FACTOR = 2.0        # 2-D numba bandwidth fraction within 2x of the 1-D fast path's
FAST_1D_SIZE = (64, 4096, 32)
FAST_1D_RESULTS_MD = 0.50     # benchmarks/RESULTS.md, fast CPU backend, 64x4096x32: 50 % of copy bw


# ---------------------------------------------------------------------------- data
def make_data(workload, batch, grid, dtype, seed=0):
    """Seeded inputs and coefficients (stable choices, see the module docstring)."""
    rng = np.random.default_rng(seed)
    cast = lambda a: np.ascontiguousarray(a, dtype=dtype) if np.ndim(a) else np.asarray(a, dtype=dtype)  # noqa: E731
    if workload == "adr2d":
        x, y = rng.standard_normal((batch, *grid)), rng.standard_normal((batch, *grid))
        theta = {"U": rng.uniform(-0.1, 0.1, grid), "V": rng.uniform(-0.1, 0.1, grid),
                 "Dxx": rng.uniform(0.05, 0.15, grid), "Dxy": rng.uniform(-0.03, 0.03, grid),
                 "Dyy": rng.uniform(0.05, 0.15, grid), "R": rng.uniform(-0.05, 0.05, grid)}
    elif workload in FLUX:
        x, y = 0.1 * rng.standard_normal((batch, *grid)), 0.1 * rng.standard_normal((batch, *grid))
        theta = {k: np.asarray(v) for k, v in FLUX_THETA.items()}
    else:
        x, y = 0.1 * rng.standard_normal((batch, *grid)), 0.1 * rng.standard_normal((batch, *grid))
        theta = {"nu": rng.uniform(0.1, 0.2, grid)}
    return cast(x), cast(y), {k: cast(v) for k, v in theta.items()}


def minimal_traffic(batch, grid, L, itemsize, ncoef):
    """bench_core's definition: per layer read+write z (forward), read z_t and lam + write lam
    (backward); plus x and y; the ``ncoef`` coefficient values read and their gradients written."""
    N = batch * int(np.prod(grid))
    return itemsize * (L * 5 * N + 2 * N + 2 * ncoef)


# ---------------------------------------------------------------------------- npdegen
def _layer(workload):
    import sympy as sp

    import npdegen
    if workload == "adr2d":
        x, y = sp.symbols("x y")
        z = sp.Function("z")(x, y)
        U, V, Dxx, Dxy, Dyy, R = sp.symbols("U V Dxx Dxy Dyy R")
        return npdegen.NeuralPDE(
            z + R * z - U * z.diff(x) - V * z.diff(y) + Dxx * z.diff(x, 2) + 2 * Dxy * z.diff(x, y)
            + Dyy * z.diff(y, 2), z, activation="tanh",
            params={p: "heterogeneous" for p in (U, V, Dxx, Dxy, Dyy, R)})
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    nu = sp.Symbol("nu")
    if workload in FLUX:
        c = sp.Symbol("c", positive=True)
        return npdegen.conservation_law(c * z ** 2 / 2, z, diffusion=nu, params={c: "homogeneous", nu: "homogeneous"},
                                        numerical_flux=FLUX[workload])
    return npdegen.NeuralPDE(z + nu * z.diff(q, 2) - z * z.diff(q), z, activation=workload.split("-")[1],
                             params={nu: "heterogeneous"})


_LAYERS: dict = {}


def npdegen_net(workload, grid, L, backend, dtype, threads=None):
    if workload not in _LAYERS:
        _LAYERS[workload] = _layer(workload)
    n = grid if len(grid) > 1 else grid[0]
    return _LAYERS[workload].compile(n=n, spacing=(1.0,) * len(grid) if len(grid) > 1 else 1.0, layers=L,
                                     omega=OMEGA, boundary="periodic", dtype=np.dtype(dtype).name,
                                     backend=backend, threads=threads)


def _net_fn(net):
    def fn(x, y, theta):
        loss, grads = net.loss_and_grad(x, y, theta)
        return float(loss), {str(k): np.asarray(v) for k, v in grads.items()}
    return fn


# ---------------------------------------------------------------------------- implementations
class Impl:
    """``make(grid, L, dtype) -> fn(x, y, theta) -> (loss, grads)``; ``fresh`` drops kept buffers
    before a memory measurement; ``memory``: measure peak extra memory (tracemalloc)."""

    def __init__(self, name, make, kind, memory=False):
        self.name, self.make, self.kind, self.memory = name, make, kind, memory


def implementations(workload, args):
    impls, unavailable = [], []
    if workload == "adr2d":
        act = None
        rolls, buffered = ref.adr2d_numpy_rolls, ref.adr2d_numpy_buffered
        eager, compiled = ref.adr2d_torch_eager, ref.adr2d_torch_compiled
    elif workload in FLUX:
        act = None
        rolls, buffered = None, ref_flux.flux_numpy_buffered
        eager, compiled = ref_flux.flux_torch_eager, ref_flux.flux_torch_compiled
    else:
        act = workload.split("-")[1]
        rolls, buffered = ref.burgers_numpy_rolls, ref.burgers_numpy_buffered
        eager, compiled = ref.burgers_torch_eager, ref.burgers_torch_compiled

    def ref_make(f):
        def make(grid, L, dtype):
            if workload in FLUX:
                return lambda x, y, th: f(x, y, th["c"], th["nu"], 1.0, OMEGA, L, FLUX[workload])
            extra = () if act is None else (act,)
            return lambda x, y, th: f(x, y, th if act is None else th["nu"], 1.0, OMEGA, L, *extra)
        return make

    if workload == "adr2d":
        impls.append(Impl("numpy_rolls", ref_make(rolls), "numpy", memory=True))
    impls.append(Impl(BUFFERED, ref_make(buffered), "numpy", memory=True))
    if eager is None:
        unavailable += [(EAGER, "torch not importable"), ("torch_compiled", "torch not importable")]
    else:
        impls.append(Impl(EAGER, ref_make(eager), "torch"))
        if args.no_compile:
            unavailable.append(("torch_compiled", "--no-compile" + (" (implied by --quick)" if args.quick else "")))
        else:
            impls.append(Impl("torch_compiled", ref_make(compiled), "torch"))
    try:
        _LAYERS.setdefault(workload, _layer(workload))
    except Exception as exc:  # pragma: no cover - the library is under construction
        unavailable.append(("npdegen_*", f"{type(exc).__name__}: {exc}"))
        return impls, unavailable
    impls.append(Impl("npdegen_numpy", lambda g, L, d: _net_fn(npdegen_net(workload, g, L, "numpy", d)),
                      "npdegen", memory=True))
    if args.no_numba:
        unavailable.append(("npdegen_numba", "--no-numba"))
    else:
        try:
            import numba  # noqa: F401
        except ImportError as exc:
            unavailable.append(("npdegen_numba", f"numba not importable: {exc}"))
        else:
            impls.append(Impl("npdegen_numba", lambda g, L, d: _net_fn(npdegen_net(workload, g, L, "numba", d)),
                              "npdegen", memory=True))
            if not args.quick:
                impls.append(Impl("npdegen_numba_1t",
                                  lambda g, L, d: _net_fn(npdegen_net(workload, g, L, "numba", d, threads=1)),
                                  "npdegen"))
    return impls, unavailable


# ---------------------------------------------------------------------------- measurement
def _timed(fn, *a):
    return _timed_cpu(fn, *a)[0]


def _timed_cpu(fn, *a):
    """Wall time and the process's CPU time (all its threads) of one call. On a loaded machine the
    wall time includes the time the process waits for a CPU; the CPU time does not (for one-thread
    implementations it is the wall time a quiet machine would show, up to cache effects)."""
    gc.collect()
    t0, c0 = time.perf_counter(), time.process_time()
    fn(*a)
    return time.perf_counter() - t0, time.process_time() - c0


def clear_workspaces():
    ref.clear_workspace_cache()
    ref_flux.clear_workspace_cache()


def peak_memory(impl, grid, L, dtype, data):
    """Peak traced bytes of one cold call: a cleared reference workspace, or a freshly compiled
    network (so the buffers it allocates and keeps count)."""
    clear_workspaces()
    fn = impl.make(grid, L, dtype) if impl.kind == "npdegen" else None
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        if fn is None:
            fn = impl.make(grid, L, dtype)
        fn(*data)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return peak


def rel_err(a, b):
    return core.rel_err(a, b)


def agreement(res, ref_res, keys):
    lerr = abs(res[0] - ref_res[0]) / max(abs(ref_res[0]), 1e-300)
    gerr = max(rel_err(res[1][k], ref_res[1][k]) for k in keys)
    return lerr, gerr


def check_float64(workload, impls, args):
    """Every implementation against numpy_buffered in float64 on a small size."""
    batch, grid, L = F64[workload]
    data = make_data(workload, batch, grid, np.float64, seed=args.seed + 1)
    keys = list(data[2])
    out = {}
    base = None
    for im in impls:
        if im.name == "npdegen_numba_1t":
            continue
        try:
            out[im.name] = im.make(grid, L, np.float64)(*data)
        except Exception as exc:
            out[im.name] = exc
    base = out.get(BUFFERED)
    rows = {}
    for name, r in out.items():
        if isinstance(r, Exception) or base is None or isinstance(base, Exception):
            rows[name] = ("failed", str(r).splitlines()[0][:100] if isinstance(r, Exception) else "no reference")
            continue
        rows[name] = agreement(r, base, keys)
    return (batch, grid, L), rows


def bench_workload(workload, args, bandwidth, report):
    batch, grid, L = (QUICK if args.quick else SIZES)[workload]
    dtype = np.dtype(np.float32)
    data = make_data(workload, batch, grid, dtype, seed=args.seed)
    keys = list(data[2])
    G = int(np.prod(grid))
    isz = dtype.itemsize
    traj_bytes = (L + 1) * batch * G * isz
    bg_bytes = batch * G * isz
    traffic = minimal_traffic(batch, grid, L, isz, sum(np.size(v) for v in data[2].values()))
    size = f"{batch}×{'×'.join(map(str, grid))}×{L}"
    print(f"\n=== {workload}: batch={batch} grid={'×'.join(map(str, grid))} L={L} float32: trajectory "
          f"{traj_bytes / 2**20:.1f} MiB, batch·grid {bg_bytes / 2**20:.1f} MiB, minimal traffic "
          f"{traffic / 2**20:.1f} MiB ===", flush=True)
    impls, unavailable = implementations(workload, args)
    for name, why in unavailable:
        print(f"  {name}: unavailable ({why})")

    results, ready = {}, {}
    for im in impls:
        try:
            t0 = time.perf_counter()
            fn = im.make(grid, L, dtype)
            res = fn(*data)                                    # warm-up (JIT / torch.compile)
            warm = time.perf_counter() - t0
        except Exception as exc:
            msg = f"{type(exc).__name__}: {str(exc).splitlines()[0][:150] if str(exc) else ''}"
            print(f"  {im.name}: FAILED ({msg}) -- skipped", flush=True)
            results[im.name] = dict(error=msg)
            continue
        mem = None
        if im.memory and not args.no_memory:
            try:
                mem = peak_memory(im, grid, L, dtype, data)
                fn(*data)                                      # warm the (re-created) workspace again
            except Exception as exc:  # pragma: no cover
                print(f"  {im.name}: memory measurement failed: {exc}")
        ready[im.name] = fn
        results[im.name] = dict(res=res, warm=warm, mem=mem, times=[], cpu=[])
        print(f"  {im.name}: setup + warm-up {warm:.2f} s", flush=True)
    labels = list(ready)
    for r in range(args.repeat if labels else 0):              # interleaved rounds, order rotated
        for label in labels[r % len(labels):] + labels[:r % len(labels)]:
            wall, cpu = _timed_cpu(ready[label], *data)
            results[label]["times"].append(wall)
            results[label]["cpu"].append(cpu)

    ref_res = results.get(BUFFERED, {}).get("res")
    failures, rows = [], []
    for label, r in results.items():
        if "error" in r:
            rows.append(dict(name=label, error=r["error"]))
            continue
        r["med"], r["min"] = statistics.median(r["times"]), min(r["times"])
        r["cpu_med"] = statistics.median(r["cpu"])
    bmed = results.get(BUFFERED, {}).get("med")
    emed = results.get(EAGER, {}).get("med")
    ecpu = results.get(EAGER, {}).get("cpu_med")
    for label, r in results.items():
        if "error" in r:
            continue
        lerr = gerr = None
        if ref_res is not None:
            lerr, gerr = agreement(r["res"], ref_res, keys)
            if not lerr <= 1e-3:
                msg = (f"LOSS MISMATCH: {label} ({workload} {size}): {r['res'][0]!r} vs numpy_buffered "
                       f"{ref_res[0]!r} (rel err {lerr:.2e})")
                print("!!! " + msg, flush=True)
                print("!!! " + msg, file=sys.stderr)
                failures.append(msg)
            elif not gerr <= 1e-2:
                print(f"  WARNING: {label} gradients differ from numpy_buffered (max rel err {gerr:.2e})")
        extra = None if r["mem"] is None else r["mem"] - traj_bytes
        rows.append(dict(name=label, med=r["med"], min=r["min"], cpu=r["cpu_med"],
                         cpu_x_eager=r["cpu_med"] / ecpu if ecpu else None, x_buf=r["med"] / bmed if bmed else None,
                         x_eager=r["med"] / emed if emed else None, mem=r["mem"], extra=extra,
                         extra_bg=None if extra is None else extra / bg_bytes,
                         gbs=traffic / r["med"] / 1e9, frac=traffic / r["med"] / bandwidth,
                         lerr=lerr, gerr=gerr, warm=r["warm"]))
        print(f"  {label:18s} median {1e3 * r['med']:10.2f} ms   min {1e3 * r['min']:10.2f} ms   "
              f"CPU {1e3 * r['cpu_med']:10.2f} ms   "
              f"{100 * traffic / r['med'] / bandwidth:5.1f} % of copy bw"
              + ("" if lerr is None else f"   loss rel err {lerr:.1e}, grad {gerr:.1e}"), flush=True)
    f64_size, f64 = check_float64(workload, impls, args)
    for name, v in f64.items():
        if v[0] == "failed":
            failures.append(f"float64 check: {name} failed: {v[1]}")
        elif not v[0] <= 1e-9:
            failures.append(f"float64 LOSS MISMATCH: {name} ({workload}): rel err {v[0]:.2e}")
        elif not v[1] <= 1e-9:
            print(f"  WARNING: float64 gradients of {name} differ (max rel err {v[1]:.2e})")
    print("  float64 check at " + "×".join(map(str, (f64_size[0], *f64_size[1], f64_size[2]))) + ": "
          + ", ".join(f"{k} {v[0]:.0e}/{v[1]:.0e}" if v[0] != "failed" else f"{k} FAILED" for k, v in f64.items()))
    report.append(dict(workload=workload, size=size, rows=rows, unavailable=unavailable, f64=f64,
                       f64_size=f64_size, traj=traj_bytes, bg=bg_bytes, traffic=traffic))
    clear_workspaces()
    return failures


def fast_1d_reference(args, bandwidth):
    """The 1-D fast path (bench_core's heterogeneous ADR, numba) timed in this run, on numba's threads
    and on one thread, for the bandwidth comparison (interleaved, like the rest)."""
    import bench_fast_cpu as fast
    batch, n, L = (16, 1024, 4) if args.quick else FAST_1D_SIZE
    x, y, U, D, R, b = core.make_data(batch, n, np.float32, seed=0)
    theta = {"U": U, "D": D, "R": R, "b": b}
    nets = {"threads": fast.compile_net(batch, n, L), "1t": fast.compile_net(batch, n, L, threads=1)}
    ts = {k: [] for k in nets}
    for net in nets.values():
        net.loss_and_grad(x, y, theta)
    for _ in range(max(args.repeat, 5)):
        for k, net in nets.items():
            ts[k].append(_timed(net.loss_and_grad, x, y, theta))
    out = dict(size=f"{batch}×{n}×{L}")
    for k, t in ts.items():
        med = statistics.median(t)
        out[k] = dict(med=med, min=min(t), frac=core.minimal_traffic(batch, n, L, 4) / med / bandwidth)
        print(f"\n1-D fast path (numba ADR, {'one thread' if k == '1t' else 'numba threads'}) {out['size']}: median "
              f"{1e3 * med:.2f} ms, min {1e3 * min(t):.2f} ms, {100 * out[k]['frac']:.0f} % of copy bw "
              f"(RESULTS.md: {100 * FAST_1D_RESULTS_MD:.0f} % on numba threads)", flush=True)
    return out


# ---------------------------------------------------------------------------- report
def targets(report, fast1d):
    out = []
    by = {r["workload"]: {row["name"]: row for row in r["rows"] if "error" not in row} for r in report}
    a = by.get("adr2d", {})
    for name in ("npdegen_numba", "npdegen_numba_1t"):
        if name in a and EAGER in a:
            ratio = a[EAGER]["med"] / a[name]["med"]
            out.append(f"2-D: {name} {ratio:.1f}× faster than torch_eager (target ≥ {TARGET_EAGER:.0f}×: "
                       f"{'met' if ratio >= TARGET_EAGER else 'NOT met'})")
    for name, key in (("npdegen_numba", "threads"), ("npdegen_numba_1t", "1t")):
        if name not in a:
            continue
        f2 = a[name]["frac"]
        refs = [(f"the 1-D fast path in this run ({fast1d['size']}, same threads)", fast1d[key]["frac"])] if fast1d else []
        if key == "threads":
            refs.append(("the 1-D fast path in RESULTS.md (64×4096×32, 2 threads)", FAST_1D_RESULTS_MD))
        for label, f1 in refs:
            out.append(f"2-D: {name} at {100 * f2:.1f} % of copy bandwidth vs {100 * f1:.1f} % for {label}: "
                       f"ratio {f1 / f2:.1f} (target ≤ {TARGET_BW_FACTOR:.0f}: "
                       f"{'met' if f1 / f2 <= TARGET_BW_FACTOR else 'NOT met'})")
    if "npdegen_numpy" in a and BUFFERED in a:
        x = a["npdegen_numpy"]["x_buf"]
        out.append(f"2-D: npdegen_numpy takes {x:.2f}× the time of numpy_buffered (target ≤ 1: "
                   f"{'met' if x <= 1 else 'NOT met'})")
    rep = next((r for r in report if r["workload"] == "adr2d"), None)
    if rep:
        for name in ("npdegen_numpy", "npdegen_numba"):
            row = a.get(name)
            if row and row["extra"] is not None:
                out.append(f"2-D memory: {name} peak {row['mem'] / 2**20:.1f} MiB = trajectory "
                           f"{rep['traj'] / 2**20:.1f} MiB + {row['extra'] / 2**20:.1f} MiB "
                           f"({row['extra_bg']:.2f} × batch·grid) (target: trajectory + O(batch·grid))")
    for wl in ("burgers-tanh", "burgers-identity", *FLUX):
        b = by.get(wl, {})
        for name in ("npdegen_numba", "npdegen_numba_1t"):
            if name in b and EAGER in b:
                ratio = b[EAGER]["med"] / b[name]["med"]
                cpu = b[EAGER]["cpu"] / b[name]["cpu"]
                out.append(f"{wl}: {name} {ratio:.1f}× faster than torch_eager (target ≥ {TARGET_EAGER:.0f}×: "
                           f"{'met' if ratio >= TARGET_EAGER else 'NOT met'}); CPU time {cpu:.1f}× less")
    return out


def fmt(v, spec, none="–"):
    return none if v is None else format(v, spec)


def markdown(meta, report, fast1d, verdicts):
    lines = [f"### {meta['when']} — float32, repeat {meta['repeat']}, ω = {OMEGA}, spacing 1",
             "",
             f"Machine: {meta['machine']}; copy bandwidth (np.copyto 256 MiB) {meta['bw'] / 1e9:.1f} GB/s. "
             f"{meta['load_start']}; {meta['load_end']}. Command: `{meta['command']}`.", ""]
    for rep in report:
        lines += [f"**{rep['workload']}** {rep['size']} (trajectory {rep['traj'] / 2**20:.1f} MiB, batch·grid "
                  f"{rep['bg'] / 2**20:.1f} MiB, minimal traffic {rep['traffic'] / 2**20:.1f} MiB)", "",
                  "| implementation | median ms | min ms | median CPU ms (× eager's) | × numpy_buffered "
                  "| × torch_eager | traffic GB/s "
                  "| % of copy bw | peak extra MiB | beyond trajectory | loss vs buffered | grad rel err "
                  "| float64 loss / grad |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rep["rows"]:
            if "error" in r:
                lines.append(f"| {r['name']} | failed: {r['error']} | | | | | | | | | | | |")
                continue
            mem = "n/a" if r["mem"] is None else f"{r['mem'] / 2**20:.1f}"
            extra = "n/a" if r["extra"] is None else f"{r['extra'] / 2**20:.1f} MiB ({r['extra_bg']:.2f} bg)"
            f = rep["f64"].get(r["name"])
            f64 = "–" if f is None else ("failed" if f[0] == "failed" else f"{f[0]:.0e} / {f[1]:.0e}")
            lines.append(
                f"| {r['name']} | {1e3 * r['med']:.1f} | {1e3 * r['min']:.1f} | {1e3 * r['cpu']:.1f} "
                f"({fmt(r['cpu_x_eager'], '.2f')}) | {fmt(r['x_buf'], '.2f')} | "
                f"{fmt(r['x_eager'], '.2f')} | {r['gbs']:.2f} | {100 * r['frac']:.1f} % | {mem} | {extra} | "
                f"{fmt(r['lerr'], '.0e')} | {fmt(r['gerr'], '.0e')} | {f64} |")
        for name, why in rep["unavailable"]:
            lines.append(f"\n{name}: unavailable ({why})")
        lines.append("")
    if fast1d:
        lines.append(f"1-D fast path (numba, bench_core's ADR) {fast1d['size']} in the same run: median "
                     f"{1e3 * fast1d['threads']['med']:.2f} ms on numba's threads "
                     f"({100 * fast1d['threads']['frac']:.1f} % of copy bandwidth), {1e3 * fast1d['1t']['med']:.2f} ms "
                     f"on one thread ({100 * fast1d['1t']['frac']:.1f} %).")
        lines.append("")
    lines += ["Targets:", ""] + [f"- {v}" for v in verdicts]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes, repeat ≤ 3; no torch.compile, 1-thread row or 1-D fast-path timing")
    p.add_argument("--repeat", type=int, default=5, help="timed rounds (default 5)")
    p.add_argument("--only", default="", help=f"comma-separated workloads ({', '.join(SIZES)})")
    p.add_argument("--no-compile", action="store_true", help="skip torch_compiled")
    p.add_argument("--no-numba", action="store_true", help="skip npdegen_numba (and the 1-D fast-path reference)")
    p.add_argument("--no-memory", action="store_true", help="skip the tracemalloc runs")
    p.add_argument("--no-fast-1d", action="store_true", help="skip timing the 1-D fast path")
    p.add_argument("--torch-threads", type=int, default=0, help="torch.set_num_threads(N) (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error("--repeat must be >= 1")
    if args.quick:
        args.repeat = min(args.repeat, 3)
        args.no_compile = True
        args.no_fast_1d = True
    workloads = [w.strip() for w in args.only.split(",") if w.strip()] or list(SIZES)
    for w in workloads:
        if w not in SIZES:
            p.error(f"unknown workload {w!r} (choose from {', '.join(SIZES)})")
    if args.torch_threads and ref._torch is not None:
        ref._torch.set_num_threads(args.torch_threads)
    warnings.filterwarnings("ignore", category=DeprecationWarning)

    try:
        import numba
        nb = (f"numba {numba.__version__} ({numba.config.NUMBA_NUM_THREADS} threads, layer "
              f"{numba.config.THREADING_LAYER}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')})")
    except ImportError:
        nb = "numba not installed"
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = (f"{core.cpu_name()}, {os.cpu_count()} CPUs, {platform.system()} {platform.machine()}, Python "
               f"{platform.python_version()}, NumPy {np.__version__}, {nb}, torch {core.torch_version()}")
    print(f"date: {now}\nmachine: {machine}")
    load_start = core.load_note("start")
    print(load_start)
    bandwidth = core.copy_bandwidth()
    print(f"copy bandwidth (np.copyto 256 MiB, read+write, best of 5): {bandwidth / 1e9:.1f} GB/s")

    report, failures = [], []
    for w in workloads:
        failures += bench_workload(w, args, bandwidth, report)
    fast1d = None
    if not (args.no_numba or args.no_fast_1d) and "adr2d" in workloads:
        try:
            fast1d = fast_1d_reference(args, bandwidth)
        except Exception as exc:  # pragma: no cover
            print(f"1-D fast path: FAILED ({type(exc).__name__}: {exc})")
    load_end = core.load_note("end")
    print("\n" + load_end)
    verdicts = targets(report, fast1d)
    if args.quick:
        verdicts = ["(--quick: tiny sizes, overhead-bound; the targets below are not meaningful here)"] + verdicts
    print("\nTargets:")
    for v in verdicts:
        print("  " + v)
    meta = dict(when=now, machine=machine, bw=bandwidth, load_start=load_start, load_end=load_end,
                repeat=args.repeat, command="python benchmarks/bench_nd.py " + " ".join(argv if argv is not None
                                                                                       else sys.argv[1:]))
    print("\n" + "-" * 30 + " Markdown for benchmarks/RESULTS.md " + "-" * 30 + "\n")
    print(markdown(meta, report, fast1d, verdicts))
    if failures:
        print("\n" + "!" * 78)
        for f in failures:
            print("!!! " + f)
        print("!" * 78)
        return 1 if any("MISMATCH" in f or "failed" in f for f in failures) else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
