"""The npdegen command line."""
import subprocess
import sys

from npdegen.cli import main


def test_generate_writes_where_asked(tmp_path, capsys):
    spec = tmp_path / "heat.toml"
    spec.write_text('[layer]\nname = "heat"\ntransform = "z + D*z_qq"\n[layer.params]\nD = "homogeneous"\n')
    assert main(["generate", str(spec), "--out", str(tmp_path / "out"), "--dtype", "float32",
                 "--boundary", "neumann"]) == 0
    written = (tmp_path / "out" / "heat_numpy_1d_neumann_float32.py")
    assert written.is_file() and str(written) in capsys.readouterr().out


def test_explain(tmp_path, capsys):
    spec = tmp_path / "adv.toml"
    spec.write_text('[layer]\nname = "adv"\ntransform = "z - c*z_q"\n[layer.params]\nc = "homogeneous"\n')
    assert main(["explain", str(spec)]) == 0
    assert "advection" in capsys.readouterr().out


def test_bad_spec_is_a_clean_error(tmp_path, capsys):
    spec = tmp_path / "evil.toml"
    spec.write_text('[layer]\ntransform = "__import__(\'os\').system(\'true\')"\n')
    assert main(["generate", str(spec), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("npdegen: error:") and "Traceback" not in err


def test_console_script_entry_point():
    res = subprocess.run([sys.executable, "-m", "npdegen.cli", "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and "npdegen" in res.stdout
