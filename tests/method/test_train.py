import json
import math
import os
import subprocess
import sys

import pytest
import torch

from kpsemi import config, runs
from kpsemi.data import splits
from kpsemi.errors import TrainingError
from kpsemi.method import losses


def _cfg(**kw):
    return config.get("smoke", **{"max_steps": 12, "eval_every": 6, "patience": 5, **kw})


def test_killed_and_resumed_run_ends_like_an_uninterrupted_one(tmp_path, smoke_dir):
    cfg = _cfg(losses=("sup", "sc", "te", "ti"))
    full = runs.run(cfg, str(tmp_path / "full"), progress=False)
    # "kill" after step 8: the last checkpoint is from step 6, so steps 7-8 are redone after the resume
    assert runs.run(cfg, str(tmp_path / "cut"), progress=False, stop_at=8) is None
    resumed = runs.run(cfg, str(tmp_path / "cut"), resume=True, progress=False)
    for k in ("val_pck", "test_pck", "steps", "best_step", "test_per_keypoint"):
        assert resumed[k] == full[k], k
    a = torch.load(tmp_path / "full" / "best.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "cut" / "best.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_metrics_file(tmp_path, smoke_dir):
    m = runs.run(_cfg(losses=("sup", "elt")), str(tmp_path), progress=False)
    on_disk = json.load(open(tmp_path / "metrics.json"))
    assert on_disk["test_pck"] == m["test_pck"]
    for k in ("val_pck", "test_pck", "test_per_keypoint", "steps", "seconds", "n_labeled", "n_unlabeled"):
        assert k in m
    assert 0 <= m["test_pck"] <= 100 and len(m["test_per_keypoint"]) == 16
    assert m["test_pck"] <= m["test_any_keypoint_pck"] <= 100          # identity-free PCK counts every PCK hit
    assert m["test_twin_separation"] >= 0 and m["test_twin_separation_true"] > 0
    assert m["n_labeled"] == round(0.05 * 240) and m["n_unlabeled"] == 240 - m["n_labeled"]
    hist = [json.loads(line) for line in open(tmp_path / "history.jsonl")]
    assert [h["step"] for h in hist] == [6, 12] and all(math.isfinite(h["loss_elt"]) for h in hist)


def test_a_semi_supervised_run_has_its_own_step_budget(tmp_path, smoke_dir):
    """semi_max_steps: the semi-supervised run stops at 6 steps where max_steps says 12; a supervised run, which
    does not read the field (config.canonical), trains its 12."""
    semi = runs.run(_cfg(losses=("sup", "te"), semi_max_steps=6), str(tmp_path / "semi"), progress=False)
    assert semi["steps"] == 6 and [json.loads(x)["step"] for x in open(tmp_path / "semi" / "history.jsonl")] == [6]
    sup = runs.run(config.canonical(_cfg(losses=("sup",), semi_max_steps=6)), str(tmp_path / "sup"), progress=False)
    assert sup["steps"] == 12


def test_nan_loss_stops_with_the_losses_name(tmp_path, smoke_dir, monkeypatch):
    monkeypatch.setitem(losses.LOSSES, "boom", lambda out: out["heatmaps"].sum() * float("nan"))
    cfg = _cfg(losses=("sup", "boom"), weights={**config.Config().weights, "boom": 1.0})
    with pytest.raises(TrainingError, match="loss 'boom' became nan at step 1"):
        runs.run(cfg, str(tmp_path), progress=False)


def test_train_cli_errors_are_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "kpsemi", "train", "--preset", "smoke", "--out", str(tmp_path),
                        "--train-json", str(tmp_path / "missing.json")], capture_output=True, text=True)
    assert r.returncode == 2 and "missing.json: no such file or folder" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "kpsemi", "train", "--preset", "smoke", "--out", str(tmp_path),
                        "--losses", "sup,magic"], capture_output=True, text=True)
    assert r.returncode == 2 and "magic" in r.stderr


def test_own_coco_data_with_unlabeled_folder(tmp_path, smoke_dir, monkeypatch):
    """A COCO train/val/test triple + a folder of unlabeled images: labeled fraction picks from the train JSON,
    the rest and the folder become the unlabeled pool."""
    spec = runs.DataSpec(train_json=os.path.join(smoke_dir, "train.json"),
                         val_json=os.path.join(smoke_dir, "val.json"),
                         test_json=os.path.join(smoke_dir, "test.json"),
                         unlabeled_dir=os.path.join(smoke_dir, "images", "val"))
    monkeypatch.setenv("KPSEMI_DATA", str(tmp_path / "data"))          # its split file and crops stay out of data/
    train, val, test, lab, unl = runs.load_data(_cfg(labeled=0.1), spec)
    assert os.listdir(tmp_path / "data" / "splits") == [f"coco-train-{splits.digest(train.ids[:240])[:8]}.json"]
    assert len(lab) == 24 and len(unl) == 240 - 24 + 60 and len(train) == 300
    assert not train.labeled[240:].any() and not (set(lab.tolist()) & set(unl.tolist()))
