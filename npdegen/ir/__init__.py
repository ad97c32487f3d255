"""The step IR: one description of a local layer update on a 1–3-D grid, consumed by every backend.

:mod:`npdegen.ir.step` builds it from a validated spec (SymPy derives every Jacobian once);
:mod:`npdegen.ir.lower` decides what a kernel computes per site and what it reduces.
"""
from .lower import LoweredStep, lower
from .step import Parameter, StepIR, build_step

__all__ = ["StepIR", "Parameter", "build_step", "LoweredStep", "lower"]
