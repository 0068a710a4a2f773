import json
import os
import subprocess
import sys


def run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "kpsemi", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def test_torchvision_imports():
    r = subprocess.run([sys.executable, "-c", "import torchvision, torchvision.ops; print(torchvision.__version__)"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_data_synth_command(tmp_path):
    r = run("data", "synth", "--out", str(tmp_path), "--size", "12", "--seed", "3", "--workers", "1")
    assert r.returncode == 0, r.stderr
    assert "images/s" in r.stdout
    doc = json.load(open(tmp_path / "train.json"))
    assert len(doc["images"]) == 12 and os.path.exists(tmp_path / doc["images"][0]["file_name"])
    assert len(json.load(open(tmp_path / "test.json"))["images"]) == 2


def test_bad_input_is_one_error_line(tmp_path):
    r = run("data", "synth", "--out", str(tmp_path), "--size", "huge")
    assert r.returncode == 2 and r.stderr.strip().startswith("error: unknown synthetic size 'huge'")
    assert "Traceback" not in r.stderr
    r = run("quickstart", "--preset", "nope")
    assert r.returncode == 2 and "choose one of smoke, demo, paper" in r.stderr
