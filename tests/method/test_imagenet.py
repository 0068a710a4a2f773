"""ImageNet weights from a local file (kpsemi/method/imagenet.py), with a small fake checkpoint of hrnet_tiny: loaded
when the digest matches and every key fits, recorded in metrics.json, one clear line otherwise."""
import hashlib
import json
import subprocess
import sys

import pytest
import torch
from timm.models.hrnet import HighResolutionNet

from kpsemi import config, runs
from kpsemi.errors import UserError
from kpsemi.method import imagenet, models


def _fake_weights(path, drop=None):
    torch.manual_seed(7)
    sd = HighResolutionNet(models.SMALL["hrnet_tiny"], head="").state_dict()
    if drop:
        sd.pop(drop)
    torch.save(sd, path)
    return sd, hashlib.sha256(open(path, "rb").read()).hexdigest()


def _cfg(**kw):
    return config.get("smoke", pretrained=True, losses=("sup",), max_steps=2, eval_every=2, **kw)


def test_local_weights_are_loaded_and_recorded(tmp_path, smoke_dir, monkeypatch):
    sd, digest = _fake_weights(tmp_path / "w.pth")
    plain = runs.run_dir(_cfg())
    monkeypatch.setenv(imagenet.ENV_PATH, str(tmp_path / "w.pth"))
    monkeypatch.setenv(imagenet.ENV_SHA256, digest)
    net = models.build_model(_cfg(), 16, 4, pretrained=True).kln.net
    assert all(torch.equal(net.state_dict()[k], v) for k, v in sd.items() if k in net.state_dict())
    m = runs.run(_cfg(), str(tmp_path / "run"), progress=False)
    on_disk = json.load(open(tmp_path / "run" / "metrics.json"))
    assert on_disk["pretrained_loaded"] is True and on_disk["pretrained_sha256"] == digest == m["pretrained_sha256"]
    assert runs.run_dir(_cfg()) != plain                    # the run cache keeps these runs apart, by the digest
    monkeypatch.delenv(imagenet.ENV_SHA256)                 # the digest from PATH.sha256, as sha256sum writes it
    (tmp_path / "w.pth.sha256").write_text(f"{digest}  w.pth\n")
    assert imagenet.local_file() == (str(tmp_path / "w.pth"), digest)
    assert runs.run(config.get("smoke", losses=("sup",), max_steps=2, eval_every=2), str(tmp_path / "scratch"),
                    progress=False)["pretrained_loaded"] is False          # a preset without ImageNet weights


def test_bad_weights_files_are_one_clear_error(tmp_path, monkeypatch):
    _, digest = _fake_weights(tmp_path / "w.pth")
    monkeypatch.setenv(imagenet.ENV_PATH, str(tmp_path / "w.pth"))
    monkeypatch.setenv(imagenet.ENV_SHA256, "0" * 64)
    with pytest.raises(UserError, match=f"sha256 {digest} differs from the expected 0000"):
        models.build_model(_cfg(), 16, 4, pretrained=True)
    _, digest = _fake_weights(tmp_path / "part.pth", drop="conv1.weight")
    monkeypatch.setenv(imagenet.ENV_PATH, str(tmp_path / "part.pth"))
    monkeypatch.setenv(imagenet.ENV_SHA256, digest)
    with pytest.raises(UserError, match=r"not weights of hrnet_tiny: 1 keys missing \(e.g. \['conv1.weight'\]\)"):
        models.build_model(_cfg(), 16, 4, pretrained=True)
    torch.save({"weights": {"not": "tensors"}, "code": print}, tmp_path / "pickle.pth")    # not weights_only-safe
    monkeypatch.setenv(imagenet.ENV_PATH, str(tmp_path / "pickle.pth"))
    monkeypatch.setenv(imagenet.ENV_SHA256, hashlib.sha256(open(tmp_path / "pickle.pth", "rb").read()).hexdigest())
    with pytest.raises(UserError, match="not a weights file torch can read safely"):
        models.build_model(_cfg(), 16, 4, pretrained=True)
    monkeypatch.delenv(imagenet.ENV_SHA256)
    with pytest.raises(UserError, match="no digest to check it against"):
        imagenet.local_file()


def test_pretrained_weights_on_the_command_line(tmp_path):
    _, digest = _fake_weights(tmp_path / "w.pth")
    for extra, message in ((["--pretrained-weights", str(tmp_path / "missing.pth"), "--preset", "paper"],
                            "missing.pth: no such file"),
                           (["--pretrained-weights", str(tmp_path / "w.pth"), "--pretrained-sha256", digest],
                            "the smoke preset trains hrnet_tiny from scratch"),
                           (["--pretrained-sha256", digest], "--pretrained-sha256 goes with --pretrained-weights")):
        r = subprocess.run([sys.executable, "-m", "kpsemi", "train", "--preset", "smoke", "--out", str(tmp_path / "o"),
                            *extra], capture_output=True, text=True)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
