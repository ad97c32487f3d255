#!/usr/bin/env python
"""Speed of the CuPy backend (issue 3): kernel bandwidth against the GPU's copy bandwidth, and one
forward + gradient against the same network in PyTorch eager on the same GPU.

The network is the one of bench_core.py: L tanh relaxation layers of the neural ADR stencil on a
periodic grid, heterogeneous U, D, R and b (h = 1, omega = 0.5, D in [0.05, 0.15], U in [-0.1, 0.1],
R and b in [-0.05, 0.05], x, y ~ N(0, 1)).

Measured in one run, every time with CUDA events, median of --repeat (>= 20) measurements after
warm-up:

* copy bandwidth: a device-to-device copy of a 1 GiB buffer, (bytes read + written) / time;
* forward layer: the launches of one layer (forward_plan), replayed --inner times back to back per
  measurement so that launch overhead is hidden; minimal bytes = read z + write z (batch * n each)
  + read the 4 coefficient arrays (n each);
* adjoint layer: the launches of one adjoint layer (adjoint_plan: the fused adjoint_step and, when
  the shape needs them, the second passes), the same way; minimal bytes = read z_t, read lam, write
  lam (batch * n each) + read the 4 coefficient arrays + write the 4 gradients (n each);
* forward + gradient: Network.loss_and_grad end to end (Python, the trajectory's allocation and the
  loss included), and the same loss and gradients with PyTorch eager (torch.roll, autograd) when
  torch imports with CUDA.

Goals (issue 3, float32, (batch, n) >= (64, 2^18), H100/H200): forward >= 80 % and adjoint >= 60 %
of the copy bandwidth, forward + gradient >= 10x faster than PyTorch eager. The script prints the
numbers, whether each goal is met, and a Markdown table for benchmarks/RESULTS.md.

    python benchmarks/bench_cuda.py                          # 64x262144x16 and 256x262144x16, float32
    python benchmarks/bench_cuda.py --sizes 64x262144x16 --dtype float64 --repeat 50
    python benchmarks/bench_cuda.py --atomics                # the opt-in atomic gradient sums
    python benchmarks/bench_cuda.py --nd 64x512x512x16       # also a 2-D step-IR layer (BATCHxN0xN1xL)

--nd adds the step-IR kernels (templates/step_cuda): the 2-D anisotropic ADR layer with a cross term
z + R z - U z_x - V z_y + D (z_xx + z_yy) + D z_xy (U, V, R heterogeneous, D homogeneous, bias
heterogeneous, periodic), tanh; the same three measurements (minimal bytes: forward read z + write z,
adjoint read z + read lam + write lam, batch * sites each, plus the per-site parameters).
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))       # a source checkout works without installing

H, OMEGA = 1.0, 0.5


def parse_size(text):
    batch, n, layers = (int(v) for v in text.lower().split("x"))
    return batch, n, layers


def median_seconds(cupy, fn, repeat, inner=1, warmup=3):
    """Median over `repeat` measurements of the GPU time of `inner` back-to-back calls of fn, per call."""
    for _ in range(warmup):
        fn()
    cupy.cuda.Device().synchronize()
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    times = []
    for _ in range(repeat):
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        end.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, end) * 1e-3 / inner)
    return float(np.median(times))


def copy_bandwidth(cupy, repeat):
    """Bytes read + written per second of a 1 GiB device-to-device copy."""
    nbytes = 1 << 30
    src, dst = cupy.ones(nbytes // 4, np.float32), cupy.empty(nbytes // 4, np.float32)
    t = median_seconds(cupy, lambda: dst.data.copy_from_device_async(src.data, nbytes), repeat, inner=5)
    del src, dst
    return 2 * nbytes / t


def adr_layer():
    import sympy as sp

    import npdegen
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    U, D, R = sp.symbols("U D R")
    return npdegen.NeuralPDE(z + R * z - U * z.diff(q) + D * z.diff(q, 2), z, activation="tanh",
                             params={U: "heterogeneous", D: "heterogeneous", R: "heterogeneous"},
                             bias="heterogeneous", name="adr_bench")


def data(batch, n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    theta = {"U": rng.uniform(-0.1, 0.1, n), "D": rng.uniform(0.05, 0.15, n),
             "R": rng.uniform(-0.05, 0.05, n), "b": rng.uniform(-0.05, 0.05, n)}
    x, y = rng.standard_normal((batch, n)), rng.standard_normal((batch, n))
    return {k: v.astype(dtype) for k, v in theta.items()}, x.astype(dtype), y.astype(dtype)


def replay(kernel, plan):
    """A function launching the plan's kernels with their prepared arguments (no wrapper overhead)."""
    launches = [(kernel.kernel(name), grid, args) for name, grid, args in plan]

    def go():
        for fn, grid, args in launches:
            fn(grid, (kernel.TILE,), args)
    return go


def torch_loss_and_grad(torch, x, y, theta, layers, device="cuda"):
    """The same network in PyTorch eager; returns a function computing the loss and its gradients."""
    params = [torch.tensor(theta[k], device=device, requires_grad=True) for k in "UDRb"]
    tx, ty = torch.tensor(x, device=device), torch.tensor(y, device=device)

    def go():
        U, D, R, b = params
        A, C, B = U / (2 * H) + D / H**2, 1 + R - 2 * D / H**2, -U / (2 * H) + D / H**2
        z = tx
        for _ in range(layers):
            Z = A * torch.roll(z, 1, dims=1) + C * z + B * torch.roll(z, -1, dims=1) - b
            z = (1 - OMEGA) * z + OMEGA * torch.tanh(Z)
        loss = 0.5 * ((z - ty) ** 2).sum()
        return loss, torch.autograd.grad(loss, params)
    return go


def bench_size(cupy, torch, size, dtype, repeat, inner, copy_bw):
    batch, n, layers = size
    real = np.dtype(dtype)
    layer = adr_layer()
    net = layer.compile(n=n, spacing=H, layers=layers, omega=OMEGA, boundary="periodic", backend="cupy", dtype=dtype)
    theta_host, x, y = data(batch, n, dtype)
    theta = net.check_params(theta_host)
    kernel, work = net.kernel, net.kernel.workspace(batch, n, real)
    halo, s = net.halo, real.itemsize
    zp = cupy.zeros((batch, n + 2 * halo), real)
    zp[:, halo:halo + n] = cupy.asarray(x)
    out, lam, lam_out = cupy.empty((batch, n), real), cupy.asarray(y), cupy.empty((batch, n), real)
    grads = {k: cupy.zeros(v.shape, real) for k, v in theta.items()}

    t_fwd = median_seconds(cupy, replay(kernel, kernel.forward_plan(zp, out, theta, 0, H, OMEGA, 0.0, work)), repeat, inner)
    t_adj = median_seconds(cupy, replay(kernel, kernel.adjoint_plan(zp, lam, lam_out, theta, 0, H, OMEGA, 0.0, grads, work)),
                           repeat, inner)
    bytes_fwd = (2 * batch * n + 4 * n) * s
    bytes_adj = (3 * batch * n + 8 * n) * s
    t_net = median_seconds(cupy, lambda: net.loss_and_grad(x, y, theta), repeat)
    row = {"size": f"{batch}x{n}x{layers}", "launches": len(kernel.adjoint_plan(zp, lam, lam_out, theta, 0, H, OMEGA, 0.0,
                                                                                  grads, work)),
           "fwd_us": t_fwd * 1e6, "fwd_frac": bytes_fwd / t_fwd / copy_bw, "fwd_gbs": bytes_fwd / t_fwd / 1e9,
           "adj_us": t_adj * 1e6, "adj_frac": bytes_adj / t_adj / copy_bw, "adj_gbs": bytes_adj / t_adj / 1e9,
           "net_ms": t_net * 1e3, "torch_ms": None, "speedup": None}
    if torch is not None:
        fn = torch_loss_and_grad(torch, x, y, theta_host, layers)
        loss_torch = float(fn()[0].detach())
        loss_ours = net.loss_and_grad(x, y, theta)[0]
        if abs(loss_torch - loss_ours) > (1e-3 if dtype == "float32" else 1e-9) * abs(loss_torch):
            print(f"WARNING {row['size']}: losses disagree: npdegen {loss_ours!r}, torch {loss_torch!r}")
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(repeat):
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) * 1e-3)
        row["torch_ms"] = float(np.median(times)) * 1e3
        row["speedup"] = row["torch_ms"] / row["net_ms"]
        del fn
    del net, zp, out, lam, lam_out, grads, work
    cupy.get_default_memory_pool().free_all_blocks()
    return row


def adr2d_layer():
    import sympy as sp

    import npdegen
    x, y = sp.symbols("x y")
    z = sp.Function("z")(x, y)
    U, V, D, R = sp.symbols("U V D R")
    return npdegen.NeuralPDE(z + R * z - U * z.diff(x) - V * z.diff(y) + D * (z.diff(x, 2) + z.diff(y, 2))
                             + D * z.diff(x, y), z, activation="tanh",
                             params={U: "heterogeneous", V: "heterogeneous", D: "homogeneous", R: "heterogeneous"},
                             bias="heterogeneous", name="adr2d_bench")


def bench_step_size(cupy, size, dtype, repeat, inner, copy_bw):
    """The 2-D step-IR layer: kernel replays of one forward and one adjoint layer, and loss_and_grad."""
    batch, n0, n1, layers = size
    real = np.dtype(dtype)
    net = adr2d_layer().compile(n=(n0, n1), spacing=H, layers=layers, omega=OMEGA, boundary="periodic",
                                backend="cupy", dtype=dtype)
    rng = np.random.default_rng(0)
    sites = n0 * n1
    theta_host = {"U": rng.uniform(-0.1, 0.1, (n0, n1)), "V": rng.uniform(-0.1, 0.1, (n0, n1)), "D": np.asarray(0.1),
                  "R": rng.uniform(-0.05, 0.05, (n0, n1)), "b": rng.uniform(-0.05, 0.05, (n0, n1))}
    theta = net.check_params(theta_host)
    x, y = (rng.standard_normal((batch, n0, n1)).astype(dtype) for _ in range(2))
    kernel, work = net.kernel, net.kernel.workspace(batch, (n0, n1), real)
    params, space = kernel._theta(theta, 0), kernel._spacing((H, H))
    zp = cupy.zeros((batch, n0 + 2, n1 + 2), real)
    zp[:, 1:-1, 1:-1] = cupy.asarray(x)
    out, lam = cupy.empty((batch, n0, n1), real), cupy.asarray(y)
    kernel.run(kernel._coefficients_plan(params, space, work))
    work["sums"].fill(0)
    fwd = kernel.forward_plan(zp, out, params, space, OMEGA, 0.0, work)
    adj = kernel.adjoint_plan(zp, lam, params, space, OMEGA, 0.0, work)
    t_fwd = median_seconds(cupy, replay(kernel, fwd), repeat, inner)
    t_adj = median_seconds(cupy, replay(kernel, adj), repeat, inner)
    s = real.itemsize
    bytes_fwd = (2 * batch * sites + 4 * sites) * s
    bytes_adj = (3 * batch * sites + 4 * sites) * s
    t_net = median_seconds(cupy, lambda: net.loss_and_grad(x, y, theta), repeat)
    row = {"size": f"{batch}x{n0}x{n1}x{layers} (2-D step IR)", "launches": len(adj),
           "fwd_us": t_fwd * 1e6, "fwd_frac": bytes_fwd / t_fwd / copy_bw, "fwd_gbs": bytes_fwd / t_fwd / 1e9,
           "adj_us": t_adj * 1e6, "adj_frac": bytes_adj / t_adj / copy_bw, "adj_gbs": bytes_adj / t_adj / 1e9,
           "net_ms": t_net * 1e3, "torch_ms": None, "speedup": None}
    del net, zp, out, lam, work
    cupy.get_default_memory_pool().free_all_blocks()
    return row


def device_description(cupy):
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    runtime = cupy.cuda.runtime.runtimeGetVersion()
    driver = cupy.cuda.runtime.driverGetVersion()
    return (f"{name} (compute capability {props['major']}.{props['minor']}, {props['multiProcessorCount']} SMs), "
            f"CUDA runtime {runtime // 1000}.{runtime % 1000 // 10}, driver {driver // 1000}.{driver % 1000 // 10}, "
            f"CuPy {cupy.__version__}, Python {platform.python_version()}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=[(64, 1 << 18, 16), (256, 1 << 18, 16)],
                        help="BATCHxNxL (default 64x262144x16 256x262144x16)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--repeat", type=int, default=30, help="measurements per median (at least 20)")
    parser.add_argument("--inner", type=int, default=20, help="back-to-back layer launches per kernel measurement")
    parser.add_argument("--atomics", action="store_true", help="the opt-in atomic gradient sums")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch eager comparison")
    parser.add_argument("--nd", nargs="*", default=[], type=lambda t: tuple(int(v) for v in t.lower().split("x")),
                        help="also the 2-D step-IR layer at BATCHxN0xN1xL sizes (e.g. 64x512x512x16)")
    args = parser.parse_args(argv)
    if args.repeat < 20:
        parser.error("--repeat must be at least 20")
    os.environ["NPDEGEN_CUDA_ATOMICS"] = "1" if args.atomics else "0"
    from npdegen.runtime.cupy_backend import gpu_status
    cupy, why = gpu_status()
    if cupy is None:
        print(f"bench_cuda: no GPU: {why}", file=sys.stderr)
        return 2
    torch = None
    if not args.no_torch:
        try:
            import torch
            if not torch.cuda.is_available():
                print("torch: unavailable (no CUDA in this build)")
                torch = None
        except ImportError as exc:
            print(f"torch: unavailable ({exc})")
    device = device_description(cupy)
    date = datetime.date.today().isoformat()
    print(f"device: {device}\ndate: {date}")
    copy_bw = copy_bandwidth(cupy, args.repeat)
    print(f"copy bandwidth (1 GiB device-to-device, read + write): {copy_bw / 1e9:.0f} GB/s")
    rows = []
    for size in args.sizes:
        row = bench_size(cupy, torch, size, args.dtype, args.repeat, args.inner, copy_bw)
        rows.append(row)
        torch_text = "" if row["torch_ms"] is None else \
            f", torch eager {row['torch_ms']:.2f} ms ({row['speedup']:.1f}x)"
        print(f"{row['size']}: forward {row['fwd_us']:.1f} us/layer ({row['fwd_frac']:.0%} of copy), "
              f"adjoint {row['adj_us']:.1f} us/layer ({row['adj_frac']:.0%}, {row['launches']} launch(es)), "
              f"forward + gradient {row['net_ms']:.2f} ms{torch_text}")
        batch, n, _ = size
        if args.dtype == "float32" and batch >= 64 and n >= 1 << 18:
            goals = [("forward >= 80% of copy", row["fwd_frac"] >= 0.8), ("adjoint >= 60% of copy", row["adj_frac"] >= 0.6)]
            if row["speedup"] is not None:
                goals.append(("forward + gradient >= 10x torch eager", row["speedup"] >= 10))
            print("  goals: " + ", ".join(f"{name}: {'met' if ok else 'NOT met'}" for name, ok in goals))
    for size in args.nd:
        if len(size) != 4:
            parser.error(f"--nd sizes are BATCHxN0xN1xL, got {'x'.join(map(str, size))}")
        row = bench_step_size(cupy, size, args.dtype, args.repeat, args.inner, copy_bw)
        rows.append(row)
        print(f"{row['size']}: forward {row['fwd_us']:.1f} us/layer ({row['fwd_frac']:.0%} of copy), "
              f"adjoint {row['adj_us']:.1f} us/layer ({row['adj_frac']:.0%}, {row['launches']} launch(es)), "
              f"forward + gradient {row['net_ms']:.2f} ms")
    mode = "atomics" if args.atomics else "deterministic"
    print(f"\n### {device}, {date}\n\n{args.dtype}, {mode} gradient sums, copy bandwidth {copy_bw / 1e9:.0f} GB/s; "
          f"CUDA events, median of {args.repeat} after warm-up; kernel times over {args.inner} back-to-back layers.\n")
    print("| batch x n x L | forward us/layer | forward GB/s | % of copy | adjoint us/layer | adjoint GB/s | % of copy "
          "| forward + gradient ms | torch eager ms | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        torch_cells = "n/a | n/a" if r["torch_ms"] is None else f"{r['torch_ms']:.2f} | {r['speedup']:.1f}x"
        print(f"| {r['size']} | {r['fwd_us']:.1f} | {r['fwd_gbs']:.0f} | {r['fwd_frac']:.0%} | {r['adj_us']:.1f} | "
              f"{r['adj_gbs']:.0f} | {r['adj_frac']:.0%} | {r['net_ms']:.2f} | {torch_cells} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
