"""``npdegen inspect``: tables, JSON, plots, clean errors."""
import json

import numpy as np
import pytest

from npdegen.cli import main
from npdegen.inspect import banded_matrix

SPEC = '[layer]\nname = "adr"\ntransform = "z + R*z - U*z_q + D*z_qq"\nactivation = "tanh"\n' \
       '[layer.params]\nU = "homogeneous"\nD = "homogeneous"\nR = "homogeneous"\n'


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "adr.toml"
    path.write_text(SPEC)
    return path


def test_symbolic_report(spec, capsys):
    assert main(["inspect", str(spec)]) == 0
    out = capsys.readouterr().out
    for needle in ("reaction", "advection", "diffusion", "effective PDE", "--param NAME=VALUE"):
        assert needle in out


def test_numeric_report_json_and_plots(spec, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out_dir = tmp_path / "plots"
    args = ["inspect", str(spec), "--param", "U=0.5", "--param", "D=0.1", "--param", "R=0",
            "--omega", "1", "--json", "--out", str(out_dir), "--format", "svg"]
    assert main(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["stability"]["stable"] is False
    assert data["stability"]["binding"].startswith("long-wave")
    assert data["report"]["flags"] == ["diffusion: ANTI-DIFFUSION at 1 of 1 sites"]
    assert sorted(p.name for p in out_dir.iterdir()) == ["amplification.svg", "stencil.svg", "trajectory.svg"]


def test_weight_matrix(tmp_path, capsys):
    path = tmp_path / "W.npy"
    np.save(path, banded_matrix({-1: 0.3, 0: 0.5, 1: 0.2}, 24))
    assert main(["inspect", str(path), "--period", "24"]) == 0
    out = capsys.readouterr().out
    assert "well explained" in out and "nearest 3-point stencil" in out
    np.save(path, np.random.default_rng(0).standard_normal((24, 24)))
    assert main(["inspect", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert "poorly explained" in data["verdict"] and len(data["moments"]) == 24


@pytest.mark.parametrize("args, match", [
    (["--param", "U"], "NAME=VALUE"),
    (["--param", "U=abc"], "not a number"),
])
def test_bad_arguments(spec, capsys, args, match):
    assert main(["inspect", str(spec), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("npdegen: error:") and match in err


def test_bad_matrix_and_missing_file(tmp_path, capsys):
    path = tmp_path / "W.npy"
    np.save(path, np.ones((3, 4)))
    assert main(["inspect", str(path)]) == 2
    assert "square" in capsys.readouterr().err
    assert main(["inspect", str(tmp_path / "nope.npy")]) == 2
    assert "no such file" in capsys.readouterr().err
