"""The three parameter families of the neural ADR layer on a spatially varying target.

Z = z + R z - U z_q + D z_qq - b, f = tanh. The target comes from a network whose diffusivity
varies in space, D(q) = 0.1 + 0.08 sin(2πq); the homogeneous family (3 parameters) cannot
represent it, the heterogeneous (3n) and time-dependent (3nL) families can. The time-dependent
family is also trained layer by layer ("on the fly", docs/theory.md §3).
Set NPDEGEN_EXAMPLE_STEPS to shorten the run (CI does).
"""
import os

import numpy as np
import sympy as sp

import npdegen

STEPS = int(os.environ.get("NPDEGEN_EXAMPLE_STEPS", "300"))
n, L = 48, 8
q = sp.Symbol("q")
z = sp.Function("z")(q)
U, D, R = sp.symbols("U D R")
transform = z + R * z - U * z.diff(q) + D * z.diff(q, 2)


def network(family):
    layer = npdegen.NeuralPDE(transform, z, activation="tanh", name=f"adr_{family.replace('-', '_')}",
                              params={U: family, D: family, R: family})
    return layer.compile(n=n, spacing=1.0, layers=L, omega=0.8, boundary="periodic")


sites = np.arange(n) / n
rng = np.random.default_rng(0)
x = sum(rng.normal(size=(32, 1)) * np.sin(2 * np.pi * k * sites + rng.uniform(0, 6, (32, 1))) / k
        for k in range(1, 5))
teacher = network("heterogeneous")
truth = {"U": np.full(n, 0.2), "D": 0.1 + 0.08 * np.sin(2 * np.pi * sites), "R": np.full(n, -0.02)}
y = teacher.forward(x, truth)

print(f"{'family':<16}{'method':<11}{'parameters':>11}{'initial loss':>14}{'final loss':>12}")
for family, method in [("homogeneous", "full"), ("heterogeneous", "full"),
                       ("time-dependent", "full"), ("time-dependent", "layerwise")]:
    net = network(family)
    theta0 = net.init_params(seed=1, scale=0.01, values={"D": 0.1})
    steps = STEPS // 4 if method == "layerwise" else STEPS
    theta, hist = npdegen.train(net, x, y, theta0, steps=steps, lr=0.01, method=method)
    size = sum(v.size for v in theta.values())
    print(f"{family:<16}{method:<11}{size:>11}{net.layer_losses(x, y, theta0)[-1]:>14.3e}{hist.final_loss:>12.3e}")
