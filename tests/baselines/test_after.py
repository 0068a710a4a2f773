"""The methods after the paper (mean_teacher, dual, consistency): their losses and views on hand-computed cases, the
exact EMA update, warm starts, exact resume, and the rows of Table 1."""
import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
import torch.nn as nn

from kpsemi import config, runs
from kpsemi.baselines import TRAINERS, views
from kpsemi.baselines import losses as baseline_losses
from kpsemi.baselines.mean_teacher import MeanTeacherTrainer, ema_update
from kpsemi.errors import UserError
from kpsemi.method import heatmaps, losses
from kpsemi.method.models import MEAN

SHIFT_ONE_PIXEL = torch.tensor([[[1.0, 0.0, 0.5], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])   # +1 pixel in x on 4 x 4


def _teacher():
    t = torch.zeros(1, 1, 4, 4)
    t[0, 0, 1, 1], t[0, 0, 2, 1] = 1.0, 0.5
    return t.requires_grad_()


def test_teacher_target_after_a_known_warp_by_hand():
    """H moves a 4 x 4 heatmap one pixel to the right (0.5 in normalised units): the teacher's peaks at column 1
    land at column 2, and column 0, which comes from outside the weak view, has no target."""
    teacher = _teacher()
    target, valid = views.to_frame(teacher, SHIFT_ONE_PIXEL)
    expected = torch.zeros(1, 1, 4, 4)
    expected[0, 0, 1, 2], expected[0, 0, 2, 2] = 1.0, 0.5
    assert torch.allclose(target, expected, atol=1e-6)
    assert valid[0, 0, :, 0].tolist() == [0.0] * 4 and valid[0, 0, :, 1:].eq(1).all()
    student = torch.zeros(1, 1, 4, 4)
    student[0, 0, 1, 2], student[0, 0, 2, 2] = 0.75, 0.5     # errors 0.25 and 0
    student[0, 0, 0, 0] = 0.5                                # in column 0: no target, not counted
    student[0, 0, 3, 3] = 0.5                                # error 0.5
    student.requires_grad_()
    out = {"unl": student, "unl_target": target, "unl_valid": valid}
    loss = baseline_losses.teacher_consistency(out)
    assert loss.item() == pytest.approx((0.25 ** 2 + 0.5 ** 2) / 12, abs=1e-7)     # 12 pixels have a target
    loss.backward()
    assert teacher.grad is None and student.grad[0, 0, 0, 0] == 0      # the teacher teaches; masked pixels are free
    assert student.grad[0, 0, 3, 3].item() == pytest.approx(2 * 0.5 / 12)


def test_view_consistency_passes_gradient_to_both_views():
    a, b = _teacher(), torch.zeros(1, 1, 4, 4, requires_grad=True)
    moved, valid = views.to_frame(b, torch.eye(3)[None])
    loss = baseline_losses.view_consistency({"unl": a, "unl_target": moved, "unl_valid": valid})
    assert loss.item() == pytest.approx((1.0 + 0.25) / 16)
    loss.backward()
    assert a.grad[0, 0, 1, 1].item() == pytest.approx(2 / 16) and b.grad[0, 0, 1, 1].item() == pytest.approx(-2 / 16)


def test_ema_update_is_exact():
    torch.manual_seed(0)
    student, teacher = (nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)) for _ in range(2))
    student(torch.randn(5, 3))                                  # running statistics and the batch counter move
    with torch.no_grad():                                       # a case by hand: 0.75 * 1 + 0.25 * 3 = 1.5
        teacher[0].bias.fill_(1.0)
        student[0].bias.fill_(3.0)
    t0 = {k: v.clone() for k, v in teacher.state_dict().items()}
    s0 = {k: v.clone() for k, v in student.state_dict().items()}
    ema_update(teacher, student, 0.75)
    t1 = teacher.state_dict()
    assert t1["0.bias"].tolist() == [1.5] * 4
    for k, v in t1.items():
        if v.is_floating_point():
            assert torch.equal(v, 0.75 * t0[k] + (1 - 0.75) * s0[k]), k            # to the last bit
        else:
            assert torch.equal(v, s0[k]) and int(v) == 1, k                        # the batch counter is copied
    assert all(torch.equal(v, s0[k]) for k, v in student.state_dict().items())     # the student is untouched
    decay = 0.99
    t0 = {k: v.clone() for k, v in teacher.state_dict().items()}
    ema_update(teacher, student, decay)
    assert all(torch.equal(v, decay * t0[k] + (1 - decay) * s0[k]) for k, v in teacher.state_dict().items()
               if v.is_floating_point())


def test_joint_cutout_by_hand():
    x = torch.ones(1, 3, 8, 8)
    out = views.joint_cutout(x, torch.tensor([[[2.0, 3.0], [-1e6, -1e6]]]), side=2)
    # pixel centres within 1 of (2, 3): columns 1, 2 (centres 1.5, 2.5) and rows 2, 3; the far centre cuts nothing
    cut = torch.zeros(8, 8, dtype=torch.bool)
    cut[2:4, 1:3] = True
    assert torch.equal(out[0, :, cut], torch.tensor(MEAN)[:, None].expand(3, 4))
    assert out[0, :, ~cut].eq(1).all()


def test_cutout_centres_are_the_teachers_keypoints_in_the_hard_frame():
    kp = torch.tensor([[[10.0, 22.0, 2.0], [56.0, 30.0, 2.0]]])
    easy = heatmaps.render(kp, (16, 16), stride=4, sigma=1.0)
    g = torch.Generator().manual_seed(0)
    same = views.cutout_centres(easy, torch.eye(3)[None], 2, 4, g)
    assert torch.allclose(same[0].sort(0).values, kp[0, :, :2].sort(0).values, atol=1e-3)
    moved = views.cutout_centres(easy, SHIFT_ONE_PIXEL, 2, 4, g)
    # +0.5 normalised = 16 px at 64 px: (10, 22) -> (26, 22); (56, 30) -> (72, 30) leaves the crop: far away
    assert sorted(moved[0].tolist()) == [[-1e6, -1e6], pytest.approx([26.0, 22.0], abs=1e-3)]


def test_jitter_stays_in_range_and_strength_zero_keeps_the_image():
    x = torch.rand(4, 3, 8, 8)
    g = torch.Generator().manual_seed(0)
    assert torch.allclose(views.jitter(x, 0.0, g), x, atol=1e-6)
    y = views.jitter(x, 0.5, g)
    assert y.min() >= 0 and y.max() <= 1 and not torch.allclose(y, x)


def test_energy_is_the_mean_heatmap_maximum():
    h = torch.zeros(2, 2, 3, 3)
    h[0, 0, 1, 1], h[0, 1, 0, 2], h[1, 0, 2, 2], h[1, 1, 0, 0] = 1.0, 0.5, 0.25, -0.1
    assert views.energy(h).item() == pytest.approx((1.0 + 0.5 + 0.25 + 0.0) / 4)


def test_methods_have_their_own_losses_and_weights():
    for method, own in config.METHOD_LOSSES.items():
        c = config.canonical(config.get("demo", method=method))
        assert c.losses == own and c.weights[own[1]] == config.METHOD_WEIGHTS[own[1]] and method in TRAINERS
        assert losses.LOSSES[own[1]].method == method
    mt = config.canonical(config.get("paper", method="mean_teacher", weights={"sup": 1e3, "mt": 7.0}))
    assert mt.ema_decay == 0.999 and mt.weights == {"sup": 1e3, "mt": 7.0}
    assert config.canonical(config.get("demo", method="mean_teacher")).ema_decay == 0.99
    assert mt.mt_target == "heatmap"                                    # the paper preset: the plain mean teacher
    assert {config.canonical(config.get(p, method="mean_teacher")).mt_target for p in ("smoke", "demo")} == {"peak"}
    # a field of one method does not name the runs of another
    std = config.get("demo", losses=("sup", "te"))
    assert runs.run_dir(std) == runs.run_dir(replace(std, ema_decay=0.5, cutout_joints=7, strong_rotation=10.0))
    dual = config.get("demo", method="dual")
    assert runs.run_dir(dual) != runs.run_dir(replace(dual, cutout_joints=7))
    assert runs.run_dir(dual) == runs.run_dir(replace(dual, ema_decay=0.5))
    assert runs.run_dir(dual) == runs.run_dir(replace(dual, mt_target="heatmap"))
    assert runs.run_dir(std) == runs.run_dir(replace(std, mt_target="peak"))
    demo_mt = config.get("demo", method="mean_teacher")
    assert runs.run_dir(demo_mt) != runs.run_dir(replace(demo_mt, mt_target="heatmap"))


def test_a_methods_own_preset_values_stay_its_own():
    """METHOD_PRESETS: the demo mean teacher takes 2 unlabeled crops per labeled crop and 6,000 steps after its warm
    start; an override still wins; its supervised twin (the warm start) and every other row keep the preset's values
    and their run names."""
    mt = config.get("demo", method="mean_teacher", labeled=0.05)
    assert (mt.unlabeled_ratio, mt.semi_max_steps, mt.max_steps) == (2.0, 6000, 4000)
    assert config.get("demo", method="mean_teacher", unlabeled_ratio=1.0).unlabeled_ratio == 1.0
    short = config.get("demo", method="mean_teacher", max_steps=10)           # train --max-steps 10: every run's
    assert (short.max_steps, short.semi_max_steps, short.unlabeled_ratio) == (10, 0, 2.0)     # budget
    twin = config.supervised_twin(mt)
    assert (twin.unlabeled_ratio, twin.semi_max_steps, twin.max_steps) == (1.0, 0, 4000)
    assert runs.run_dir(twin) == runs.run_dir(config.get("demo", labeled=0.05, losses=("sup",)))
    for kw in (dict(method="dual"), dict(method="pl"), dict(losses=("sup", "sc", "te", "ti"))):
        c = config.get("demo", labeled=0.05, **kw)
        assert (c.unlabeled_ratio, c.semi_max_steps) == (1.0, 0)
        assert runs.run_dir(c) == runs.run_dir(config.from_presets(config.Config, config.PRESETS, "demo",
                                                                   labeled=0.05, **kw))    # without METHOD_PRESETS
    for p in ("smoke", "paper"):                                         # only the demo preset has them
        c = config.get(p, method="mean_teacher")
        assert (c.unlabeled_ratio, c.semi_max_steps) == (1.0, 0)
    with pytest.raises(UserError, match="unknown config fields"):
        config.get("demo", method="mean_teacher", nope=1)


def _cfg(**kw):
    return config.get("smoke", **{"max_steps": 8, "eval_every": 4, "patience": 5, **kw})


class FixedHeatmaps(nn.Module):
    """A network whose heatmaps are one learnable (1, K, h, w) map P for every input, so a step's loss can be
    computed by hand."""

    def __init__(self, P):
        super().__init__()
        self.P = nn.Parameter(P.clone())

    def forward(self, x):
        return {"heatmaps": self.P.expand(x.shape[0], -1, -1, -1)}


def _peak(K, row, col, value, h=16):
    P = torch.zeros(1, K, h, h)
    P[0, :, row, col] = value
    return P


def _trainer_with_a_known_warp(method, monkeypatch, tmp_path):
    """A trainer of `method` on the smoke set whose strong warp H moves every heatmap one pixel to the right (16 x 16
    maps: 2 / 16 = 0.125 in normalised units), the supervised weight 0 and the method's weight 1."""
    own = config.METHOD_LOSSES[method][1]
    cfg = config.canonical(_cfg(method=method, weights={"sup": 0.0, own: 1.0}))
    shift = torch.tensor([[1.0, 0.0, 0.125], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    monkeypatch.setattr(views, "strong_homography", lambda B, c, g, dev: shift.expand(B, 3, 3).to(dev))
    train, val, _, lab, unl = runs.load_data(cfg, progress=False)
    tr = TRAINERS[method](cfg, train, val, lab, unl, str(tmp_path / method), progress=False)
    return tr, train.meta.num_keypoints, own


def test_mean_teacher_step_by_hand(tmp_path, smoke_dir, monkeypatch):
    """Teacher: a peak of 1 at (5, 5) of every channel; student: 0.5 at (5, 6). H moves the teacher's peak to (5, 6),
    so the only error is 0.5 there, over the 16 x 15 pixels that have a target (column 0 comes from outside):
    L_mt = 0.5^2 / 240, dL/dP_student = 2 (0.5 - 1) / (K 240) at (5, 6), and nothing reaches the teacher."""
    tr, K, own = _trainer_with_a_known_warp("mean_teacher", monkeypatch, tmp_path)
    tr.cfg = replace(tr.cfg, mt_target="heatmap")                      # the plain mean teacher (paper preset)
    tr.teacher, tr.model = FixedHeatmaps(_peak(K, 5, 5, 1.0)), FixedHeatmaps(_peak(K, 5, 6, 0.5))
    total, parts = tr.losses(tr.next_batch())
    assert parts[own].item() == pytest.approx(0.25 / 240, rel=1e-6)
    assert total.item() == pytest.approx(0.25 / 240, rel=1e-6)           # sup has weight 0 here
    total.backward()
    expected = torch.zeros(1, K, 16, 16)
    expected[0, :, 5, 6] = 2 * (0.5 - 1.0) / (K * 240)
    assert torch.allclose(tr.model.P.grad, expected, atol=1e-9)
    assert tr.teacher.P.grad is None


def test_mean_teacher_peak_targets_by_hand(tmp_path, smoke_dir, monkeypatch):
    """mt_target = "peak": the teacher has a single peak at (5, 5) in every channel, of height 0.8 in channel 0, 0.4
    in the others and -0.2 in the last (weight 0: its decoded peak is not trusted). Each target is a peak-1 Gaussian
    (sigma 1) at (5, 5), moved to (5, 6) by H; the student is 0.5 at (5, 6) in channel 0, else 0. Over the 16 x 15
    pixels with a target, channel 0 errs by G - 1 + 0.25 and every other channel by G, G = sum of exp(-d^2) over those
    pixels (the squared Gaussian): L = (0.8 (G - 0.75) + 14 * 0.4 G) / (240 (0.8 + 14 * 0.4))."""
    tr, K, own = _trainer_with_a_known_warp("mean_teacher", monkeypatch, tmp_path)
    assert tr.cfg.mt_target == "peak"                                  # the CPU presets' setting
    heights = torch.tensor([0.8] + [0.4] * (K - 2) + [-0.2])
    P = torch.zeros(1, K, 16, 16)
    P[0, :, 5, 5] = heights
    tr.teacher, tr.model = FixedHeatmaps(P), FixedHeatmaps(_peak(K, 5, 6, 0.0))
    with torch.no_grad():
        tr.model.P[0, 0, 5, 6] = 0.5
    total, parts = tr.losses(tr.next_batch())
    rows, cols = torch.meshgrid(torch.arange(16.0), torch.arange(1.0, 16.0), indexing="ij")
    G = torch.exp(-((rows - 5) ** 2 + (cols - 6) ** 2)).sum().item()
    w = 0.8 + (K - 2) * 0.4
    assert parts[own].item() == pytest.approx((0.8 * (G - 0.75) + (K - 2) * 0.4 * G) / (240 * w), rel=1e-5)
    total.backward()
    assert tr.model.P.grad[0, 0, 5, 6].item() == pytest.approx(2 * 0.8 * (0.5 - 1.0) / (240 * w), rel=1e-5)
    assert tr.model.P.grad[0, K - 1].abs().max() == 0                   # weight 0: the untrusted keypoint is free
    with pytest.raises(UserError, match="mt_target='soft'"):
        TRAINERS["mean_teacher"](replace(tr.cfg, mt_target="soft"), tr.train, tr.val, None, None, str(tmp_path))


def test_masked_mse_weighs_each_keypoint_by_hand():
    """Errors 1 in channel 0 (weight 1) and 2 in channel 1 (weight 0.5) on 2 x 2 maps: (4 * 1 + 4 * 0.5 * 4) / (4 + 2)
    = 2; a (N, 1, h, w) mask is the same as that mask repeated over the channels."""
    pred, target = torch.zeros(1, 2, 2, 2), torch.stack([torch.ones(2, 2), 2 * torch.ones(2, 2)])[None]
    valid = torch.stack([torch.ones(2, 2), 0.5 * torch.ones(2, 2)])[None]
    assert baseline_losses.teacher_consistency({"unl": pred, "unl_target": target, "unl_valid": valid}).item() == 2.0
    mask = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]]])
    a = baseline_losses.teacher_consistency({"unl": pred, "unl_target": target, "unl_valid": mask})
    b = baseline_losses.teacher_consistency({"unl": pred, "unl_target": target, "unl_valid": mask.expand(1, 2, 2, 2)})
    assert a.item() == b.item() == pytest.approx((3 * 1 + 3 * 4) / 6)


def test_dual_step_by_hand_each_network_is_taught_by_the_other(tmp_path, smoke_dir, monkeypatch):
    """A: a peak of 0.5 at (5, 6); B: 1 at (5, 5); H moves every map one pixel to the right. A's target is B's map
    moved, 1 at (5, 6): error 0.5 there, L_A = 0.25 / 240. B's target is A's map moved, 0.5 at (5, 7): errors 1 at
    (5, 5) and 0.5 at (5, 7), L_B = 1.25 / 240 (self-teaching would give 0.5 / 240 and 2 / 240). The reported value
    is their mean, the total their sum; each network's gradient comes from its own hard view only."""
    tr, K, own = _trainer_with_a_known_warp("dual", monkeypatch, tmp_path)
    tr.model, tr.model_b = FixedHeatmaps(_peak(K, 5, 6, 0.5)), FixedHeatmaps(_peak(K, 5, 5, 1.0))
    total, parts = tr.losses(tr.next_batch())
    assert parts[own].item() == pytest.approx((0.25 + 1.25) / 2 / 240, rel=1e-6)
    assert total.item() == pytest.approx((0.25 + 1.25) / 240, rel=1e-6)
    total.backward()
    grad_a, grad_b = torch.zeros(1, K, 16, 16), torch.zeros(1, K, 16, 16)
    grad_a[0, :, 5, 6] = 2 * (0.5 - 1.0) / (K * 240)
    grad_b[0, :, 5, 5] = 2 * (1.0 - 0.0) / (K * 240)
    grad_b[0, :, 5, 7] = 2 * (0.0 - 0.5) / (K * 240)
    assert torch.allclose(tr.model.P.grad, grad_a, atol=1e-9)
    assert torch.allclose(tr.model_b.P.grad, grad_b, atol=1e-9)


def test_a_methods_loss_needs_its_method(tmp_path, smoke_dir):
    with pytest.raises(UserError, match="belongs to --method mean_teacher"):
        runs.run(_cfg(losses=("sup", "mt")), str(tmp_path / "x"), progress=False)
    with pytest.raises(UserError, match="no.*unlabeled|there are none"):
        runs.run(_cfg(method="dual", labeled=1.0), str(tmp_path / "y"), progress=False)


@pytest.mark.parametrize("method", ["mean_teacher", "dual"])
def test_killed_and_resumed_run_ends_like_an_uninterrupted_one(tmp_path, smoke_dir, method):
    cfg = _cfg(method=method)
    full = runs.run(cfg, str(tmp_path / "full"), progress=False)
    assert runs.run(cfg, str(tmp_path / "cut"), progress=False, stop_at=6) is None
    resumed = runs.run(cfg, str(tmp_path / "cut"), resume=True, progress=False)
    for k in ("val_pck", "test_pck", "steps", "best_step", "test_per_keypoint"):
        assert resumed[k] == full[k], k
    for name in ("best.pt", "last.pt"):
        a, b = (torch.load(tmp_path / d / name, weights_only=True) for d in ("full", "cut"))
        extra = {"last.pt": {"mean_teacher": "teacher", "dual": "model_b"}[method]}.get(name)
        for part in ("model",) + ((extra,) if extra else ()):
            assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), (name, part)
    hist = [json.loads(line) for line in open(tmp_path / "full" / "history.jsonl")]
    assert [h["step"] for h in hist] == [4, 8]
    assert all(0 < h["energy_unlabeled"] and 0 < h["energy_labeled"] for h in hist)
    assert all(h[f"loss_{'mt' if method == 'mean_teacher' else 'dual'}"] >= 0 for h in hist)
    # best.pt holds what was evaluated (the teacher; network A): its val PCK is the history's best
    assert full["val_pck"] == max(h["val_pck"] for h in hist) and full["method"] == method
    if method == "dual":
        assert all("val_pck_b" in h for h in hist) and full["evaluated"].startswith("network A")
    else:
        last = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
        assert not all(torch.equal(last["model"][k], last["teacher"][k]) for k in last["model"])  # EMA lags


def test_warm_starts_student_teacher_and_both_dual_networks(tmp_path, smoke_dir, monkeypatch):
    monkeypatch.setenv("KPSEMI_RESULTS", str(tmp_path / "results"))
    cfg = config.canonical(_cfg(method="dual", init="supervised", max_steps=4))
    seen = {}
    train_and_test = runs.train_and_test                               # the twins train; the dual run is seen

    def see(*a, **kw):
        return seen.update(a=a, kw=kw) if "trainer" in kw else train_and_test(*a, **kw)

    monkeypatch.setattr(runs, "train_and_test", see)
    runs.run(cfg, str(tmp_path / "dual"), progress=False)
    twin_a = runs.run_dir(config.supervised_twin(cfg))
    twin_b = runs.run_dir(config.supervised_twin(replace(cfg, seed=1000)))
    init = seen["a"][11]
    assert init[0] == twin_a and seen["kw"]["trainer"] is TRAINERS["dual"]
    a = torch.load(os.path.join(twin_a, "best.pt"), weights_only=True)["model"]
    b = torch.load(os.path.join(twin_b, "best.pt"), weights_only=True)["model"]
    assert all(torch.equal(init[2][k], a[k]) for k in a)
    assert all(torch.equal(seen["kw"]["init_weights_b"][k], b[k]) for k in b)
    assert not all(torch.equal(a[k], b[k]) for k in a)                  # two different starting points
    mt_cfg = config.canonical(_cfg(method="mean_teacher", init="supervised"))
    train, val, _, lab, unl = runs.load_data(mt_cfg, progress=False)
    tr = MeanTeacherTrainer(mt_cfg, train, val, lab, unl, str(tmp_path / "mt"), progress=False, init_weights=a)
    for module in (tr.model, tr.teacher):
        assert all(torch.equal(module.state_dict()[k], a[k]) for k in a)


def test_train_cli_method_needs_no_other_flag(tmp_path, smoke_dir, monkeypatch):
    env = {**os.environ, "KPSEMI_PRESET": "smoke", "KPSEMI_RESULTS": str(tmp_path / "results")}
    r = subprocess.run([sys.executable, "-m", "kpsemi", "train", "--method", "consistency", "--max-steps", "4"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "consistency at 0.05 labels" in r.stdout
    # without --out the run lands in its folder of the run cache, where runs.cached finds it
    cfg = config.get("smoke", method="consistency", max_steps=4)
    with monkeypatch.context() as mp:
        mp.setenv("KPSEMI_RESULTS", env["KPSEMI_RESULTS"])
        d = runs.run_dir(cfg)
    line = next(l for l in r.stdout.splitlines() if l.startswith("consistency at 0.05 labels"))
    assert line.endswith(f"-> {d}/metrics.json")
    assert config.plumbing_note("smoke") in r.stdout                    # smoke: numbers are plumbing
    m = json.load(open(os.path.join(d, "metrics.json")))
    assert m["losses"] == ["sup", "cons"] and m["config"]["weights"]["cons"] == config.METHOD_WEIGHTS["cons"]
