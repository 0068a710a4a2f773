"""Evaluation of multi-instance pose: predictions on whole frames, mapped back to original frame pixels, scored with
pycocotools' COCOeval (iouType="keypoints") — OKS AP averaged over the thresholds 0.50:0.05:0.95.

OKS_j = sum_k exp(-d_k^2 / (2 area_j (2 sigma_k)^2)) [v_k > 0] / sum_k [v_k > 0]   (pycocotools' definition)

with the instance area from the annotation file (honeybee: the keypoint box + 8 px, at the 1280x720 frames; the
embedded scenes: the animal's pixel count) and a per-dataset sigma in `Meta.sigmas`: 0.5 for both, i.e. the seed's
sigma^2 = 1 (honeybee, mouse pups) in OKS = exp(-d^2 / (2 area sigma^2)). Detections per frame are capped at 100
(COCO's keypoint default of 20 is below the busiest honeybee frames, 29 bees).
"""
import contextlib
import io

import matplotlib.pyplot as plt
import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from kpsemi import draw
from kpsemi.method.device import autocast
from kpsemi.multi import model as multi_model


def coco_gt(frames):
    """COCO ground-truth dict of a MultiFrames, keypoints in original frame pixels; image ids = frame index."""
    kp = frames.keypoints.double()                                            # (N, M, K, 3) working pixels
    xy = kp[..., :2] / frames.scale[:, None, None, :]
    images, anns = [], []
    for n in range(len(frames)):
        w, h = (frames.valid[n].double() / frames.scale[n]).round().tolist()
        images.append({"id": n, "width": int(w), "height": int(h)})
        for m in range(kp.shape[1]):
            v = kp[n, m, :, 2]
            if not (v > 0).any():
                continue
            pts = xy[n, m][v > 0]
            lo, hi = pts.min(0).values, pts.max(0).values
            flat = torch.cat([xy[n, m] * (v > 0)[:, None], v[:, None]], 1).reshape(-1).tolist()
            anns.append({"id": len(anns) + 1, "image_id": n, "category_id": 1, "iscrowd": 0, "keypoints": flat,
                         "num_keypoints": int((v > 0).sum()), "area": float(frames.areas[n, m]),
                         "bbox": [float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])]})
    K = frames.meta.num_keypoints
    return {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "animal", "keypoints": list(frames.meta.keypoints),
                            "skeleton": [[a + 1, b + 1] for a, b in frames.meta.skeleton]}], "num_keypoints": K}


def oks_ap(gt, dets, sigmas, max_dets=100):
    """{'ap', 'ap50', 'ap75', 'ar'} from pycocotools. gt: a COCO dict (`coco_gt`); dets: [{'image_id', 'keypoints'
    (K*3 list), 'score'}]; sigmas: per-keypoint OKS sigmas (pycocotools' kpt_oks_sigmas)."""
    if not dets:
        return {"ap": 0.0, "ap50": 0.0, "ap75": 0.0, "ar": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):                           # pycocotools prints progress
        G = COCO()
        G.dataset = {k: v for k, v in gt.items() if k in ("images", "annotations", "categories")}
        G.createIndex()
        D = G.loadRes([dict(d, category_id=1) for d in dets])
        E = COCOeval(G, D, iouType="keypoints")
        E.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
        E.params.maxDets = [max_dets]
        E.evaluate()
        E.accumulate()
    prec = E.eval["precision"][:, :, 0, 0, 0]                                 # (T thresholds, R recalls)
    rec = E.eval["recall"][:, 0, 0, 0]                                        # (T,)

    def mean(a):
        a = a[a > -1]
        return float(a.mean()) if a.size else 0.0
    return {"ap": mean(prec), "ap50": mean(prec[0]), "ap75": mean(prec[5]), "ar": mean(rec)}


def oks_sigmas(frames, cfg):
    """Per-keypoint OKS sigmas: the config's override, else the dataset's, else 0.5 (the seed's sigma^2 = 1)."""
    K = frames.meta.num_keypoints
    return [cfg.oks_sigma] * K if cfg.oks_sigma else list(frames.meta.sigmas or [0.5] * K)


NAMES = {"supervised": "DirectPose", "labeled": "SemiMultiPose-labeled", "semi": "SemiMultiPose"}


@torch.no_grad()
def predict(model, frames, cfg, device="cpu", batch_size=4):
    """Detections on every frame: [{'image_id', 'keypoints' (original pixels, K*3), 'score'}]."""
    was = model.training
    model.eval()
    dets = []
    for s in range(0, len(frames), batch_size):
        idx = torch.arange(s, min(s + batch_size, len(frames)))
        b = frames.batch(idx, device)
        with autocast(device, cfg.amp):
            out = model(b["image"])
        res = multi_model.decode(out, model.stride, cfg.delta, cfg.offset_scale, cfg.nms_sigma, cfg.nms_oks,
                                 cfg.max_dets)
        for n, (poses, scores) in zip(idx.tolist(), res):
            sc = frames.scale[n].float()
            for p, q in zip(poses.cpu(), scores.cpu().tolist()):
                kp = torch.cat([p[:, :2] / sc, p[:, 2:]], 1)
                dets.append({"image_id": n, "keypoints": kp.reshape(-1).tolist(), "score": float(q)})
    model.train(was)
    return dets


def evaluate(model, frames, cfg, device="cpu"):
    """OKS AP of a model on a MultiFrames (full frames, predictions in original pixels)."""
    return oks_ap(coco_gt(frames), predict(model, frames, cfg, device), oks_sigmas(frames, cfg), cfg.max_dets)


def draw_frame(ax, frames, n, dets=None, min_score=None, title=None):
    """Frame n with its annotated animals (skeletons, filled dots) and detections (crosses, dashed skeletons);
    detections below `min_score` (default: a tenth of the best) are not drawn."""
    w, h = frames.valid[n].tolist()
    img = frames.images[n, :, :h, :w]
    kp = frames.keypoints[n]
    ax.imshow(img.permute(1, 2, 0).numpy())
    cols = draw.keypoint_colours(frames.meta.num_keypoints)
    for m in range(kp.shape[0]):
        v = kp[m, :, 2] > 0
        for a, b in frames.meta.skeleton:
            if v[a] and v[b]:
                ax.plot(kp[m, [a, b], 0] - 0.5, kp[m, [a, b], 1] - 0.5, "-", color="white", lw=0.8, alpha=0.8)
        ax.scatter(kp[m, v, 0] - 0.5, kp[m, v, 1] - 0.5, s=10, c=cols[v.numpy()], zorder=3)
    mine = [d for d in (dets or []) if d["image_id"] == n]
    if mine:
        top = max(d["score"] for d in mine)
        for d in mine:
            if d["score"] < (top / 10 if min_score is None else min_score):
                continue
            p = np.array(d["keypoints"]).reshape(-1, 3)[:, :2] * frames.scale[n].numpy()     # back to working px
            for a, b in frames.meta.skeleton:
                ax.plot(p[[a, b], 0] - 0.5, p[[a, b], 1] - 0.5, "--", color="yellow", lw=0.8)
            ax.scatter(p[:, 0] - 0.5, p[:, 1] - 0.5, marker="x", s=14, c=cols, zorder=4)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=8)
    return ax


def plot_curves(results, cfg, title=None, ax=None):
    """Test AP over training steps per method (the seed's Fig. 3), switch steps marked."""
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    for m, r in results.items():
        h = r["history"]
        ax.plot([e["step"] for e in h], [e["test_ap"] for e in h], "o-", ms=3, label=NAMES.get(m, m))
    for s, name in ((cfg.fl_start, "alpha L_fl on"), (cfg.fu_start, "beta L_fu on")):
        ax.axvline(s, color="grey", ls=":", lw=1)
        ax.text(s, ax.get_ylim()[1], name, fontsize=7, va="top", rotation=90)
    ax.set(xlabel="step", ylabel="test OKS AP", title=title or "")
    ax.legend(fontsize=8)
    return ax
