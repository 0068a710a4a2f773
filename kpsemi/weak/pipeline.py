"""Weakly supervised keypoints from a classifier (Shan, seed 003): train a network on class labels only (the
embedded set's 8 species), then read keypoints off what it looks at.

    image x --classifier--> predicted class c                                 classifier.py
      coarse  O(p): occlusion sensitivity of f_c, a random-colour occluder   saliency.occlusion
      fine    G(p): max over colours of |guided backprop of the c score|     saliency.guided_backprop
      log-likelihood   l(p) = lam log s(k (O^(p) - tau_o)) + (1 - lam) log s(k (G^(p) - tau_g)),  s = sigmoid
                       O^ = O / max O, G^ = box-filtered G / its 99th percentile, both clipped to [0, 1]
      confidence exp(l) in (0, 1) -> max-pool NMS -> keep the top 40 % of the peaks -> Foerstner refinement
      evaluation: precision / recall within alpha * l of the visible ground truth, against as many random points
      per image drawn uniformly inside the object's box; the salient-keypoint table (which keypoint type the
      detections hit most often, per class)

    from kpsemi.weak import pipeline
    metrics = pipeline.run(pipeline.get_config("demo"), "results/weak")   # also writes metrics.json + salient.md

The stages are separate functions so a notebook can look at each: `saliency_maps` (the expensive part, once),
`keypoints` (maps -> detections, cheap, for any setting), `score` (detections -> metrics). `WeakConfig` has its
own smoke / demo / paper presets; paper is the seed's setting: VGG-19 ("VGG Net-E") at 224 px, a 16 px occluder
at stride 8, ImageNet weights.
"""
import os
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from kpsemi import config as C
from kpsemi import data, draw
from kpsemi.method.device import default_device
from kpsemi.paths import write_json_atomic
from kpsemi.weak import classifier, peaks, saliency


@dataclass
class WeakConfig:
    preset: str = "demo"
    dataset: str = "synthetic"       # any dataset with class labels (synthetic, cub, ...)
    synth_size: str = "default"
    data_seed: int = 0
    input_size: int = 64
    # classifier (classifier.py)
    arch: str = "vgg_small"          # vgg_small | a torchvision VGG or ResNet name (vgg16, vgg19, resnet18, ...)
    pretrained: bool = True          # ImageNet weights when torchvision can get them (none exist for vgg_small)
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    steps: int = 300
    eval_every: int = 50
    seed: int = 0
    # coarse scale: occlusion
    patch: int = 8                   # occluder side in pixels (paper: 16 at 224 px)
    stride: int = 4                  # occluder step (paper: 8)
    fill: str = "random"             # "random" colours (paper) | a number, e.g. "0.5": a grey patch
    occ_batch: int = 256             # occluded copies per forward pass
    # fine scale: guided backprop
    gbp_score: str = "logit"         # logit | prob
    smooth: int = 3                  # box filter on G before combining (pixels, odd)
    gbp_quantile: float = 0.99
    # combination and post-processing
    lam: float = 0.3                 # weight of the occlusion term
    sharpness: float = 10.0          # k
    tau_occ: float = 0.1             # occlusion: a soft "on the discriminative region" gate
    tau_gbp: float = 0.5
    nms_radius: int = 4              # a peak is the maximum of its (2r + 1)^2 window
    max_peaks: int = 25
    keep: float = 0.4                # top fraction of the peaks kept, by confidence (paper: 40 %)
    forstner_radius: int = 2         # refinement window (2r + 1)^2 on the grey image
    min_roundness: float = 0.1       # Foerstner q = 4 det A / tr(A)^2 below this: keep the pixel position
    # evaluation
    alpha: float = 0.1               # a detection is right within alpha * l of a visible keypoint
    eval_images: int = 120           # first N test images through the detector (0: all)
    detect_batch: int = 16           # images per saliency call
    random_draws: int = 20
    num_threads: int = 0             # torch CPU threads (0: torch's default); 1 is faster on a busy machine


PRESETS = {
    "smoke": dict(synth_size="smoke", input_size=32, pretrained=False, batch_size=32, steps=30, eval_every=15,
                  patch=8, stride=4, nms_radius=2, forstner_radius=1, eval_images=24, random_draws=5,
                  num_threads=1),
    "demo": dict(synth_size="default", input_size=64, pretrained=False, steps=300, eval_every=50, patch=8,
                 stride=4, eval_images=120),
    "paper": dict(synth_size="default", input_size=224, arch="vgg19", pretrained=True, batch_size=32, lr=1e-4,
                  steps=4000, eval_every=500, patch=16, stride=8, smooth=9, nms_radius=14, forstner_radius=3,
                  eval_images=0, occ_batch=512),
}
TRAIN_FIELDS = ("dataset", "synth_size", "data_seed", "input_size", "arch", "pretrained", "batch_size", "lr",
                "weight_decay", "steps", "seed")


def get_config(preset=None, **overrides):
    """WeakConfig of a preset (default: $KPSEMI_PRESET, else demo) with field overrides (None is ignored)."""
    return C.from_presets(WeakConfig, PRESETS, preset, what="weak-supervision config", **overrides)


def set_threads(cfg):
    """Apply cfg.num_threads to torch (0: leave torch's default)."""
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)


def _fill(fill):
    try:
        return float(fill)
    except (TypeError, ValueError):
        return fill


# ---- maps -> keypoints --------------------------------------------------------------------------------------------
def log_likelihood(occ, gbp, cfg):
    """l(p) = lam log s(k (O^ - tau_o)) + (1 - lam) log s(k (G^ - tau_g)) of occlusion maps and (smoothed) guided-
    backprop maps (B, S, S). exp(l) is a weighted geometric mean of two sigmoids: a pixel needs both cues."""
    o, g = saliency.normalise(occ), saliency.normalise(gbp, cfg.gbp_quantile)
    return (cfg.lam * F.logsigmoid(cfg.sharpness * (o - cfg.tau_occ))
            + (1 - cfg.lam) * F.logsigmoid(cfg.sharpness * (g - cfg.tau_gbp)))


def keypoints(maps, gray, cfg):
    """Detections from maps {"occlusion", "gbp"} (N, S, S) and grey images (N, S, S) in [0, 1] (for Foerstner).
    Returns loglik (N, S, S); peaks (N, M, 2) after NMS; keep (N, M): the top `keep` fraction; xy (N, M, 2)
    after Foerstner; refined (N, M); confidence (N, M) = exp(l) at the peak."""
    ll = log_likelihood(maps["occlusion"], saliency.box_filter(maps["gbp"], cfg.smooth), cfg)
    xy, value, valid = peaks.nms(ll, cfg.nms_radius, cfg.max_peaks)
    keep = peaks.keep_top(valid, cfg.keep)
    refined_xy, refined = peaks.forstner(gray, xy, keep, cfg.forstner_radius, min_roundness=cfg.min_roundness)
    return {"loglik": ll, "peaks": xy, "keep": keep, "xy": refined_xy, "refined": refined,
            "confidence": value.exp()}


def _maps(model, images, cfg, generator):
    occ, _, target = saliency.occlusion(model, images, None, cfg.patch, cfg.stride, _fill(cfg.fill), True,
                                        cfg.occ_batch, generator)
    grad, _ = saliency.guided_backprop(model, images, target, cfg.gbp_score)
    return {"occlusion": occ, "gbp": saliency.gradient_map(grad), "target": target}


def detect(model, images, cfg, generator=None):
    """The whole detector on one batch of images (B, 3, S, S) in [0, 1]: the maps (occlusion, gbp unsmoothed,
    target = predicted class) and the `keypoints` dict, in one dict."""
    maps = _maps(model, images, cfg, generator)
    return {**maps, **keypoints(maps, images.mean(1), cfg)}


def saliency_maps(model, data, cfg, device="cpu", progress=True):
    """Occlusion and guided-backprop maps (N, S, S) and predicted classes (N,) of the first cfg.eval_images
    samples of `data` (the expensive part: (ceil((S - patch) / stride) + 1)^2 forward passes per image)."""
    n = len(data) if cfg.eval_images <= 0 else min(cfg.eval_images, len(data))
    g = torch.Generator(device=device).manual_seed(cfg.seed + 2)
    parts = []
    for i in tqdm(range(0, n, cfg.detect_batch), desc="occlusion + guided backprop", disable=not progress,
                  leave=False):
        x = data.batch(torch.arange(i, min(i + cfg.detect_batch, n)), device)["image"]
        parts.append({k: v.cpu() for k, v in _maps(model, x, cfg, g).items()})
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


# ---- scoring ------------------------------------------------------------------------------------------------------
def match(xy, keep, gt, norm, alpha=0.1):
    """Detections xy (B, M, 2) (those with keep (B, M)) against keypoints gt (B, K, 3), visible when v = 2.

    Returns det_ok (B, M): within alpha * norm of some visible keypoint; nearest (B, M): that keypoint's index
    (-1: none); gt_ok (B, K): visible keypoints with a detection within alpha * norm."""
    vis = gt[..., 2] == 2                                                             # (B, K)
    d = torch.cdist(xy.double(), gt[..., :2].double())                                # (B, M, K)
    d = torch.where(vis[:, None, :] & keep[..., None], d, torch.full_like(d, torch.inf))
    thr = alpha * norm.double()[:, None, None]                                        # (B, 1, 1)
    dmin, nearest = d.min(2)                                                          # (B, M)
    det_ok = keep & (dmin <= thr[..., 0])
    return det_ok, torch.where(det_ok, nearest, torch.full_like(nearest, -1)), vis & (d <= thr).any(1)


def random_points(keep, boxes, draws, generator=None):
    """Uniform random points (draws, B, M, 2) inside each sample's box (B, 4) xywh; use them with the same
    `keep` mask, so every image gets as many random points as it has detections."""
    B, M = keep.shape
    u = torch.rand(draws, B, M, 2, generator=generator, dtype=torch.float64)
    return boxes[None, :, None, :2].double() + u * boxes[None, :, None, 2:].double()


def _rates(xy, keep, gt, norm, alpha):
    ok, _, gt_ok = match(xy, keep, gt, norm, alpha)
    return (100.0 * int(ok.sum()) / max(1, int(keep.sum())),
            100.0 * int(gt_ok.sum()) / max(1, int((gt[..., 2] == 2).sum())))


def score(det, data, cfg):
    """Metrics of detections `det` (a `keypoints` dict over the first N samples of `data`): precision and
    recall in percent (also before Foerstner), the random-point baselines (in the box, and in the whole crop),
    and the salient keypoint per class. Returns (metrics, extra: ok (N, M), nearest (N, M), gt_ok (N, K),
    histogram (classes, K) of matched detections per keypoint type)."""
    n, keep = det["keep"].shape[0], det["keep"]
    gt, norm, cls = data.keypoints[:n], data.norm[:n], data.cls[:n]
    ok, nearest, gt_ok = match(det["xy"], keep, gt, norm, cfg.alpha)
    g = torch.Generator().manual_seed(cfg.seed + 3)
    crop = torch.tensor([0.0, 0.0, data.size, data.size]).expand(n, 4)
    rnd = {where: [_rates(p, keep, gt, norm, cfg.alpha) for p in random_points(keep, bx, cfg.random_draws, g)]
           for where, bx in (("box", data.boxes[:n]), ("crop", crop))}
    C, K = len(data.meta.classes), data.meta.num_keypoints
    hist = torch.zeros(C, K, dtype=torch.long)
    counted = ok & (cls >= 0)[:, None]                                                # images of a known class
    hist.index_put_((cls[:, None].expand_as(nearest)[counted], nearest[counted]),
                    torch.ones(int(counted.sum()), dtype=torch.long), accumulate=True)
    names, kps = data.meta.classes, data.meta.keypoints
    p, r = _rates(det["xy"], keep, gt, norm, cfg.alpha)
    p0, r0 = _rates(det["peaks"], keep, gt, norm, cfg.alpha)
    metrics = {
        "eval_images": n, "detections_per_image": int(keep.sum()) / n, "precision": p, "recall": r,
        "precision_unrefined": p0, "recall_unrefined": r0,
        "refined_share": 100.0 * int(det["refined"].sum()) / max(1, int(keep.sum())),
        **{f"random_{m}{'' if where == 'box' else '_crop'}": sum(v[j] for v in rnd[where]) / len(rnd[where])
           for where in rnd for j, m in enumerate(("precision", "recall"))},
        "salient": {names[c]: kps[int(hist[c].argmax())] for c in range(C) if hist[c].sum() > 0},
        "salient_share": {names[c]: 100.0 * float(hist[c].max() / hist[c].sum()) for c in range(C)
                          if hist[c].sum() > 0},
    }
    return metrics, {"ok": ok, "nearest": nearest, "gt_ok": gt_ok, "histogram": hist}


def evaluate(model, data, cfg, device="cpu", progress=True):
    """`saliency_maps` + `keypoints` + `score` over the first cfg.eval_images samples of `data`. Returns
    (metrics, details: the maps, the detections and score's extras)."""
    maps = saliency_maps(model, data, cfg, device, progress)
    n = len(maps["target"])
    det = keypoints(maps, data.images[:n].float().mean(1) / 255, cfg)
    metrics, extra = score(det, data, cfg)
    metrics["detector_accuracy"] = 100.0 * float((maps["target"] == data.cls[:n]).float().mean())
    return metrics, {**maps, **det, **extra}


# ---- the whole experiment -----------------------------------------------------------------------------------------
def load_data(cfg, progress=True):
    """(train, val, test) KeypointData of cfg.dataset at cfg.input_size."""
    return tuple(data.load(cfg.dataset, s, cfg.input_size, progress=progress, synth_size=cfg.synth_size,
                           seed=cfg.data_seed) for s in ("train", "val", "test"))


def classifier_dir(cfg, root):
    """A folder under `root` named by the classifier's training settings (TRAIN_FIELDS), so a changed setting trains
    a classifier of its own instead of meeting another one."""
    d = os.path.join(root, "classifier-" + C.digest({k: getattr(cfg, k) for k in TRAIN_FIELDS}))
    os.makedirs(d, exist_ok=True)
    return d


def classifier_for(cfg, train, val, out_dir, device="cpu", progress=True):
    """The classifier in out_dir/classifier.pt when there is one (trained with the same TRAIN_FIELDS of the config:
    any other is an error naming both, config.check_same), else a newly trained one (saved there). Returns (model,
    training history [{step, loss, val_acc}], trained now: bool)."""
    path = os.path.join(out_dir, "classifier.pt")
    if os.path.exists(path):
        model, c, history = classifier.load(path, device)
        C.check_same({k: c.get(k) for k in TRAIN_FIELDS}, {k: getattr(cfg, k) for k in TRAIN_FIELDS}, path)
        return model, history, False
    model, history = classifier.train(cfg, train, val, device, progress)
    classifier.save(model, cfg, path, history)
    return model, history, True


def salient_rows(metrics, histogram, classes):
    """Rows of the salient-keypoint table: per class, the most often detected keypoint type and its share."""
    return [{"class": name, "salient keypoint": metrics["salient"].get(name, "-"),
             "share %": round(metrics["salient_share"].get(name, 0.0), 1),
             "matched detections": int(histogram[c].sum())} for c, name in enumerate(classes)]


def run(cfg, out_dir, device=None, progress=True):
    """Train (or reuse) the classifier, run the weak keypoint detector on the test set and score it; writes
    out_dir/metrics.json and out_dir/salient.{md,csv}. Returns the metrics: classifier_accuracy (test, %),
    precision / recall (%) and their random-point baselines, the salient keypoint per class, timings."""
    t0 = time.time()
    device = default_device(device)
    set_threads(cfg)
    os.makedirs(out_dir, exist_ok=True)
    train, val, test = load_data(cfg, progress)
    model, history, trained = classifier_for(cfg, train, val, out_dir, device, progress)
    t1 = time.time()
    m, details = evaluate(model, test, cfg, device, progress)
    metrics = {"classifier_accuracy": classifier.accuracy(model, test, device), **m, "train_history": history,
               "classifier_reused": not trained, "train_seconds": round(t1 - t0, 1),
               "detect_seconds": round(time.time() - t1, 1),
               "device": device, "config": asdict(cfg)}
    draw.write_table(salient_rows(m, details["histogram"], test.meta.classes), os.path.join(out_dir, "salient"))
    write_json_atomic(metrics, os.path.join(out_dir, "metrics.json"), indent=1)
    return metrics
