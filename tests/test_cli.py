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


def test_an_unreadable_image_is_an_error_line_of_its_own(tmp_path):
    """The crops' progress bar is closed before the error is printed, so the error does not continue its line."""
    (tmp_path / "a.jpg").write_text("not a picture")
    doc = {"images": [{"id": 1, "file_name": "a.jpg"}], "categories": [{"id": 1, "keypoints": ["nose"]}],
           "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [0, 0, 9, 9], "keypoints": [4, 4, 2]}]}
    (tmp_path / "a.json").write_text(json.dumps(doc))
    j = str(tmp_path / "a.json")
    r = run("train", "--preset", "smoke", "--train-json", j, "--val-json", j, "--test-json", j, "--out",
            str(tmp_path / "run"), env={"KPSEMI_DATA": str(tmp_path / "data")})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1].split("\r")[-1]                  # what a terminal shows last
    assert last.startswith(f"error: {j}: annotation id=7 (annotations[0]): image {tmp_path / 'a.jpg'} cannot be "
                           "read as an image"), r.stderr
