import math

import torch

from kpsemi.method import metrics


def test_pck_by_hand():
    # two samples, three keypoints; box longer side 100 and 50 -> thresholds 10 and 5 px at alpha 0.1
    gt = torch.tensor([[[10.0, 10, 2], [50, 50, 1], [0, 0, 0]],
                       [[20.0, 20, 2], [30, 30, 2], [40, 40, 2]]])
    pred = torch.tensor([[[16.0, 18, 0], [62, 50, 0], [99, 99, 0]],      # d = 10 (hit), 12 (miss), unlabeled
                         [[23.0, 24, 0], [30, 36, 0], [40, 40, 0]]])[..., :2]  # d = 5 (hit), 6 (miss), 0 (hit)
    norm = metrics.box_norm(torch.tensor([[0, 0, 100.0, 60], [0, 0, 20, 50.0]]))
    r = metrics.pck(pred, gt, norm, alpha=0.1)
    assert r.count == 5
    assert math.isclose(r.mean, 100 * 3 / 5)
    assert r.per_keypoint[0] == 100.0 and r.per_keypoint[1] == 0.0 and r.per_keypoint[2] == 100.0


def test_pck_keypoint_never_labeled_is_nan():
    gt = torch.tensor([[[1.0, 1, 2], [0, 0, 0]]])
    r = metrics.pck(torch.tensor([[[1.0, 1], [5, 5]]]), gt, torch.tensor([10.0]))
    assert r.mean == 100.0 and math.isnan(r.per_keypoint[1])


def test_pckh_head_size_is_06_diagonal():
    head = torch.tensor([[0.0, 0, 30, 40]])      # diagonal 50 -> l = 30 -> PCKh@0.5 threshold 15 px
    gt = torch.tensor([[[100.0, 100, 2], [100, 100, 2]]])
    pred = torch.tensor([[[115.0, 100], [100, 115.5]]])
    r = metrics.pckh(pred, gt, head, alpha=0.5)
    assert r.per_keypoint == [100.0, 0.0]
    assert math.isclose(metrics.head_norm(head).item(), 30.0)


def test_swap_rate_by_hand():
    from kpsemi.method.metrics import swap_rate
    gt = torch.tensor([[[0.0, 0, 2], [10, 0, 2]], [[0.0, 0, 2], [10, 0, 2]]])
    pred = torch.tensor([[[1.0, 0], [9, 0]],        # both right
                         [[8.0, 0], [9, 0]]])       # left predicted near the right twin
    assert swap_rate(pred, gt, [(0, 1)]) == 100 * 1 / 4


def test_any_keypoint_pck_forgets_identity():
    # one sample, box side 100 -> threshold 10 px. Keypoint 0 predicted on keypoint 1 (a twin: identity miss, found),
    # keypoint 1 predicted 5 px from itself (hit), keypoint 2 predicted far from everything, keypoint 3 unlabeled.
    gt = torch.tensor([[[0.0, 0, 2], [30, 0, 2], [60, 60, 1], [35, 0, 0]]])
    pred = torch.tensor([[[31.0, 0], [34, 3], [0, 90], [0, 0]]])
    norm = torch.tensor([100.0])
    assert math.isclose(metrics.pck(pred, gt, norm).mean, 100 * 1 / 3)
    # keypoint 3 is unlabeled, so keypoint 2's prediction at (0, 90) does not count through it either
    assert math.isclose(metrics.any_keypoint_pck(pred, gt, norm), 100 * 2 / 3)


def test_wrong_keypoint_hits_and_crowding_by_hand():
    # one sample, l = 100 -> 10 px. Pair (0, 1). Keypoint 0 predicted 1 px from keypoint 1 (its twin; 31 px from its
    # own), keypoint 1 on itself, keypoint 2 12.5 px from its own and 4.5 px from keypoint 3 (another keypoint, a
    # near miss: 12.5 <= 15), keypoint 3 far from everything; keypoint 4 is unlabeled: it counts neither as a
    # prediction nor as a keypoint to land on (keypoint 1's neighbour 5 px away).
    gt = torch.tensor([[[0.0, 0, 2], [30, 0, 2], [60, 0, 2], [60, 8, 2], [30, 5, 0]]])
    pred = torch.tensor([[[31.0, 0], [30, 2], [60, 12.5], [0, 50], [0, 0]]])
    norm = torch.tensor([100.0])
    w = metrics.wrong_keypoint_hits(pred, gt, norm, [(0, 1)])
    assert math.isclose(w["total"], 50) and math.isclose(w["twin"], 25) and math.isclose(w["other"], 25)
    assert math.isclose(w["near_own"], 25)
    assert w["pairs"].keys() == {(0, 1), (2, 3)} and all(math.isclose(v, 25) for v in w["pairs"].values())
    assert math.isclose(w["total"], metrics.any_keypoint_pck(pred, gt, norm) - metrics.pck(pred, gt, norm).mean)
    # keypoints 2 and 3 are 8 px apart; 0-1 and 1-2 are 30 px; keypoint 4 is unlabeled
    assert math.isclose(metrics.crowding(gt, norm), 50)
    assert math.isclose(metrics.crowding(gt, norm, alpha=0.05), 0)


def test_twin_separation_by_hand():
    # pair (0, 1): true 30 px apart in sample 0 and 40 px in sample 1 (l = 100); predictions 0 px and 10 px apart.
    # Sample 2 has keypoint 1 unlabeled and is left out.
    gt = torch.tensor([[[0.0, 0, 2], [30, 0, 2]], [[0.0, 0, 2], [0, 40, 1]], [[0.0, 0, 2], [0, 0, 0]]])
    pred = torch.tensor([[[15.0, 0], [15, 0]], [[0.0, 0], [0, 10]], [[0.0, 0], [50, 50]]])
    p, t = metrics.twin_separation(pred, gt, torch.tensor([100.0, 100, 100]), [(0, 1)])
    assert math.isclose(p, (0.0 + 0.1) / 2) and math.isclose(t, (0.3 + 0.4) / 2)
    assert all(math.isnan(v) for v in metrics.twin_separation(pred, gt, torch.tensor([100.0] * 3), []))
