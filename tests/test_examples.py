"""Every example in examples/ runs (small sizes), and the demo runs end to end."""
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted((ROOT / "examples").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_example_runs(script, monkeypatch, capsys):
    monkeypatch.setenv("NPDEGEN_EXAMPLE_STEPS", "40")
    runpy.run_path(str(script), run_name="__main__")
    assert capsys.readouterr().out.strip()


def test_examples_state_their_equation():
    for script in SCRIPTS:
        doc = script.read_text().split('"""')[1]
        assert "=" in doc or "z" in doc, f"{script.name} should open with a docstring stating its equation"


def test_demo_cli(tmp_path):
    out = tmp_path / "demo"
    res = subprocess.run([sys.executable, "-m", "npdegen.cli", "demo", "--out", str(out), "--steps", "30"],
                         capture_output=True, text=True, env={**os.environ, "MPLBACKEND": "Agg"})
    assert res.returncode == 0, res.stderr
    for needle in ("Stencil", "reaction", "advection", "diffusion", "homogeneous", "heterogeneous",
                   "time-dependent", "final loss"):
        assert needle in res.stdout
    assert list((out / "kernels").glob("*.py"))
    pytest.importorskip("matplotlib")
    assert (out / "demo.png").stat().st_size > 10_000
