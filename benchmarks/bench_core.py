#!/usr/bin/env python
"""Side-by-side benchmark of one forward + gradient of the neural ADR network.

Times, in ONE run and on the same seeded data, ``loss_and_grad`` of

* ``numpy_idiomatic``   plain NumPy with np.roll           (references.py)
* ``numpy_buffered``    best hand-written NumPy             (references.py)
* ``numpy_out_unblocked``  the same without cache blocking: preallocated buffers and ``out=``
                          only, the "buffered NumPy" of the core issue
* ``numpy_buffered+reuse_tanh``  the same, tanh read off the trajectory
                        instead of recomputed (a different algorithm, shown
                        for information only)
* ``torch_eager``       PyTorch autograd, CPU, eager         (if torch imports)
* ``torch_compiled``    the same through torch.compile       (if it works)
* ``npdegen``           the library, NumPy backend           (if it imports)

and prints, per problem size, median/min time over ``--repeat`` runs after one
warm-up (the runs interleaved: every implementation once per round, so that a
slow spell of a shared machine hits all of them alike), ratios to numpy_buffered and torch_eager, peak extra memory
(tracemalloc, separate untimed run, NumPy implementations only), achieved
"minimal traffic" bandwidth as a fraction of the machine's copy bandwidth, and
whether every loss agrees with numpy_buffered.  Ends with a Markdown table for
benchmarks/RESULTS.md.  Exit status 1 if any loss disagrees.

    python benchmarks/bench_core.py --quick
    python benchmarks/bench_core.py
    python benchmarks/bench_core.py --sizes 64x4096x32 --repeat 9 --dtype float64
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
sys.path.insert(0, str(HERE))
import references as ref  # noqa: E402

H = 1.0
OMEGA = 0.5
DEFAULT_SIZES = "64x4096x32,8x262144x16,1x4096x256"
QUICK_SIZES = "4x256x4,2x1024x8,1x128x32"
BUFFERED = "numpy_buffered"
EAGER = "torch_eager"


# ---------------------------------------------------------------------------
# data and machine
# ---------------------------------------------------------------------------

def parse_sizes(text):
    sizes = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        parts = item.lower().split("x")
        if len(parts) != 3:
            raise argparse.ArgumentTypeError(f"size {item!r} is not BATCHxNxL")
        sizes.append(tuple(int(p) for p in parts))
    return sizes


def make_data(batch, n, dtype, seed=0):
    """Seeded data with coefficients that keep the scheme stable (h = 1)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, n))
    y = rng.standard_normal((batch, n))
    U = rng.uniform(-0.1, 0.1, n)
    D = rng.uniform(0.05, 0.15, n)
    R = rng.uniform(-0.05, 0.05, n)
    b = rng.uniform(-0.05, 0.05, n)
    return tuple(np.ascontiguousarray(a, dtype=dtype) for a in (x, y, U, D, R, b))


def copy_bandwidth(mib=256, repeat=5):
    """Best-of-`repeat` np.copyto of `mib` MiB; bytes read + written per second."""
    a = np.ones(mib * 2**20 // 8, dtype=np.float64)
    b = np.empty_like(a)
    np.copyto(b, a)  # fault the pages in
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t0)
    return 2 * a.nbytes / best


def minimal_traffic(batch, n, L, itemsize):
    """Bytes an ideal implementation must move: forward reads z_t and writes
    z_{t+1} per layer; backward reads z_t and lam and writes lam per layer;
    plus x and y, and the 4 coefficient arrays read and 4 gradients written."""
    N = batch * n
    return itemsize * (L * (2 * N + 3 * N) + 2 * N + 8 * n)


def cpu_name():
    name = platform.processor()
    if not name or name in ("x86_64", "i386", "aarch64", "arm64"):
        try:
            for line in open("/proc/cpuinfo"):
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
    return name or platform.machine()


def load_average():
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


def load_note(when):
    """One line on the 1-minute load average; warns when the machine is busy."""
    la = load_average()
    if la is None:
        return f"load average ({when}): unknown"
    ncpu = os.cpu_count() or 1
    busy = la > 0.5 * ncpu
    return (f"load average ({when}): {la:.2f} on {ncpu} CPUs"
            + ("  -- WARNING: the machine is busy, timings are unreliable" if busy else ""))


def torch_version():
    try:
        import torch
        return f"{torch.__version__} ({torch.get_num_threads()} threads)"
    except Exception:
        return "not installed"


# ---------------------------------------------------------------------------
# implementations
# ---------------------------------------------------------------------------

class Impl:
    """A named callable f(x, y, U, D, R, b) -> (loss, grads) for one size."""

    def __init__(self, name, fn, kind="numpy", note=""):
        self.name, self.fn, self.kind, self.note = name, fn, kind, note


def _npdegen_factory(dtype):
    """Return (make(batch, n, L) -> callable, reason-if-unavailable)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    try:
        import sympy as sp
        import npdegen

        q = sp.Symbol("q")
        z = sp.Function("z")(q)
        U, D, R = sp.symbols("U D R")
        layer = npdegen.NeuralPDE(
            z + R * z - U * z.diff(q) + D * z.diff(q, 2), z, activation="tanh",
            params={U: "heterogeneous", D: "heterogeneous", R: "heterogeneous"},
            bias="heterogeneous")
    except (ImportError, AttributeError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # the API is under construction; keep running
        return None, f"{type(exc).__name__} while building the layer: {exc}"

    def make(batch, n, L):
        net = layer.compile(n=n, spacing=H, layers=L, omega=OMEGA, boundary="periodic",
                            dtype=np.dtype(dtype).name, backend="numpy")

        def fn(x, y, U_, D_, R_, b_):
            loss, grads = net.loss_and_grad(x, y, {"U": U_, "D": D_, "R": R_, "b": b_})
            return float(loss), {str(k): np.asarray(v) for k, v in grads.items()}

        return fn

    return make, None


def implementations(dtype, args):
    impls = [
        Impl("numpy_idiomatic", ref.numpy_idiomatic),
        Impl("numpy_buffered", ref.numpy_buffered),
        Impl("numpy_out_unblocked",
             lambda *a, **k: ref.numpy_buffered(*a, block_elems=1 << 40, **k),
             note="buffers and out= only, whole-array passes (no cache blocking)"),
        Impl("numpy_buffered+reuse_tanh",
             lambda *a, **k: ref.numpy_buffered(*a, reuse_tanh=True, **k),
             note="variant: tanh read off the trajectory"),
    ]
    unavailable = []
    if ref.torch_eager is None:
        unavailable.append(("torch_eager", "torch not importable"))
        unavailable.append(("torch_compiled", "torch not importable"))
    else:
        impls.append(Impl("torch_eager", ref.torch_eager, kind="torch"))
        if args.no_compile:
            unavailable.append(("torch_compiled", "--no-compile"))
        else:
            impls.append(Impl("torch_compiled", ref.torch_compiled, kind="torch"))
    make, reason = _npdegen_factory(dtype)
    if make is None:
        unavailable.append(("npdegen", reason))
    else:
        impls.append(Impl("npdegen", make, kind="npdegen"))
    return impls, unavailable


# ---------------------------------------------------------------------------
# measurement
# ---------------------------------------------------------------------------

def time_calls(fn, data, repeat):
    ts = []
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        fn(*data)
        ts.append(time.perf_counter() - t0)
    return ts


def peak_memory(fn, data, before=None):
    """Peak bytes allocated (as seen by tracemalloc) during one call."""
    if before is not None:
        before()
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        fn(*data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak - base


def rel_err(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    scale = np.max(np.abs(b)) if b.size else 0.0
    return float(np.max(np.abs(a - b)) / scale) if scale > 0 else float(np.max(np.abs(a - b)))


def bench_size(batch, n, L, dtype, impls, args, bandwidth, out_rows, failures):
    data = make_data(batch, n, dtype, seed=args.seed)
    itemsize = np.dtype(dtype).itemsize
    traffic = minimal_traffic(batch, n, L, itemsize)
    hL = (H, OMEGA, L)
    loss_tol = 1e-3 if np.dtype(dtype) == np.float32 else 1e-9
    grad_tol = 1e-2 if np.dtype(dtype) == np.float32 else 1e-7

    print(f"\n=== batch={batch} n={n} L={L} dtype={np.dtype(dtype).name}: "
          f"{batch * n * (L + 1) * itemsize / 2**20:.1f} MiB trajectory, "
          f"minimal traffic {traffic / 2**20:.1f} MiB ===", flush=True)

    # setup, warm-up and memory first; then the timed calls in interleaved rounds (every
    # implementation once per round, the order rotated), so that a slow spell of a shared machine
    # hits all implementations alike instead of whichever happened to be running
    results, ready = {}, {}
    for im in impls:
        label = im.name
        try:
            t0 = time.perf_counter()
            if im.kind == "npdegen":
                fn = im.fn(batch, n, L)
            else:
                base = im.fn

                def fn(*d, _f=base):
                    return _f(*d, *hL)
            setup = time.perf_counter() - t0
            t0 = time.perf_counter()
            loss, grads = fn(*data)                      # warm-up (and compile)
            warm = time.perf_counter() - t0
        except Exception as exc:
            msg = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            print(f"  {label}: FAILED ({msg}) -- skipped", flush=True)
            results[label] = dict(error=msg)
            continue
        mem = None
        if im.kind in ("numpy", "npdegen") and not args.no_memory:
            before = ref.clear_workspace_cache if label.startswith(BUFFERED) else None
            try:
                mem = peak_memory(fn, data, before)
                fn(*data)                                # warm again (the buffered workspace was dropped)
            except Exception as exc:  # pragma: no cover
                print(f"  {label}: memory measurement failed: {exc}")
        ready[label] = fn
        results[label] = dict(loss=loss, grads=grads, setup=setup + warm, mem=mem, note=im.note)
    times = {label: [] for label in ready}
    labels = list(ready)
    for r in range(args.repeat):
        for label in labels[r % len(labels):] + labels[:r % len(labels)]:
            times[label] += time_calls(ready[label], data, 1)
    for label, ts in times.items():
        results[label].update(med=statistics.median(ts), min=min(ts))
        print(f"  {label:27s} median {1e3 * statistics.median(ts):10.2f} ms   min {1e3 * min(ts):10.2f} ms"
              f"   (setup+warm-up {results[label]['setup']:.2f} s)", flush=True)

    ref_res = results.get(BUFFERED, {})
    eager_res = results.get(EAGER, {})
    for label, r in results.items():
        if "error" in r:
            out_rows.append(dict(size=(batch, n, L), name=label, error=r["error"]))
            failures.append(f"{label} @ {batch}x{n}x{L}: failed: {r['error']}")
            continue
        loss_ok, lerr, gerr = None, None, None
        if "loss" in ref_res:
            lerr = abs(r["loss"] - ref_res["loss"]) / max(abs(ref_res["loss"]), 1e-300)
            loss_ok = lerr <= loss_tol
            try:
                gerr = max(rel_err(r["grads"][k], ref_res["grads"][k]) for k in "UDRb")
            except Exception:
                gerr = float("nan")
            if not loss_ok:
                msg = (f"LOSS MISMATCH: {label} @ {batch}x{n}x{L}: loss {r['loss']!r} vs "
                       f"numpy_buffered {ref_res['loss']!r} (rel err {lerr:.2e} > {loss_tol:g})")
                print("\n" + "!" * 78 + "\n!!! " + msg + "\n" + "!" * 78 + "\n", flush=True)
                print("!!! " + msg, file=sys.stderr)
                failures.append(msg)
            elif not (gerr <= grad_tol):
                print(f"  WARNING: {label} gradients differ from numpy_buffered "
                      f"(max rel err {gerr:.2e} > {grad_tol:g})", flush=True)
        out_rows.append(dict(
            size=(batch, n, L), name=label, med=r["med"], min=r["min"], mem=r["mem"],
            x_buf=r["med"] / ref_res["med"] if "med" in ref_res else None,
            x_eager=r["med"] / eager_res["med"] if "med" in eager_res else None,
            gbs=traffic / r["med"] / 1e9, frac=traffic / r["med"] / bandwidth,
            loss_ok=loss_ok, lerr=lerr, gerr=gerr, setup=r["setup"], note=r["note"]))


# ---------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------

def fmt(v, spec, none="–"):
    return none if v is None else format(v, spec)


def markdown(rows, unavailable, header):
    lines = [header, "",
             "| size (batch×n×L) | implementation | median ms | min ms | × numpy_buffered "
             "| × torch_eager | peak extra MiB | traffic GB/s | % of copy bw | loss vs buffered "
             "| max grad rel err |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        size = "×".join(map(str, r["size"]))
        if "error" in r:
            lines.append(f"| {size} | {r['name']} | failed: {r['error']} | | | | | | | | |")
            continue
        mem = "n/a" if r["mem"] is None else f"{r['mem'] / 2**20:.1f}"
        ok = "–" if r["loss_ok"] is None else (
            f"ok ({r['lerr']:.0e})" if r["loss_ok"] else f"**MISMATCH** ({r['lerr']:.1e})")
        lines.append(
            f"| {size} | {r['name']} | {1e3 * r['med']:.1f} | {1e3 * r['min']:.1f} | "
            f"{fmt(r['x_buf'], '.2f')} | {fmt(r['x_eager'], '.2f')} | {mem} | {r['gbs']:.1f} | "
            f"{100 * r['frac']:.0f} % | {ok} | {fmt(r['gerr'], '.0e')} |")
    for name, why in unavailable:
        lines.append(f"\n{name}: unavailable ({why})")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default=DEFAULT_SIZES,
                   help=f"comma-separated BATCHxNxL (default {DEFAULT_SIZES})")
    p.add_argument("--repeat", type=int, default=5, help="timed runs per implementation (default 5)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--quick", action="store_true", help=f"tiny sizes ({QUICK_SIZES}), repeat 3")
    p.add_argument("--only", default="", help="comma-separated implementation names to run")
    p.add_argument("--no-compile", action="store_true", help="skip torch_compiled (slow to compile)")
    p.add_argument("--no-memory", action="store_true", help="skip the tracemalloc runs")
    p.add_argument("--torch-threads", type=int, default=0,
                   help="torch.set_num_threads(N) (default: torch's own default)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.quick:
        args.sizes = QUICK_SIZES
        args.repeat = min(args.repeat, 3)
    sizes = parse_sizes(args.sizes)
    dtype = np.dtype(args.dtype)
    if args.repeat < 1:
        p.error("--repeat must be >= 1")

    if args.torch_threads and ref._torch is not None:
        ref._torch.set_num_threads(args.torch_threads)
    warnings.filterwarnings("ignore", category=DeprecationWarning)

    impls, unavailable = implementations(dtype, args)
    if args.only:
        keep = {s.strip() for s in args.only.split(",")}
        keep.add(BUFFERED)  # the reference every loss is checked against
        impls = [im for im in impls if im.name in keep]
    today = datetime.date.today().isoformat()
    machine = (f"{cpu_name()}, {os.cpu_count()} CPUs, {platform.system()} {platform.machine()}, "
               f"Python {platform.python_version()}, NumPy {np.__version__}, torch {torch_version()}")
    print(f"date: {today}\nmachine: {machine}")
    for name, why in unavailable:
        print(f"{name}: unavailable ({why})")

    load_start = load_note("start")
    print(load_start)
    bandwidth = copy_bandwidth()
    print(f"copy bandwidth (np.copyto 256 MiB, read+write, best of 5): {bandwidth / 1e9:.1f} GB/s")

    rows, failures = [], []
    for batch, n, L in sizes:
        bench_size(batch, n, L, dtype, impls, args, bandwidth, rows, failures)
        ref.clear_workspace_cache()

    load_end = load_note("end")
    print("\n" + load_end)
    header = (f"### {today} — {np.dtype(dtype).name}, repeat {args.repeat}, h={H}, omega={OMEGA}\n\n"
              f"Machine: {machine}; copy bandwidth {bandwidth / 1e9:.1f} GB/s.\n"
              f"Ratios are median time / median time of the named implementation (> 1 = slower). "
              f"Traffic = minimal bytes (fwd: read+write z per layer; bwd: read z_t and lam, write lam "
              f"per layer; x, y, coefficients) / median time. Peak extra memory: tracemalloc, one "
              f"separate untimed call (numpy_buffered with a cold workspace; npdegen: the call only, "
              f"not the compiled network).\n{load_start}; {load_end}.")
    print("\n" + "-" * 30 + " Markdown for benchmarks/RESULTS.md " + "-" * 30 + "\n")
    print(markdown(rows, unavailable, header))
    if failures:
        print("\n" + "!" * 78)
        for f in failures:
            print("!!! " + f)
        print("!" * 78)
        mismatch = any("MISMATCH" in f for f in failures)
        return 1 if mismatch else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
