"""Issue 11, item 6: damaged checkpoints raise the documented ValueError, a zip bomb is refused
before it expands, and progress and optimizer state are validated against the run."""
import io
import json
import zipfile

import numpy as np
import pytest
import sympy as sp

from npdegen import NeuralPDE, train
from npdegen.runtime import checkpoint as ck

q = sp.Symbol("q")
z = sp.Function("z")(q)
U, D = sp.symbols("U D")


def network(dtype="float64"):
    layer = NeuralPDE(z - U * z.diff(q) + D * z.diff(q, 2), z, activation="tanh",
                      params={U: "homogeneous", D: "time-dependent"}, bias="heterogeneous")
    return layer.compile(n=8, layers=3, omega=0.7, dtype=dtype)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished 3-step run with its checkpoint."""
    net = network()
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((2, 8)), 0.3 * rng.standard_normal((2, 8))
    theta0 = net.init_params(seed=1, scale=0.05, values={"D": 0.1})
    path = tmp_path_factory.mktemp("ckpt") / "run.npz"
    train(net, x, y, theta0, steps=3, checkpoint=path, checkpoint_every=1)
    return net, x, y, theta0, path


def rewrite(path, target, change):
    """Copy the checkpoint at ``path`` to ``target`` with ``change(arrays)`` applied."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    change(arrays)
    np.savez(target, **arrays)
    return target


@pytest.mark.parametrize("damage", ["empty", "truncated", "half", "bitflip-header", "bitflip-data", "text"])
def test_damaged_files_raise_value_error(run, tmp_path, damage):
    path = run[-1]
    raw = bytearray(path.read_bytes())
    if damage == "empty":
        raw = b""
    elif damage == "truncated":
        raw = raw[:-30]
    elif damage == "half":
        raw = raw[:len(raw) // 2]
    elif damage == "text":
        raw = b"PK\x03\x04 but not really"
    else:
        where = raw.find(b"NUMPY") + (20 if damage == "bitflip-header" else 200)
        raw[where] ^= 0x10
    bad = tmp_path / "bad.npz"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="not an npdegen training checkpoint"):
        ck.load_checkpoint(bad)


def test_every_single_bit_flip_in_the_metadata_is_caught_or_harmless(run, tmp_path):
    """Flip bits across the whole file: each load either fails with ValueError or returns arrays
    identical to the original (bit flips in unused zip fields)."""
    raw = run[-1].read_bytes()
    good = ck.load_checkpoint(run[-1])
    bad = tmp_path / "flip.npz"
    for pos in range(0, len(raw), max(1, len(raw) // 300)):
        flipped = bytearray(raw)
        flipped[pos] ^= 0x01
        bad.write_bytes(bytes(flipped))
        try:
            got = ck.load_checkpoint(bad)
        except ValueError:
            continue
        assert got[2] == good[2] and got[3] == good[3]
        for a, b in zip(got[:2], good[:2]):
            assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_zip_bomb_is_refused_before_expanding(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("theta/D.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array_header_1_0(fh, {"descr": "<f8", "fortran_order": False,
                                                      "shape": (1 << 25,)})
            block = bytes(1 << 20)
            for _ in range(1 << 8):                         # 256 MiB of zeros, ~250 kB deflated
                fh.write(block)
    bomb = tmp_path / "bomb.npz"
    bomb.write_bytes(buf.getvalue())
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(ValueError, match="decompress to .* bytes"):
        ck.load_checkpoint(bomb)


def test_header_larger_than_the_member_is_refused(run, tmp_path):
    def grow(arrays):
        arrays["loss"] = np.zeros(4)
    path = rewrite(run[-1], tmp_path / "c.npz", grow)
    raw = path.read_bytes().replace(b"'shape': (4,)", b"'shape': (9,)")
    path.write_bytes(raw)
    with pytest.raises(ValueError, match="not an npdegen training checkpoint"):
        ck.load_checkpoint(path)


def test_object_arrays_are_refused(run, tmp_path):
    def add(arrays):
        arrays["loss"] = np.array([1.0, "x"], dtype=object)
    with pytest.raises(ValueError, match="object arrays"):
        ck.load_checkpoint(rewrite(run[-1], tmp_path / "c.npz", add))


def set_meta(**kw):
    def change(arrays):
        meta = json.loads(str(arrays["meta"]))
        meta.update(kw)
        arrays["meta"] = np.asarray(json.dumps(meta))
    return change


@pytest.mark.parametrize("change, message", [
    (set_meta(done=-2), "meta.done"),
    (set_meta(done=7), "meta.done"),
    (set_meta(done=True), "meta.done"),
    (set_meta(done=2.0), "meta.done"),
    (set_meta(done=2), "loss values"),
    (lambda a: a.__setitem__("opt/m/D", np.zeros((2, 1))), "'m/D' has shape"),
    (lambda a: a.__setitem__("opt/v/U", a["opt/v/U"].astype(np.float32)), "dtype float32"),
    (lambda a: a.__setitem__("opt/v/U", -a["opt/v/U"] - 1), "negative"),
    (lambda a: a.__setitem__("opt/m/U", a["opt/m/U"] * np.nan), "finite"),
    (lambda a: a.pop("opt/v/D"), "must cover"),
    (lambda a: a.__setitem__("opt/t", np.asarray(1)), "step count t must be 3"),
    (lambda a: a.__setitem__("opt/w/U", a["opt/m/U"]), "unexpected adam state"),
    (lambda a: a.__setitem__("theta/D", a["theta/D"][:2]), "parameter 'D' has shape"),
    (lambda a: a.pop("theta/b"), "holds parameters"),
])
def test_resume_validates_progress_and_optimizer_state(run, tmp_path, change, message):
    net, x, y, theta0, path = run
    bad = rewrite(path, tmp_path / "c.npz", change)
    with pytest.raises(ValueError, match=message):
        train(net, x, y, theta0, steps=3, resume=bad)


def test_valid_checkpoints_still_resume(run):
    net, x, y, theta0, path = run
    again, _ = train(net, x, y, theta0, steps=3, resume=path)
    whole, _ = train(net, x, y, theta0, steps=3)
    assert all(np.array_equal(again[k], whole[k]) for k in whole)


@pytest.mark.parametrize("method, optimizer", [("layerwise", "adam"), ("layerwise", "sgd"), ("full", "sgd")])
def test_state_checks_accept_every_checkpoint_of_a_run(tmp_path, method, optimizer):
    """Every intermediate checkpoint (also at layer boundaries, float32) passes the checks."""
    net = network("float32")
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((2, 8)), 0.3 * rng.standard_normal((2, 8))
    theta0 = net.init_params(seed=1, scale=0.05, values={"D": 0.1})
    kw = dict(steps=2, method=method, optimizer=optimizer, lr=0.01)
    whole, _ = train(net, x, y, theta0, **kw)
    total = 2 * (net.layers if method == "layerwise" else 1)
    for stop in range(total + 1):
        path = tmp_path / f"c{stop}.npz"
        calls = {"n": 0}
        real = net.step_vjp if method == "layerwise" else net.loss_and_grad

        def interrupting(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] > stop:
                raise KeyboardInterrupt
            return real(*args, **kwargs)
        name = "step_vjp" if method == "layerwise" else "loss_and_grad"
        setattr(net, name, interrupting)
        try:
            train(net, x, y, theta0, checkpoint=path, checkpoint_every=1, **kw)
        except KeyboardInterrupt:
            pass
        finally:
            delattr(net, name)
        if path.exists():
            resumed, _ = train(net, x, y, theta0, resume=path, **kw)
            assert all(np.array_equal(resumed[k], whole[k]) for k in whole), stop
