r"""Benchmark tasks for neural PDE layers: snapshot pairs ``(u(0), u(T))`` from our own solvers.

Quick start::

    import npdegen.tasks as tasks
    tasks.names()                                   # the registered tasks
    task = tasks.make("burgers-nu0.01", n=256)      # cached on disk, reproducible by seed
    task.x_train.shape, task.y_train.shape          # (256, 256), (256, 256)
    task.nrmse(prediction)                          # mean over test samples of ||ŷ - y|| / ||y||

Every grid is periodic with cell centres ``(j + 1/2) L/n``; arrays are ``(samples, *grid)``. The
solvers are public and act on such arrays:

* :func:`advection` — :math:`u_t + β\cdot\nabla u = κΔu`, exact in Fourier (N-D);
* :func:`burgers` — :math:`u_t + (u^2/2)_x = (ν/π)u_{xx}`, dealiased pseudo-spectral ETDRK4 on a
  finer grid, restricted;
* :func:`fisher_kpp` — :math:`u_t = νΔu + ρu(1-u)`, Strang splitting of the exact logistic and
  heat flows (N-D);
* :func:`vorticity` — 2-D incompressible flow, pseudo-spectral ETDRK4;
* :func:`varcoef_adr` — the heterogeneous neural-ADR network behind ``varcoef-adr``.

:func:`cole_hopf` is an independent reference for Burgers. ``python -m npdegen.tasks
list|make NAME|verify`` lists, generates and checks (:mod:`npdegen.tasks.verify`). The task
table is in :mod:`npdegen.tasks.registry`.
"""
from .advection import advection
from .cache import TaskCacheWarning, task_dir
from .checks import bramson_position, cole_hopf, front_position
from .fisher import fisher_kpp, logistic
from .fourier import cell_centres
from .initial import Fronts, SineSum, UnitInterval
from .registry import GENERATOR_VERSION, Task, describe, make, names, settings
from .spectral import burgers, burgers_on_grid
from .twod import velocity, vorticity
from .varcoef import varcoef_adr, varcoef_network, varcoef_profiles

__all__ = ["make", "names", "settings", "describe", "Task", "GENERATOR_VERSION", "task_dir", "TaskCacheWarning",
           "advection", "burgers", "burgers_on_grid", "fisher_kpp", "logistic", "vorticity", "velocity",
           "varcoef_adr", "varcoef_network", "varcoef_profiles", "cole_hopf", "front_position", "bramson_position",
           "SineSum", "UnitInterval", "Fronts", "cell_centres"]
