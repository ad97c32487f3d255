"""Training checkpoints: parameters, optimizer state and progress in one ``.npz`` file.

Written atomically (temporary file in the same folder, then rename), read back with
``allow_pickle=False``, so a checkpoint is plain arrays and can be shared safely. Resuming from a
checkpoint continues the run exactly where it stopped (bit for bit in float64).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .cache import write_atomic

__all__ = ["save_checkpoint", "load_checkpoint"]

FORMAT = "npdegen-train-checkpoint-1"


def save_checkpoint(path, theta: dict, optimizer_state: dict, meta: dict, loss: list) -> Path:
    """Write ``theta``, the optimizer state, ``meta`` (JSON-able progress and settings) and the loss history."""
    path = Path(path)
    arrays = {f"theta/{k}": np.asarray(v) for k, v in theta.items()}
    arrays.update({f"opt/{k}": np.asarray(v) for k, v in optimizer_state.items()})
    arrays["loss"] = np.asarray(loss, np.float64)
    arrays["meta"] = np.asarray(json.dumps({"format": FORMAT, **meta}, sort_keys=True))
    write_atomic(path, lambda fh: np.savez(fh, **arrays))
    return path


def load_checkpoint(path) -> tuple[dict, dict, dict, list]:
    """``(theta, optimizer_state, meta, loss)`` from a file written by :func:`save_checkpoint`."""
    try:
        with np.load(Path(path), allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            theta = {k[6:]: data[k].copy() for k in data.files if k.startswith("theta/")}
            state = {k[4:]: data[k].copy() for k in data.files if k.startswith("opt/")}
            loss = data["loss"].tolist()
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"{path}: not an npdegen training checkpoint ({exc})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown checkpoint format {meta.get('format')!r}")
    return theta, state, meta, loss
