"""``npdegen.train``: :func:`npdegen.runtime.train.train` plus what needs inspection: a diagnosis
when training diverges, and the certificate behind ``constraint="stable"``.

When a run stops on a non-finite value, the message is completed with the stability
certificate (:func:`npdegen.inspect.stability`) of the last finite parameters: whether the
linearised step was still stable, and which constraint binds.
"""
from __future__ import annotations

import functools

import numpy as np

from .inspect.stability import stability
from .runtime.constraints import StableRegion
from .runtime.train import TrainingDiverged
from .runtime.train import train as _train

__all__ = ["train"]


def diagnose(net, theta) -> str:
    """One line on the stability of ``theta`` for ``net``, or why none could be given."""
    try:
        cert = stability(net, {k: np.asarray(v) for k, v in theta.items()})
    except Exception as exc:  # noqa: BLE001 - a diagnosis must never hide the original error
        return f"stability of the last finite parameters: not available ({exc})"
    verdict = "stable" if cert.stable else "UNSTABLE"
    return (f"stability of the last finite parameters: {verdict}; binding constraint: {cert.binding}; "
            f"admissible omega <= {cert.omega_range[1]:.4g} (omega = {cert.omega:g})")


@functools.wraps(_train)
def train(net, x, y, theta, *args, **kwargs):
    if isinstance(kwargs.get("constraint"), str) and kwargs["constraint"] == "stable":
        kwargs["constraint"] = StableRegion(lambda th: stability(net, th).stable)
    try:
        return _train(net, x, y, theta, *args, **kwargs)
    except TrainingDiverged as exc:
        message = str(exc)
        if exc.theta is not None:
            message += "\n" + diagnose(net, exc.theta)
        raise TrainingDiverged(message, exc.step, exc.where, exc.theta) from None
