"""Issue 11, items 4 and 9 (command line): bounded spec files, one-line errors, quiet broken pipes,
``python -m npdegen``, help texts, ``inspect`` papercuts and clean numbers."""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sympy as sp

import npdegen
from npdegen.cli import build_parser, main
from npdegen.spec.specfile import MAX_FILE_BYTES, read_spec_file

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ADR = EXAMPLES / "adr.toml"


def spec(tmp_path, extra="", transform="z + D*z_qq"):
    path = tmp_path / "s.toml"
    path.write_text(f'[layer]\nname = "heat"\ntransform = "{transform}"\n{extra}\n[layer.params]\nD = "homogeneous"\n')
    return path


def child_env():
    root = str(Path(npdegen.__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    if subprocess.run([sys.executable, "-c", "import npdegen"], env=env, capture_output=True).returncode:
        pytest.skip("a child Python cannot import npdegen")
    return env


# ---------------------------------------------------------------------------- item 4: bounded inputs
@pytest.mark.parametrize("extra, message", [
    ("accuracy = 1000000", "'accuracy' must be an integer from 1 to 16"),
    ("accuracy = 200", "from 1 to 16"),
    ("accuracy = 0", "from 1 to 16"),
    ("accuracy = true", "from 1 to 16"),
    ("accuracy = 2.0", "from 1 to 16"),
    (f"offsets = {list(range(-50, 51))}", "'offsets' must hold 1 to 17 integers"),
    ("offsets = [-1000000, 0, 1]", "magnitude at most 64"),
    ("offsets = [-1, 0.5, 1]", "list of integers"),
])
def test_spec_file_bounds_the_stencil(tmp_path, extra, message):
    start = time.perf_counter()
    with pytest.raises(ValueError, match=message):
        read_spec_file(spec(tmp_path, extra))
    assert time.perf_counter() - start < 2


def test_spec_file_accuracy_limit_is_usable(tmp_path):
    assert read_spec_file(spec(tmp_path, "accuracy = 16"))["layer"]["accuracy"] == 16


def test_spec_file_is_read_bounded(tmp_path, monkeypatch):
    big = tmp_path / "big.toml"
    big.write_bytes(b"#" * (10 * MAX_FILE_BYTES))
    sizes = []
    real_open = Path.open

    def spying_open(self, *args, **kwargs):
        fh = real_open(self, *args, **kwargs)
        real_read = fh.read
        fh_read = lambda n=-1: sizes.append(n) or real_read(n)   # noqa: E731
        return type("Spy", (), {"read": staticmethod(fh_read), "__enter__": lambda s: s,
                                "__exit__": lambda s, *a: fh.close()})()
    monkeypatch.setattr(Path, "open", spying_open)
    with pytest.raises(ValueError, match="larger than 65536 bytes"):
        read_spec_file(big)
    assert sizes == [MAX_FILE_BYTES + 1]


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_explain_dev_zero_fails_fast():
    """In a child with 2 GiB of address space and a time limit: reading the file whole would
    exhaust either, and must not happen."""
    code = ("import resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))\n"
            "from npdegen.cli import main\n"
            "sys.exit(main(['explain', '/dev/zero']))\n")
    pytest.importorskip("resource")
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env(), timeout=120)
    assert res.returncode == 2 and time.perf_counter() - start < 60
    assert res.stderr.count("\n") == 1 and "larger than 65536 bytes" in res.stderr


# ---------------------------------------------------------------------------- item 4: one-line errors
def test_any_exception_is_one_line_with_status_2(monkeypatch, capsys, tmp_path):
    import npdegen.cli as cli

    def boom(args):
        raise RuntimeError("something\nbroke   badly")
    monkeypatch.setattr(cli, "_explain", boom)
    assert main(["explain", str(ADR)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("npdegen: error: RuntimeError: something broke badly")
    assert "Traceback" not in err
    for argv in (["--debug", "explain", str(ADR)], ["explain", str(ADR), "--debug"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "Traceback" in err and "RuntimeError: something" in err


def test_memory_error_from_a_huge_request_is_a_clean_error(monkeypatch, capsys):
    import npdegen.cli as cli
    monkeypatch.setattr(cli, "_explain", lambda args: (_ for _ in ()).throw(MemoryError()))
    assert main(["explain", str(ADR)]) == 2
    assert capsys.readouterr().err.startswith("npdegen: error: MemoryError")


def test_broken_pipe_exits_quietly():
    env = child_env()
    proc = subprocess.Popen([sys.executable, "-m", "npdegen", "inspect", str(ADR), "--param", "U=0.1",
                             "--param", "D=0.2", "--param", "R=0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.close()                         # the reader is gone before anything is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert err == ""


# ---------------------------------------------------------------------------- item 9: entry point, help
def test_python_m_npdegen():
    res = subprocess.run([sys.executable, "-m", "npdegen", "--version"], capture_output=True, text=True,
                         env=child_env())
    assert res.returncode == 0 and res.stdout.startswith("npdegen ")


def test_every_subcommand_and_option_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helped = {a.dest: a.help for a in sub._choices_actions}
    assert set(helped) == set(sub.choices) == {"demo", "generate", "explain", "theory", "cache", "inspect", "fit", "tasks"}
    for name, p in sub.choices.items():
        assert helped[name] and p.description, name
        for action in p._actions:
            assert action.help, f"{name} {action.dest}"


def test_inspect_out_without_every_param_is_an_error(tmp_path, capsys):
    out = tmp_path / "plots"
    assert main(["inspect", str(ADR), "--out", str(out), "--param", "U=0.1"]) == 2
    err = capsys.readouterr().err
    assert "--param" in err and "D, R" in err
    assert not out.exists() or not any(out.iterdir())


# ---------------------------------------------------------------------------- item 9: printed numbers
def test_negative_mean_factor_is_explained_not_nan(capsys):
    assert main(["inspect", str(ADR), "--param", "U=0.1", "--param", "D=0.2", "--param", "R=-2"]) == 0
    out = capsys.readouterr().out
    assert "nan" not in out
    assert "value: undefined (the linearised step multiplies the mean by a factor <= 0" in out
    assert "SIGN FLIP every layer" in out


def test_floats_are_printed_short(capsys):
    upwind = EXAMPLES / "upwind_advection.toml"
    assert main(["inspect", str(upwind), "--omega", "0.8", "--param", "c=0.5"]) == 0
    out = capsys.readouterr().out
    assert "omega = 0.8," in out and "0.800000000000000" not in out
    assert "c_3 = 0.133333*c*(1.6*c*(1 - 0.8*c) + 0.8*c - 1)" in out
    assert "000000000" not in out
    assert main(["inspect", str(upwind), "--omega", "0.8", "--param", "c=0.5", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["report"]["omega"] == "0.8"


def test_round_off_peclet_is_zero(tmp_path, capsys):
    from npdegen import NeuralPDE
    from npdegen.inspect import stability
    q = sp.Symbol("q")
    z = sp.Function("z")(q)
    D = sp.Symbol("D")
    layer = NeuralPDE(z + D * z.diff(q, 2), z, params={D: "homogeneous"}, accuracy=4)
    cert = stability(layer, {"D": 0.0137}, spacing=0.3, omega=0.3)        # was 2.3e-17
    assert cert.peclet == 0.0
    assert "cell Peclet number: 0 (<= 2)" in str(cert)
