"""Any run the kit trained, own COCO data included: the run folder records its data (data.json) and keeps its own
label split, `trained.run_data` loads its test crops again, and kpsemi.embeddings opens the explorer on it and
exports its embeddings (CSV, npz, `python -m kpsemi embeddings`)."""
import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from kpsemi import config, embeddings, paths, runs
from kpsemi import data as datasets
from kpsemi.data import splits
from kpsemi.data.own import DataSpec
from kpsemi.embeddings import analysis, trained
from kpsemi.errors import UserError

CFG = dict(losses=("sup",), max_steps=4, eval_every=2)


@pytest.fixture(scope="module")
def coco_run(smoke_dir, tmp_path_factory):
    """A tiny run on own COCO files (the smoke set's JSONs), with no $KPSEMI_DATA: what a user's clone sees."""
    spec = DataSpec(*(os.path.join(smoke_dir, f"{s}.json") for s in ("train", "val", "test")))
    out = str(tmp_path_factory.mktemp("own") / "mine")
    before = set(os.listdir(paths.splits_dir()))
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("KPSEMI_DATA", raising=False)
        runs.run(config.get("smoke", **CFG), out, spec, progress=False)
    return out, spec, before


def test_own_data_run_records_its_data_and_keeps_its_split_out_of_the_checkout(coco_run):
    out, spec, before = coco_run
    assert set(os.listdir(paths.splits_dir())) == before                     # nothing new in data/splits/
    doc = json.load(open(os.path.join(out, "data.json")))
    assert doc["train_json"] == os.path.abspath(spec.train_json) and doc["dlc_project"] is None
    train = datasets.load("coco", "train", 64, json=spec.train_json, progress=False)
    assert os.path.exists(os.path.join(out, f"coco-train-{splits.digest(train.ids)[:8]}.json"))


def test_run_data_loads_the_test_crops_the_run_used(smoke_run, coco_run):
    d = trained.run_data(smoke_run)
    want = datasets.load("synthetic", "test", 64, synth_size="smoke", progress=False)
    assert d.ids == want.ids and d.size == 64 and d.meta.name == "synthetic-smoke-s0"
    own = trained.run_data(os.path.join(coco_run[0], "best.pt"), "val")
    assert own.meta.name == "coco-train" and own.ids == datasets.load("coco", "val", 64, json=coco_run[1].val_json,
                                                                         progress=False).ids


def test_run_data_says_what_to_pass_when_it_cannot_know_the_data(coco_run, tmp_path):
    old = str(tmp_path / "old")                                              # an own-data run without data.json
    shutil.copytree(coco_run[0], old)
    os.remove(os.path.join(old, "data.json"))
    with pytest.raises(UserError, match=r"trained on 'coco-train', and its folder has no data.json.*pass the data"):
        trained.run_data(old)
    with pytest.raises(UserError, match="no best.pt"):
        trained.run_data(str(tmp_path))
    (tmp_path / "data.json").write_text('{"train_json": 5}')
    (tmp_path / "best.pt").write_bytes(open(os.path.join(coco_run[0], "best.pt"), "rb").read())
    with pytest.raises(UserError, match="data.json: the data paths must be text"):
        trained.run_data(str(tmp_path))


def test_explore_opens_on_run_folders_and_on_own_data(smoke_run, coco_run):
    ex = embeddings.explore([smoke_run], perplexity=5, max_points=40, widgets=False)
    assert ex.view()["model"] == "sup" and ex.view()["points"] == 40 and ex.data.meta.name == "synthetic-smoke-s0"
    ex = embeddings.explore({"mine": coco_run[0], "sup": smoke_run}, perplexity=5, max_points=40, widgets=False)
    assert ex.data.meta.name == "coco-train" and ex.select_model("sup")["model"] == "sup"
    data = trained.run_data(smoke_run).subset(range(10))                  # data passed explicitly
    ex = embeddings.explore(smoke_run, data, perplexity=5, widgets=False)
    assert ex.view()["points"] == int((data.keypoints[..., 2] == 2).sum())


def test_export_csv_and_npz(smoke_run, coco_run, tmp_path):
    data = trained.run_data(smoke_run).subset(range(8))
    runs = {"sup": smoke_run, "mine": coco_run[0]}
    n = embeddings.export(runs, data, str(tmp_path / "z.csv"))
    visible = int((data.keypoints[..., 2] == 2).sum())
    assert n == 2 * visible
    rows = list(csv.reader(open(tmp_path / "z.csv")))
    head = rows[0]
    assert head[:8] == ["run", "image", "image_id", "keypoint", "keypoint_name", "class", "x", "y"]
    assert head[8:] == [f"z{j}" for j in range(64)] and len(rows) == n + 1
    first = dict(zip(head, rows[1]))
    assert first["run"] == "sup" and first["image_id"] == data.ids[int(first["image"])]
    assert first["keypoint_name"] == data.meta.keypoints[int(first["keypoint"])]
    assert first["class"] == data.meta.classes[int(data.cls[int(first["image"])])]
    assert embeddings.export(runs, data, str(tmp_path / "z.npz")) == n
    z = np.load(tmp_path / "z.npz")
    model, cfg = trained.load_for("sup", os.path.join(smoke_run, "best.pt"), data)
    want = analysis.extract(model, data, "predicted", cfg["stride"], cfg["sigma"], progress=False)
    assert np.allclose(z["z"][:visible], want.z) and z["z"].shape == (n, 64) and z["xy"].shape == (n, 2)
    assert list(z["run"][[0, -1]]) == ["sup", "mine"] and list(z["keypoint_names"]) == data.meta.keypoints
    assert z["image_id"][0] == data.ids[z["image"][0]] and str(z["source"]) == "predicted"
    assert np.allclose([float(v) for v in rows[1][8:]], z["z"][0], rtol=1e-6, atol=1e-7)   # csv and npz agree
    with pytest.raises(UserError, match=r"z.txt: the export is written as .csv or .npz"):
        embeddings.export(runs, data, str(tmp_path / "z.txt"))


def test_embeddings_command(smoke_run, smoke_dir, tmp_path, capsys):
    from kpsemi import cli
    cli.main(["embeddings", "--run", smoke_run, "--out", str(tmp_path / "z.npz")])
    assert "wrote" in capsys.readouterr().out and np.load(tmp_path / "z.npz")["z"].shape[1] == 64
    doc = json.load(open(os.path.join(smoke_dir, "val.json")))               # other data, passed explicitly,
    for a in doc["annotations"]:                                             # its boxes left out
        del a["bbox"]
    (tmp_path / "val.json").write_text(json.dumps(doc))
    r = subprocess.run([sys.executable, "-m", "kpsemi", "embeddings", "--run", smoke_run, "--out",
                        str(tmp_path / "v.csv"), "--split", "val", "--json", str(tmp_path / "val.json"),
                        "--image-root", smoke_dir], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    warned = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(warned) == 1 and warned[0].startswith(f"warning: {tmp_path / 'val.json'}: {len(doc['annotations'])} "
                                                     "annotations have no 'bbox'"), r.stderr
    ids = {row[2] for row in list(csv.reader(open(tmp_path / "v.csv")))[1:]}
    assert ids <= {str(a["id"]) for a in doc["annotations"]}
    for bad, msg in ((["--run", smoke_run, "--out", str(tmp_path / "z.txt")], "written as .csv or .npz"),
                     (["--run", smoke_run, "--out", str(tmp_path / "z.csv"), "--device", "cuda:99"],
                      "--device cuda:99"),
                     (["--run", str(tmp_path / "none"), "--out", str(tmp_path / "z.csv")], "no checkpoint")):
        capsys.readouterr()
        with pytest.raises(SystemExit) as e:
            cli.main(["embeddings", *bad])
        err = capsys.readouterr().err
        assert e.value.code == 2 and msg in err and len(err.strip().splitlines()) == 1, err
