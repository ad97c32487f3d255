"""Quick start: the neural ADR layer Z = z + R z - U z_q + D z_qq, three homogeneous parameters.

A target is made by the same network with known (U, D, R); training recovers them.
"""
import numpy as np
import sympy as sp

import npdegen

q = sp.Symbol("q")
z = sp.Function("z")(q)
U, D, R = sp.symbols("U D R")
layer = npdegen.NeuralPDE(z + R*z - U*z.diff(q) + D*z.diff(q, 2), z, activation="tanh",
                          params={U: "homogeneous", D: "homogeneous", R: "homogeneous"})
print(layer.stencil())                   # {-1: U/(2Δ) + D/Δ², 0: 1 + R - 2D/Δ², 1: -U/(2Δ) + D/Δ²}
print(layer.explain())                   # moments -> reaction, advection, diffusion
net = layer.compile(n=32, spacing=1.0, layers=8, omega=0.8)
x = np.sin(2 * np.pi * np.outer(np.arange(1, 9), np.arange(32) / 32))
truth = net.init_params(scale=0.0, values={"U": 0.3, "D": 0.2, "R": -0.05})
y = net.forward(x, truth)
theta, history = npdegen.train(net, x, y, net.init_params(seed=1, scale=0.05), steps=400, lr=0.02)
print({k: round(float(v), 4) for k, v in theta.items()}, "loss", history.final_loss)
