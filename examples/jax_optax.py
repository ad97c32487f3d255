"""The neural ADR layer inside a small JAX encoder–decoder, trained with optax (or plain gradient descent).

Layer: z_next = (1 − ω) z + ω tanh(z + R z − U(q) z_q + D z_qq − b), U heterogeneous, D, R, b homogeneous.
Model: x (8) → tanh(W_in x) (n sites) → npdegen.jax.neural_pde (L layers) → W_out (4 outputs); the
gradient of the whole model is ``jax.jit(jax.value_and_grad(loss))``, the layer's part of it from the
generated adjoint. Uses optax's Adam when optax is installed, else gradient descent.
``NPDEGEN_EXAMPLE_STEPS`` caps the steps (the test suite runs it with 40). Needs JAX
(``pip install npdegen[jax]``); without it the script says so and exits.
"""
import os

try:
    import jax
except ImportError:            # optional: the example suite runs without JAX
    jax = None


def main():
    import jax.numpy as jnp
    import numpy as np
    import sympy as sp

    import npdegen
    from npdegen.jax import neural_pde

    steps = int(os.environ.get("NPDEGEN_EXAMPLE_STEPS", 300))
    n, layers = 32, 8
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    U, D, R = sp.symbols("U D R")
    layer = npdegen.NeuralPDE(z + R * z - U * z.diff(q) + D * z.diff(q, 2), z, activation="tanh",
                              params={U: "heterogeneous", D: "homogeneous", R: "homogeneous"}, bias="homogeneous")
    pde = neural_pde(layer, n=n, layers=layers, omega=0.8, dtype="float32")

    rng = np.random.default_rng(0)
    params = {"pde": pde.init_params(seed=0, values={"D": 0.2}),
              "w_in": jnp.asarray(rng.standard_normal((8, n)) / np.sqrt(8), jnp.float32),
              "w_out": jnp.asarray(rng.standard_normal((n, 4)) / np.sqrt(n), jnp.float32)}
    x = jnp.asarray(rng.standard_normal((256, 8)), jnp.float32)
    y = jnp.stack([jnp.sin(x[:, 0] + x[:, 1]), x[:, 2] * x[:, 3], jnp.tanh(x[:, 4]), x[:, 5:].mean(1)], axis=1)

    def loss(params):
        h = jnp.tanh(x @ params["w_in"])
        return jnp.mean((pde(params["pde"], h) @ params["w_out"] - y) ** 2)

    grad = jax.jit(jax.value_and_grad(loss))
    try:
        import optax
        optimizer = optax.adam(1e-2)
        state = optimizer.init(params)

        def update(params, g, state):
            updates, state = optimizer.update(g, state, params)
            return optax.apply_updates(params, updates), state
        print("optimizer: optax.adam(1e-2)")
    except ImportError:
        state = None

        def update(params, g, state):
            return jax.tree_util.tree_map(lambda p, d: p - 0.05 * d, params, g), state
        print("optimizer: gradient descent, lr 0.05 (optax is not installed)")

    for step in range(steps + 1):
        value, g = grad(params)
        params, state = update(params, g, state)
        if step % max(1, steps // 5) == 0:
            th = params["pde"]
            print(f"step {step:4d}  mse {float(value):.4f}  D {float(th['D']):+.4f}  R {float(th['R']):+.4f}  "
                  f"|U| {float(jnp.abs(th['U']).mean()):.4f}")
    print(f"tapes replayed {pde.stats['tape']}, backward passes recomputed {pde.stats['recomputed']}")


if __name__ == "__main__":
    if jax is None:
        print("jax_optax: JAX is not installed (pip install npdegen[jax]); skipped")
    else:
        main()
