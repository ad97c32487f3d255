"""Training checkpoints: parameters, optimizer state and progress in one ``.npz`` file.

Written atomically (temporary file in the same folder, then rename), so a checkpoint is plain
arrays and can be shared safely. Resuming from a checkpoint continues the run exactly where it
stopped (bit for bit in float64).

Reading is defensive: a file that is not a checkpoint (empty, truncated, bit-flipped, another
kind of zip) raises ``ValueError`` naming the file, never ``BadZipFile``/``EOFError``. The zip
members are read by this module, not by ``numpy.load``: each must be a ``.npy`` array of a plain
(non-object) dtype whose declared size matches the member's size, and the decompressed total is
bounded by :func:`max_bytes` (a few megabytes of deflated zeros cannot expand to gigabytes).
:func:`check_resume` then checks the progress (``meta["done"]``, the loss history) and the
optimizer state against the parameters of the run being resumed.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from .cache import write_atomic

__all__ = ["save_checkpoint", "load_checkpoint", "check_resume", "max_bytes"]

FORMAT = "npdegen-train-checkpoint-1"
#: Decompressed size always allowed (np.savez stores uncompressed, so a checkpoint is about its file size).
MIN_LIMIT = 64 << 20
MAX_MEMBERS = 10_000


def max_bytes(file_size: int) -> int:
    """Largest decompressed total accepted for a checkpoint file of ``file_size`` bytes."""
    return max(MIN_LIMIT, 2 * file_size)


def save_checkpoint(path, theta: dict, optimizer_state: dict, meta: dict, loss: list) -> Path:
    """Write ``theta``, the optimizer state, ``meta`` (JSON-able progress and settings) and the loss history."""
    path = Path(path)
    arrays = {f"theta/{k}": np.asarray(v) for k, v in theta.items()}
    arrays.update({f"opt/{k}": np.asarray(v) for k, v in optimizer_state.items()})
    arrays["loss"] = np.asarray(loss, np.float64)
    arrays["meta"] = np.asarray(json.dumps({"format": FORMAT, **meta}, sort_keys=True))
    write_atomic(path, lambda fh: np.savez(fh, **arrays))
    return path


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    fmt = np.lib.format
    with zf.open(info) as fh:
        version = fmt.read_magic(fh)
        if version not in ((1, 0), (2, 0), (3, 0)):
            raise ValueError(f"unsupported .npy version {version}")
        reader = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran, dtype = reader(fh)
        if dtype.hasobject:
            raise ValueError(f"{info.filename}: object arrays are not allowed")
        count = int(np.prod(shape, dtype=object))
        nbytes = count * dtype.itemsize
        if nbytes > info.file_size:
            raise ValueError(f"{info.filename}: header declares {nbytes} bytes, the member holds {info.file_size}")
        data = fh.read(nbytes)
        if len(data) != nbytes:
            raise ValueError(f"{info.filename}: truncated")
    array = np.frombuffer(data, dtype=dtype, count=count)
    return array.reshape(shape[::-1]).T.copy() if fortran else array.reshape(shape).copy()


def _read_arrays(path: Path) -> dict:
    size = path.stat().st_size
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise ValueError(f"{len(infos)} members")
        total = sum(i.file_size for i in infos)
        if total > max_bytes(size):
            raise ValueError(f"it would decompress to {total} bytes (limit {max_bytes(size)} for a file of "
                             f"{size} bytes)")
        arrays = {}
        for info in infos:
            if not info.filename.endswith(".npy"):
                raise ValueError(f"unexpected member {info.filename!r}")
            arrays[info.filename[:-4]] = _read_member(zf, info)
    return arrays


def load_checkpoint(path) -> tuple[dict, dict, dict, list]:
    """``(theta, optimizer_state, meta, loss)`` from a file written by :func:`save_checkpoint`.

    Raises ``ValueError`` for anything that is not such a file (see the module docstring)."""
    try:
        data = _read_arrays(Path(path))
        meta = json.loads(str(data["meta"]))
        theta = {k[6:]: v for k, v in data.items() if k.startswith("theta/")}
        state = {k[4:]: v for k, v in data.items() if k.startswith("opt/")}
        loss = data["loss"].tolist()
    except MemoryError:
        raise ValueError(f"{path}: not an npdegen training checkpoint (too large to read)") from None
    except Exception as exc:  # noqa: BLE001 - zipfile, zlib, json and numpy each raise their own kinds
        raise ValueError(f"{path}: not an npdegen training checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown checkpoint format {meta.get('format') if isinstance(meta, dict) else meta!r}")
    if not isinstance(loss, list) or not all(isinstance(v, float) for v in loss):
        raise ValueError(f"{path}: the loss history must be a 1-D float array")
    return theta, state, meta, loss


def _integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_resume(path, theta: dict, state: dict, meta: dict, loss: list, like: dict, keys, total: int,
                 optimizer: str, per_layer: int | None = None):
    """Refuse (``ValueError``) a checkpoint whose progress or optimizer state does not fit the run.

    ``like``: the parameters of the run being resumed (names, shapes, dtypes); ``keys``: the trained
    names; ``total``: the optimizer steps of the whole run; ``optimizer``: ``"adam"``, ``"adamw"`` or
    ``"sgd"`` (their moments, update count ``t``, learning-rate ``scale`` and ``sched/*`` schedule state);
    ``per_layer``: the steps per layer of a layerwise run (its optimizer restarts at every layer),
    None for one optimizer over the whole run.
    """
    done = meta.get("done")
    if not _integer(done) or not 0 <= done <= total:
        raise ValueError(f"resume: {path}: meta.done must be an integer in [0, {total}], got {done!r}")
    if len(loss) != done:
        raise ValueError(f"resume: {path}: {len(loss)} loss values for {done} steps")
    if set(theta) != set(like):
        raise ValueError(f"resume: {path} holds parameters {sorted(theta)}, the network has {sorted(like)}")
    for k, v in theta.items():
        ref = np.asarray(like[k])
        if v.shape != ref.shape or v.dtype != ref.dtype:
            raise ValueError(f"resume: {path}: parameter {k!r} has shape {v.shape} and dtype {v.dtype}, "
                             f"expected {ref.shape} and {ref.dtype}")
    groups = {"adam": ("m", "v"), "adamw": ("m", "v"), "sgd": ("velocity",)}.get(optimizer)
    if groups is None:
        return
    adam = optimizer in ("adam", "adamw")
    found = {}
    for name, v in state.items():
        group, _, key = name.partition("/")
        if group in ("t", "scale") and not key:
            if v.shape != () or v.dtype.kind not in ("iu" if group == "t" else "f"):
                raise ValueError(f"resume: {path}: {optimizer} state {name!r} must be a scalar "
                                 f"{'integer' if group == 't' else 'float'}, got shape {v.shape} and dtype {v.dtype}")
            if group == "scale" and not 0 < float(v) <= 1:
                raise ValueError(f"resume: {path}: the learning-rate scale must lie in (0, 1], got {float(v)!r}")
            continue
        if group == "sched" and key:
            if v.shape != () or v.dtype.kind not in "iuf" or np.isnan(v) or float(v) == -np.inf:
                raise ValueError(f"resume: {path}: schedule state {name!r} must be a scalar number, got {v!r}")
            continue
        if group not in groups or not key:
            raise ValueError(f"resume: {path}: unexpected {optimizer} state entry {name!r}")
        if key not in keys:
            raise ValueError(f"resume: {path}: {optimizer} state {name!r} is for a parameter that is not trained")
        ref = np.asarray(like[key])
        if v.shape != ref.shape or v.dtype != ref.dtype or not np.all(np.isfinite(v)):
            raise ValueError(f"resume: {path}: {optimizer} state {name!r} has shape {v.shape} and dtype {v.dtype}, "
                             f"expected finite values of shape {ref.shape} and dtype {ref.dtype}")
        if group == "v" and np.any(v < 0):
            raise ValueError(f"resume: {path}: Adam's second moment {name!r} has negative entries")
        found.setdefault(group, set()).add(key)
    updates = done if not per_layer else done % per_layer or (per_layer if done else 0)
    t = state.get("t")
    if adam or t is not None:                 # SGD checkpoints before the schedules had no t
        if t is None or int(t) != updates:
            raise ValueError(f"resume: {path}: {'Adam' if adam else 'SGD'}'s step count t must be {updates} "
                             f"after {done} steps, got {None if t is None else t.tolist()!r}")
    if adam:
        if int(t) > 0 and not (found.get("m") == found.get("v") == set(keys)):
            raise ValueError(f"resume: {path}: Adam's moments after {int(t)} steps must cover the trained "
                             f"parameters {sorted(keys)}, found m: {sorted(found.get('m', ()))}, "
                             f"v: {sorted(found.get('v', ()))}")
    elif found.get("velocity", set()) != (set(keys) if updates else set()):
        raise ValueError(f"resume: {path}: SGD's velocity covers {sorted(found.get('velocity', ()))}, "
                         f"expected {sorted(keys) if updates else 'nothing'} after {done} steps")
