"""Each loss on inputs whose value is computed by hand."""
import math

import torch

from kpsemi.data import geometry
from kpsemi.method import heatmaps, losses, models, warp


def _out(**kw):
    base = {"labeled": torch.tensor([True])}
    base.update(kw)
    return base


def test_supervised_mse_masks_unlabeled_keypoints_and_samples():
    h = torch.zeros(2, 2, 2, 2)
    h[0, 0, 0, 0] = 1.0          # one wrong pixel on a labeled keypoint
    h[0, 1] = 5.0                # an unlabeled keypoint: ignored
    h[1] = 7.0                   # an unlabeled sample: ignored
    out = {"labeled": torch.tensor([True, False]), "heatmaps": h, "target": torch.zeros_like(h),
           "weight": torch.tensor([[1.0, 0.0], [0.0, 0.0]])}
    # mean over the labeled sample's 2 keypoints x 4 pixels: 1 / 8
    assert math.isclose(losses.supervised(out).item(), 1 / 8)
    out["labeled"] = torch.tensor([False, False])
    assert losses.supervised(out).item() == 0.0


def test_semantic_consistency_cross_entropy():
    # uniform logits over K = 2 classes: -log(1/2) for every keypoint
    out = _out(logits=torch.zeros(1, 2, 2))
    assert math.isclose(losses.semantic_consistency(out).item(), math.log(2), rel_tol=1e-6)
    # keypoint 0 classified as 0 with logits (2, 0), keypoint 1 as 1 with (0, 2): CE = log(1 + e^-2) each
    out = _out(logits=torch.tensor([[[2.0, 0.0], [0.0, 2.0]]]))
    assert math.isclose(losses.semantic_consistency(out).item(), math.log(1 + math.exp(-2)), rel_tol=1e-6)


def test_transformation_invariance_is_squared_distance_of_unit_vectors():
    # keypoint 0: z = (1, 0, 0), z' = (0, 2, 0) -> unit vectors (1, 0, 0), (0, 1, 0): distance^2 = 2
    # keypoint 1: z = (3, 0, 0), z' = (5, 0, 0) -> the same direction: 0 (a scaled z costs nothing)
    out = _out(z=torch.tensor([[[1.0, 0, 0], [3, 0, 0]]]), z_g=torch.tensor([[[0.0, 2, 0], [5, 0, 0]]]))
    assert math.isclose(losses.transformation_invariance(out).item(), (2 + 0) / 2, rel_tol=1e-6)
    # opposite directions: 4, and shrinking both z does not lower it
    for s in (1.0, 1e-3):
        out = _out(z=torch.tensor([[[s, s]]]), z_g=torch.tensor([[[-s, -s]]]))
        assert math.isclose(losses.transformation_invariance(out).item(), 4.0, rel_tol=1e-5)


def _heatmaps_of(kp, size=16):
    return heatmaps.render(kp, (size, size), stride=4, sigma=1.5)


def test_te_zero_for_an_exactly_equivariant_map_and_positive_otherwise():
    g = torch.Generator().manual_seed(0)
    kp = torch.tensor([[[20.0, 30, 2], [40, 22, 2]]])
    h = _heatmaps_of(kp)
    H = warp.random_homography(1, generator=g)
    exact = _out(unsup=h, heatmaps_g=geometry.warp(h, H), H=H)       # f(g(x)) = g(f(x)) exactly
    assert losses.transformation_equivariance(exact).item() < 1e-12
    # a map that ignores the transformation: f(g(x)) = f(x)
    lazy = _out(unsup=h, heatmaps_g=h, H=H)
    assert math.isclose(losses.transformation_equivariance(lazy).item(),
                        ((h - geometry.warp(h, H)) ** 2).mean().item(), rel_tol=1e-6)
    assert losses.transformation_equivariance(lazy).item() > 1e-4


def test_te_detached_target_passes_no_gradient_to_the_first_view():
    h = torch.zeros(1, 1, 2, 2, requires_grad=True)
    h2 = torch.zeros(1, 1, 2, 2)
    h2[0, 0, 1, 1] = 2.0
    h2.requires_grad_(True)
    for detach, grad_h in ((False, -1.0), (True, 0.0)):
        out = _out(unsup=h, heatmaps_g=h2, H=torch.eye(3)[None], te_detach=detach)
        loss = losses.transformation_equivariance(out)
        assert math.isclose(loss.item(), 4 / 4)                         # the value does not change
        gh, gh2 = torch.autograd.grad(loss, (h, h2), allow_unused=True)
        # d/dh2[1,1] of (h2 - h)^2 / 4 = 2 * 2 / 4 = 1; d/dh[1,1] = -1, or none when the target is detached
        assert gh2[0, 0, 1, 1].item() == 1.0
        assert (gh is None) if detach else gh[0, 0, 1, 1].item() == grad_h


def test_te_identity_transform_by_hand():
    h = torch.zeros(1, 1, 2, 2)
    h2 = torch.zeros(1, 1, 2, 2)
    h2[0, 0, 1, 1] = 2.0
    out = _out(unsup=h, heatmaps_g=h2, H=torch.eye(3)[None])
    assert math.isclose(losses.transformation_equivariance(out).item(), 4 / 4)


def test_elt_inverse_warp_and_its_blind_spot():
    # ELT compares f(x) with g^-1(f(g(x))); with a translation by half the image, a keypoint that g pushes out
    # of the image cannot come back, so ELT stays positive even for a perfect (equivariant) model
    kp = torch.tensor([[[50.0, 32, 2]]])                        # near the right edge of a 64-px input
    h = _heatmaps_of(kp)
    T = torch.tensor([[[1.0, 0, 1.0], [0, 1, 0], [0, 0, 1]]])     # shift right by half the width
    perfect = geometry.warp(h, T)                                    # what an equivariant model predicts on g(x)
    out = _out(unsup=h, heatmaps_g=perfect, H=T)
    assert losses.transformation_equivariance(out).item() < 1e-12
    assert math.isclose(losses.equivariant_landmark_transformation(out).item(), (h ** 2).mean().item(),
                        rel_tol=1e-5)


def test_total_weights_and_registry():
    out = _out(z=-torch.ones(1, 1, 1), z_g=torch.ones(1, 1, 1), logits=torch.zeros(1, 2, 2))
    tot, parts = losses.total(out, ["ti", "sc"], {"ti": 10.0, "sc": 0.5})
    assert math.isclose(tot.item(), 10 * 4 + 0.5 * math.log(2), rel_tol=1e-6)
    assert set(parts) == {"ti", "sc"}
    assert set(losses.LOSSES) >= {"sup", "sc", "te", "ti", "elt"}


def test_keypoint_embeddings_gmp_by_hand_and_gradients():
    F = torch.zeros(1, 2, 1, 3)
    F[0, 0, 0] = torch.tensor([1.0, 5.0, 2.0])
    F[0, 1, 0] = torch.tensor([-1.0, -2.0, 4.0])
    h = torch.tensor([[[[1.0, 0.0, 0.5]]]])                       # one keypoint
    z = models.keypoint_embeddings(F, h)
    # channel 0: max(1, 0, 1) = 1; channel 1: max(-1, 0, 2) = 2
    assert z.tolist() == [[[1.0, 2.0]]]
    # the pooling masks: negative values clipped, divided by the peak: (0.4, -0.3, 0.2) -> (1, 0, 0.5), same z
    assert models.pooling_masks(torch.tensor([[[[0.4, -0.3, 0.2]]]])).tolist() == [[[[1.0, 0.0, 0.5]]]]
    assert models.keypoint_embeddings(F, 0.4 * h - 0.3 * (h == 0)).tolist() == [[[1.0, 2.0]]]
    Fd = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    hd = torch.rand(2, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: models.keypoint_embeddings(a, b, chunk_elems=50, normalize=False),
                                    (Fd, hd))
    assert torch.autograd.gradcheck(lambda a, b: models.keypoint_embeddings(a, b, chunk_elems=50), (Fd, hd))
    ref = (Fd[:, None] * hd[:, :, None]).flatten(3).amax(-1)
    assert torch.allclose(models.keypoint_embeddings(Fd, hd, normalize=False), ref)
    ref = (Fd[:, None] * (hd / hd.amax((-2, -1), keepdim=True))[:, :, None]).flatten(3).amax(-1)
    assert torch.allclose(models.keypoint_embeddings(Fd, hd), ref)


def test_kcn_is_small():
    for k in (10, 14, 16, 17):
        kcn = models.KCN(k)
        assert sum(p.numel() for p in kcn.parameters()) < 1000
        assert kcn(torch.zeros(3, k, 64)).shape == (3, k, k)
