"""The lesson exercises: for each, the task, kpsemi's own implementation to compare with, cases computed by hand,
random inputs, and the usual mistakes (so a checker can say what went wrong, not only that something did).

Every hand case states how its expected value comes about. The references are the package's functions with the
exercise's signature; `neighbours` (notebook 10) compares with its solution, because the package's k-NN lives in
kpsemi.embeddings, a sibling of this package (tests/course/ checks that solution against it).
"""
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from kpsemi.course import solutions as S
from kpsemi.method import heatmaps, losses, metrics, models, warp


@dataclass(frozen=True)
class Case:
    what: str                  # the case in words, as the failure line shows it
    args: tuple
    expected: object           # a number or a tensor, computed by hand


@dataclass(frozen=True)
class Exercise:
    name: str
    notebook: str
    task: str                  # what to write, with the signature
    reference: Callable        # the package's implementation, called like the student's function
    source: str                # where that implementation lives
    cases: tuple               # Case, ...
    random: Callable           # random(generator) -> args
    mistakes: tuple = ()       # (a wrong function, what it does wrong), tried when a case fails
    atol: float = 1e-5


def _rand(g, *shape):
    return torch.rand(*shape, generator=g)


def _randn(g, *shape):
    return torch.randn(*shape, generator=g)


def _loss(fn, *keys):
    """A loss of the registry called with positional tensors: fn({keys[0]: a, keys[1]: b, ...})."""
    return lambda *args: fn(dict(zip(keys, args)))


def _total_reference(values, weights, names):
    consts = {n: (lambda out, v=v: v) for n, v in values.items()}
    return losses.total(None, names, weights, registry=consts)[0]


_SHIFT = torch.tensor([[[1.0, 0, 0.5], [0, 1, 0], [0, 0, 1]]])    # g: one heatmap pixel right on a 4-pixel row
_ROW = torch.tensor([[[[1.0, 2, 3, 4]]]])                        # f(x): one keypoint, a 1 x 4 heatmap

EXERCISES = {e.name: e for e in [
    Exercise(
        "heatmap", "01_data_and_splits",
        "heatmap(kp, size, stride, sigma) -> (B, K, h, w): a Gaussian of peak 1 per keypoint of kp (B, K, 3) = "
        "(x, y, v) in input pixels, centred at heatmap index (x / stride - 0.5, y / stride - 0.5); zeros where v = 0",
        heatmaps.render, "kpsemi.method.heatmaps.render",
        (Case("a keypoint at (6, 10) px, stride 4, sigma 1: peak 1 at row 2, column 1; exp(-1/2) one pixel away; "
              "a second keypoint with v = 0: all zeros",
              (torch.tensor([[[6.0, 10.0, 2.0], [6.0, 10.0, 0.0]]]), (4, 4), 4, 1.0),
              torch.stack([torch.exp(-((torch.arange(4.0)[:, None] - 2) ** 2 + (torch.arange(4.0) - 1) ** 2) / 2),
                           torch.zeros(4, 4)])[None]),),
        lambda g: (torch.cat([_rand(g, 2, 3, 2) * 64, torch.randint(0, 3, (2, 3, 1), generator=g).float()], -1),
                   (16, 16), 4, 1.5),
        ((lambda kp, size, stride=4, sigma=2.0: S.heatmap(kp + torch.tensor([stride / 2, stride / 2, 0]), size,
                                                          stride, sigma),
          "the centre is off by half a heatmap pixel: heatmap pixel j covers input pixels [j * stride, (j + 1) * "
          "stride), so a keypoint at x sits at index x / stride - 0.5"),
         (lambda kp, size, stride=4, sigma=2.0: S.heatmap(torch.cat([kp[..., :2], torch.full_like(kp[..., 2:], 2)],
                                                                    -1), size, stride, sigma),
          "a keypoint with v = 0 (not labeled) must give an all-zero heatmap"))),
    Exercise(
        "supervised", "02_supervised_baseline",
        "supervised(heatmaps, target, weight, labeled) -> scalar: the squared error of the labeled samples' heatmaps "
        "(B, K, h, w), each keypoint's times its weight (B, K); .mean() over those samples' keypoints and pixels",
        _loss(losses.supervised, "heatmaps", "target", "weight", "labeled"), "kpsemi.method.losses.supervised",
        (Case("sample 0 labeled: keypoint 0 errors (1, 2) -> 1 + 4, keypoint 1 weight 0 -> 0, 0; mean of the 4 "
              "entries = 1.25; sample 1 unlabeled, left out",
              (torch.tensor([[[[1.0, 3]], [[5, 5]]], [[[9.0, 9]], [[9, 9]]]]),
               torch.tensor([[[[0.0, 1]], [[0, 0]]], [[[0.0, 0]], [[0, 0]]]]),
               torch.tensor([[1.0, 0], [1, 1]]), torch.tensor([True, False])), 1.25),),
        lambda g: (_randn(g, 3, 4, 8, 8), _rand(g, 3, 4, 8, 8), torch.randint(0, 2, (3, 4), generator=g).float(),
                   torch.tensor([True, False, True])),
        ((lambda h, t, w, lab: (w[..., None, None] * (h - t) ** 2).mean(),
          "use the labeled samples only (labeled[b] True), not every sample"),
         (lambda h, t, w, lab: (w[lab][..., None, None] * (h[lab] - t[lab]) ** 2).sum()
          / (w[lab].sum() * h.shape[-1] * h.shape[-2]),
          "average over all keypoints of the labeled samples, the zero-weight ones included (.mean())"))),
    Exercise(
        "embedding", "03_semantic_consistency",
        "embedding(features, heatmaps) -> (B, K, C): z_i = GMP(F ⊙ m_i) for features F (B, C, h, w) and heatmaps "
        "(B, K, h, w), where the mask m_i is heatmap i clipped at 0 and divided by its peak",
        models.keypoint_embeddings, "kpsemi.method.models.keypoint_embeddings",
        (Case("F channels [[1, 2], [3, 4]] and [[4, 3], [2, 1]], heatmap [[0, 0.25], [0.5, -1]] -> mask [[0, 0.5], "
              "[1, 0]]; F ⊙ m = [[0, 1], [3, 0]] and [[0, 1.5], [2, 0]]; maxima z = (3, 2)",
              (torch.tensor([[[[1.0, 2], [3, 4]], [[4, 3], [2, 1]]]]), torch.tensor([[[[0, 0.25], [0.5, -1]]]])),
              torch.tensor([[[3.0, 2.0]]])),),
        lambda g: (_randn(g, 2, 5, 6, 6), _randn(g, 2, 3, 6, 6)),
        ((lambda f, h: (f[:, None] * h[:, :, None]).amax(dim=(-2, -1)),
          "turn each heatmap into a mask first: clip it at 0 and divide it by its peak"),
         (lambda f, h: (f[:, None] * (h.clamp_min(0) / h.clamp_min(0).amax(dim=(-2, -1), keepdim=True))[:, :, None])
          .mean(dim=(-2, -1)), "pool with the maximum over the pixels (GMP), not the mean"))),
    Exercise(
        "sc", "03_semantic_consistency",
        "sc(logits) -> scalar: the KCN's logits (B, K, K) for every z_i, keypoint i labelled i; cross-entropy, mean "
        "over samples and keypoints",
        _loss(losses.semantic_consistency, "logits"), "kpsemi.method.losses.semantic_consistency",
        (Case("K = 2: keypoint 0 with logits (0, 0) costs ln 2, keypoint 1 with (0, ln 3) costs ln(4/3); the mean "
              "is ln(8/3) / 2 = 0.4904", (torch.tensor([[[0.0, 0.0], [0.0, math.log(3)]]]),), math.log(8 / 3) / 2),),
        lambda g: (_randn(g, 3, 4, 4) * 2,),
        ((lambda lg: F.cross_entropy(lg.reshape(-1, lg.shape[-1]), torch.arange(lg.shape[1])
                                                        .repeat(lg.shape[0]), reduction="sum"),
          "average the cross-entropy over samples and keypoints, do not sum it"),)),
    Exercise(
        "te", "04_equivariance_invariance",
        "te(heatmaps_g, unsup, H) -> scalar: mean || f(g(x)) - g(f(x)) ||^2 with heatmaps_g = f(g(x)), unsup = f(x) "
        "(B, K, h, w) and g the normalised homographies H (B, 3, 3): g(f(x)) = geometry.warp(unsup, H)",
        _loss(losses.transformation_equivariance, "heatmaps_g", "unsup", "H"),
        "kpsemi.method.losses.transformation_equivariance",
        (Case("f(x) = [1, 2, 3, 4], g one pixel to the right: g(f(x)) = [0, 1, 2, 3]; f(g(x)) = [1, 1, 2, 3] "
              "differs by 1 in one of 4 pixels: TE = 1/4", (torch.tensor([[[[1.0, 1, 2, 3]]]]), _ROW, _SHIFT), 0.25),
         Case("the same g with f(g(x)) = [0, 1, 2, 3] = g(f(x)): TE = 0",
              (torch.tensor([[[[0.0, 1, 2, 3]]]]), _ROW, _SHIFT), 0.0)),
        lambda g: (_rand(g, 2, 3, 8, 8), _rand(g, 2, 3, 8, 8), warp.random_homography(2, 0.1, 20.0, generator=g)),
        ((lambda hg, u, H: S.elt(hg, u, H),
          "warp f(x) with g (geometry.warp(unsup, H)); bringing f(g(x)) back with the inverse is ELT, not TE"),)),
    Exercise(
        "ti", "04_equivariance_invariance",
        "ti(z, z_g) -> scalar: z, z_g (B, K, C) of x and g(x); scale each z_i to unit length, sum the squared "
        "differences over the C channels, mean over samples and keypoints",
        _loss(losses.transformation_invariance, "z", "z_g"), "kpsemi.method.losses.transformation_invariance",
        (Case("z_1 = (3, 4) -> (0.6, 0.8), z'_1 = (4, 3) -> (0.8, 0.6): 0.04 + 0.04 = 0.08; z_2 = (1, 0), "
              "z'_2 = (-1, 0): 4; mean 2.04",
              (torch.tensor([[[3.0, 4.0], [1.0, 0.0]]]), torch.tensor([[[4.0, 3.0], [-1.0, 0.0]]])), 2.04),),
        lambda g: (_randn(g, 3, 4, 6), _randn(g, 3, 4, 6)),
        ((lambda z, zg: ((z - zg) ** 2).sum(-1).mean(),
          "scale each z_i to unit length first (torch.nn.functional.normalize(z, dim=-1))"),
         (lambda z, zg: ((F.normalize(z, dim=-1) - F.normalize(zg, dim=-1)) ** 2).mean(),
          "sum the squared differences over the C channels, then average over samples and keypoints"))),
    Exercise(
        "gap_closed", "05_ablation",
        "gap_closed(low, method, high) -> percent: the share of the gap between supervised at few labels (low) and "
        "at all labels (high) that the method at few labels closes; NaN when high == low",
        metrics.gap_closed, "kpsemi.method.metrics.gap_closed",
        (Case("supervised 40 at 5 %, 60 at 100 %, the method 50 at 5 %: half the gap, 50", (40.0, 50.0, 60.0), 50.0),
         Case("the method below supervised, 35: -25", (40.0, 35.0, 60.0), -25.0),
         Case("no gap (low = high = 40): NaN", (40.0, 45.0, 40.0), float("nan"))),
        lambda g: tuple((_rand(g, 3) * 100).tolist()),
        ((lambda lo, m, hi: (m - lo) / (hi - lo) if hi != lo else float("nan"), "return a percentage (x 100)"),)),
    Exercise(
        "unsup", "06_unlabeled_amount_and_gt",
        "unsup(heatmaps, target, weight, use_gt) -> (B, K, h, w): the ground-truth target where a keypoint is "
        "labeled (weight > 0) and use_gt is True, the prediction everywhere else",
        losses.unsup_heatmaps, "kpsemi.method.losses.unsup_heatmaps",
        (Case("keypoint 0 labeled, keypoint 1 not: target of 0 (all 1), prediction of 1 (all 5)",
              (torch.full((1, 2, 2, 2), 5.0), torch.ones(1, 2, 2, 2), torch.tensor([[1.0, 0.0]]), True),
              torch.stack([torch.ones(2, 2), torch.full((2, 2), 5.0)])[None]),
         Case("the same with use_gt=False: the predictions (all 5)",
              (torch.full((1, 2, 2, 2), 5.0), torch.ones(1, 2, 2, 2), torch.tensor([[1.0, 0.0]]), False),
              torch.full((1, 2, 2, 2), 5.0))),
        lambda g: (_randn(g, 2, 3, 4, 4), _rand(g, 2, 3, 4, 4), torch.randint(0, 2, (2, 3), generator=g).float(),
                   bool(torch.randint(0, 2, (1,), generator=g))),
        ((lambda h, t, w, use_gt=True: S.unsup(h, t, w, True),
          "with use_gt=False every keypoint uses the prediction"),)),
    Exercise(
        "total", "07_loss_weights",
        "total(values, weights, names) -> number: the sum over the losses in names of weights[name] x values[name]",
        _total_reference, "kpsemi.method.losses.total",
        (Case("sup 0.002 x 1000 = 2, sc 2 x 0.5 = 1, te 0.01 x 100 = 1; ti is not in names: 4",
              ({"sup": 0.002, "sc": 2.0, "te": 0.01, "ti": 5.0}, {"sup": 1e3, "sc": 0.5, "te": 1e2, "ti": 10.0},
               ("sup", "sc", "te")), 4.0),),
        lambda g: ({n: float(v) for n, v in zip(("sup", "sc", "te", "ti"), _rand(g, 4))},
                   {n: float(v) for n, v in zip(("sup", "sc", "te", "ti"), _rand(g, 4) * 1000)},
                   ("sup", "sc", "te", "ti")[:int(torch.randint(1, 5, (1,), generator=g))]),
        ((lambda values, weights, names: sum(values[n] for n in names), "multiply each loss by its weight"),
         (lambda values, weights, names: sum(weights[n] * values[n] for n in values),
          "sum only the losses named in names"))),
    Exercise(
        "elt", "08_baselines",
        "elt(heatmaps_g, unsup, H) -> scalar: mean || f(x) - g^-1(f(g(x))) ||^2, the heatmaps of g(x) brought back "
        "with the inverse homography (torch.linalg.inv(H)) and compared with f(x) = unsup",
        _loss(losses.equivariant_landmark_transformation, "heatmaps_g", "unsup", "H"),
        "kpsemi.method.losses.equivariant_landmark_transformation",
        (Case("f(x) = [1, 2, 3, 4], g one pixel right, f(g(x)) = [0, 1, 2, 3] exactly; g^-1 brings back [1, 2, 3, 0]: "
              "the 4 that left the image is lost, (4 - 0)^2 / 4 pixels = 4", (torch.tensor([[[[0.0, 1, 2, 3]]]]),
                                                                              _ROW, _SHIFT), 4.0),),
        lambda g: (_rand(g, 2, 3, 8, 8), _rand(g, 2, 3, 8, 8), warp.random_homography(2, 0.1, 20.0, generator=g)),
        ((lambda hg, u, H: S.te(hg, u, H),
          "bring f(g(x)) back with the inverse of g and compare it with f(x); warping f(x) forward is TE"),)),
    Exercise(
        "pck", "09_weak_supervision",
        "pck(pred, gt, norm, alpha) -> percent: pred (N, K, 2), gt (N, K, 3) = (x, y, v), norm (N,) the box side l; "
        "a labeled keypoint (v > 0) is correct when its distance to the truth is at most alpha x l",
        lambda pred, gt, norm, alpha=0.1: metrics.pck(pred, gt, norm, alpha).mean, "kpsemi.method.metrics.pck",
        (Case("box side 100, alpha 0.1: threshold 10 px; errors 5, 10 and 12 px: 2 of 3 labeled keypoints; an "
              "unlabeled fourth does not count: 66.67 %",
              (torch.tensor([[[55.0, 50], [26, 28], [92, 80], [3, 3]]]),
               torch.tensor([[[50.0, 50, 2], [20, 20, 2], [80, 80, 2], [0, 0, 0]]]), torch.tensor([100.0]), 0.1),
              200 / 3),),
        lambda g: (lambda gt: ((gt[..., :2] + _randn(g, 4, 5, 2) * 6), gt, _rand(g, 4) * 50 + 20, 0.1))(
            torch.cat([_rand(g, 4, 5, 2) * 64, torch.tensor([2.0, 1, 0, 2, 2]).expand(4, 5)[..., None]], -1)),
        ((lambda p, gt, n, a=0.1: 100.0 * ((torch.linalg.norm(p - gt[..., :2], dim=-1) < a * n[:, None])
                                           & (gt[..., 2] > 0)).sum() / (gt[..., 2] > 0).sum(),
          "a keypoint exactly alpha x l away is correct (<=, not <)"),
         (lambda p, gt, n, a=0.1: 100.0 * (torch.linalg.norm(p - gt[..., :2], dim=-1) <= a * n[:, None])
          .float().mean(), "count only the labeled keypoints (v > 0), above and below the fraction line")),
        atol=1e-3),
    Exercise(
        "neighbours", "10_embeddings_tsne",
        "neighbours(z, image, k) -> (P, k) indices: for each point of z (P, C) its k nearest points (Euclidean, "
        "nearest first) among the points of other images; image (P,) says which image each point is from",
        S.neighbours, "kpsemi.embeddings.analysis.neighbours (its twin in kpsemi.course.solutions)",
        (Case("1-D points 0, 1 | 3, 4 | 10, 6.5 (three images of two), k = 2: the point at 3 finds 1 (distance 2) "
              "then 0 (3), never its image-mate at 4",
              (torch.tensor([[0.0], [1.0], [3.0], [4.0], [10.0], [6.5]]), torch.tensor([0, 0, 1, 1, 2, 2]), 2),
              torch.tensor([[2, 3], [2, 3], [1, 0], [5, 1], [3, 2], [3, 2]])),),
        lambda g: (_randn(g, 24, 4), torch.arange(6).repeat_interleave(4), 3),
        ((lambda z, image, k=5: torch.cdist(z, z).fill_diagonal_(float("inf")).argsort(dim=1)[:, :k],
          "leave out every point of the query's own image, not only the query"),
         (lambda z, image, k=5: torch.cdist(z, z).argsort(dim=1)[:, :k],
          "leave out the points of the query's own image (the query itself is its own nearest point)")),
        atol=0.0),
]}
