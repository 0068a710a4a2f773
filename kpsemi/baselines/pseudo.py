"""PL: pseudo-labels by data distillation (Radosavovic et al. 2018), as the paper applies it (Table 1 row).

1. Train the supervised model on the labeled subset (the same run as the supervised row, reused when cached).
2. Predict every unlabeled training image with multi-transform inference: the image at 3 scales x {as is,
   flipped}; each heatmap set is mapped back to the original frame (inverse warp, left/right channels swapped for
   flips) and the heatmaps are averaged, then decoded.
3. Keep confident pseudo-labels: a keypoint is kept when the peak of its averaged heatmap is at least
   `threshold` (0.5 of a perfect Gaussian peak); an image is kept when at least half of its keypoints are.
4. Retrain from scratch, same backbone and schedule, on labeled + pseudo-labeled images (supervised loss only).

Not defined at 100 % labels (nothing is unlabeled). The quality of the pseudo-labels (PCK against the hidden
ground truth of the unlabeled training images, `label_pck`) is reported, so one can see why PL helps or hurts. The
two-stage run itself (teacher from the run cache, then the student) is the "pl" method of kpsemi/runs.py.
"""
import torch

from kpsemi.data import geometry
from kpsemi.method import heatmaps, metrics
from kpsemi.method.device import autocast

SCALES = (0.8, 1.0, 1.2)


def view_heatmaps(model, x, meta, scales=SCALES, device="cpu", amp=True, identity=True):
    """Heatmaps of images x (B, 3, S, S) seen at each scale x {no flip, flip}, each mapped back to the frame of x
    (inverse warp, left/right channels swapped for flips): yields ((scale, flipped), (B, K, h, w)).
    identity=False leaves out the unwarped view (scale 1, no flip)."""
    perm = meta.flip_permutation()
    B = x.shape[0]
    for s in scales:
        for flip in ((False, True) if meta.flip_pairs else (False,)):
            if not identity and s == 1.0 and not flip:
                continue
            A = torch.diag(torch.tensor([-s if flip else s, s, 1.0], device=device)).expand(B, 3, 3)
            with autocast(device, amp):
                h = model(geometry.warp(x, A))["heatmaps"].float()
            if flip:
                h = h[:, perm]
            yield (s, flip), geometry.warp(h, torch.linalg.inv(A))


@torch.no_grad()
def ensemble_heatmaps(model, data, idx, meta, stride=4, batch=64, device="cpu", amp=True):
    """Averaged heatmaps (n, K, h, w) of data[idx] over SCALES x {no flip, flip}, in the original frame."""
    model.eval()
    out = []
    for i in range(0, len(idx), batch):
        x = data.batch(idx[i:i + batch], device)["image"]
        acc = 0.0
        n = 0
        for _, h in view_heatmaps(model, x, meta, SCALES, device, amp):
            acc = acc + h
            n += 1
        out.append((acc / n).cpu())
    return torch.cat(out)


def pseudo_labels(model, data, idx, meta, threshold=0.5, min_keep=0.5, stride=4, device="cpu", amp=True):
    """(keypoints (n, K, 3) with v = 2 for confident predictions, kept (n,) bool)."""
    hm = ensemble_heatmaps(model, data, idx, meta, stride, device=device, amp=amp)
    xy, score = heatmaps.decode(hm, stride)
    conf = score >= threshold
    kp = torch.cat([xy * conf[..., None], 2.0 * conf[..., None]], -1)
    kept = conf.float().mean(1) >= min_keep
    return kp, kept


def student(train, labeled, unlabeled, kp, kept):
    """The student's training set: `train` with the kept pseudo-labels `kp` (n, K, 3) on its unlabeled samples
    (the others stay unlabeled), and its labeled indices (the labeled + the kept pseudo-labeled ones)."""
    s = train.subset(torch.arange(len(train)))
    s.keypoints[unlabeled] = torch.where(kept[:, None, None], kp, torch.zeros_like(kp))
    s.labeled[unlabeled] = kept
    return s, torch.cat([labeled, unlabeled[kept]])


def label_pck(kp, train, unlabeled):
    """PCK (%) of the confident pseudo-labels `kp` (n, K, 3) against the hidden labels of the unlabeled images."""
    truth = train.keypoints[unlabeled]
    conf = kp[..., 2] > 0
    good = metrics.hits(kp[..., :2], torch.where(conf[..., None], truth, torch.zeros_like(truth)),
                        train.norm[unlabeled])[0]
    return 100.0 * float(good.sum()) / max(1, int((conf & (truth[..., 2] > 0)).sum()))
