"""The networks: the heatmap layer can represent K different heatmaps for every backbone (the rank bound)."""
import pytest
import torch

from kpsemi.method import models


@pytest.mark.parametrize("backbone", ["hrnet_tiny", "hrnet_mini", "hrnet_w18_small", "hrnet_w32"])
def test_heatmap_layer_sees_at_least_max_64_k_channels_and_outputs_rank_k(backbone):
    torch.manual_seed(0)
    for K in (16, 17, 68):
        m = models.KeypointModel(K, backbone, pretrained=False).double()   # float64: ranks without noise
        head = m.kln.head
        assert head.out_channels == K and head.in_channels >= max(64, K), (backbone, K, head.in_channels)
        with torch.no_grad():
            out = m(torch.rand(2, 3, 64, 64, dtype=torch.float64))
        hm, feats = out["heatmaps"], out["features"]
        assert hm.shape == (2, K, 16, 16) and feats.shape == (2, 64, 16, 16)
        # the K heatmap values of all pixels span K dimensions: no keypoint is a mixture of the others
        per_pixel = hm.permute(0, 2, 3, 1).reshape(-1, K)                            # (B * h * w, K)
        assert torch.linalg.matrix_rank(per_pixel - per_pixel.mean(0)).item() == K, (backbone, K)
        if backbone != "hrnet_tiny":
            return  # the wide backbones: one K is enough to check the shapes, the three Ks ran on the tiny one


def test_hrnet_pose_head_width_would_cap_the_rank():
    # the bound the neck removes: a 1x1 conv from C < K channels gives per-pixel heatmaps of rank C
    conv = torch.nn.Conv2d(8, 16, 1).double()
    x = torch.rand(2, 8, 16, 16, dtype=torch.float64)
    per_pixel = conv(x).detach().permute(0, 2, 3, 1).reshape(-1, 16)
    assert torch.linalg.matrix_rank(per_pixel - per_pixel.mean(0)).item() == 8


def test_hrnet_head_option_reads_branch_0():
    m = models.KeypointModel(16, "hrnet_tiny", head_channels=0)
    assert m.kln.neck is None and m.kln.head.in_channels == m.kln.tap_channels[-1] == 8
    assert m(torch.rand(1, 3, 64, 64))["heatmaps"].shape == (1, 16, 16, 16)
