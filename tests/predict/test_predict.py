"""Predicting on new frames: coordinates back to original pixels, the DeepLabCut CSV and COCO results files, a video
in and out, the frames flagged for labeling, and `evaluate` agreeing with a run's own test PCK."""
import csv
import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from kpsemi import cli, config, runs
from kpsemi.data import geometry, splits, video
from kpsemi.data.records import Meta
from kpsemi.data.sources import dlc
from kpsemi.errors import DataError, UserError
from kpsemi.method import heatmaps
from kpsemi.predict import assess, flag
from kpsemi.predict import infer as predict
from tests.conftest import shared

CFG = {"input_size": 64, "stride": 4, "amp": False}


class BlobModel(torch.nn.Module):
    """A stand-in network: heatmap k is a Gaussian (sigma 1 heatmap pixel) at the intensity centroid of image
    channel k % 3 of the crop (pixel centres at i + 0.5), so a prediction is right when the geometry is."""

    def __init__(self, k, stride=4):
        super().__init__()
        self.k, self.stride = k, stride

    def forward(self, x):                                             # x (B, 3, S, S)
        S = x.shape[-1]
        w = x[:, [k % 3 for k in range(self.k)]]                      # (B, K, S, S)
        c = torch.arange(S, dtype=x.dtype) + 0.5
        m = w.sum((-1, -2)).clamp_min(1e-9)
        kp = torch.stack([(w.sum(-2) * c).sum(-1) / m, (w.sum(-1) * c).sum(-1) / m, torch.full_like(m, 2)], -1)
        return {"heatmaps": heatmaps.render(kp, (S // self.stride, S // self.stride), self.stride, 1.0)}


def blob_image(w, h, points, sigma=6.0, grey=False):
    """(h, w, 3) uint8, black, with a Gaussian blob at each point (continuous pixels); blob k in channel k, or
    in all channels (grey)."""
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    img = np.zeros((h, w, 3))
    for k, (x, y) in enumerate(points):
        g = 255 * np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma ** 2))
        if grey:
            img += g[..., None]
        else:
            img[..., k] += g
    return np.clip(img, 0, 255).round().astype(np.uint8)


def stub_run(monkeypatch, names):
    meta = Meta("blobs", list(names), skeleton=[(0, 1)] if len(names) > 1 else [])
    monkeypatch.setattr(predict, "load_run", lambda run_dir, device="cpu": (BlobModel(len(names)), CFG, meta))
    return meta


def read_predictions(path):
    df = pd.read_csv(path, header=[0, 1, 2], index_col=0)
    return df, df.to_numpy().reshape(len(df), -1, 3)                  # (N, K, 3) x, y, likelihood


# ---------------------------------------------------------------- coordinates, by hand

def test_to_original_inverts_the_crop_transform_by_hand():
    # box (50, 20, 40, 40) -> a 50-px square around (70, 40) scaled to 48 px: s = 0.96, offset (-43.2, -14.4)
    T = geometry.crop_matrix((50, 20, 40, 40), 48)
    assert torch.allclose(T, torch.tensor([[0.96, 0, -43.2], [0, 0.96, -14.4], [0, 0, 1]], dtype=torch.float64))
    crop_xy = torch.tensor([[[24.0, 24.0], [0.0, 0.0], [48.0, 12.0]]])
    want = torch.tensor([[[70.0, 40.0], [45.0, 15.0], [95.0, 27.5]]], dtype=torch.float64)
    assert torch.allclose(predict.to_original(crop_xy, T[None]), want, atol=1e-9)


def test_images_round_trip_to_original_pixels(tmp_path, monkeypatch):
    """Whole frames of odd, non-square sizes: crop -> predict -> original pixels within 0.5 px."""
    stub_run(monkeypatch, ["a", "b", "c"])
    truth = {"wide.png": (301, 157, [(40.3, 30.7), (150.5, 80.2), (260.9, 120.4)]),
             "tall.png": (121, 263, [(60.2, 40.1), (30.6, 200.8), (90.4, 131.3)])}
    (tmp_path / "img").mkdir()
    for name, (w, h, pts) in truth.items():
        Image.fromarray(blob_image(w, h, pts)).save(tmp_path / "img" / name)
    s = predict.predict("run", str(tmp_path / "out"), images=str(tmp_path / "img"), flag=1, progress=False)
    df, kp = read_predictions(tmp_path / "out" / "predictions.csv")
    assert list(df.index) == ["tall.png", "wide.png"] and s["frames"] == 2
    for i, name in enumerate(df.index):
        err = np.abs(kp[i, :, :2] - np.array(truth[name][2]))
        assert err.max() < 0.5, (name, err)
    assert (kp[..., 2] > 0.5).all() and (kp[..., 2] <= 1).all()       # peaks of near-perfect Gaussians


def test_coco_boxes_round_trip_and_results_load_in_pycocotools(tmp_path, monkeypatch):
    """A COCO file's box is cropped as in training; an image without annotations is taken whole."""
    from pycocotools.coco import COCO
    stub_run(monkeypatch, ["a", "b", "c"])
    pts_boxed, pts_whole = [(130.2, 60.7), (170.5, 95.1), (150.8, 120.3)], [(20.5, 30.5), (60.2, 70.9), (99.1, 20.4)]
    Image.fromarray(blob_image(320, 200, pts_boxed, sigma=3.0)).save(tmp_path / "a.png")
    Image.fromarray(blob_image(128, 100, pts_whole, sigma=4.0)).save(tmp_path / "b.png")
    doc = {"images": [{"id": 7, "file_name": "a.png", "width": 320, "height": 200},
                      {"id": 9, "file_name": "b.png", "width": 128, "height": 100}],
           "categories": [{"id": 3, "name": "blob", "keypoints": ["a", "b", "c"], "skeleton": [[1, 2]]}],
           "annotations": [{"id": 11, "image_id": 7, "category_id": 3, "bbox": [115, 45, 70, 90], "iscrowd": 0,
                            "area": 6300, "keypoints": [0] * 9, "num_keypoints": 0}]}
    (tmp_path / "boxes.json").write_text(json.dumps(doc))
    predict.predict("run", str(tmp_path / "out"), coco_json=str(tmp_path / "boxes.json"), flag=0, progress=False)
    df, kp = read_predictions(tmp_path / "out" / "predictions.csv")
    assert list(df.index) == ["a.png#11", "b.png"]
    assert np.abs(kp[0, :, :2] - np.array(pts_boxed)).max() < 0.5
    assert np.abs(kp[1, :, :2] - np.array(pts_whole)).max() < 0.5
    res = json.load(open(tmp_path / "out" / "predictions.json"))
    assert [(r["image_id"], r["category_id"]) for r in res] == [(7, 3), (9, 3)]
    assert np.allclose(np.reshape(res[0]["keypoints"], (3, 3)), kp[0], atol=1e-3)
    loaded = COCO(str(tmp_path / "boxes.json")).loadRes(str(tmp_path / "out" / "predictions.json"))
    assert len(loaded.getAnnIds()) == 2


def test_bad_coco_files_for_predict_name_the_file_and_row(tmp_path, monkeypatch):
    stub_run(monkeypatch, ["a", "b", "c"])
    (tmp_path / "list.json").write_text(json.dumps([{"images": []}]))
    with pytest.raises(DataError, match=r"list.json: the top level must be a JSON object .* got a list$"):
        predict.predict("run", str(tmp_path / "o1"), coco_json=str(tmp_path / "list.json"), flag=0, progress=False)
    (tmp_path / "a.png").write_text("not a picture")
    doc = {"images": [{"id": 7, "file_name": "a.png"}], "categories": [{"id": 1, "keypoints": ["a", "b", "c"]}],
           "annotations": [{"id": 11, "image_id": 7, "category_id": 1, "bbox": [0, 0, 9, 9]}]}
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"bad.json: a.png#11: image .*a.png cannot be read as an image"):
        predict.predict("run", str(tmp_path / "o2"), coco_json=str(tmp_path / "bad.json"), flag=0, progress=False)
    doc["images"][0]["file_name"] = 5
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"bad.json: images\[0\] needs an 'id' and a 'file_name' \(text\)"):
        predict.predict("run", str(tmp_path / "o3"), coco_json=str(tmp_path / "bad.json"), flag=0, progress=False)


def test_dlc_csv_header_rows(tmp_path, monkeypatch):
    stub_run(monkeypatch, ["nose", "tail"])
    (tmp_path / "img").mkdir()
    Image.fromarray(blob_image(80, 60, [(20.0, 20.0), (60.0, 40.0)])).save(tmp_path / "img" / "f.png")
    predict.predict("runs/mouse-1", str(tmp_path / "out"), images=str(tmp_path / "img"), flag=0, progress=False)
    rows = list(csv.reader(open(tmp_path / "out" / "predictions.csv")))
    assert rows[0] == ["scorer"] + ["kpsemi_mouse-1"] * 6
    assert rows[1] == ["bodyparts", "nose", "nose", "nose", "tail", "tail", "tail"]
    assert rows[2] == ["coords", "x", "y", "likelihood", "x", "y", "likelihood"]
    assert len(rows) == 4 and rows[3][0] == "f.png" and len(rows[3]) == 7
    df, _ = read_predictions(tmp_path / "out" / "predictions.csv")       # DeepLabCut reads it this way
    assert list(df.columns.names) == ["scorer", "bodyparts", "coords"]
    assert abs(df.loc["f.png", ("kpsemi_mouse-1", "tail", "x")] - 60.0) < 0.5


def test_video_round_trip_mp4_and_frames_to_label(tmp_path, monkeypatch):
    stub_run(monkeypatch, ["spot"])
    path = str(tmp_path / "clip.mp4")
    track = [(30.0 + 9.3 * i, 40.0 + 4.1 * i) for i in range(12)]
    with video.Writer(path, 25, crf=0) as w:                        # lossless luma
        for x, y in track:
            w.write(blob_image(160, 120, [(x, y)], sigma=5.0, grey=True))
    assert video.probe(path)[:2] == (12, 25.0)
    s = predict.predict("run", str(tmp_path / "out"), video=path, batch_size=5, flag=3, progress=False)
    df, kp = read_predictions(tmp_path / "out" / "predictions.csv")
    assert list(df.index) == list(range(12)) and s["frames"] == 12
    assert np.abs(kp[:, 0, :2] - np.array(track)).max() < 0.5
    assert video.probe(str(tmp_path / "out" / "labeled.mp4"))[0] == 12
    flagged = list(csv.DictReader(open(tmp_path / "out" / "frames_to_label.csv")))
    assert [int(r["rank"]) for r in flagged] == [1, 2, 3] == [r["rank"] for r in s["flagged"]]
    assert all(os.path.exists(r["file"]) for r in flagged)
    assert len(list(csv.reader(open(tmp_path / "out" / "frame_scores.csv")))) == 13
    assert os.path.getsize(tmp_path / "out" / "frames_to_label.png") > 0
    s = predict.predict("run", str(tmp_path / "few"), video=path, max_frames=4, write_video=False, flag=0,
                        progress=False)
    assert s["frames"] == 4 and not os.path.exists(tmp_path / "few" / "labeled.mp4")


# ---------------------------------------------------------------- frames to label

def test_pick_worst_frames_apart_by_hand():
    bad = [0.1, 0.9, 0.8, 0.2, 0.7]
    assert flag.pick(bad, 2) == [1, 2]
    assert flag.pick(bad, 2, min_gap=2) == [1, 4]          # frame 2 is next to frame 1
    assert flag.pick(bad, 3, min_gap=2) == [1, 4]          # 3 and 0 are next to a pick: only two fit
    assert flag.pick(bad, 9) == [1, 2, 4, 3, 0]


class Fixed(torch.nn.Module):
    """A network that ignores its input: every keypoint at crop pixel (10, 10)."""

    def forward(self, x):
        kp = torch.tensor([[[10.0, 10.0, 2.0]]]).expand(x.shape[0], 1, 3)
        return {"heatmaps": heatmaps.render(kp, (16, 16), 4, 1.0)}


def test_view_disagreement_by_hand():
    meta = Meta("one", ["spot"])
    x = torch.rand(2, 3, 64, 64)
    # a fixed prediction at 10 px of a view scaled by s about the centre 32 maps back to (10 - 32) / s + 32:
    # 4.5 (s = 0.8) and 13.667 (s = 1.2) besides 10 itself; their mean 9.389; per axis the deviations
    # 0.611, 4.889, 4.278 -> RMS distance sqrt(2 * (0.611^2 + 4.889^2 + 4.278^2) / 3) = 5.33 px
    sp = flag.spread(Fixed(), x, torch.full((2, 1, 2), 10.0), meta)
    assert sp.shape == (2, 1) and torch.allclose(sp, torch.tensor(5.33), atol=0.15)
    y = torch.zeros(2, 3, 64, 64)
    y[:, :, 20:28, 36:44] = 1.0                            # a square blob centred at (40, 24)
    sp = flag.spread(BlobModel(1), y, torch.tensor([[[40.0, 24.0]]]).expand(2, 1, 2), meta)
    assert sp.max() < 0.3                                  # a model that follows the image agrees with itself


# ---------------------------------------------------------------- a trained run on a DeepLabCut project

@pytest.fixture(scope="module")
def dlc_run(tmp_path_factory, smoke_dir):
    """A tiny DeepLabCut project from 40 embedded smoke images (+ a 10-frame video), and a smoke run on it."""
    root = tmp_path_factory.mktemp("dlc")
    proj, frames = root / "proj", root / "proj" / "labeled-data" / "clip"
    frames.mkdir(parents=True)
    doc = json.load(open(os.path.join(smoke_dir, "train.json")))
    names = doc["categories"][0]["keypoints"]
    by_image = {a["image_id"]: a for a in doc["annotations"]}
    rows = [["scorer"] + ["me"] * 2 * len(names), ["bodyparts"] + [n for n in names for _ in "xy"],
            ["coords"] + ["x", "y"] * len(names)]
    for im in doc["images"][:40]:
        kp = np.reshape(by_image[im["id"]]["keypoints"], (-1, 3))
        base = os.path.basename(im["file_name"])
        shutil.copy(os.path.join(smoke_dir, im["file_name"]), frames / base)
        rows.append([f"labeled-data/clip/{base}"] + [f"{v:.2f}" if k[2] > 0 else "" for k in kp for v in k[:2]])
    with open(proj / "CollectedData_me.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    (proj / "videos").mkdir()
    with video.Writer(str(proj / "videos" / "clip.mp4"), 30) as w:
        for im in doc["images"][40:50]:
            w.write(np.asarray(Image.open(os.path.join(smoke_dir, im["file_name"])).convert("RGB")))
    cfg = config.get("smoke", losses=("sup",), labeled=1.0, max_steps=12, eval_every=6, patience=5)
    run = str(root / "run")
    with pytest.MonkeyPatch.context() as mp:                          # its split file stays out of data/splits
        mp.setattr(splits, "splits_dir", lambda: str(root / "splits"))
        m = runs.run(cfg, run, runs.DataSpec(dlc_project=str(proj), video_frames=5), progress=False)
    return str(proj), run, m


def test_evaluate_reproduces_the_runs_test_pck(dlc_run, tmp_path, capsys):
    proj, run, m = dlc_run
    r = assess.evaluate_run(run, dlc_project=proj, split="test", out=str(tmp_path / "ev"), progress=False)
    assert r["instances"] == 4 and round(r["pck"], 2) == round(m["test_pck"], 2)
    assert r["pixel_error"] == pytest.approx(m["test_pixel_error"], abs=1e-4)
    assert r["error_percent"] == pytest.approx(m["test_error_percent"], abs=1e-4)
    per = {row["keypoint"]: row["pck"] for row in r["rows"][:-1]}
    assert per == pytest.approx(m["test_per_keypoint"], nan_ok=True)
    for ext in ("md", "csv", "json", "png"):
        assert os.path.exists(tmp_path / "ev" / f"evaluation.{ext}")
    # the same frames as a COCO file (whole-frame boxes, as DeepLabCut frames are cropped) give the same PCK
    meta, inst = dlc.load_split(proj, "test", seed=0)
    doc = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "animal", "keypoints": meta.keypoints}]}
    for i, ins in enumerate(inst, 1):
        w, h = Image.open(ins.file).size
        doc["images"].append({"id": i, "file_name": ins.file})
        doc["annotations"].append({"id": i, "image_id": i, "category_id": 1, "bbox": [0, 0, w, h],
                                   "keypoints": ins.keypoints.flatten().tolist()})
    (tmp_path / "test.json").write_text(json.dumps(doc))
    cli.main(["evaluate", "--run", run, "--coco", str(tmp_path / "test.json"), "--out", str(tmp_path / "ev2")])
    out = capsys.readouterr().out
    assert f"PCK@0.1 {m['test_pck']:.2f} on test (4 instances)" in out
    assert f"the run's own test split: {m['test_pck']:.2f}" in out


def test_predict_cli_on_the_projects_video_and_frames(dlc_run, tmp_path, capsys):
    proj, run, _ = dlc_run
    cli.main(["predict", "--run", run, "--video", os.path.join(proj, "videos", "clip.mp4"), "--out",
              str(tmp_path / "v"), "--flag", "2"])
    assert "predicted 10 frames" in capsys.readouterr().out
    _, kp = read_predictions(tmp_path / "v" / "predictions.csv")
    assert kp.shape == (10, 16, 3) and ((kp[..., :2] >= 0) & (kp[..., :2] <= 128)).all()
    summary = json.load(open(tmp_path / "v" / "summary.json"))
    assert summary["frames"] == 10 and summary["device"] == "cpu" and len(summary["flagged"]) == 2
    cli.main(["predict", "--run", run, "--images", os.path.join(proj, "labeled-data"), "--out",
              str(tmp_path / "i"), "--max-frames", "3", "--flag-by", "peak", "--flag", "1"])
    df, _ = read_predictions(tmp_path / "i" / "predictions.csv")
    assert len(df) == 3 and df.index[0].startswith("clip/")


def error_line(capsys, argv):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")      # the garbage best.pt below
def test_bad_inputs_are_one_line_each(dlc_run, tmp_path, capsys):
    proj, run, _ = dlc_run
    (tmp_path / "bad.mp4").write_text("not a video")
    err = error_line(capsys, ["predict", "--run", run, "--video", str(tmp_path / "bad.mp4"), "--out", str(tmp_path)])
    assert "bad.mp4: cannot read video" in err
    err = error_line(capsys, ["predict", "--run", str(tmp_path), "--video", str(tmp_path / "bad.mp4"),
                              "--out", str(tmp_path / "o")])
    assert f"{tmp_path}: no best.pt in this folder" in err
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "best.pt").write_bytes(b"\x80\x04garbage")
    err = error_line(capsys, ["evaluate", "--run", str(tmp_path / "broken"), "--dlc", proj])
    assert "best.pt: cannot load this checkpoint" in err
    doc = {"images": [], "annotations": [], "categories": [{"id": 1, "keypoints": ["nose", "eye"]}]}
    (tmp_path / "other.json").write_text(json.dumps(doc))
    err = error_line(capsys, ["predict", "--run", run, "--coco", str(tmp_path / "other.json"), "--out", str(tmp_path)])
    assert "other.json: keypoint names differ from the run's" in err and "2 keypoints here, 16 in the run" in err
    other = tmp_path / "proj"
    shutil.copytree(proj, other)
    text = open(other / "CollectedData_me.csv").read().replace(",nose,nose,", ",snout,snout,", 1)
    (other / "CollectedData_me.csv").write_text(text)
    err = error_line(capsys, ["evaluate", "--run", run, "--dlc", str(other)])
    assert "keypoint names differ" in err and "keypoint 1 is 'snout' here, 'nose' in the run" in err
    err = error_line(capsys, ["predict", "--run", run, "--video", "a.mp4", "--images", ".", "--out", str(tmp_path)])
    assert "give exactly one of --video FILE, --images DIR, --coco JSON" in err
    with pytest.raises(UserError, match="--split must be one of"):
        assess.evaluate_run(run, dlc_project=proj, split="holdout")
    with pytest.raises(DataError, match="missing.mp4: video not found"):
        video.probe(str(tmp_path / "missing.mp4"))


# ---------------------------------------------------------------- the real project, when present

def test_mirror_mouse_video_is_read_like_training_frames():
    root = shared("mirror-mouse")
    path = os.path.join(root, "videos", "test_vid.mp4")
    n, fps, size = video.probe(path)
    assert (n, fps, size) == (994, 250.0, (396, 406))
    meta, _ = dlc.load_project(root)
    train_frames = dlc.video_frames(path, meta, n=3, seed=0)
    want = {int(f.id.split("#")[1]): f.frame for f in train_frames}
    got = dict(video.frames(path, only=set(want)))
    assert sorted(got) == sorted(want) and all(np.array_equal(got[i], want[i]) for i in want)
