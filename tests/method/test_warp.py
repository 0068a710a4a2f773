import torch

from kpsemi.data import geometry
from kpsemi.method import heatmaps, warp


def test_identity_and_inverse_roundtrip():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, 32, 32, generator=g)
    I = torch.eye(3).repeat(3, 1, 1)
    assert torch.allclose(geometry.warp(x, I), x, atol=1e-5)
    H = warp.random_homography(3, generator=g)
    pts = torch.rand(3, 7, 2, generator=g) * 2 - 1
    back = geometry.apply(torch.linalg.inv(H), geometry.apply(H, pts))
    assert torch.allclose(back, pts, atol=1e-5)


def test_homography_maps_corners_and_stays_bounded():
    g = torch.Generator().manual_seed(1)
    H = warp.random_homography(500, corner=0.1, rotation=0, scale=(1, 1), translate=0, generator=g)
    corners = torch.tensor([[-1.0, -1], [1, -1], [1, 1], [-1, 1]]).expand(500, 4, 2)
    moved = geometry.apply(H, corners)
    # each corner moves by at most corner * side = 0.1 * 2 in normalised units
    assert (moved - corners).abs().max() <= 0.2 + 1e-4
    # no fold-over: the warped quadrilateral stays convex with positive orientation
    q = torch.cat([moved, moved[:, :1]], 1)
    e = q[:, 1:] - q[:, :-1]
    cross = e[:, :, 0] * e[:, [1, 2, 3, 0], 1] - e[:, :, 1] * e[:, [1, 2, 3, 0], 0]
    assert (cross > 0).all()


def test_translation_moves_image_and_points_by_the_same_pixels():
    img = torch.zeros(1, 1, 16, 16)
    img[0, 0, 5, 3] = 1.0
    T = torch.tensor([[[1.0, 0, 4 / 16 * 2], [0, 1, 0], [0, 0, 1]]])  # +4 pixels in x
    out = geometry.warp(img, T, mode="nearest")
    assert out[0, 0, 5, 7] == 1.0 and out.sum() == 1.0
    kp = torch.tensor([[[3.5, 5.5, 2.0]]])
    assert geometry.warp_points(kp, T, (16, 16)).tolist() == [[[7.5, 5.5, 2.0]]]


def test_points_warp_agrees_with_heatmap_warp_within_a_pixel():
    """Warping keypoints == warping their rendered heatmaps and decoding (256 input, 64 heatmaps)."""
    g = torch.Generator().manual_seed(2)
    B, K = 16, 6
    xy = torch.rand(B, K, 2, generator=g) * 128 + 64
    kp = torch.cat([xy, torch.full((B, K, 1), 2.0)], -1)
    H = warp.random_homography(B, corner=0.1, rotation=25, generator=g)
    hm = heatmaps.render(kp, (64, 64), stride=4, sigma=2.0)
    warped_hm = geometry.warp(hm, H)
    dec, score = heatmaps.decode(warped_hm, stride=4)
    moved = geometry.warp_points(kp, H, (256, 256))
    ok = moved[..., 2] > 0
    err = (dec - moved[..., :2]).norm(dim=-1)[ok]
    assert ok.float().mean() > 0.9
    assert err.max() < 1.0, err.max()


def test_warp_on_other_device_and_dtype_if_available():
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    g = torch.Generator(device=dev).manual_seed(0)
    H = warp.random_homography(4, generator=g, device=dev)
    yy, xx = torch.meshgrid(torch.arange(32.0, device=dev), torch.arange(32.0, device=dev), indexing="ij")
    x = torch.stack([torch.sin(xx / 5), torch.cos(yy / 4), torch.sin((xx + yy) / 6)]).expand(4, 3, 32, 32)
    y = geometry.warp(x, H)
    assert y.device.type == dev and y.shape == x.shape
    back = geometry.warp(y, torch.linalg.inv(H))  # the inverse warp brings smooth content back
    centre = (slice(None), slice(None), slice(10, 22), slice(10, 22))
    assert (back[centre] - x[centre]).abs().max() < 0.05


def test_affine_flip_and_keypoint_swap():
    g = torch.Generator().manual_seed(0)
    H, flipped = warp.random_affine(64, rotation=0, scale=(1, 1), translate=0, flip=0.5, generator=g)
    assert 0 < flipped.sum() < 64
    kp = torch.tensor([[[4.5, 8.0, 2.0], [11.5, 8.0, 2.0]]]).repeat(64, 1, 1)  # a left/right pair
    moved = warp.flip_keypoints(geometry.warp_points(kp, H, (16, 16)), flipped, [1, 0])
    f = flipped.nonzero()[0, 0]
    # flipped: x -> 16 - x, then channels swap, so the "left" point is again on the left
    assert moved[f].tolist() == [[4.5, 8.0, 2.0], [11.5, 8.0, 2.0]]
    nf = (~flipped).nonzero()[0, 0]
    assert moved[nf].tolist() == kp[0].tolist()


def test_points_leaving_the_image_become_unlabeled():
    T = torch.tensor([[[1.0, 0, 1.5], [0, 1, 0], [0, 0, 1]]])  # shift right by 3/4 of the width
    kp = torch.tensor([[[2.0, 2, 2], [14.0, 2, 1], [5.0, 5, 0]]])
    out = geometry.warp_points(kp, T, (16, 16))
    assert out[0, 0].tolist() == [14.0, 2.0, 2.0]
    assert out[0, 1].tolist() == [0.0, 0.0, 0.0] and out[0, 2, 2] == 0
