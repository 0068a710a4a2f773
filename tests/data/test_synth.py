import json
import os

import numpy as np
import pytest

from kpsemi.data.synthetic import animal as A
from kpsemi.data.synthetic import writer as synth


def test_dataset_design():
    assert A.K >= 12 and len(A.SKELETON) >= A.K - 1
    assert len(A.FLIP_PAIRS) >= 4 and len(A.SPECIES) >= 4 and len(A.ATTRIBUTES) >= 3
    names = [A.KEYPOINTS[a] for a, _ in A.FLIP_PAIRS]
    assert all(n.startswith("left_") for n in names)


def test_deterministic_per_sample():
    cfg = synth.SynthConfig.from_size("smoke")
    a, aa = synth.render_sample(cfg, "train", 3)
    b, bb = synth.render_sample(cfg, "train", 3)
    c, _ = synth.render_sample(cfg, "val", 3)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(aa[0]["keypoints"], bb[0]["keypoints"])


def _side_view(facing_left=False):
    d = np.deg2rad
    return dict(yaw=np.pi if facing_left else 0.0, tilt=0.0, roll=0.0, pitch=0.0, neck=0.0, head=0.0,
                legs={k: [0.0, 0.0] for k in ("lf", "rf", "lb", "rb")}, tail=[d(-50), 0.0, 0.0, 0.0],
                attributes=dict(facing_left=int(facing_left), paw_raised=0, head_down=0, tail_up=0))


@pytest.mark.parametrize("facing_left", [False, True])
def test_visibility_is_true_in_a_pure_side_view(facing_left):
    """Facing right we see the animal's left flank: its left eye is visible, the right eye hidden behind the
    head; facing left it is the other way round."""
    cfg = synth.SynthConfig(image_size=256, p_occluder=0, p_truncate=0, p_distractor_animal=0, scale=(0.7, 0.7),
                            clutter=(0, 1))
    _, anns = synth.render_scene(np.random.default_rng(0), cfg, poses=[_side_view(facing_left)])
    v = {n: anns[0]["keypoints"][i, 2] for i, n in enumerate(A.KEYPOINTS)}
    near, far = ("right", "left") if facing_left else ("left", "right")
    assert v[f"{near}_eye"] == 2 and v[f"{far}_eye"] == 1
    assert v[f"{near}_front_paw"] == 2 and v["nose"] == 2 and v["tail_tip"] == 2
    # nothing leaves the image and the far paw is straight behind the near one: hidden
    assert (anns[0]["keypoints"][:, 2] > 0).all() and v[f"{far}_front_paw"] == 1
    assert anns[0]["attributes"]["facing_left"] == int(facing_left)


def test_truncation_gives_unlabeled_points_at_zero():
    cfg = synth.SynthConfig(image_size=128, p_truncate=1.0)
    n_out = 0
    for i in range(20):
        _, anns = synth.render_scene(np.random.default_rng(i), cfg)
        for a in anns:
            kp = a["keypoints"]
            out = kp[:, 2] == 0
            n_out += out.sum()
            assert (kp[out, :2] == 0).all()
            inside = kp[~out, :2]
            assert ((inside >= 0) & (inside < 128)).all()
    assert n_out > 0


def test_written_coco_is_valid(smoke_dir):
    from pycocotools.coco import COCO
    c = COCO(os.path.join(smoke_dir, "train.json"))
    assert len(c.getImgIds()) == synth.SIZES["smoke"][0]
    ann = c.loadAnns(c.getAnnIds())[0]
    assert len(ann["keypoints"]) == 3 * A.K and ann["num_keypoints"] > 0 and ann["area"] > 0
    assert set(ann["attributes"]) == set(A.ATTRIBUTES)
    doc = json.load(open(os.path.join(smoke_dir, "train.json")))
    vis = np.array([a["keypoints"][2::3] for a in doc["annotations"]])
    # real variation: all three visibility states occur
    assert {0, 1, 2} <= set(np.unique(vis).tolist())
    assert len({a["category_id"] for a in doc["annotations"]}) == len(A.SPECIES)


def test_multi_animal_scenes():
    cfg = synth.SynthConfig(image_size=192, animals=(3, 4))
    img, anns = synth.render_sample(cfg, "train", 0)
    assert 2 <= len(anns) <= 4 and img.shape == (192, 192, 3)
