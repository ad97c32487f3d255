"""Tour of the benchmark tasks in npdegen.tasks: snapshot pairs z(0) -> z(T) on periodic 1-D grids.

Advection z_t = -β z_q, viscous Burgers z_t = (ν/π) z_qq - z z_q, Fisher-KPP z_t = ν z_qq + ρ z (1 - z),
and the variable-coefficient ADR network z <- z + ω (R z - U z_q + D z_qq) whose U, D, R come with the task.
Each 1-D task is made at a tiny size (64 cells, 8 + 4 samples, no disk cache) and its shapes and norms printed,
with the pooled nRMSE ‖z(0) − z(T)‖/‖z(T)‖ of the identity map as a first baseline (pooled over samples:
under Burgers ν = 0.1 a sample of high modes decays to ~1e-30 and its own nRMSE explodes).
Full size: tasks.make(name) (cached on disk).
"""
import time

import numpy as np

import npdegen.tasks as tasks

print(f"{'task':<24}{'x_train':>12}{'y_test':>11}{'rms x':>8}{'rms y':>8}{'identity nRMSE':>16}{'seconds':>9}")
for name in tasks.names(dims=1):
    t0 = time.perf_counter()
    task = tasks.make(name, n=64, n_train=8, n_test=4, seed=0, cache=False)
    seconds = time.perf_counter() - t0
    rms = lambda a: float(np.sqrt(np.mean(a ** 2)))                    # noqa: E731
    print(f"{name:<24}{str(task.x_train.shape):>12}{str(task.y_test.shape):>11}{rms(task.x_train):>8.3f}"
          f"{rms(task.y_train):>8.3f}{task.nrmse(task.x_test, pooled=True):>16.3e}{seconds:>9.2f}")

task = tasks.make("varcoef-adr", n=64, n_train=8, n_test=4, cache=False)
print("varcoef-adr truth:", ", ".join(f"{k} in [{v.min():.3f}, {v.max():.3f}]" for k, v in task.truth.items()))
print("grid", task.grid[0][:3], "... spacing", task.spacing[0], "domain", task.domain[0], task.boundary)
