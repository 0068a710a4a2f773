"""Weakly supervised keypoints: occlusion and guided backprop against captum, NMS and Foerstner on hand-made
maps and images, matching / baselines on hand-computable cases, and one tiny end-to-end run."""
import math
import warnings

import pytest
import torch
import torch.nn as nn

from kpsemi.weak import classifier, peaks, saliency, pipeline as weak
from kpsemi.errors import UserError


def small_net(seed=0, classes=5):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, stride=2, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 16), nn.ReLU(),
                         nn.Linear(16, classes)).eval()


# ---- occlusion --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size,patch,stride", [(12, 4, 2), (13, 4, 3), (16, 6, 6)])
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_occlusion_equals_captum_with_a_constant_fill(size, patch, stride):
    from captum.attr import Occlusion
    net = small_net()
    x = torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(1))
    ours, drops, target = saliency.occlusion(net, x, patch=patch, stride=stride, fill=0.3, clamp=False,
                                             batch_size=7)
    ref = Occlusion(lambda z: net(z).softmax(1)).attribute(x, sliding_window_shapes=(3, patch, patch),
                                                           strides=(3, stride, stride), baselines=0.3,
                                                           target=target)
    assert torch.equal(target, net(x).argmax(1))
    n = len(saliency.window_offsets(size, patch, stride))
    assert drops.shape == (3, n, n)
    torch.testing.assert_close(ours, ref[:, 0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(ref[:, 0], ref[:, 2])                    # captum's window spans the channels
    # a baseline image as the fill, as captum's `baselines` tensor
    base = torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(2))
    ours_b, _, _ = saliency.occlusion(net, x, target, patch, stride, fill=base, clamp=False)
    ref_b = Occlusion(lambda z: net(z).softmax(1)).attribute(x, sliding_window_shapes=(3, patch, patch),
                                                             strides=(3, stride, stride), baselines=base,
                                                             target=target)
    torch.testing.assert_close(ours_b, ref_b[:, 0], atol=1e-6, rtol=1e-5)


class SquareDetector(nn.Module):
    """Class 0's logit is 20 x the mean brightness of the square rows 8-11, columns 4-7; class 1's is 5."""

    def forward(self, x):
        s = x[:, :, 8:12, 4:8].mean((1, 2, 3))
        return torch.stack([20 * s, torch.full_like(s, 5.0)], 1)


def test_occlusion_finds_the_discriminative_region_and_clamps():
    x = torch.ones(1, 3, 16, 16)
    maps, drops, target = saliency.occlusion(SquareDetector(), x, patch=4, stride=4, fill=0.0)
    assert target.tolist() == [0]
    # 4 x 4 windows at stride 4: only the window (row 2, column 1) covers the square; covering it sets the
    # logits to (0, 5): the drop is sigmoid(15) - sigmoid(-5)
    expect = torch.zeros(4, 4)
    expect[2, 1] = torch.sigmoid(torch.tensor(15.0)) - torch.sigmoid(torch.tensor(-5.0))
    torch.testing.assert_close(drops[0], expect)
    assert maps[0, 8:12, 4:8].allclose(expect[2, 1]) and maps[0].sum().item() == pytest.approx(16 * expect[2, 1])
    # a brighter fill only raises class 0's probability: every drop is negative, so the clamped map is zero
    x = torch.full((1, 3, 16, 16), 0.5)
    maps, drops, _ = saliency.occlusion(SquareDetector(), x, target=0, patch=4, stride=4, fill=1.0)
    assert maps.abs().max() == 0 and drops.abs().max() == 0
    _, raw, _ = saliency.occlusion(SquareDetector(), x, target=0, patch=4, stride=4, fill=1.0, clamp=False)
    assert raw[0, 2, 1] < 0 and (raw[0].flatten() != 0).sum() == 1


def test_occlusion_random_fill_is_seeded():
    net, x = small_net(), torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    a = saliency.occlusion(net, x, patch=4, stride=2, generator=torch.Generator().manual_seed(5))[0]
    b = saliency.occlusion(net, x, patch=4, stride=2, generator=torch.Generator().manual_seed(5))[0]
    c = saliency.occlusion(net, x, patch=4, stride=2, fill=0.5)[0]
    assert torch.equal(a, b) and not torch.allclose(a, c) and a.min() >= 0


def test_occlusion_and_gradients_run_in_eval_mode():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    net.train()
    a = saliency.occlusion(net, x, patch=4, stride=2, fill=0.0)[0]
    g = saliency.guided_backprop(net, x)[0]
    assert net.training                                           # restored
    net.eval()
    assert torch.equal(a, saliency.occlusion(net, x, patch=4, stride=2, fill=0.0)[0])
    assert torch.equal(g, saliency.guided_backprop(net, x)[0])


def test_occlusion_bad_input():
    with pytest.raises(UserError, match="patch 20"):
        saliency.occlusion(small_net(), torch.rand(1, 3, 12, 12), patch=20, stride=4)
    with pytest.raises(UserError, match="fill"):
        saliency.occlusion(small_net(), torch.rand(1, 3, 12, 12), patch=4, stride=4, fill="grey")


# ---- guided backprop --------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::UserWarning")   # captum: "Setting backward hooks on ReLU activations"
def test_guided_backprop_equals_captum():
    from captum.attr import GuidedBackprop
    net = small_net(3)
    x = torch.rand(4, 3, 10, 10, generator=torch.Generator().manual_seed(3))
    ours, target = saliency.guided_backprop(net, x)
    ref = GuidedBackprop(net).attribute(x, target=target)
    torch.testing.assert_close(ours, ref, atol=1e-7, rtol=1e-5)
    plain = torch.autograd.functional.jacobian(lambda z: net(z)[0, target[0]], x[:1])[0]
    assert not torch.allclose(ours[:1], plain, atol=1e-6)              # the guidance changes the gradient
    assert all(type(m) is not saliency.GuidedReLU for m in net.modules())  # modules restored


def test_guided_backprop_by_hand():
    """y = w2 . relu(W1 x): the guided gradient is W1^T [(W1 x > 0) (w2 > 0) w2], the plain one W1^T [(W1 x > 0) w2]."""
    lin1, lin2 = nn.Linear(3, 4, bias=False), nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        lin1.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]]))
        lin2.weight.copy_(torch.tensor([[2.0, -3.0, 4.0, 1.0]]))
    net = nn.Sequential(lin1, nn.ReLU(), lin2)
    x = torch.tensor([[1.0, 2.0, -1.0]])          # W1 x = (1, 2, -1, 2): unit 3 is off, unit 2 has w2 < 0
    g, _ = saliency.guided_backprop(net, x, target=0)
    assert g.tolist() == [[2.0 + 1.0, 1.0, 1.0]]                      # units 1 and 4 pass
    plain, _ = saliency.input_gradient(net, x, target=0)
    assert plain.tolist() == [[3.0, -2.0, 1.0]]


class Reused(nn.Module):
    """One ReLU module called twice (as torchvision's ResNet BasicBlock does)."""

    def __init__(self, twin=False):
        super().__init__()
        torch.manual_seed(4)
        self.a, self.b, self.fc = nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 3)
        self.relu = nn.ReLU()
        self.relu2 = nn.ReLU() if twin else self.relu

    def forward(self, x):
        return self.fc(self.relu2(self.b(self.relu(self.a(x)))))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_guided_backprop_guides_a_reused_relu_module():
    from captum.attr import GuidedBackprop
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(0))
    ours, target = saliency.guided_backprop(Reused(), x)
    ref = GuidedBackprop(Reused(twin=True)).attribute(x, target=target)   # distinct modules: captum's case
    torch.testing.assert_close(ours, ref)


def test_guided_backprop_bad_input():
    with pytest.raises(UserError, match="no nn.ReLU"):
        saliency.guided_backprop(nn.Sequential(nn.Flatten(), nn.Linear(12, 2)), torch.rand(1, 3, 2, 2))
    with pytest.raises(UserError, match="score"):
        saliency.guided_backprop(small_net(), torch.rand(1, 3, 8, 8), score="softmax")


def test_gradient_map_and_normalise():
    g = torch.zeros(1, 3, 5, 5)
    g[0, 1, 2, 2], g[0, 0, 2, 2] = -6.0, 3.0
    m = saliency.box_filter(saliency.gradient_map(g), 3)
    assert m[0, 2, 2] == pytest.approx(6 / 9) and m[0, 0, 0] == 0 and m[0, 1, 1] == pytest.approx(6 / 9)
    assert m[0, 0, 1] == pytest.approx(0) and m[0, 1, 3] == pytest.approx(6 / 9)
    n = saliency.normalise(torch.tensor([[[1.0, 2.0], [4.0, 0.0]]]))
    assert n.tolist() == [[[0.25, 0.5], [1.0, 0.0]]]


# ---- NMS and Foerstner ------------------------------------------------------------------------------------------
def test_nms_by_hand():
    s = torch.zeros(2, 8, 10)
    s[0, 2, 3], s[0, 5, 7], s[0, 5, 8], s[0, 6, 1] = 1.0, 0.5, 0.4, 0.7
    xy, value, valid = peaks.nms(s, radius=1, max_peaks=5)
    assert valid[0].tolist() == [True, True, True, False, False] and not valid[1].any()   # a flat map: no peak
    assert xy[0, :3].tolist() == [[3.5, 2.5], [1.5, 6.5], [7.5, 5.5]]                    # (0.4 is suppressed)
    assert value[0, :3].tolist() == pytest.approx([1.0, 0.7, 0.5])
    _, _, valid2 = peaks.nms(s, radius=4, max_peaks=5)             # 0.7 and 0.5 lie in 1.0's 9 x 9 window
    assert valid2[0].tolist() == [True, False, False, False, False]
    plateau = torch.zeros(1, 12, 12)
    plateau[0, 4:8, 4:8] = 1.0                                      # a 4 x 4 block of equal maxima
    plateau[0, 10, 10] = 0.5
    xy, value, valid3 = peaks.nms(plateau, radius=4, max_peaks=5)  # ties thinned by box NMS: one peak left
    assert valid3.tolist() == [[True, False, False, False, False]] and value[0, 0] == 1.0
    assert 4 <= xy[0, 0, 0] <= 8 and 4 <= xy[0, 0, 1] <= 8
    assert peaks.keep_top(valid[:1], 0.4).tolist() == [[True, True, False, False, False]]
    with pytest.raises(UserError):
        peaks.keep_top(valid, 0.0)


def quadrant(cx, cy, size=24, ss=16):
    """Area-sampled image of the quadrant x > cx, y > cy (a corner at (cx, cy) in continuous pixels)."""
    t = (torch.arange(size * ss, dtype=torch.float64) + 0.5) / ss
    inside = (t[None, :] > cx).double() * (t[:, None] > cy).double()
    return inside.view(size, ss, size, ss).mean((1, 3))


@pytest.mark.parametrize("cx,cy", [(10.3, 12.7), (11.5, 11.5), (9.9, 10.2)])
def test_forstner_finds_a_subpixel_corner(cx, cy):
    start = torch.tensor([[[cx + 0.7, cy - 0.6]]])
    out, ok = peaks.forstner(quadrant(cx, cy)[None], start, radius=2)
    err = (out[0, 0] - torch.tensor([cx, cy])).norm().item()
    assert ok.item() and err < 0.2 < (start[0, 0] - torch.tensor([cx, cy])).norm().item()


def test_forstner_blob_centre_and_guards():
    t = torch.arange(24.0) + 0.5
    blob = torch.exp(-((t[None, :] - 10.3) ** 2 + (t[:, None] - 12.7) ** 2) / (2 * 2.0 ** 2))
    out, ok = peaks.forstner(blob[None], torch.tensor([[[11.2, 12.1]]]), radius=3, mode="blob")
    assert ok.item() and out[0, 0].tolist() == pytest.approx([10.3, 12.7], abs=0.01)
    edge = (torch.arange(24.0)[None, :] > 10).double().expand(24, 24)      # a straight edge: A is singular
    flat = torch.zeros(24, 24)
    p = torch.tensor([[[10.5, 12.5]], [[3.2, 4.7]]])
    out, ok = peaks.forstner(torch.stack([edge.float(), flat]), p, radius=2)
    assert not ok.any() and torch.equal(out, p)
    out, ok = peaks.forstner(quadrant(10.3, 12.7)[None], torch.tensor([[[11.0, 12.0]]]),
                             valid=torch.tensor([[False]]))
    assert not ok.any() and out.tolist() == [[[11.0, 12.0]]]


# ---- confidence, matching, baselines ----------------------------------------------------------------------------
def test_log_likelihood_formula():
    cfg = weak.get_config("smoke", lam=0.25, sharpness=4.0, tau_occ=0.25, tau_gbp=0.5, gbp_quantile=1.0)
    occ = torch.tensor([[[0.0, 2.0], [1.0, 2.0]]])                           # O^ = 0, 1, 0.5, 1
    gbp = torch.tensor([[[4.0, 0.0], [2.0, 4.0]]])                           # G^ = 1, 0, 0.5, 1
    ll = weak.log_likelihood(occ, gbp, cfg)

    def f(o, g):
        return (0.25 * math.log(1 / (1 + math.exp(-4 * (o - 0.25))))
                + 0.75 * math.log(1 / (1 + math.exp(-4 * (g - 0.5)))))
    assert ll[0].flatten().tolist() == pytest.approx([f(0, 1), f(1, 0), f(0.5, 0.5), f(1, 1)])


def test_match_by_hand():
    gt = torch.tensor([[[10.0, 10, 2], [30, 30, 2], [50, 50, 1], [0, 0, 0]]])
    xy = torch.tensor([[[12.0, 10], [50, 50], [30, 45], [11, 11]]])
    keep = torch.tensor([[True, True, True, False]])
    ok, nearest, gt_ok = weak.match(xy, keep, gt, torch.tensor([100.0]), alpha=0.1)
    assert ok.tolist() == [[True, False, False, False]]      # (50, 50) is hidden; (30, 45) is 15 px away
    assert nearest.tolist() == [[0, -1, -1, -1]] and gt_ok.tolist() == [[True, False, False, False]]
    ok, nearest, _ = weak.match(xy, keep, gt, torch.tensor([160.0]), alpha=0.1)
    assert ok.tolist() == [[True, False, True, False]] and nearest.tolist() == [[0, -1, 1, -1]]


def test_score_by_hand():
    from kpsemi.data.crops import KeypointData
    from kpsemi.data.records import Meta
    meta = Meta("toy", ["a", "b", "c"], classes=["x", "y"])
    kp = torch.tensor([[[2.0, 2, 2], [10, 10, 2], [15, 15, 1]], [[5.0, 5, 2], [0, 0, 0], [12, 3, 2]]])
    data = KeypointData(meta, torch.zeros(2, 3, 20, 20, dtype=torch.uint8), kp, torch.tensor([[0.0, 0, 20, 20]] * 2),
                        torch.tensor([20.0, 20.0]), torch.tensor([1, 0]), torch.zeros(2, 0, dtype=torch.long),
                        torch.ones(2, dtype=torch.bool), torch.eye(3, dtype=torch.float64).repeat(2, 1, 1),
                        ["0", "1"], ["", ""])
    xy = torch.tensor([[[2.5, 2.0], [10, 11], [15, 15]], [[5, 6], [12, 3.5], [0, 0]]])
    det = {"xy": xy, "peaks": xy + 3, "keep": torch.ones(2, 3, dtype=torch.bool),
           "refined": torch.tensor([[True, True, False], [True, False, False]])}
    m, extra = weak.score(det, data, weak.get_config("smoke", alpha=0.1, random_draws=3))
    # threshold 0.1 * 20 = 2 px: hits a, b in image 0 ((15, 15) is hidden), a, c in image 1 ((0, 0): v = 0)
    assert m["precision"] == pytest.approx(400 / 6) and m["recall"] == 100.0
    assert m["precision_unrefined"] == 0.0 and m["refined_share"] == 50.0 and m["detections_per_image"] == 3
    assert extra["histogram"].tolist() == [[1, 0, 1], [1, 1, 0]]
    assert m["salient"] == {"x": "a", "y": "a"} and m["salient_share"] == {"x": 50.0, "y": 50.0}
    assert 0 <= m["random_precision"] <= 100 and 0 <= m["random_recall_crop"] <= 100


def test_random_points_lie_in_the_box():
    keep = torch.ones(3, 5, dtype=torch.bool)
    boxes = torch.tensor([[0.0, 0, 10, 10], [5, 6, 2, 30], [20, 10, 1, 1]])
    p = weak.random_points(keep, boxes, draws=50, generator=torch.Generator().manual_seed(0))
    assert p.shape == (50, 3, 5, 2)
    lo, hi = boxes[None, :, None, :2].double(), (boxes[:, :2] + boxes[:, 2:])[None, :, None].double()
    assert ((p >= lo) & (p <= hi)).all()
    assert p[:, 1, :, 1].mean().item() == pytest.approx(21, abs=1.5)       # uniform: the mean is the centre


# ---- classifier, config, end to end -----------------------------------------------------------------------------
def test_config_and_arch_errors():
    with pytest.raises(UserError, match="unknown weak"):
        weak.get_config("smoke", nonsense=1)
    with pytest.raises(UserError, match="preset"):
        weak.get_config("huge")
    with pytest.raises(UserError, match="alexnet"):
        classifier.Classifier("alexnet", 8)
    assert weak.get_config("paper").arch == "vgg19" and weak.get_config("paper").patch == 16


def test_missing_imagenet_weights_warn_and_fall_back(monkeypatch):
    import torchvision

    def offline(name):
        raise OSError("no network")
    monkeypatch.setattr(torchvision.models, "get_model_weights", offline)
    with pytest.warns(UserWarning, match="could not be had.*random initialisation"):
        m = classifier.Classifier("resnet18", 8, pretrained=True)
    assert m(torch.rand(2, 3, 32, 32)).shape == (2, 8)


def test_classifier_roundtrip(tmp_path):
    cfg = weak.get_config("smoke")
    m = classifier.Classifier(cfg.arch, 8).eval()
    classifier.save(m, cfg, str(tmp_path / "c.pt"))
    m2, c, history = classifier.load(str(tmp_path / "c.pt"))
    x = torch.rand(2, 3, 32, 32)
    assert c["arch"] == "vgg_small" and history == [] and torch.equal(m(x), m2(x))


def test_run_smoke_end_to_end(tmp_path):
    cfg = weak.get_config("smoke", steps=6, eval_every=3, eval_images=6, random_draws=2, detect_batch=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                       # no fallback warning: smoke asks for no weights
        m = weak.run(cfg, str(tmp_path), progress=False)
    assert 0 <= m["classifier_accuracy"] <= 100 and len(m["train_history"]) == 2
    for k in ("precision", "recall", "random_precision", "random_recall", "precision_unrefined"):
        assert 0 <= m[k] <= 100, k
    assert 0 < m["detections_per_image"] <= math.ceil(cfg.keep * cfg.max_peaks)
    assert set(m["salient"]) <= set(weak.data.load_records("synthetic", "test", synth_size="smoke")[0].classes)
    assert (tmp_path / "salient.md").exists() and (tmp_path / "metrics.json").exists()
    again = weak.run(cfg, str(tmp_path), progress=False)     # the classifier is reused, results identical
    assert again["classifier_reused"] and not m["classifier_reused"]
    assert again["train_history"] == m["train_history"] and again["precision"] == m["precision"]
