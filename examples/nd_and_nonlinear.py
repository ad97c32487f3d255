"""N-D and nonlinear layers (the step IR): two layers, each trained back to known parameters.

* 2-D anisotropic ADR: Z = z + R z - U z_x - V z_y + Dxx z_xx + 2 Dxy z_xy + Dyy z_yy (∂_x, ∂_y);
* viscous Burgers, one explicit step per layer: Z = z - dt z z_q + dt nu z_qq, z <- Z.

Then what the weights mean: the 2-D layer's tensor moments (advection vector, diffusion tensor)
and the Burgers layer's linearisation, whose local advection speed is dt times the state itself.
"""
import os

import numpy as np
import sympy as sp

import npdegen
from npdegen import ops
from npdegen.inspect.linearised import linearised_kernel
from npdegen.inspect.stability_nd import step_stability

steps = int(os.environ.get("NPDEGEN_EXAMPLE_STEPS", 300))
rng = np.random.default_rng(0)

# ---- 2-D ADR --------------------------------------------------------------------------------
x, y = sp.symbols("x y")
z = sp.Function("z")(x, y)
U, V, Dxx, Dxy, Dyy, R = sp.symbols("U V Dxx Dxy Dyy R")
K = [[Dxx, Dxy], [Dxy, Dyy]]
layer = npdegen.NeuralPDE(z + R * z - ops.advection((U, V), z) + ops.diffusion(K, z), z, activation="tanh",
                          params={s: "homogeneous" for s in (U, V, Dxx, Dxy, Dyy, R)})
print(layer.explain())
net = layer.compile(n=(16, 12), spacing=(1.0, 1.0), layers=6, omega=0.8, boundary=("periodic", "neumann"))
truth = {"U": 0.3, "V": -0.2, "Dxx": 0.2, "Dxy": 0.05, "Dyy": 0.1, "R": -0.05}
print(step_stability(layer, truth, omega=0.8))
x0 = rng.standard_normal((8, 16, 12))
target = net.forward(x0, net.init_params(scale=0.0, values=truth))
theta, history = npdegen.train(net, x0, target, net.init_params(seed=1, scale=0.02), steps=steps, lr=0.02)
print("2-D ADR recovered:", {k: round(float(v), 3) for k, v in theta.items()}, "loss", f"{history.final_loss:.2e}")

# ---- Burgers --------------------------------------------------------------------------------
q = sp.Symbol("q")
u = sp.Function("z")(q)
nu = sp.Symbol("nu")
dt = sp.Rational(1, 20)
burgers = npdegen.NeuralPDE(u - dt * u * u.diff(q) + dt * nu * u.diff(q, 2), u, params={nu: "homogeneous"})
bnet = burgers.compile(n=64, spacing=0.25, layers=10)
grid = np.arange(64) * 0.25
u0 = np.stack([np.sin(2 * np.pi * k * grid / 16) + 0.5 for k in (1, 2, 3)])
u1 = bnet.forward(u0, {"nu": np.array(0.4)})
theta, history = npdegen.train(bnet, u0, u1, {"nu": np.array(0.1)}, steps=steps, lr=0.02)
print("Burgers nu recovered:", round(float(theta["nu"]), 4), "(truth 0.4)")
kernel = linearised_kernel(burgers, u0[0], {"nu": 0.4}, spacing=0.25)
speed = kernel.advection[0] / float(dt)
print("linearised advection speed / dt equals the state:", bool(np.allclose(speed, u0[0])))
