"""COCO keypoints JSON (any dataset in that format, and the embedded set) and folders of unlabeled images.

    meta, instances = load_coco("train.json")                 # images resolved next to the JSON
    unlabeled = image_folder("frames/", meta)                 # one unlabeled instance per image

Every problem raises `DataError` naming the file and the annotation (id and position) at fault.
"""
import json
import os
import warnings

import numpy as np
from PIL import Image

from kpsemi.data.records import Instance, Meta, box_from_keypoints, check_box, check_keypoints
from kpsemi.errors import DataError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def _read_json(path):
    if not os.path.exists(path):
        raise DataError(f"{path}: file not found")
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None


def _resolve_image(path, image_root, file_name):
    for root in ([image_root] if image_root else []) + [os.path.dirname(path),
                                                         os.path.join(os.path.dirname(path), "images")]:
        p = os.path.join(root, file_name)
        if os.path.exists(p):
            return p
    return os.path.join(image_root or os.path.dirname(path), file_name)


def load_coco(path, image_root=None, name=None, check_files=True):
    """(Meta, [Instance]) from a COCO keypoints file; keypoints/skeleton from its first category."""
    doc = _read_json(path)
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            raise DataError(f"{path}: missing the COCO list '{key}'")
    cats = doc["categories"]
    if not cats or "keypoints" not in cats[0]:
        raise DataError(f"{path}: categories[0] has no 'keypoints' list (not a COCO keypoints file)")
    names = list(cats[0]["keypoints"])
    for c in cats[1:]:
        if list(c.get("keypoints", names)) != names:
            raise DataError(f"{path}: category {c.get('id')} has different keypoints than category "
                            f"{cats[0].get('id')}; one file must use one keypoint list")
    k = len(names)
    skeleton = [(int(a) - 1, int(b) - 1) for a, b in cats[0].get("skeleton", [])]
    for a, b in skeleton:
        if not (0 <= a < k and 0 <= b < k):
            raise DataError(f"{path}: skeleton edge ({a + 1}, {b + 1}) refers to a keypoint outside 1..{k}")
    cat_index = {c["id"]: i for i, c in enumerate(cats)}
    attr_names = list(doc.get("attributes", []))
    meta = Meta(name=name or os.path.splitext(os.path.basename(path))[0], keypoints=names, skeleton=skeleton,
                classes=[c.get("name", str(c["id"])) for c in cats], attributes=attr_names)
    images = {}
    for i, im in enumerate(doc["images"]):
        if "id" not in im or "file_name" not in im:
            raise DataError(f"{path}: images[{i}] needs 'id' and 'file_name'")
        images[im["id"]] = im
    out, skipped = [], 0
    for i, a in enumerate(doc["annotations"]):
        where = f"{path}: annotation id={a.get('id', '?')} (annotations[{i}])"
        if a.get("image_id") not in images:
            raise DataError(f"{where}: image_id {a.get('image_id')!r} is not in 'images'")
        if a.get("category_id") not in cat_index:
            raise DataError(f"{where}: category_id {a.get('category_id')!r} is not in 'categories'")
        if "keypoints" not in a:
            raise DataError(f"{where}: no 'keypoints'")
        kp = check_keypoints(a["keypoints"], k, where)
        if a.get("iscrowd", 0) or not (kp[:, 2] > 0).any():
            skipped += 1
            continue
        box = check_box(a["bbox"], where) if a.get("bbox") else box_from_keypoints(kp)
        im = images[a["image_id"]]
        file = _resolve_image(path, image_root, im["file_name"])
        if check_files and not os.path.exists(file):
            raise DataError(f"{where}: image file {file} not found (file_name {im['file_name']!r}; pass the "
                            f"image folder as image_root / --image-root)")
        attrs = None
        if attr_names:
            d = a.get("attributes", {})
            attrs = np.array([int(d.get(n, -1)) for n in attr_names])
        out.append(Instance(file=file, keypoints=kp, box=box, id=str(a.get("id", i)),
                            cls=cat_index[a["category_id"]], attributes=attrs))
    if skipped:
        warnings.warn(f"{path}: {skipped} crowd annotations or annotations without labeled keypoints were "
                      "not used", stacklevel=2)
    if not out:
        raise DataError(f"{path}: no usable annotations (need at least one with labeled keypoints)")
    return meta, out


def image_folder(folder, meta, recursive=True):
    """One unlabeled Instance per image file in `folder` (box = the whole image)."""
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: unlabeled image folder not found")
    files = []
    for root, _, names in os.walk(folder):
        files += [os.path.join(root, n) for n in names if n.lower().endswith(IMAGE_EXTS)]
        if not recursive:
            break
    if not files:
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_EXTS)}) found")
    out = []
    for f in sorted(files):
        try:
            with Image.open(f) as im:
                w, h = im.size
        except OSError as e:
            raise DataError(f"{f}: cannot read image ({e})") from None
        out.append(Instance(file=f, keypoints=np.zeros((meta.num_keypoints, 3)), box=(0.0, 0.0, float(w), float(h)),
                            id=os.path.relpath(f, folder), labeled=False))
    return out
