"""Predict with a trained run on new data — a video, a folder of images, or the boxes of a COCO file — and write the
keypoints in original pixels as a DeepLabCut-style CSV, a COCO results JSON and, for a video, an MP4 with the
skeleton drawn; then flag the frames to label next (flag.py).

    python -m kpsemi predict --run runs/mouse --video mouse.mp4 --out pred/mouse
    summary = predict.predict("runs/mouse", "pred/mouse", video="mouse.mp4")     # the Python twin

Every frame goes through training's path: data.crop (a square of 1.25 x the box's longer side around the box; the
box is the whole frame unless a COCO file gives one), the model at the run's input size, heatmaps.decode (argmax +
sub-pixel refinement), then the inverse of the crop transform back to the frame's pixels. The likelihood of a
keypoint is its heatmap peak (a perfect Gaussian peak is 1), clipped to [0, 1].
"""
import csv
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from kpsemi.data import crops as D, video as V
from kpsemi.data.records import Instance, Meta, box_from_keypoints, check_box, check_keypoints
from kpsemi.data.sources import coco
from kpsemi.errors import DataError, UserError
from kpsemi.method import heatmaps
from kpsemi.method.device import autocast, check_device, default_device
from kpsemi.method.models import load_model
from kpsemi.paths import write_json_atomic
from kpsemi.predict import flag as F


def load_run(run_dir, device="cpu"):
    """(model in eval mode, config dict, Meta) of RUN_DIR/best.pt, loaded with weights_only=True."""
    if not os.path.isdir(run_dir):
        raise UserError(f"{run_dir}: no such run folder")
    path = os.path.join(run_dir, "best.pt")
    device = check_device(device) or "cpu"
    if not os.path.isfile(path):
        raise UserError(f"{run_dir}: no best.pt in this folder (not a trained run; `python -m kpsemi train ... "
                        f"--out {run_dir}` writes one)")
    try:
        model, cfg, m = load_model(path, device)
    except Exception as e:  # truncated file, a pickle that is not plain weights, another program's checkpoint
        raise DataError(f"{path}: cannot load this checkpoint ({V.one_line(e)})") from None
    meta = Meta(name=m["name"], keypoints=list(m["keypoints"]), skeleton=[tuple(e) for e in m["skeleton"]],
                flip_pairs=[tuple(e) for e in m["flip_pairs"]], classes=list(m["classes"]),
                attributes=list(m["attributes"]), metric=m["metric"])
    return model, cfg, meta


def check_names(names, meta, where, run_dir):
    """DataError naming `where` and the first difference when keypoint names differ from the run's."""
    names, run = list(names), list(meta.keypoints)
    if names == run:
        return
    if len(names) != len(run):
        detail = f"{len(names)} keypoints here, {len(run)} in the run"
    else:
        k = next(i for i, (a, b) in enumerate(zip(names, run)) if a != b)
        detail = f"keypoint {k + 1} is {names[k]!r} here, {run[k]!r} in the run"
    raise DataError(f"{where}: keypoint names differ from the run's ({os.path.join(run_dir, 'best.pt')}): {detail}")


@dataclass
class Item:
    index: int              # position in the input (a video's frame number)
    name: str               # the CSV row label: frame number, image path, or file_name#annotation id
    image: np.ndarray       # (H, W, 3) uint8 RGB
    box: tuple              # (x, y, w, h) image pixels
    image_id: int = 0
    category_id: int = 1


def coco_records(path, meta, image_root=None, run_dir=""):
    """[(name, file, box or None, image_id, category_id)]: one per box of a COCO file (bbox, else the box around
    its labeled keypoints), one per image without any (None: the whole image)."""
    doc = coco.read_document(path)
    images = coco.object_list(path, doc, "images")
    cats = coco.object_list(path, doc, "categories") if doc.get("categories") else [{}]
    if "keypoints" in cats[0]:
        check_names(cats[0]["keypoints"], meta, path, run_dir)
    cat0 = cats[0].get("id", 1)
    ids = {im.get("id") for im in images}
    boxes = {}
    for i, a in enumerate(coco.object_list(path, doc, "annotations") if doc.get("annotations") else []):
        where = f"{path}: annotation id={a.get('id', '?')} (annotations[{i}])"
        if a.get("image_id") not in ids:
            raise DataError(f"{where}: image_id {a.get('image_id')!r} is not in 'images'")
        box = check_box(a["bbox"], where) if a.get("bbox") else None
        if box is None and "keypoints" in a:
            box = box_from_keypoints(check_keypoints(a["keypoints"], meta.num_keypoints, where))
        if box is not None and not a.get("iscrowd", 0):
            boxes.setdefault(a["image_id"], []).append((a.get("id", i), box, a.get("category_id", cat0)))
    out = []
    for j, im in enumerate(images):
        if "id" not in im or not isinstance(im.get("file_name"), str):
            raise DataError(f"{path}: images[{j}] needs an 'id' and a 'file_name' (text)")
        file = coco._resolve_image(path, image_root, im["file_name"])
        if not os.path.exists(file):
            raise DataError(f"{path}: images[{j}]: image file {file} not found (file_name {im['file_name']!r}; "
                            "pass the image folder as --image-root)")
        anns = boxes.get(im["id"], [])
        out += [(f"{im['file_name']}#{aid}", file, box, im["id"], cat) for aid, box, cat in anns]
        if not anns:
            out.append((im["file_name"], file, None, im["id"], cat0))
    return out


class Source:
    """What to predict: exactly one of a video, a folder of images, a COCO file; the first `max_frames` of it."""

    def __init__(self, meta, video=None, images=None, coco_json=None, image_root=None, max_frames=None, run_dir=""):
        given = [p for p in (video, images, coco_json) if p]
        if len(given) != 1:
            raise UserError("give exactly one of --video FILE, --images DIR, --coco JSON")
        self.path, self.max_frames, self.fps = given[0], max_frames, None
        self.kind = "video" if video else "images" if images else "coco"
        self.stem = os.path.splitext(os.path.basename(os.path.normpath(self.path)))[0]
        if video:
            n, self.fps, _ = V.probe(video)
            self.records, self.total = None, min(n, max_frames or n)
            return
        if images:
            self.records = [(inst.id, inst.file, inst.box, i, 1)
                            for i, inst in enumerate(coco.image_folder(images, meta))]
        else:
            self.records = coco_records(coco_json, meta, image_root, run_dir)
        self.records = self.records[:max_frames]
        self.total = len(self.records)

    def items(self, only=None):
        """The Items one by one (only the indices in the set `only`)."""
        if self.kind == "video":
            for i, rgb in V.frames(self.path, self.max_frames, only):
                h, w = rgb.shape[:2]
                yield Item(i, str(i), rgb, (0.0, 0.0, float(w), float(h)), i)
            return
        for i, (name, file, box, image_id, cat) in enumerate(self.records):
            if only is None or i in only:
                where = f"{self.path}: {name}" if self.kind == "coco" else ""     # the COCO file and its row
                img = D._load_rgb(Instance(file=file, keypoints=None, box=box, source=where))
                whole = (0.0, 0.0, float(img.shape[1]), float(img.shape[0]))
                yield Item(i, name, img, box or whole, image_id, cat)


def chunks(it, n):
    batch = []
    for x in it:
        batch.append(x)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def to_original(xy, T):
    """Crop pixels (B, K, 2) -> original image pixels, through the inverse of each crop transform T (B, 3, 3)."""
    p = torch.cat([xy.double(), torch.ones_like(xy[..., :1], dtype=torch.float64)], -1)
    return (p @ torch.linalg.inv(T.double()).transpose(-1, -2))[..., :2]


@torch.no_grad()
def predict_batch(model, items, size, stride, device="cpu", amp=True, pad=1.25):
    """(crops x (B, 3, S, S) float on device, T (B, 3, 3) original -> crop pixels, keypoints (B, K, 2) in crop
    pixels, peak scores (B, K)), as evaluate.predict does it on training's crops."""
    crops, Ts = zip(*(D.crop(it.image, it.box, size, pad) for it in items))
    x = torch.stack(crops).to(device).float().div_(255)
    with autocast(device, amp):
        hm = model(x)["heatmaps"].float()                         # (B, K, h, w)
    xy, score = heatmaps.decode(hm, stride)
    return x, torch.stack(Ts), xy.cpu(), score.cpu()


def csv_header(scorer, names):
    """The three DeepLabCut header rows: scorer, bodyparts, coords (x, y, likelihood per body part)."""
    return [["scorer"] + [scorer] * (3 * len(names)), ["bodyparts"] + [n for n in names for _ in range(3)],
            ["coords"] + ["x", "y", "likelihood"] * len(names)]


def predict(run_dir, out, video=None, images=None, coco_json=None, image_root=None, device=None, batch_size=64,
            max_frames=None, flag=12, flag_by="disagreement", write_video=True, pcutoff=0.5, progress=True):
    """Predict every frame of the input, write predictions.csv / predictions.json (+ labeled.mp4 for a video, the
    frames to label with flag > 0, summary.json) under `out`; returns the summary dict."""
    if flag_by not in F.MEASURES:
        raise UserError(f"--flag-by must be one of {', '.join(F.MEASURES)}, got {flag_by!r}")
    device = check_device(device) or default_device()
    model, cfg, meta = load_run(run_dir, device)
    src = Source(meta, video, images, coco_json, image_root, max_frames, run_dir)
    os.makedirs(out, exist_ok=True)
    scorer = "kpsemi_" + os.path.basename(os.path.normpath(run_dir))
    S, stride, amp = cfg["input_size"], cfg["stride"], cfg["amp"]
    want_spread = flag > 0 and flag_by == "disagreement"
    rows, results, kps = [], [], []            # per frame: (index, name, mean peak, spread px, spread % of box)
    writer = V.Writer(os.path.join(out, "labeled.mp4"), src.fps) if src.kind == "video" and write_video else None
    t0 = time.time()
    bar = tqdm(total=src.total or None, desc=f"predict {src.stem}", unit="frame", disable=not progress)
    try:
        with open(os.path.join(out, "predictions.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerows(csv_header(scorer, meta.keypoints))
            for items in chunks(src.items(), batch_size):
                x, T, xy_crop, score = predict_batch(model, items, S, stride, device, amp)
                xy = to_original(xy_crop, T)                                # (B, K, 2) original pixels
                like = score.clamp(0, 1).double()                           # (B, K)
                scale = T[:, 0, 0]                                          # crop pixels per original pixel
                spread = (F.spread(model, x, xy_crop, meta, stride, device, amp) / scale[:, None]).mean(1) \
                    if want_spread else torch.full((len(items),), float("nan"))
                for j, it in enumerate(items):
                    kp = torch.cat([xy[j], like[j, :, None]], 1)            # (K, 3) x, y, likelihood
                    kps.append(kp)
                    w.writerow([it.name] + [f"{v:.3f}" if c < 2 else f"{v:.4f}"
                                            for row in kp.tolist() for c, v in enumerate(row)])
                    results.append({"image_id": it.image_id, "category_id": it.category_id,
                                    "keypoints": [round(v, 3) for v in kp.flatten().tolist()],
                                    "score": round(float(like[j].mean()), 4), "file_name": it.name})
                    side = max(it.box[2], it.box[3])
                    rows.append((it.index, it.name, float(like[j].mean()), float(spread[j]),
                                 100.0 * float(spread[j]) / side))
                    if writer:
                        writer.write(V.draw(it.image, xy[j].numpy(), like[j].numpy(), meta.skeleton, pcutoff))
                bar.update(len(items))
    finally:
        bar.close()
        if writer:
            writer.close()
    seconds = time.time() - t0
    if not rows:
        raise DataError(f"{src.path}: no frames to predict")
    write_json_atomic(results, os.path.join(out, "predictions.json"))
    summary = {"run": run_dir, "input": src.path, "kind": src.kind, "frames": len(rows),
               "seconds": round(seconds, 1), "frames_per_second": round(len(rows) / max(seconds, 1e-9), 1),
               "device": device, "batch_size": batch_size, "keypoints": meta.keypoints, "scorer": scorer,
               "files": ["predictions.csv", "predictions.json"] + (["labeled.mp4"] if writer else [])}
    if flag > 0:
        summary["flagged"] = F.write(out, src, rows, torch.stack(kps).numpy(), flag, flag_by, meta, pcutoff)
        summary["files"] += ["frame_scores.csv", "frame_scores.png", "frames_to_label.csv", "frames_to_label.png"]
    write_json_atomic(summary, os.path.join(out, "summary.json"), indent=1)
    return summary
