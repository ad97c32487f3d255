#!/usr/bin/env python
"""Overhead of the PyTorch wrapper: NeuralPDEModule forward + backward against net.loss_and_grad.

Neural ADR layer, U, D, R heterogeneous, tanh, periodic, float32, batch 64, n 4096, L 32 (issue 12:
target ≤ 1.2×), per backend (numpy, numba if installed). Timed per round, interleaved (every variant
once per round, so that a slow spell of a shared machine hits all alike), median and min over
``--repeat`` rounds after warm-ups:

* ``loss_and_grad``   ``net.loss_and_grad(x, y, theta)`` (the reference)
* ``tape``            ``net.forward(x, theta, keep=True)`` + ``net.backward(tape, z_L - y)`` (public tape API)
* ``torch``           ``out = module(x); out.backward(out - y)`` (the cotangent of 0.5 Σ (z_L − y)²)
* ``torch+loss``      ``loss = 0.5 * ((module(x) - y) ** 2).sum(); loss.backward()`` (what a user writes)
* ``jax`` (``--jax``) ``jax.jit(jax.grad(loss))`` through ``npdegen.jax.neural_pde``; ``jax_recompute``
  the same with ``max_tapes=0`` (the backward recomputes the forward)

    python benchmarks/bench_torch.py                # ~1 min on a quiet 2-core machine
    python benchmarks/bench_torch.py --quick        # small sizes, a smoke test
"""
from __future__ import annotations

import argparse
import datetime
import gc
import os
import platform
import statistics
import sys
import time

import numpy as np
import sympy as sp

import npdegen


def machine() -> str:
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or "?"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    import torch
    return (f"{model}, {os.cpu_count()} CPUs, load {load:.2f}; Python {platform.python_version()}, NumPy {np.__version__}, "
            f"torch {torch.__version__}; {datetime.datetime.now().isoformat(timespec='minutes')}")


def variants(backend, batch, n, layers, with_jax):
    import torch
    from npdegen.torch import NeuralPDEModule
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    U, D, R = sp.symbols("U D R")
    layer = npdegen.NeuralPDE(z + R * z - U * z.diff(q) + D * z.diff(q, 2), z, activation="tanh",
                              params={U: "heterogeneous", D: "heterogeneous", R: "heterogeneous"})
    module = NeuralPDEModule(layer, n=n, layers=layers, omega=0.5, dtype="float32", backend=backend,
                             seed=0, scale=0.01, values={"D": 0.2})
    net = module.net
    theta = module.numpy_params()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, n)).astype(np.float32)
    y = rng.standard_normal((batch, n)).astype(np.float32)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def loss_and_grad():
        return net.loss_and_grad(x, y, theta)[0]

    def tape():
        t = net.forward(x, theta, keep=True)
        net.backward(t, t.output - y)

    def torch_cotangent():
        def run():
            module.zero_grad(set_to_none=True)
            out = module(xt)
            out.backward(out.detach() - yt)
        return run

    def torch_loss():
        module.zero_grad(set_to_none=True)
        loss = 0.5 * ((module(xt) - yt) ** 2).sum()
        loss.backward()

    out = {"loss_and_grad": loss_and_grad, "tape": tape, "torch": torch_cotangent(), "torch+loss": torch_loss}
    if with_jax:
        import jax
        jax.config.update("jax_enable_x64", False)
        import jax.numpy as jnp
        from npdegen.jax import neural_pde
        for name, keep in (("jax", 8), ("jax_recompute", 0)):
            apply = neural_pde(net, max_tapes=keep)
            th = {k: jnp.asarray(v) for k, v in theta.items()}
            g = jax.jit(jax.grad(lambda th, a=apply: 0.5 * jnp.sum((a(th, x) - y) ** 2)))
            out[name] = lambda g=g, th=th: jax.block_until_ready(g(th))
    # the gradients agree (torch vs loss_and_grad), as a sanity check of what is timed
    module.zero_grad(set_to_none=True)
    o = module(xt)
    o.backward(o.detach() - yt)
    ref = net.loss_and_grad(x, y, theta)[1]
    err = max(float(np.abs(getattr(module, k).grad.numpy() - ref[k]).max() / (np.abs(ref[k]).max() or 1)) for k in ref)
    return out, err


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="64x4096x32", help="batch x n x layers")
    p.add_argument("--repeat", type=int, default=15)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--backends", default="numpy,numba")
    p.add_argument("--jax", action="store_true", help="also time the JAX wrapper (tape vs recompute)")
    p.add_argument("--quick", action="store_true")
    a = p.parse_args(argv)
    if a.quick:
        a.size, a.repeat, a.warmup = "4x256x4", 3, 1
    batch, n, layers = map(int, a.size.split("x"))
    try:
        import torch
    except ImportError:
        print("bench_torch: PyTorch is not installed; nothing to time")
        return 0
    torch.set_num_threads(os.cpu_count() or 1)
    print(f"# bench_torch {batch}x{n}x{layers} float32, ADR heterogeneous tanh; {machine()}")
    rows = []
    for backend in a.backends.split(","):
        if backend == "numba":
            try:
                import numba  # noqa: F401
            except ImportError:
                print("numba not installed: skipped")
                continue
        fns, err = variants(backend, batch, n, layers, a.jax)
        times = {k: [] for k in fns}
        for _ in range(a.warmup):
            for f in fns.values():
                f()
        for _ in range(a.repeat):
            for k, f in fns.items():
                gc.collect()
                t0 = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t0)
        base = statistics.median(times["loss_and_grad"])
        for k, ts in times.items():
            med = statistics.median(ts)
            rows.append((backend, k, med * 1e3, min(ts) * 1e3, med / base))
        print(f"{backend}: torch gradients vs loss_and_grad, max relative difference {err:.1e}")
    print("\n| backend | variant | median ms | min ms | × loss_and_grad (median) |\n|---|---|---|---|---|")
    for b, k, med, mn, ratio in rows:
        print(f"| {b} | {k} | {med:.1f} | {mn:.1f} | {ratio:.2f} |")
    print()
    for b, k, med, mn, ratio in rows:
        if k in ("torch", "torch+loss"):
            print(f"- {b} {k}: {ratio:.2f}× loss_and_grad (target ≤ 1.2: {'met' if ratio <= 1.2 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
