"""Dense log-sum-exp layer = a viscous Hamilton–Jacobi step (issue 13 item 5, docs/theory.md §6).

Z = ε log Σ_j exp((W_j·z + b_j)/ε) with anchors y_j, data g_j and time t, W_j = y_j/(2t),
b_j = −g_j − |y_j|²/(4t), is Z = |z|²/(4t) − u_ε(z, t) for the Hopf–Cole solution u_ε of
∂_t u + |∂_z u|² = ε ∂²_z u (Δ in d dimensions) started from the measure Σ_j e^{−g_j/ε} δ(z − y_j).

The script checks the identity (exact with the unnormalised heat kernel; the normalised one, the true PDE
solution, differs by the constant (εd/2) log(4πεt)), the PDE by finite differences, and the ε → 0 limits:
the layer becomes the max-plus (tropical) layer max_j (W_j·z + b_j) and u_ε the Hopf–Lax formula
min_j {g_j + |z − y_j|²/(4t)}. It then sweeps ε and reports the mean attribution entropy
H(π) = −Σ π_j log π_j, π = softmax(s/ε) (also ∂Z/∂ε): 0 for the winner-take-all max, log m for ε → ∞.
Last, a student layer learns W, b and ε back from a teacher's outputs (exact gradients: npdegen.optim.Adam,
then SciPy's L-BFGS-B).

Set NPDEGEN_EXAMPLE_STEPS to shorten training and NPDEGEN_EXAMPLE_PLOT=path.png (or .svg) to save
the ε-sweep figure (needs matplotlib; written atomically).
"""
import os

import numpy as np

from npdegen.lse import (DenseLSE, MaxPlus, fit_lbfgs, heat_offset, hopf_cole_solution, hopf_lax, layer_from_params,
                         loss_and_grad)
from npdegen.optim import Adam
from npdegen.runtime.atomic import write_atomic

STEPS = int(os.environ.get("NPDEGEN_EXAMPLE_STEPS", "300"))
rng = np.random.default_rng(0)
m, d, t = 12, 2, 0.5
y = rng.uniform(-2, 2, size=(m, d))                      # anchors
g = rng.uniform(0, 1, size=m)                            # initial data at the anchors
x = rng.uniform(-2.5, 2.5, size=(400, d))                # evaluation points
quad = np.sum(x * x, axis=1) / (4 * t)

# ---- the identity and the PDE ----------------------------------------------------------------
print(f"anchors m = {m} in d = {d}, t = {t}")
for eps in (1.0, 0.1, 0.01):
    f = DenseLSE.from_anchors(y, g, t, eps)(x)
    v = hopf_cole_solution(x, t, y, g, eps, normalised=False)
    u = hopf_cole_solution(x, t, y, g, eps)
    scale = np.abs(f) + quad + np.abs(v)
    print(f"eps = {eps:<5g} identity f = |x|²/4t − u: max rel. error {np.max(np.abs(f - quad + v) / scale):.1e} "
          f"(unnormalised), {np.max(np.abs(f - quad + u - heat_offset(t, eps, d)) / scale):.1e} "
          f"(normalised, with the offset {heat_offset(t, eps, d):+.4f})")

eps, h, k = 0.3, 1e-3, 1e-4                              # the PDE residual at a few points, central differences
pts = x[:5]
u = lambda xx, tt: hopf_cole_solution(xx, tt, y, g, eps)
u_t = (u(pts, t + k) - u(pts, t - k)) / (2 * k)
grad2, lap = 0.0, 0.0
for i in range(d):
    e = np.eye(d)[i] * h
    grad2 = grad2 + ((u(pts + e, t) - u(pts - e, t)) / (2 * h)) ** 2
    lap = lap + (u(pts + e, t) - 2 * u(pts, t) + u(pts - e, t)) / h**2
print(f"PDE u_t + |∇u|² − εΔu at eps = {eps}: max |residual| {np.max(np.abs(u_t + grad2 - eps * lap)):.1e} "
      f"(finite differences, h = {h})")

# ---- ε → 0: max-plus and Hopf–Lax; the attribution-entropy sweep -----------------------------------
lax = hopf_lax(x, t, y, g)
f0 = MaxPlus.limit_of(DenseLSE.from_anchors(y, g, t, 1.0))(x)
print(f"max-plus layer = |x|²/4t − Hopf–Lax: max error {np.max(np.abs(f0 - (quad - lax))):.1e}")
sweep = np.logspace(-3, 1, 25)
entropy, excess = [], []
for eps in sweep:
    layer = DenseLSE.from_anchors(y, g, t, eps)
    entropy.append(np.mean(layer.attribution(x).entropy))
    excess.append(np.max(layer(x) - f0))
print(f"\n{'eps':>8} {'mean entropy':>13} {'max (f − max-plus)':>19} {'eps log m':>10}")
for eps, H, ex in list(zip(sweep, entropy, excess))[::4]:
    print(f"{eps:8.3g} {H:13.4f} {ex:19.3e} {eps * np.log(m):10.3e}")
print(f"entropy → 0 as eps → 0 (winner-take-all), → log m = {np.log(m):.3f} as eps → ∞")

# ---- learning W, b, ε back from a teacher --------------------------------------------------------
teacher = DenseLSE.from_anchors(y, g, t, 0.2)
target = teacher(x)
params = {"W": teacher.W + 0.2 * rng.normal(size=teacher.W.shape), "b": teacher.b + 0.2 * rng.normal(size=m),
          "log_eps": np.asarray(np.log(0.6))}
opt = Adam(lr=1e-2)
loss0 = loss_and_grad(params, x, target)[0]
for _ in range(STEPS):
    loss, grads = loss_and_grad(params, x, target)
    params = opt.update(params, grads, list(params))
print(f"\ntrained {STEPS} Adam steps: loss {loss0:.3e} -> {loss:.3e}, eps {np.exp(float(params['log_eps'])):.3f} "
      f"(teacher 0.2)")
try:                                                     # then SciPy's L-BFGS-B on the same loss and gradient
    fitted, res = fit_lbfgs(layer_from_params(params), x, target, maxiter=min(5 * STEPS, 1000))
except ImportError:
    print("SciPy is not installed: no L-BFGS refinement (pip install 'npdegen[lbfgs]')")
else:
    print(f"then {res.nit} L-BFGS-B iterations: loss {res.fun:.3e}, eps {fitted.eps:.4f} (teacher 0.2)")

# ---- the figure --------------------------------------------------------------------------------
path = os.environ.get("NPDEGEN_EXAMPLE_PLOT")
if path:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        print("matplotlib is not installed: no figure (pip install 'npdegen[plot]')")
    else:
        fig = Figure(figsize=(10, 3.6), layout="constrained")
        ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
        ax1.semilogx(sweep, entropy, "o-", ms=3, label="mean H(π) over samples")
        ax1.axhline(np.log(m), color="k", ls="--", lw=0.8, label=f"log m = {np.log(m):.2f}")
        ax1.set_xlabel("temperature ε")
        ax1.set_ylabel("attribution entropy (nats)")
        ax1.set_title("ε-sweep: soft max → max-plus as ε → 0")
        ax1.legend(fontsize=8)
        line = np.stack([np.linspace(-2.5, 2.5, 400), np.zeros(400)], axis=1)
        for eps in (1.0, 0.3, 0.1, 0.03):
            ax2.plot(line[:, 0], hopf_cole_solution(line, t, y, g, eps), lw=1, label=f"u_ε, ε = {eps}")
        ax2.plot(line[:, 0], hopf_lax(line, t, y, g), "k--", lw=1.2, label="Hopf–Lax (ε → 0)")
        ax2.set_xlabel("x₁ (x₂ = 0)")
        ax2.set_ylabel(f"u(x, t = {t})")
        ax2.set_title("Hopf–Cole solutions of u_t + |∇u|² = εΔu")
        ax2.legend(fontsize=8)
        fmt = os.path.splitext(path)[1].lower().lstrip(".")
        if fmt not in ("png", "svg"):
            raise SystemExit(f"NPDEGEN_EXAMPLE_PLOT must end in .png or .svg, got {path!r}")
        print("wrote", write_atomic(path, lambda fh: fig.savefig(fh, format=fmt, dpi=120), mode="umask"))
