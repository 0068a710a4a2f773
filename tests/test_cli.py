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
    r = run("train", "--preset", "smoke", "--method", "mean_teacher", "--unlabeled-ratio", "0")
    assert r.returncode == 2 and r.stderr.strip() == "error: --unlabeled-ratio must be above 0, got 0"


def test_unlabeled_ratio_reaches_the_run_and_names_it(tmp_path, smoke_dir, monkeypatch):
    """--unlabeled-ratio 2: a mean_teacher step at the smoke preset takes 16 labeled + 32 unlabeled crops, and the
    run's folder in the cache differs from the preset's ratio 1."""
    from kpsemi import config, runs
    from kpsemi.baselines import TRAINERS
    env = {"KPSEMI_RESULTS": str(tmp_path / "results")}
    r = run("train", "--preset", "smoke", "--method", "mean_teacher", "--unlabeled-ratio", "2", "--max-steps", "2",
            env=env)
    assert r.returncode == 0, r.stderr
    cfg = config.get("smoke", method="mean_teacher", unlabeled_ratio=2.0, max_steps=2)
    monkeypatch.setenv("KPSEMI_RESULTS", env["KPSEMI_RESULTS"])
    folder = runs.run_dir(cfg)
    assert runs.run_dir(config.get("smoke", method="mean_teacher", max_steps=2)) != folder
    m = json.load(open(os.path.join(folder, "metrics.json")))
    assert m["config"]["unlabeled_ratio"] == 2.0 and m["method"] == "mean_teacher"
    train, val, _, lab, unl = runs.load_data(config.canonical(cfg), progress=False)
    tr = TRAINERS["mean_teacher"](config.canonical(cfg), train, val, lab, unl, str(tmp_path / "t"), progress=False)
    assert (tr.n_lab, tr.n_unl) == (16, 32)


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


def test_every_option_of_every_command_has_help():
    import argparse
    from kpsemi import cli
    parsers, missing = [], []
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers()
    for add in (cli._add_data, cli._add_train, cli._add_reproduce, cli._add_predict, cli._add_embeddings):
        add(sub)
    for name, p in sub.choices.items():
        parsers.append((name, p))
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                parsers += [(f"{name} {n}", q) for n, q in a.choices.items()]
    for name, p in parsers:
        missing += [f"{name} {a.option_strings or a.dest}" for a in p._actions
                    if a.dest != "help" and not isinstance(a, argparse._SubParsersAction) and not a.help]
    assert not missing, f"options without help: {missing}"
    train = dict(parsers)["train"]
    helps = {a.dest: a.help for a in train._actions}
    assert "split seed" in helps["seed"] and "preset" in helps["max_steps"] and "cuda" in helps["device"]
    assert "run cache" in helps["out"]
    r = run("quickstart", "--help")
    assert r.returncode == 0 and "results.md" in r.stdout                     # quickstart's --out, in main()


def test_train_device_cuda_without_a_gpu_is_one_line(tmp_path):
    import torch
    dev = f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"   # a GPU that is not there
    r = run("train", "--preset", "smoke", "--device", dev, "--out", str(tmp_path / "run"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith(f"error: --device {dev}: ") and ("no CUDA GPU" in r.stderr or "only" in r.stderr)
    r = run("train", "--preset", "smoke", "--device", "gpu0", "--out", str(tmp_path / "run"))
    assert r.returncode == 2 and "error: --device 'gpu0': not a device name" in r.stderr
    assert not os.path.exists(tmp_path / "run")                               # checked before anything is written
