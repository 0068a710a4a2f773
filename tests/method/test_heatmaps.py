import math

import torch

from kpsemi.method import heatmaps


def test_render_peak_and_values():
    # keypoint at input pixel (10, 6) with stride 4 -> heatmap position (2.5, 1.5) -> centred on index (2, 1)
    kp = torch.tensor([[[10.0, 6.0, 2.0], [3.0, 3.0, 0.0]]])
    hm = heatmaps.render(kp, (8, 8), stride=4, sigma=2.0)
    assert hm.shape == (1, 2, 8, 8)
    assert hm[0, 0, 1, 2] == 1.0 and hm[0, 0].argmax() == 1 * 8 + 2
    # one pixel away along x: exp(-1 / (2 * 4))
    assert math.isclose(hm[0, 0, 1, 3].item(), math.exp(-1 / 8), rel_tol=1e-6)
    # one pixel diagonally: exp(-2 / 8)
    assert math.isclose(hm[0, 0, 2, 3].item(), math.exp(-2 / 8), rel_tol=1e-6)
    assert hm[0, 1].abs().sum() == 0  # not labeled -> empty target


def test_weights_mask_unlabeled_and_optionally_hidden():
    kp = torch.tensor([[[1.0, 1, 2], [1, 1, 1], [0, 0, 0]]])
    assert heatmaps.weights(kp).tolist() == [[1.0, 1.0, 0.0]]
    assert heatmaps.weights(kp, visible_only=True).tolist() == [[1.0, 0.0, 0.0]]


def test_decode_is_subpixel_exact_on_gaussians():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(4, 5, 2, generator=g) * 200 + 20  # input pixels, 256 input -> 64 heatmap
    kp = torch.cat([xy, torch.full((4, 5, 1), 2.0)], -1).double()
    hm = heatmaps.render(kp, (64, 64), stride=4, sigma=2.0)
    pred, score = heatmaps.decode(hm, stride=4)
    assert torch.allclose(pred, xy.double(), atol=1e-3)
    assert torch.allclose(score, torch.ones_like(score), atol=0.1)


def test_decode_plain_argmax_case():
    hm = torch.zeros(1, 1, 4, 4)
    hm[0, 0, 2, 1] = 1.0  # isolated peak: no neighbour information -> pixel centre
    pred, score = heatmaps.decode(hm, stride=4)
    assert pred.tolist() == [[[6.0, 10.0]]] and score.item() == 1.0


def test_soft_argmax_matches_peak():
    kp = torch.tensor([[[30.0, 42.0, 2.0]]])
    hm = heatmaps.render(kp, (16, 16), stride=4, sigma=1.0)
    xy = heatmaps.soft_argmax(hm, stride=4, beta=50.0)
    assert torch.allclose(xy, kp[..., :2], atol=0.05)
