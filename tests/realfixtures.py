"""Tiny fake LSP, MPII, CUB and ATRW datasets written in exactly their official layouts and file formats.

Each `make_<name>(root)` writes a handful of small random JPEGs (64 x 48) and the annotations (MATLAB .mat files via
scipy.io.savemat with the official shapes and struct nesting, CUB's text files, ATRW's COCO-style JSON with
"filename") and returns the ground truth in the file's own convention, so tests can check the conversion by hand.
Edge cases are built in: an occluded LSP joint, an invisible LSPET joint, MPII persons without annopoints, with a
single point, with is_visible as a string / number / empty, a two-person image, test images without joints; a CUB
invisible part; an ATRW unlabeled keypoint.
"""
import json
import os

import numpy as np
import scipy.io
from PIL import Image

W, H = 64, 48


def write_jpeg(path, seed):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    px = np.random.default_rng(seed).integers(0, 255, (H, W, 3), dtype=np.uint8)
    Image.fromarray(px).save(path, quality=90)


# ---------------------------------------------------------------- LSP: joints 3x14xN (LSP) and 14x3xN (LSPET)

def lsp_joints(n, offset):
    """(n, 14, 3) MATLAB-convention x, y, flag=0 for image n: x = 10 + 3k + i + offset, y = 5 + 2k + i."""
    j = np.zeros((n, 14, 3))
    for i in range(n):
        for k in range(14):
            j[i, k] = (10 + 3 * k + i + offset, 5 + 2 * k + i, 0)
    return j


def make_lsp(root):
    """4 LSP images (val 2, test 2) and 3 LSPET images (train); returns the raw (N, 14, 3) joints of both."""
    lsp = lsp_joints(4, 0.25)
    lsp[0, 2, 2] = 1             # LSP image 1, right hip: flag 1 = occluded
    lspet = lsp_joints(3, 0.0)
    lspet[:, :, 2] = 1           # LSPET flag 1 = visible
    lspet[1, 13, 2] = 0          # LSPET image 2, head top: not visible
    d = os.path.join(root, "lsp_dataset")
    os.makedirs(os.path.join(d, "images"), exist_ok=True)
    scipy.io.savemat(os.path.join(d, "joints.mat"), {"joints": lsp.transpose(2, 1, 0)})        # 3 x 14 x N
    for i in range(len(lsp)):
        write_jpeg(os.path.join(d, "images", f"im{i + 1:04d}.jpg"), i)
    d = os.path.join(root, "lspet_dataset")
    os.makedirs(os.path.join(d, "images"), exist_ok=True)
    scipy.io.savemat(os.path.join(d, "joints.mat"), {"joints": lspet.transpose(1, 2, 0)})      # 14 x 3 x N
    for i in range(len(lspet)):
        write_jpeg(os.path.join(d, "images", f"im{i + 1:05d}.jpg"), 100 + i)
    return {"lsp": lsp, "lspet": lspet}


# ---------------------------------------------------------------- MPII: struct RELEASE

EMPTY = np.zeros((0, 0))


def struct_array(records, fields):
    """A 1 x n MATLAB struct array (a numpy record array of objects); absent fields become []."""
    arr = np.zeros((1, len(records)), dtype=[(f, object) for f in fields])
    for i, r in enumerate(records):
        for f in fields:
            arr[0, i][f] = r.get(f, EMPTY)
    return arr


def mpii_person(i, joints=range(16)):
    """A person dict: head box and points {id: (x, y, is_visible)} in MATLAB 1-based pixels."""
    pts = {k: (float(5 + 3 * k), float(4 + 2 * k + i % 3), 1) for k in joints}
    return {"x1": 20.0, "y1": 2.0 + i % 3, "x2": 32.0, "y2": 14.0 + i % 3, "points": pts}


def mpii_spec():
    """The fixture as plain data: a list of images {name, train, persons: [person or None (no annopoints)]}."""
    images = [{"name": f"{100000 + i:09d}.jpg", "train": 1, "persons": [mpii_person(i)]} for i in range(13)]
    images[0]["persons"][0]["points"][0] = (6.0, 4.0, "0")      # string is_visible '0' -> occluded
    images[0]["persons"][0]["points"][1] = (9.0, 6.0, "1")      # string '1'
    images[1]["persons"][0]["points"][9] = (32.0, 22.0, None)   # empty is_visible -> labeled, visible
    del images[2]["persons"][0]["points"][5]                    # a joint without a point -> v=0
    images[3]["persons"][0] = mpii_person(3, joints=[7])        # a single point (squeezed to a bare struct)
    images.append({"name": "000200000.jpg", "train": 1, "persons": [mpii_person(20), mpii_person(21)]})
    images.append({"name": "000300000.jpg", "train": 1, "persons": [None, mpii_person(30)]})
    images.append({"name": "000400000.jpg", "train": 0, "persons": []})     # test images: no joints
    images.append({"name": "000500000.jpg", "train": 0, "persons": []})
    return images


def write_mpii(root, images):
    annolist = []
    for im in images:
        if im["train"]:
            rects = []
            for p in im["persons"]:
                r = {"scale": 1.5, "objpos": {"x": 30.0, "y": 20.0}}
                if p is not None:
                    pts = [{"id": float(k), "x": x, "y": y, "is_visible": EMPTY if v is None else v}
                           for k, (x, y, v) in sorted(p["points"].items())]
                    r.update(x1=p["x1"], y1=p["y1"], x2=p["x2"], y2=p["y2"],
                             annopoints={"point": struct_array(pts, ["x", "y", "id", "is_visible"])})
                rects.append(r)
            annorect = struct_array(rects, ["x1", "y1", "x2", "y2", "annopoints", "scale", "objpos"])
        else:  # test images only carry a rough position and scale per person
            annorect = struct_array([{"scale": 2.0, "objpos": {"x": 10.0, "y": 10.0}}], ["scale", "objpos"])
        annolist.append({"image": {"name": im["name"]}, "annorect": annorect, "frame_sec": EMPTY, "vididx": EMPTY})
    n = len(images)
    single = np.empty((n, 1), dtype=object)
    for i in range(n):
        single[i, 0] = np.array([[1.0]]) if len(images[i]["persons"]) == 1 else EMPTY
    act = struct_array([{"cat_name": "sports", "act_name": "running", "act_id": 1.0}] * n,
                       ["cat_name", "act_name", "act_id"]).T
    release = {"annolist": struct_array(annolist, ["image", "annorect", "frame_sec", "vididx"]),
               "img_train": np.array([[float(im["train"]) for im in images]]), "version": "12",
               "single_person": single, "act": act, "video_list": np.array([["vid0"]], dtype=object)}
    d = os.path.join(root, "mpii_human_pose_v1_u12_2")
    os.makedirs(d, exist_ok=True)
    scipy.io.savemat(os.path.join(d, "mpii_human_pose_v1_u12_1.mat"), {"RELEASE": release})
    for i, im in enumerate(images):
        write_jpeg(os.path.join(root, "images", im["name"]), 200 + i)


def make_mpii(root):
    spec = mpii_spec()
    write_mpii(root, spec)
    return spec


# ---------------------------------------------------------------- CUB: text files

CUB_PARTS = ["back", "beak", "belly", "breast", "crown", "forehead", "left eye", "left leg", "left wing", "nape",
             "right eye", "right leg", "right wing", "tail", "throat"]
CUB_IMAGES = [(1, 1), (2, 1), (3, 100), (4, 101), (5, 151), (6, 200)]   # (image_id, class_id)


def make_cub(root):
    """6 images of classes 1, 1, 100 (train), 101 (val), 151, 200 (test); returns {image_id: truth}."""
    d = os.path.join(root, "CUB_200_2011")
    os.makedirs(os.path.join(d, "parts"), exist_ok=True)
    cls_dir = {c: f"{c:03d}.Bird_{c}" for c in range(1, 201)}
    truth, lines = {}, {k: [] for k in ("images", "labels", "boxes", "locs")}
    for img, c in CUB_IMAGES:
        rel = f"{cls_dir[c]}/Bird_{c}_{img:04d}_{img}.jpg"
        box = (4.0 + img, 3.0, 40.0, 30.0 + img)
        parts = {p: (float(6 + 3 * p), float(4 + 2 * p), 1) for p in range(1, 16)}
        if img == 1:
            parts[7] = (0.0, 0.0, 0)    # left eye not visible: CUB writes 0 0 0
        truth[img] = {"file": rel, "class_id": c, "box": box, "parts": parts}
        lines["images"].append(f"{img} {rel}")
        lines["labels"].append(f"{img} {c}")
        lines["boxes"].append(f"{img} " + " ".join(f"{v:.1f}" for v in box))
        lines["locs"] += [f"{img} {p} {x:.1f} {y:.1f} {v}" for p, (x, y, v) in parts.items()]
        write_jpeg(os.path.join(d, "images", rel), 300 + img)

    def write(name, rows):
        with open(os.path.join(d, name), "w") as f:
            f.write("\n".join(rows) + "\n")
    write("images.txt", lines["images"])
    write("image_class_labels.txt", lines["labels"])
    write("bounding_boxes.txt", lines["boxes"])
    write("classes.txt", [f"{c} {cls_dir[c]}" for c in range(1, 201)])
    write("parts/parts.txt", [f"{i} {n}" for i, n in enumerate(CUB_PARTS, 1)])
    write("parts/part_locs.txt", lines["locs"])
    return truth


# ---------------------------------------------------------------- ATRW: COCO-style JSON with "filename"

ATRW_KEYPOINTS = ["left_ear", "right_ear", "nose", "right_shoulder", "right_front_paw", "left_shoulder",
                  "left_front_paw", "right_hip", "right_knee", "right_back_paw", "left_hip", "left_knee",
                  "left_back_paw", "tail", "center"]


def make_atrw(root):
    """train 3, val 2, test 2 images (one tiger each); returns {split: [annotation dicts]}."""
    truth = {}
    where = {"train": "atrw_anno_pose_train/keypoint_train.json", "val": "atrw_anno_pose_train/keypoint_val.json",
             "test": "atrw_anno_pose_test/keypoint_test.json"}
    cat = {"id": 1, "name": "tiger", "supercategory": "tiger", "keypoints": ATRW_KEYPOINTS,
           "skeleton": [[1, 3], [2, 3], [3, 15]]}
    image_id = 0
    for split, n in (("train", 3), ("val", 2), ("test", 2)):
        images, annotations = [], []
        for i in range(n):
            image_id += 1
            name = f"{image_id:06d}.jpg"
            kp = []
            for k in range(15):
                kp += [4.0 + 3 * k, 6.0 + 2 * k + i, 2]
            if i == 0:
                kp[3 * 2:3 * 2 + 3] = [0, 0, 0]    # nose not labeled
            images.append({"id": image_id, "filename": name, "width": W, "height": H})
            annotations.append({"id": 1000 + image_id, "image_id": image_id, "category_id": 1, "keypoints": kp,
                                "num_keypoints": sum(v > 0 for v in kp[2::3]), "bbox": [2.0, 3.0, 50.0, 40.0],
                                "area": 2000.0, "iscrowd": 0})
            write_jpeg(os.path.join(root, split, name), 400 + image_id)
        path = os.path.join(root, where[split])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump({"images": images, "annotations": annotations, "categories": [cat]}, f)
        truth[split] = annotations
    return truth
