"""LSP, MPII, CUB and ATRW loaders on tiny fixtures written in the official formats (tests/realfixtures.py)."""
import json
import os
import re
import warnings

import numpy as np
import pytest
import scipy.io

from tests import realfixtures as R
from kpsemi.data.sources import atrw, cub, lsp, mpii
from kpsemi.data import crops as data, download
from kpsemi import data as datasets
from kpsemi.errors import DataError

MODULES = {"lsp": lsp, "mpii": mpii, "cub": cub, "atrw": atrw}


def by_id(instances):
    return {i.id: i for i in instances}


# ---------------------------------------------------------------- all four

@pytest.mark.parametrize("name", list(MODULES))
def test_missing_data_error_says_how_to_download(name, tmp_path):
    mod = MODULES[name]
    with pytest.raises(DataError) as e:
        mod.load(str(tmp_path / name), "val")
    assert f"python -m kpsemi data download {name}" in str(e.value)
    assert mod.how_to_get() in str(e.value)


@pytest.mark.parametrize("name", list(MODULES))
def test_files_are_official_and_checksums_well_formed(name):
    mod = MODULES[name]
    assert mod.NAME == name and mod.FILES
    for r in mod.FILES:
        assert isinstance(r, download.Remote) and r.url.startswith("https://") and r.url.split("?")[0].endswith(
            r.filename)
        assert r.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", r.sha256)
        if r.sha256 is None:  # an unverified archive must say how to get past the refusal
            assert "--allow-unverified" in mod.how_to_get()
    assert [r.sha256 for r in cub.FILES] == ["0c685df5597a8b24909f6a7c9db6d11e008733779a671760afef78feb49bf081"]
    assert cub.FILES[0].size == 1150585339


@pytest.mark.filterwarnings("ignore:.*no annopoints")
@pytest.mark.parametrize("name, split, make", [("lsp", "test", R.make_lsp), ("mpii", "val", R.make_mpii),
                                               ("cub", "train", R.make_cub), ("atrw", "train", R.make_atrw)])
def test_materialize_end_to_end(name, split, make, tmp_path):
    make(str(tmp_path))
    meta, inst = datasets.load_records(name, split, root=str(tmp_path))
    d = data.materialize(meta, inst, 64, workers=1, progress=False)
    assert d.images.shape == (len(inst), 3, 64, 64) and d.images.float().std() > 10   # real pixels, not padding
    for i, ins in enumerate(inst):
        kp = ins.keypoints
        xy = np.c_[kp[:, :2], np.ones(len(kp))] @ d.transforms[i].numpy().T
        vis = (kp[:, 2] > 0) & (d.keypoints[i, :, 2].numpy() > 0)
        assert vis.sum() >= 1
        assert np.allclose(d.keypoints[i, vis, :2].numpy(), xy[vis, :2], atol=1e-3)
        assert (d.keypoints[i, vis, :2] >= 0).all() and (d.keypoints[i, vis, :2] < 64).all()
    s = d.transforms[:, 0, 0]
    if name == "mpii":   # PCKh normaliser: 0.6 x head diagonal (12 x 12 px in the fixture)
        assert np.allclose(d.norm.numpy(), 0.6 * np.hypot(12, 12) * s.numpy(), rtol=1e-5)
    else:
        assert np.allclose(d.norm.numpy(), [max(i.box[2:]) * float(s[k]) for k, i in enumerate(inst)], rtol=1e-5)


# ---------------------------------------------------------------- LSP

def test_lsp_splits_values_and_boxes(tmp_path):
    truth = R.make_lsp(str(tmp_path))
    meta, train = lsp.load(str(tmp_path), "train")
    _, val = lsp.load(str(tmp_path), "val")
    _, test = lsp.load(str(tmp_path), "test")
    assert [i.id for i in train] == ["lspet/im00001.jpg", "lspet/im00002.jpg", "lspet/im00003.jpg"]
    assert [i.id for i in val] == ["lsp/im0001.jpg", "lsp/im0002.jpg"]       # first half of LSP
    assert [i.id for i in test] == ["lsp/im0003.jpg", "lsp/im0004.jpg"]      # second half
    assert meta.num_keypoints == 14 and meta.keypoints[0] == "right_ankle" and meta.metric == "pck"
    assert (0, 5) in [tuple(sorted(p)) for p in meta.flip_pairs]            # ankles swap
    k = val[0].keypoints
    assert k[0].tolist() == [9.75, 4.5, 2]     # MATLAB (10.25, 5.0), flag 0 = visible -> minus 0.5, v=2
    assert k[2].tolist() == [15.75, 8.5, 1]    # right hip, LSP flag 1 = occluded -> v=1, still located
    assert np.allclose(val[0].box, (5.85, 1.9, 46.8, 31.2))   # joints 9.75..48.75 x 4.5..30.5, +10 % per side
    assert train[1].keypoints[13].tolist() == [0, 0, 0]       # LSPET flag 0 = not visible -> not labeled
    assert train[1].keypoints[12].tolist() == [46.5, 29.5, 2]  # LSPET flag 1 = visible
    for got, raw in ((val + test, truth["lsp"]), (train, truth["lspet"])):
        for i, ins in enumerate(got):
            lab = ins.keypoints[:, 2] > 0
            assert np.allclose(ins.keypoints[lab, :2], raw[i, lab, :2] - 0.5)
            assert os.path.exists(ins.file) and ins.box[2] > 0


def test_lspet_image_without_visible_joint_is_counted_not_dropped_silently(tmp_path):
    truth = R.make_lsp(str(tmp_path))
    j = truth["lspet"].copy()
    j[2, :, 2] = 0                       # LSPET image 3: no visible joint at all
    scipy.io.savemat(str(tmp_path / "lspet_dataset" / "joints.mat"), {"joints": j.transpose(1, 2, 0)})
    with pytest.warns(UserWarning, match="1 images have no visible joint and were not used"):
        _, train = lsp.load(str(tmp_path), "train")
    assert [i.id for i in train] == ["lspet/im00001.jpg", "lspet/im00002.jpg"]


def test_lsp_malformed(tmp_path):
    R.make_lsp(str(tmp_path))
    mat = str(tmp_path / "lsp_dataset" / "joints.mat")
    scipy.io.savemat(mat, {"joints": np.zeros((2, 14, 4))})
    with pytest.raises(DataError, match=re.escape(mat) + ".*3 x 14 x N.*got 2 x 14 x 4"):
        lsp.load(str(tmp_path), "val")
    j = R.lsp_joints(4, 0).transpose(2, 1, 0)
    j[2, 4, 1] = 2                                   # image 2, joint 5 (left knee): flag 2
    scipy.io.savemat(mat, {"joints": j})
    with pytest.raises(DataError, match=r"image 2 \(im0002.jpg\): joint 5 \(left_knee\) has flag 2"):
        lsp.load(str(tmp_path), "val")
    scipy.io.savemat(mat, {"joints": R.lsp_joints(4, 0).transpose(2, 1, 0)})
    os.remove(tmp_path / "lsp_dataset" / "images" / "im0004.jpg")
    with pytest.raises(DataError, match="image 4 has joints but its image .*im0004.jpg is missing"):
        lsp.load(str(tmp_path), "test")
    scipy.io.savemat(str(tmp_path / "lspet_dataset" / "joints.mat"), {"joints": np.zeros((3, 14, 3))})
    with pytest.raises(DataError, match="14 x 3 x N for LSPET"):   # an LSP-shaped matrix in the LSPET folder
        lsp.load(str(tmp_path), "train")


# ---------------------------------------------------------------- MPII

@pytest.mark.filterwarnings("ignore:.*no annopoints")
def test_mpii_split_values_and_head_boxes(tmp_path):
    R.make_mpii(str(tmp_path))
    with pytest.warns(UserWarning, match="1 persons of training images have no annopoints"):
        meta, train = mpii.load(str(tmp_path), "train")
    _, val = mpii.load(str(tmp_path), "val")
    _, test = mpii.load(str(tmp_path), "test")
    assert meta.metric == "pckh" and meta.num_keypoints == 16 and meta.keypoints[9] == "head_top"
    assert mpii.split_sizes(16) == {"train": 10, "val": 3, "test": 3}
    assert mpii.split_sizes(40000) == {"train": 10000, "val": 3311, "test": 2958}
    assert (len(train), len(val), len(test)) == (10, 3, 3)          # 16 annotated persons, scaled split
    ids = [i.id for i in train + val + test]
    assert len(set(ids)) == 16
    assert "000300000.jpg#1" in ids and "000300000.jpg#0" not in ids   # rect 0 has no annopoints
    assert not any(i.startswith(("000400000", "000500000")) for i in ids)   # img_train = 0
    for split in (train, val, test):   # both persons of the two-person image land in the same split
        names = {i.id.split("#")[0] for i in split}
        assert ("000200000.jpg" in names) == ({"000200000.jpg#0", "000200000.jpg#1"} <= {i.id for i in split})
    assert [i.id for i in mpii.load(str(tmp_path), "test")[1]] == [i.id for i in test]   # fixed seed
    a = by_id(train + val + test)
    k = a["000100000.jpg#0"].keypoints
    assert k[0].tolist() == [5.5, 3.5, 1]      # is_visible '0' (a string): labeled, occluded; MATLAB - 0.5
    assert k[1].tolist() == [8.5, 5.5, 2]      # is_visible '1'
    assert k[2].tolist() == [10.5, 7.5, 2]     # is_visible 1 (a number)
    assert a["000100000.jpg#0"].head_box == (19.5, 1.5, 31.5, 13.5)
    assert a["000100001.jpg#0"].keypoints[9].tolist() == [31.5, 21.5, 2]   # empty is_visible -> labeled
    assert a["000100002.jpg#0"].keypoints[5].tolist() == [0, 0, 0]         # no point for joint 5
    single = a["000100003.jpg#0"]                                           # one point only
    assert (single.keypoints[:, 2] > 0).sum() == 1 and single.keypoints[7].tolist() == [25.5, 17.5, 2]
    assert np.allclose(single.box, (18.3, -0.1, 14.4, 19.2))   # joint + head box 19.5..31.5 x 1.5..17.5, +10 %
    assert all(i.file.endswith(i.id.split("#")[0]) and os.path.exists(i.file) for i in train)


@pytest.mark.filterwarnings("ignore:.*no annopoints")
def test_mpii_malformed(tmp_path):
    spec = R.mpii_spec()
    spec[4]["persons"][0]["points"][16] = (3.0, 3.0, 1)
    R.write_mpii(str(tmp_path / "a"), spec)
    with pytest.raises(DataError, match=r"annolist\(5\)\.annorect\(1\) \(image 000100004.jpg\)\.annopoints\."
                                        r"point\(17\): joint id 16 is not one of 0\.\.15"):
        mpii.load(str(tmp_path / "a"), "train")
    spec = R.mpii_spec()
    spec[6]["persons"][0]["points"][3] = (3.0, 3.0, "yes")
    R.write_mpii(str(tmp_path / "b"), spec)
    with pytest.raises(DataError, match=r"annolist\(7\).*point\(4\): is_visible is not a number \('yes'\)"):
        mpii.load(str(tmp_path / "b"), "val")
    spec = R.mpii_spec()
    spec[8]["persons"][0]["x2"] = 10.0    # head box x2 < x1
    R.write_mpii(str(tmp_path / "c"), spec)
    with pytest.raises(DataError, match=r"annolist\(9\)\.annorect\(1\).*head box .* is empty"):
        mpii.load(str(tmp_path / "c"), "test")


# ---------------------------------------------------------------- CUB

def test_cub_class_disjoint_split_values_boxes(tmp_path):
    truth = R.make_cub(str(tmp_path))
    meta, train = cub.load(str(tmp_path), "train")
    _, val = cub.load(str(tmp_path), "val")
    _, test = cub.load(str(tmp_path), "test")
    assert [i.cls for i in train] == [0, 0, 99] and [i.cls for i in val] == [100] and [i.cls for i in test] == [
        150, 199]
    assert len(meta.classes) == 200 and meta.classes[0] == "001.Bird_1" and meta.classes[199] == "200.Bird_200"
    assert meta.keypoints[6] == "left_eye" and (6, 10) in meta.flip_pairs and meta.metric == "pck"
    first = train[0]
    assert first.id == "001.Bird_1/Bird_1_0001_1.jpg" and os.path.exists(first.file)
    assert first.box == (5.0, 3.0, 40.0, 31.0)                    # bounding_boxes.txt row, as given
    assert first.keypoints[5].tolist() == [24.5, 16.5, 2]         # forehead (24, 16) pixel index -> centre +0.5
    assert first.keypoints[6].tolist() == [0, 0, 0]               # left eye visible=0 -> not labeled
    for ins in train + val + test:
        t = truth[int(ins.id.split("_")[-1].split(".")[0])]
        assert ins.box == t["box"] and ins.cls == t["class_id"] - 1
        for p, (x, y, v) in t["parts"].items():
            assert ins.keypoints[p - 1].tolist() == ([x + 0.5, y + 0.5, 2] if v else [0, 0, 0])


def _rewrite(path, fn):
    rows = open(path).read().splitlines()
    with open(path, "w") as f:
        f.write("\n".join(fn(rows)) + "\n")


def test_cub_malformed(tmp_path):
    R.make_cub(str(tmp_path))
    d = tmp_path / "CUB_200_2011"
    locs = str(d / "parts" / "part_locs.txt")
    _rewrite(locs, lambda rows: rows[:2] + [" ".join(rows[2].split()[:4])] + rows[3:])
    with pytest.raises(DataError, match=re.escape(locs) + r": row 3 has 4 fields, expected 5"):
        cub.load(str(tmp_path), "train")
    R.make_cub(str(tmp_path))
    _rewrite(locs, lambda rows: [r for r in rows if not r.startswith("4 9 ")])
    with pytest.raises(DataError, match=r"part_locs.txt: image_id 4 has no row for parts \[9\]"):
        cub.load(str(tmp_path), "val")
    R.make_cub(str(tmp_path))
    _rewrite(str(d / "bounding_boxes.txt"), lambda rows: rows[:5] + ["6 1.0 2.0 0.0 5.0"])
    with pytest.raises(DataError, match=r"bounding_boxes.txt: row 6 \(image_id 6\): box has non-positive"):
        cub.load(str(tmp_path), "test")
    R.make_cub(str(tmp_path))
    _rewrite(str(d / "parts" / "parts.txt"), lambda rows: rows[:6] + ["7 left_eye_typo"] + rows[7:])
    with pytest.raises(DataError, match=r"parts.txt: part 7 should be 'left eye'"):
        cub.load(str(tmp_path), "train")
    R.make_cub(str(tmp_path))
    _rewrite(locs, lambda rows: rows + ["1 3 5.0 5.0 1"])
    with pytest.raises(DataError, match=r"row 91: image 1 part 3 appears twice"):
        cub.load(str(tmp_path), "train")


# ---------------------------------------------------------------- ATRW

def test_atrw_official_split_and_values(tmp_path):
    truth = R.make_atrw(str(tmp_path))
    for split, n in (("train", 3), ("val", 2), ("test", 2)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")   # nothing to warn about in a clean file
            meta, inst = atrw.load(str(tmp_path), split)
        assert len(inst) == n
        assert [i.id for i in inst] == [str(a["id"]) for a in truth[split]]
        assert all(os.path.dirname(i.file).endswith(split) and os.path.exists(i.file) for i in inst)
    assert meta.keypoints == R.ATRW_KEYPOINTS and meta.classes == ["tiger"] and meta.name == "atrw"
    assert (0, 1) in meta.flip_pairs and (10, 7) in meta.flip_pairs   # ears, hips
    _, train = atrw.load(str(tmp_path), "train")
    assert train[0].keypoints[0].tolist() == [4.0, 6.0, 2]          # COCO coordinates used as they are
    assert train[0].keypoints[2].tolist() == [0, 0, 0]              # nose not labeled
    assert train[1].keypoints[14].tolist() == [46.0, 35.0, 2]
    assert train[0].box == (2.0, 3.0, 50.0, 40.0)


def test_atrw_malformed_names_the_official_file(tmp_path):
    R.make_atrw(str(tmp_path))
    path = str(tmp_path / "atrw_anno_pose_train" / "keypoint_train.json")
    doc = json.load(open(path))
    doc["annotations"][1]["keypoints"][5] = 3
    json.dump(doc, open(path, "w"))
    with pytest.raises(DataError, match=re.escape(path) + r": annotation id=1002 \(annotations\[1\]\).*"
                                                          r"keypoint 1 has 3"):
        atrw.load(str(tmp_path), "train")
    doc["categories"][0]["keypoints"] = doc["categories"][0]["keypoints"][:14]
    json.dump(doc, open(path, "w"))
    with pytest.raises(DataError, match=re.escape(path) + ": categories\\[0\\] has 14 keypoints, ATRW has 15"):
        atrw.load(str(tmp_path), "train")
    os.rename(tmp_path / "val", tmp_path / "elsewhere")
    with pytest.raises(DataError, match="image 000004.jpg of the val split not found"):
        atrw.load(str(tmp_path), "val")
