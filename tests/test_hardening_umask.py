"""Issue 11: files written to ``--out`` (``layer.generate``, ``npdegen generate --out``) follow the
umask (0644 by default), files in the private kernel cache stay 0600 whatever the umask."""
import contextlib
import os
import stat

import pytest
import sympy as sp

import npdegen
from npdegen.runtime import cache

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")


@contextlib.contextmanager
def umask(mask):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def bits(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def layer():
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    D = sp.Symbol("D")
    return npdegen.NeuralPDE(z + D * z.diff(q, 2), z, params={D: "homogeneous"})


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600), (0o027, 0o640)])
def test_write_atomic_umask_mode(tmp_path, mask, expected):
    with umask(mask):
        assert cache._umask() == mask
        path = cache.write_atomic(tmp_path / "f.txt", "text", mode="umask")
        assert bits(path) == expected and path.read_text() == "text"
        private = cache.write_atomic(tmp_path / "g.txt", b"bytes")           # default: private
        assert bits(private) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt", "g.txt"]   # no temporaries left


def test_write_atomic_explicit_mode_and_bad_modes(tmp_path):
    with umask(0o022):
        assert bits(cache.write_atomic(tmp_path / "a", "x", mode=0o640)) == 0o640
        # replacing an existing file: the new bits, atomically (the old file stays until the rename)
        assert bits(cache.write_atomic(tmp_path / "a", "y", mode="umask")) == 0o644
        for bad in ("0644", -1, 0o1000, True, 6.44):
            with pytest.raises(ValueError, match="mode"):
                cache.write_atomic(tmp_path / "a", "z", mode=bad)
    assert (tmp_path / "a").read_text() == "y"

    def boom(fh):
        fh.write(b"partial")
        raise RuntimeError("writer failed")
    with pytest.raises(RuntimeError):
        cache.write_atomic(tmp_path / "a", boom, mode="umask")
    assert (tmp_path / "a").read_text() == "y"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


def test_umask_without_proc(monkeypatch):
    """Where /proc is not there the umask is read by setting and restoring it."""
    real_open = open

    def no_proc(path, *a, **kw):
        if str(path).startswith("/proc/"):
            raise OSError("no /proc")
        return real_open(path, *a, **kw)
    monkeypatch.setattr("builtins.open", no_proc)
    with umask(0o027):
        assert cache._umask() == 0o027
        assert os.umask(0o027) == 0o027                          # unchanged by reading it


@pytest.mark.parametrize("backend", ["numpy", "cupy"])
def test_generate_follows_umask_cache_stays_private(tmp_path, monkeypatch, backend):
    monkeypatch.setenv("NPDEGEN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "_modules", {})
    with umask(0o022):
        paths = layer().generate(tmp_path / "out", backend=backend)
        assert paths and all(bits(p) == 0o644 for p in paths)
    with umask(0o000):                                           # even a permissive umask: the cache is private
        layer().compile(n=8, layers=1)
        files = [p for p in (tmp_path / "cache").iterdir() if p.is_file()]
        assert files and all(bits(p) == 0o600 for p in files), [(p.name, oct(bits(p))) for p in files]


def test_cli_generate_out_follows_umask(tmp_path):
    from npdegen.cli import main
    spec = tmp_path / "heat.toml"
    spec.write_text('[layer]\ntransform = "z + D*z_qq"\n[layer.params]\nD = "homogeneous"\n')
    with umask(0o022):
        assert main(["generate", str(spec), "--out", str(tmp_path / "gen")]) == 0
    written = list((tmp_path / "gen").iterdir())
    assert written and all(bits(p) == 0o644 for p in written)
