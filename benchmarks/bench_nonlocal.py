#!/usr/bin/env python
"""Nonlocal (integral-operator) layer against the local 3-point layer: forward + gradient, one run.

Workload (issue 14's speed target): 1-D, batch 8, n 65,536, L 16, float32, periodic, ω = 0.5,
``loss = 0.5 Σ (z_L − y)²`` with x ~ N(0, 1), y = x/2, activation ``--activation`` (tanh by default).

* ``local`` — :class:`npdegen.NeuralPDE` ``z + R z − U z_q + D z_qq`` (a 3-point stencil, homogeneous
  U, D, R; D = 0.2) on the numba backend;
* ``fft σ=s`` — :class:`npdegen.NonlocalPDE` with a Gaussian kernel of width ``s`` cells,
  ``method="fft"``; ``stencil σ=s`` the same kernel by ``method="stencil"`` (the reach the sampler
  decides: weights below float32 resolution dropped); ``auto σ=s`` the method the network picks.

Every implementation runs once per round, rounds interleaved (``--rounds``), after one warm-up
call; reported: median and min wall time (ms), the median ratio to ``local``, and the same for the
process's CPU time (less sensitive to other jobs on a shared machine). ``--threads`` sets both the
numba threads of the local layer and the FFT workers / numba threads of the nonlocal one (``1``:
one thread each). The loads (``uptime``) at start and end are printed: on a shared machine, compare
ratios from one run only. The issue's target is ``fft / local ≤ 3``; ``transforms`` is the FFT
layer's floor, its ``4 L`` transforms of the batch alone (scipy's pocketfft into kept arrays).

    python benchmarks/bench_nonlocal.py                          # σ = 50 by FFT, tanh and identity
    python benchmarks/bench_nonlocal.py --crossover              # stencil vs FFT per σ (the auto rule)
    python benchmarks/bench_nonlocal.py --quick                  # tiny sizes (smoke test)
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


def load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:          # pragma: no cover
        return "n/a"


def local_net(n, L, activation, threads):
    import sympy as sp

    import npdegen
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    U, D, R = sp.symbols("U D R")
    layer = npdegen.NeuralPDE(z + R * z - U * z.diff(q) + D * z.diff(q, 2), z, activation=activation,
                              params={U: "homogeneous", D: "homogeneous", R: "homogeneous"})
    net = layer.compile(n=n, layers=L, omega=0.5, boundary="periodic", backend="numba", dtype="float32",
                        threads=threads)
    return net, net.init_params(values={"D": 0.2})


def nonlocal_net(n, L, activation, threads, method, sigma):
    import sympy as sp

    from npdegen.integral import NonlocalPDE, gaussian
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    s = sp.Symbol("sigma")
    layer = NonlocalPDE(gaussian(s), z, activation=activation, params={s: "homogeneous"})
    net = layer.compile(n, spacing=1.0, layers=L, omega=0.5, dtype="float32", method=method, threads=threads)
    return net, {"sigma": np.asarray(sigma, np.float32)}


class TransformsOnly:
    """The floor of the FFT layer: its ``4 L`` transforms of the batch alone (kept arrays, one kernel
    spectrum product each way), nothing else."""

    def __init__(self, n, L, threads):
        from scipy.fft._pocketfft import pypocketfft
        self.pf, self.n, self.L, self.threads = pypocketfft, n, L, threads

    def loss_and_grad(self, x, y, theta):
        if getattr(self, "spec", None) is None or self.spec.shape[0] != x.shape[0]:
            self.spec = np.empty((x.shape[0], self.n // 2 + 1), np.complex64)
            self.k = np.ones(self.n // 2 + 1, np.complex64)
            self.out = np.empty_like(x)
        for _ in range(2 * self.L):                   # unnormalised rfft / irfft into kept arrays
            self.pf.r2c(x, (1,), True, 0, self.spec, self.threads)
            self.spec *= self.k
            self.pf.c2r(self.spec, (1,), self.n, False, 0, self.out, self.threads)


def describe(net, theta) -> str:
    if isinstance(net, TransformsOnly):
        return "4L transforms only"
    if not hasattr(net, "plan"):
        return "numba 3-point"
    plan = net.plan(net.check_params(theta))
    return f"{plan.op.name}, reach {plan.op.reach[0]}"


def run(cases, x, y, rounds):
    times = {name: [] for name in cases}
    cpu = {name: [] for name in cases}
    for net, theta in cases.values():              # warm-up (numba compile, FFT plans)
        net.loss_and_grad(x, y, theta)
    names = list(cases)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            net, theta = cases[name]
            t0, c0 = time.perf_counter(), time.process_time()
            net.loss_and_grad(x, y, theta)
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return times, cpu


def table(cases, times, cpu, reference) -> list[str]:
    ref, cref = statistics.median(times[reference]), statistics.median(cpu[reference])
    rows = ["| implementation | method | median ms | min ms | ratio to local | median CPU ms | CPU ratio |",
            "|---|---|---:|---:|---:|---:|---:|"]
    for name, ts in times.items():
        net, theta = cases[name]
        med, cmed = statistics.median(ts), statistics.median(cpu[name])
        rows.append(f"| {name} | {describe(net, theta)} | {med * 1e3:.1f} | {min(ts) * 1e3:.1f} | {med / ref:.2f}× "
                    f"| {cmed * 1e3:.1f} | {cmed / cref:.2f}× |")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--n", type=int, default=65536)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--activation", default="tanh,identity", help="comma-separated activations")
    ap.add_argument("--sigma", type=float, default=50.0, help="the FFT layer's kernel width (cells)")
    ap.add_argument("--crossover", action="store_true", help="stencil / FFT / auto per sigma (tanh)")
    ap.add_argument("--sigmas", default="0.5,1,2,3,4,6,8,12", help="sigmas of --crossover")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    if a.quick:
        a.batch, a.n, a.layers, a.rounds, a.sigmas = 2, 1024, 2, 2, "1,4"
    x = np.random.default_rng(0).standard_normal((a.batch, a.n)).astype(np.float32)
    y = 0.5 * x
    print(f"# bench_nonlocal: batch {a.batch}, n {a.n}, L {a.layers}, float32, threads {a.threads}, "
          f"rounds {a.rounds}; load at start {load()}")
    for act in a.activation.split(",") if not a.crossover else ["tanh"]:
        cases = {"local": local_net(a.n, a.layers, act, a.threads)}
        if a.crossover:
            for s in (float(v) for v in a.sigmas.split(",")):
                for method in ("stencil", "fft", "auto"):
                    cases[f"{method} σ={s:g}"] = nonlocal_net(a.n, a.layers, act, a.threads, method, s)
        else:
            cases[f"fft σ={a.sigma:g}"] = nonlocal_net(a.n, a.layers, act, a.threads, "fft", a.sigma)
            if act == "tanh":
                cases["transforms"] = (TransformsOnly(a.n, a.layers, a.threads), None)
        times, cpu = run(cases, x, y, a.rounds)
        print(f"\n## activation {act} (load now {load()})\n")
        print("\n".join(table(cases, times, cpu, "local")))
        if not a.crossover:
            ratio = statistics.median(times[f"fft σ={a.sigma:g}"]) / statistics.median(times["local"])
            print(f"\nfft / local = {ratio:.2f} (target ≤ {TARGET:g}: {'met' if ratio <= TARGET else 'NOT met'})")
    print(f"\nload at end {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
