"""COCO keypoints JSON (any dataset in that format, and the embedded set) and folders of unlabeled images.

    meta, instances = load_coco("train.json")                 # images resolved next to the JSON
    unlabeled = image_folder("frames/", meta)                 # one unlabeled instance per image

Every problem raises `DataError` naming the file and the annotation (id and position) at fault. An annotation
without a `bbox` gets the box around its labeled keypoints (10 % margin on each side), and one warning per file
counts them and names their ids; crowd annotations and those without labeled keypoints are skipped and counted.
"""
import json
import os
import warnings

import numpy as np
from PIL import Image

from kpsemi.data.records import Instance, Meta, box_from_keypoints, check_box, check_keypoints
from kpsemi.errors import DataError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def read_document(path):
    """The top-level JSON object of a COCO file; a missing file, invalid JSON or a top level that is not an object
    (e.g. a list) is a DataError naming the file."""
    if not os.path.exists(path):
        raise DataError(f"{path}: file not found")
    try:
        with open(path) as f:
            doc = json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text file (a COCO file is JSON)") from None
    if not isinstance(doc, dict):
        raise DataError(f"{path}: the top level must be a JSON object with 'images', 'annotations' and "
                        f"'categories' (COCO keypoints), got a {type(doc).__name__}")
    return doc


def _resolve_image(path, image_root, file_name):
    for root in ([image_root] if image_root else []) + [os.path.dirname(path),
                                                         os.path.join(os.path.dirname(path), "images")]:
        p = os.path.join(root, file_name)
        if os.path.exists(p):
            return p
    return os.path.join(image_root or os.path.dirname(path), file_name)


def object_list(path, doc, key):
    """doc[key] of a COCO document, checked to be a list of JSON objects (DataError naming the file and entry)."""
    items = doc.get(key)
    if not isinstance(items, list):
        raise DataError(f"{path}: missing the COCO list '{key}'")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise DataError(f"{path}: {key}[{i}] must be a JSON object, got {type(item).__name__}")
    return items


def _ids(ids, n=8):
    return ", ".join(str(i) for i in ids[:n]) + (f" and {len(ids) - n} more" if len(ids) > n else "")


def load_coco(path, image_root=None, name=None, check_files=True):
    """(Meta, [Instance]) from a COCO keypoints file; keypoints/skeleton from its first category."""
    doc = read_document(path)
    images_, annotations, cats = (object_list(path, doc, key) for key in ("images", "annotations", "categories"))
    if not cats or not isinstance(cats[0].get("keypoints"), list):
        raise DataError(f"{path}: categories[0] has no 'keypoints' list (not a COCO keypoints file)")
    names = list(cats[0]["keypoints"])
    for c in cats[1:]:
        if list(c.get("keypoints", names)) != names:
            raise DataError(f"{path}: category {c.get('id')} has different keypoints than category "
                            f"{cats[0].get('id')}; one file must use one keypoint list")
    k = len(names)
    for i, c in enumerate(cats):
        if "id" not in c:
            raise DataError(f"{path}: categories[{i}] has no 'id'")
    try:
        skeleton = [(int(a) - 1, int(b) - 1) for a, b in cats[0].get("skeleton", [])]
    except (TypeError, ValueError):
        raise DataError(f"{path}: categories[0].skeleton must be a list of [a, b] pairs of keypoint numbers "
                        f"(1-based)") from None
    for a, b in skeleton:
        if not (0 <= a < k and 0 <= b < k):
            raise DataError(f"{path}: skeleton edge ({a + 1}, {b + 1}) refers to a keypoint outside 1..{k}")
    cat_index = {c["id"]: i for i, c in enumerate(cats)}
    attr_names = list(doc.get("attributes", []))
    meta = Meta(name=name or os.path.splitext(os.path.basename(path))[0], keypoints=names, skeleton=skeleton,
                classes=[c.get("name", str(c["id"])) for c in cats], attributes=attr_names)
    images = {}
    for i, im in enumerate(images_):
        if "id" not in im or not isinstance(im.get("file_name"), str):
            raise DataError(f"{path}: images[{i}] needs an 'id' and a 'file_name' (text)")
        images[im["id"]] = im
    out, skipped, boxless = [], 0, []
    for i, a in enumerate(annotations):
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
        if a.get("bbox") is None or a.get("bbox") == []:
            boxless.append(a.get("id", f"annotations[{i}]"))
            box = box_from_keypoints(kp)
        else:
            box = check_box(a["bbox"], where)
        im = images[a["image_id"]]
        file = _resolve_image(path, image_root, im["file_name"])
        if check_files and not os.path.exists(file):
            raise DataError(f"{where}: image file {file} not found (file_name {im['file_name']!r}; pass the "
                            f"image folder as image_root / --image-root)")
        attrs = None
        if attr_names:
            d = a.get("attributes", {})
            try:
                attrs = np.array([int(d.get(n, -1)) for n in attr_names])
            except (AttributeError, TypeError, ValueError):
                raise DataError(f"{where}: 'attributes' must map {', '.join(attr_names)} to 0, 1 or -1") from None
        out.append(Instance(file=file, keypoints=kp, box=box, id=str(a.get("id", i)),
                            cls=cat_index[a["category_id"]], attributes=attrs, source=where))
    if boxless:
        warnings.warn(f"{path}: {len(boxless)} annotations have no 'bbox'; their boxes were made around their "
                      f"labeled keypoints with a 10 % margin (annotation ids {_ids(boxless)})", stacklevel=2)
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
