"""The neural ADR layer inside a small PyTorch encoder–decoder, trained with torch.optim.

Layer: z_next = (1 − ω) z + ω tanh(z + R z − U(q) z_q + D z_qq − b), U heterogeneous, D, R, b homogeneous.
Model: Linear(8 → n) → NeuralPDEModule (L layers on n sites) → Linear(n → 4), trained with Adam on a
smooth synthetic map; the layer's parameters are ordinary nn.Parameters (``pde.U``, ``pde.D``, …).
``NPDEGEN_EXAMPLE_STEPS`` caps the steps (the test suite runs it with 40). Needs PyTorch
(``pip install npdegen[torch]``); without it the script says so and exits.
"""
import os

try:
    import torch
except ImportError:            # optional: the example suite runs without PyTorch
    torch = None


def main():
    import sympy as sp

    import npdegen
    from npdegen.torch import NeuralPDEModule

    steps = int(os.environ.get("NPDEGEN_EXAMPLE_STEPS", 300))
    n, layers = 32, 8
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    U, D, R = sp.symbols("U D R")
    layer = npdegen.NeuralPDE(z + R * z - U * z.diff(q) + D * z.diff(q, 2), z, activation="tanh",
                              params={U: "heterogeneous", D: "homogeneous", R: "homogeneous"}, bias="homogeneous")

    torch.manual_seed(0)
    pde = NeuralPDEModule(layer, n=n, layers=layers, omega=0.8, dtype="float32", values={"D": 0.2}, seed=0)
    model = torch.nn.Sequential(torch.nn.Linear(8, n), torch.nn.Tanh(), pde, torch.nn.Linear(n, 4))
    print(model)

    x = torch.randn(256, 8)
    y = torch.stack([torch.sin(x[:, 0] + x[:, 1]), x[:, 2] * x[:, 3], torch.tanh(x[:, 4]), x[:, 5:].mean(1)], dim=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(steps + 1):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        if step % max(1, steps // 5) == 0:
            print(f"step {step:4d}  mse {loss.item():.4f}  D {pde.D.item():+.4f}  R {pde.R.item():+.4f}  "
                  f"|U| {pde.U.detach().abs().mean().item():.4f}")


if __name__ == "__main__":
    if torch is None:
        print("torch_encoder_decoder: PyTorch is not installed (pip install npdegen[torch]); skipped")
    else:
        main()
