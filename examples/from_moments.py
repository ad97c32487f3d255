"""A layer from its kernel moments: W0 = 1 + r, W1 = -c, W2 = 2d, W4 = -2e on five points.

NeuralPDE.from_moments solves the moment (Vandermonde) system exactly; the layer is then
z + r z - c z_q + d z_qq - (e/12) z_qqqq, and its moments are the ones given.
"""
import sympy as sp

from npdegen import NeuralPDE

r, c, d, e = sp.symbols("r c d e")
moments = {0: 1 + r, 1: -c, 2: 2 * d, 4: -2 * e}
layer = NeuralPDE.from_moments(moments, offsets=(-2, -1, 0, 1, 2), activation="identity",
                               params={r: "homogeneous", c: "homogeneous", d: "homogeneous",
                                       e: "homogeneous"})
print("transform:", layer.spec.transform)
for j, w in layer.stencil(1).items():
    print(f"  w[{j:+d}] = {w}")
got = layer.moments(4, spacing=1)
assert all(sp.simplify(got[k] - moments.get(k, 0)) == 0 for k in range(5)), got
print(layer.explain())
