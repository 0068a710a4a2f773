import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from kpsemi import paths
from kpsemi.data.sources import coco, dlc
from kpsemi.data import crops as data
from kpsemi.data.records import Instance, Meta, box_from_keypoints, infer_flip_pairs
from kpsemi.errors import DataError
from tests.conftest import shared


def test_crop_puts_keypoints_on_their_pixels(tmp_path):
    img = np.zeros((90, 120, 3), np.uint8)
    img[40, 70] = 255                      # a white pixel: its centre is at (70.5, 40.5)
    meta = Meta("toy", ["a"])
    inst = Instance(file="", frame=img, keypoints=np.array([[70.5, 40.5, 2]]), box=(50, 20, 40, 40))
    d = data.materialize(meta, [inst], 48, progress=False)
    kp = d.keypoints[0, 0]
    # crop side 50 px -> 48 px; the keypoint lands where the bright pixel went
    ys, xs = np.unravel_index(np.argmax(d.images[0, 0].numpy()), (48, 48))
    assert abs(xs + 0.5 - kp[0]) <= 0.75 and abs(ys + 0.5 - kp[1]) <= 0.75
    assert d.norm[0] == pytest.approx(40 * 48 / 50)
    s = d[0]
    assert s["image"].shape == (3, 48, 48) and s["image"].dtype == torch.uint8
    assert set(s) == {"image", "keypoints", "box", "meta"}


def test_synthetic_crops_and_batch(smoke_dir):
    from kpsemi import data as datasets
    d = datasets.load("synthetic", "val", 64, synth_size="smoke", progress=False)
    assert d.images.shape[1:] == (3, 64, 64) and d.meta.num_keypoints == 16
    assert d.meta.flip_pairs and len(d.meta.classes) == 8 and len(d.meta.attributes) == 4
    b = d.batch([0, 1, 2])
    assert b["image"].dtype == torch.float32 and b["image"].max() <= 1.0 and b["keypoints"].shape == (3, 16, 3)
    assert (b["attributes"] >= 0).all()
    # labeled points are inside the crop
    kp = d.keypoints[d.keypoints[..., 2] > 0]
    assert ((kp[:, :2] >= 0) & (kp[:, :2] < 64)).all()
    # cached: the second load is read back identically
    d2 = datasets.load("synthetic", "val", 64, synth_size="smoke", progress=False)
    assert torch.equal(d.images, d2.images) and d.ids == d2.ids


def _coco(tmp_path, **edit):
    Image.new("RGB", (40, 30)).save(tmp_path / "a.jpg")
    doc = {"images": [{"id": 1, "file_name": "a.jpg"}],
           "categories": [{"id": 1, "name": "x", "keypoints": ["left_eye", "right_eye", "nose"],
                           "skeleton": [[1, 3], [2, 3]]}],
           "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [1, 2, 20, 20],
                            "keypoints": [5, 5, 2, 10, 5, 1, 0, 0, 0]}]}
    for k, v in edit.items():
        doc["annotations"][0][k] = v
    p = tmp_path / "a.json"
    p.write_text(json.dumps(doc))
    return str(p)


def test_coco_loader(tmp_path):
    meta, inst = coco.load_coco(_coco(tmp_path))
    assert meta.keypoints == ["left_eye", "right_eye", "nose"] and meta.flip_pairs == [(0, 1)]
    assert meta.skeleton == [(0, 2), (1, 2)] and inst[0].box == (1, 2, 20, 20) and inst[0].id == "7"
    assert inst[0].keypoints[:, 2].tolist() == [2, 1, 0]


@pytest.mark.parametrize("edit,msg", [
    ({"keypoints": [5, 5, 2]}, "expected 3 keypoints"),
    ({"keypoints": [5, 5, 3, 1, 1, 1, 0, 0, 0]}, "visibility must be 0, 1 or 2; keypoint 0 has 3$"),
    ({"keypoints": "5,5,2,10,5,1,0,0,0"}, "keypoints must be a list of numbers, got '5,5,2"),
    ({"keypoints": [5, "five", 2, 10, 5, 1, 0, 0, 0]}, "keypoints must be a list of numbers"),
    ({"image_id": 9}, "image_id 9 is not in"),
    ({"bbox": [0, 0, -1, 4]}, r"non-positive width/height \(x, y, w, h = 0, 0, -1, 4\)$"),
    ({"bbox": [0, 0, 10.0, 0.0]}, r"\(x, y, w, h = 0, 0, 10, 0\)$"),
    ({"bbox": "1,2,20,20"}, r"box \(x, y, w, h\) must be a list of numbers"),
])
def test_coco_errors_name_the_annotation(tmp_path, edit, msg):
    with pytest.raises(DataError, match=msg) as e:
        coco.load_coco(_coco(tmp_path, **edit))
    assert "annotation id=7 (annotations[0])" in str(e.value) and "a.json" in str(e.value)
    assert "np." not in str(e.value)                                 # plain numbers, not np.float64(10.0)


@pytest.mark.parametrize("doc,msg", [
    ([{"images": []}], "the top level must be a JSON object .* got a list"),
    ({"images": [], "annotations": ["x"], "categories": []}, r"annotations\[0\] must be a JSON object, got str"),
    ({"images": [{"id": 1, "file_name": 3}], "annotations": [], "categories": [{"id": 1, "keypoints": ["a"]}]},
     r"images\[0\] needs an 'id' and a 'file_name' \(text\)"),
    ({"images": [], "annotations": [], "categories": [{"id": 1, "keypoints": ["a"], "skeleton": [["x", 1]]}]},
     "skeleton must be a list of"),
])
def test_coco_file_structure_errors_name_the_file(tmp_path, doc, msg):
    (tmp_path / "b.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match=msg) as e:
        coco.load_coco(str(tmp_path / "b.json"))
    assert str(e.value).startswith(str(tmp_path / "b.json") + ": ")


def test_coco_annotation_without_bbox_gets_the_keypoint_box_and_a_counted_warning(tmp_path):
    path = _coco(tmp_path)
    doc = json.load(open(path))
    doc["annotations"].append({**doc["annotations"][0], "id": 8})
    for a in doc["annotations"]:
        del a["bbox"]
    open(path, "w").write(json.dumps(doc))
    with pytest.warns(UserWarning, match=r"a.json: 2 annotations have no 'bbox'; their boxes were made around their "
                                         r"labeled keypoints with a 10 % margin \(annotation ids 7, 8\)"):
        _, inst = coco.load_coco(path)
    assert inst[0].box == box_from_keypoints(inst[0].keypoints) == pytest.approx((4.5, 4.9, 6.0, 0.2))


def test_an_image_that_is_not_an_image_names_the_json_and_the_annotation(tmp_path):
    path = _coco(tmp_path)
    (tmp_path / "a.jpg").write_text("not a picture")
    meta, inst = coco.load_coco(path)
    with pytest.raises(DataError, match=r"a.json: annotation id=7 \(annotations\[0\]\): image .*a.jpg cannot be "
                                        r"read as an image"):
        data.materialize(meta, inst, 32, progress=False)


def test_flip_pair_inference():
    assert infer_flip_pairs(["l_eye", "r_eye", "Left Paw", "Right Paw", "nose", "left"]) == [(0, 1), (2, 3)]


def test_dlc_csv_errors(tmp_path):
    Image.new("RGB", (20, 20)).save(tmp_path / "f.png")
    head = "scorer,me,me\nbodyparts,nose,nose\ncoords,x,y\n"
    (tmp_path / "CollectedData.csv").write_text(head + "f.png,3,abc\n")
    with pytest.raises(DataError, match=r"row 4, body part 'nose'"):
        dlc.load_project(str(tmp_path))
    (tmp_path / "CollectedData.csv").write_text(head + "f.png,3,4,5\n")
    with pytest.raises(DataError, match="row 4 has 4 cells"):
        dlc.load_project(str(tmp_path))
    (tmp_path / "CollectedData.csv").write_text(head + "f.png,3.5,4\n")
    meta, inst = dlc.load_project(str(tmp_path))
    assert inst[0].keypoints.tolist() == [[3.5, 4.0, 2.0]] and inst[0].box == (0, 0, 20, 20)
    (tmp_path / "g.png").write_text("not a picture")
    (tmp_path / "CollectedData.csv").write_text(head + "g.png,3.5,4\n")
    with pytest.raises(DataError, match=r"CollectedData.csv: row 4: image .*g.png cannot be read as an image"):
        dlc.load_project(str(tmp_path))


def test_dlc_mirror_mouse_and_video_frames():
    root = shared("mirror-mouse")
    meta, inst = dlc.load_project(root)
    assert len(inst) == 90 and meta.num_keypoints == 17
    vis = np.stack([i.keypoints[:, 2] for i in inst])
    assert 0 < (vis == 0).mean() < 0.2  # obstacle markers are missing in some frames
    tr, va, te = (dlc.load_split(root, s)[1] for s in ("train", "val", "test"))
    assert (len(tr), len(va), len(te)) == (72, 9, 9)
    assert not ({i.id for i in tr} & {i.id for i in te})
    frames = dlc.video_frames(os.path.join(root, "videos", "test_vid.mp4"), meta, n=12, seed=0)
    assert len(frames) == 12 and frames[0].frame.shape == (406, 396, 3) and not frames[0].labeled
    d = data.materialize(meta, inst[:4] + frames[:4], 64, progress=False)
    assert d.labeled.tolist() == [True] * 4 + [False] * 4


def _save_many(path, value):
    for _ in range(20):
        paths.save_atomic({"v": torch.full((1000,), value)}, path)


def test_concurrent_atomic_saves_of_one_path_all_succeed(tmp_path):
    """Two notebooks filling the same data cache at once: every save succeeds, the file is one whole save."""
    import multiprocessing as mp
    path = str(tmp_path / "x.pt")
    procs = [mp.get_context("fork").Process(target=_save_many, args=(path, float(i))) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    v = torch.load(path, weights_only=True)["v"]
    assert v.shape == (1000,) and (v == v[0]).all() and float(v[0]) in {0.0, 1.0, 2.0, 3.0}
    assert os.listdir(tmp_path) == ["x.pt"]          # no temporary file left behind
