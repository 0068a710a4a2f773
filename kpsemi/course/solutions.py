"""Solutions of the lesson exercises, written the way a reader would write them: a few plain lines each.

`course.check(name, fn)` tests a function against the package; these are what it accepts. `course.solution(name)`
prints one of them. Shapes: B samples, K keypoints, C feature channels, h x w heatmap pixels.
"""
import torch
import torch.nn.functional as F

from kpsemi.data import geometry


def heatmap(kp, size, stride=4, sigma=2.0):
    """01 · Gaussian targets (B, K, h, w) of peak 1 from keypoints kp (B, K, 3) = (x, y, v) in input pixels;
    all zeros where v = 0. Heatmap pixel j covers input pixels [j * stride, (j + 1) * stride), so a keypoint at x
    sits at heatmap index x / stride - 0.5."""
    h, w = size
    cx = kp[..., 0] / stride - 0.5                                   # (B, K) in heatmap pixel indices
    cy = kp[..., 1] / stride - 0.5
    dx2 = (torch.arange(w, dtype=kp.dtype) - cx[..., None]) ** 2     # (B, K, w)
    dy2 = (torch.arange(h, dtype=kp.dtype) - cy[..., None]) ** 2     # (B, K, h)
    hm = torch.exp(-(dy2[..., :, None] + dx2[..., None, :]) / (2 * sigma ** 2))
    return hm * (kp[..., 2] > 0)[..., None, None]


def supervised(heatmaps, target, weight, labeled):
    """02 · L_sup: mean squared error of the labeled samples' heatmaps (B, K, h, w), each keypoint's error times its
    weight (B, K) (0 where it is not labeled); the mean runs over those samples' keypoints and pixels."""
    if not labeled.any():
        return heatmaps.sum() * 0.0
    err = weight[labeled][..., None, None] * (heatmaps[labeled] - target[labeled]) ** 2
    return err.mean()


def embedding(features, heatmaps):
    """03 · z_i = GMP(F ⊙ m_i): features F (B, C, h, w), heatmaps (B, K, h, w) -> (B, K, C). The mask m_i is
    heatmap i clipped at 0 and divided by its peak, so every mask weighs F on the same scale."""
    masks = heatmaps.clamp_min(0)
    masks = masks / masks.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-6)
    weighted = features[:, None] * masks[:, :, None]                 # (B, K, C, h, w)
    return weighted.amax(dim=(-2, -1))                               # the max over the pixels


def sc(logits):
    """03 · L_sc: the KCN's logits (B, K, K) for every z_i; keypoint i's label is i. Cross-entropy, mean over
    samples and keypoints."""
    B, K, _ = logits.shape
    labels = torch.arange(K).repeat(B)                               # 0, 1, ..., K-1 for every sample
    return F.cross_entropy(logits.reshape(B * K, K), labels)


def te(heatmaps_g, unsup, H):
    """04 · L_te = mean || f(g(x)) - g(f(x)) ||^2: heatmaps_g = f(g(x)), unsup = f(x) (B, K, h, w), g given as
    normalised homographies H (B, 3, 3)."""
    moved = geometry.warp(unsup, H)                                  # g(f(x))
    return ((heatmaps_g - moved) ** 2).mean()


def ti(z, z_g):
    """04 · L_ti: z, z_g (B, K, C) of x and g(x), each z_i scaled to unit length; squared distance summed over
    the channels, mean over samples and keypoints."""
    z, z_g = F.normalize(z, dim=-1), F.normalize(z_g, dim=-1)
    return ((z - z_g) ** 2).sum(-1).mean()


def gap_closed(low, method, high):
    """05 · The share (%) of the gap between supervised at few labels (low) and at all labels (high) that the
    method at few labels closes; NaN when high == low."""
    if high == low:
        return float("nan")
    return 100.0 * (method - low) / (high - low)


def unsup(heatmaps, target, weight, use_gt=True):
    """06 · What the unsupervised losses see: the ground-truth target for labeled keypoints (weight > 0) when
    use_gt, the prediction for every other keypoint. (B, K, h, w), (B, K, h, w), (B, K) -> (B, K, h, w)."""
    labeled = (weight > 0) & use_gt
    return torch.where(labeled[..., None, None], target, heatmaps)


def total(values, weights, names):
    """07 · L = sum over the losses in `names` of weight x value (values, weights: dicts by loss name)."""
    return sum(weights[n] * values[n] for n in names)


def elt(heatmaps_g, unsup, H):
    """08 · ELT = mean || f(x) - g^-1(f(g(x))) ||^2: the heatmaps of g(x) brought back by the inverse warp."""
    back = geometry.warp(heatmaps_g, torch.linalg.inv(H))           # g^-1(f(g(x)))
    return ((unsup - back) ** 2).mean()


def pck(pred, gt, norm, alpha=0.1):
    """09 · PCK@alpha in percent: pred (N, K, 2), gt (N, K, 3) = (x, y, v), norm (N,) the box side l. A labeled
    keypoint (v > 0) is correct within alpha * l of the truth (distance <= alpha * l)."""
    dist = torch.linalg.norm(pred - gt[..., :2], dim=-1)             # (N, K)
    labeled = gt[..., 2] > 0
    correct = (dist <= alpha * norm[:, None]) & labeled
    return 100.0 * correct.sum() / labeled.sum()


def neighbours(z, image, k=5):
    """10 · For each point of z (P, C): the indices (P, k) of its k nearest points (Euclidean, nearest first) among
    the points of *other* images (image (P,): the image of each point)."""
    d = torch.cdist(z, z)                                            # (P, P) distances
    d[image[:, None] == image[None, :]] = float("inf")               # the own image, the point itself included
    return d.argsort(dim=1)[:, :k]
