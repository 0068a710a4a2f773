"""The baselines (Gen, Seq-MT attributes, landmark ELT, PL): their losses on hand-computed cases, the pieces they
add to a step's outputs, and smoke runs through the same trainer/CLI as the paper's method."""
import json
import math
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from kpsemi import config, runs
from kpsemi.baselines import heads, pseudo
from kpsemi.baselines import losses as baseline_losses
from kpsemi.errors import UserError
from kpsemi.method import heatmaps, losses, models
from kpsemi.repro import grid as reproduce


def test_attribute_loss_is_bce_over_known_attributes_only():
    out = {"attr_logits": torch.tensor([[2.0, -1.0, 5.0], [9.0, 9.0, 9.0]]),
           "attributes": torch.tensor([[1, 1, -1], [-1, -1, -1]])}        # -1: unknown, ignored
    want = (math.log(1 + math.exp(-2.0)) + math.log(1 + math.exp(1.0))) / 2
    assert math.isclose(baseline_losses.attributes(out).item(), want, rel_tol=1e-6)
    out["attributes"] = torch.full((2, 3), -1)
    assert baseline_losses.attributes(out).item() == 0.0


def test_generation_loss_pixels_and_edges_at_two_scales():
    x = torch.rand(2, 3, 16, 16) * 0.5
    assert baseline_losses.generation({"recon": x.clone(), "image": x}).item() == 0.0
    # a constant offset: L1 of 0.1 at full and at half size; image gradients are unchanged
    assert math.isclose(baseline_losses.generation({"recon": x + 0.1, "image": x}).item(), 0.2, rel_tol=1e-5)
    edge = torch.zeros(1, 1, 4, 4)
    edge[..., 2:] = 1.0                          # a vertical edge: |d/dx| = 1 on 4 of the 12 x-differences
    v = baseline_losses.generation({"recon": torch.zeros_like(edge), "image": edge}).item()
    # full: pixels 8/16 + dx 4/12 + dy 0; half (2x2 of 0, 1): pixels 2/4 + dx 2/2 + dy 0
    assert math.isclose(v, 0.5 + 1 / 3 + 0.5 + 1.0, rel_tol=1e-6)


def test_landmark_elt_by_hand():
    S, stride = 16, 4
    flat = torch.zeros(1, 2, S // stride, S // stride)       # uniform maps: soft-argmax at the centre (8, 8)
    out = {"heatmaps": flat, "heatmaps_g": flat.clone(), "image_size": S, "stride": stride,
           "H": torch.eye(3)[None]}
    assert baseline_losses.landmark_elt(out).item() == 0.0
    # T moves x by 0.25 in normalised units = 2 pixels; L(T(x)) stays at the centre: ((2 / 16)^2 + 0) per landmark
    out["H"] = torch.tensor([[[1.0, 0.0, 0.25], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])
    assert math.isclose(baseline_losses.landmark_elt(out).item(), (2 / 16) ** 2, rel_tol=1e-5)


def test_decoder_and_attribute_head_shapes_and_gradients():
    dec = heads.AppearanceDecoder(num_keypoints=4, width=8)
    maps = torch.rand(2, 4, 8, 8, requires_grad=True)
    y = dec(torch.rand(2, 3, 32, 32), maps)
    assert y.shape == (2, 3, 32, 32) and 0 <= float(y.detach().min()) and float(y.detach().max()) <= 1
    y.mean().backward()
    assert maps.grad.abs().sum() > 0                        # the keypoint bottleneck is used
    assert heads.AttributeHead(4, 3)(torch.zeros(5, 4, 2)).shape == (5, 3)
    assert set(losses.heads(("sup", "gen", "attr"), 4, 3)) == {"gen", "attr"}
    assert len(losses.heads(("sup", "sc"), 4, 3)) == 0
    with pytest.raises(ValueError, match="per-image attributes"):
        losses.heads(("attr",), 4, 0)


def test_attributes_that_a_flip_inverts_are_inverted_for_flipped_samples():
    model = SimpleNamespace(extras=nn.ModuleDict({"attr": heads.AttributeHead(2, 2)}))
    meta = SimpleNamespace(attributes=["facing_left", "paw_raised"])
    out = {"heatmaps": torch.zeros(3, 2, 4, 4)}
    attrs = torch.tensor([[1, 1], [0, 0], [-1, 1]])
    flipped = torch.tensor([True, True, True])
    out = losses.extra_outputs(model, out, torch.zeros(3, 3, 16, 16), None, attrs, flipped, meta, 4, 1.0)
    assert out["attributes"].tolist() == [[0, 1], [1, 0], [-1, 1]]        # unknown stays unknown
    assert out["attr_logits"].shape == (3, 2) and out["coords"].shape == (3, 2, 2)


def test_baseline_losses_are_registered_with_their_needs():
    for name in ("gen", "attr", "elt_lm"):
        assert name in losses.LOSSES and name in config.Config().weights
    assert {"gen", "elt_lm"} <= losses.NEEDS_SECOND_VIEW


class _Copy(nn.Module):
    """A perfectly equivariant 'keypoint model': heatmap k = the image's first channel at 1/4 size."""

    def forward(self, x):
        return {"heatmaps": nn.functional.avg_pool2d(x[:, :1], 4).repeat(1, 2, 1, 1)}


def test_pl_ensemble_maps_back_and_thresholds():
    S = 64
    blob = heatmaps.render(torch.tensor([[[20.0, 36.0, 2.0]]]), (S, S), stride=1, sigma=6.0)[0, 0]   # (S, S)
    imgs = torch.stack([blob, 0.3 * blob])[:, None].repeat(1, 3, 1, 1)                            # (2, 3, S, S)
    data = SimpleNamespace(batch=lambda idx, device: {"image": imgs[idx]})
    meta = SimpleNamespace(flip_pairs=[(0, 1)], flip_permutation=lambda: [1, 0])
    hm = pseudo.ensemble_heatmaps(_Copy(), data, torch.tensor([0, 1]), meta)
    assert hm.shape == (2, 2, 16, 16)
    xy, score = heatmaps.decode(hm)
    assert (xy - torch.tensor([20.0, 36.0])).norm(dim=-1).max() < 1.0     # 3 scales x 2 flips merged in place
    kp, kept = pseudo.pseudo_labels(_Copy(), data, torch.tensor([0, 1]), meta, threshold=0.5)
    assert kept.tolist() == [True, False] and kp[0, :, 2].tolist() == [2.0, 2.0] and kp[1, :, 2].sum() == 0


def _cfg(**kw):
    return config.get("smoke", **{"max_steps": 8, "eval_every": 4, "patience": 5, **kw})


def test_gen_and_seqmt_losses_train_and_reload(tmp_path, smoke_dir):
    cfg = _cfg(losses=("sup", "gen", "attr", "elt_lm"))
    m = runs.run(cfg, str(tmp_path), progress=False)
    hist = [json.loads(line) for line in open(tmp_path / "history.jsonl")]
    assert all(math.isfinite(h[f"loss_{n}"]) for h in hist for n in ("gen", "attr", "elt_lm"))
    assert math.isfinite(m["test_error_percent"]) and m["test_error_percent"] > 0
    model, c, _ = models.load_model(str(tmp_path / "best.pt"))          # the extra heads come back with the weights
    assert set(model.extras) == {"gen", "attr"} and c["losses"] == ["sup", "gen", "attr", "elt_lm"]


def test_pseudo_label_method_runs_and_reports_its_labels(tmp_path, smoke_dir, monkeypatch):
    monkeypatch.setenv("KPSEMI_RESULTS", str(tmp_path / "results"))      # the teacher goes to the shared run cache
    m = runs.run(_cfg(method="pl", pl_threshold=-1e9), str(tmp_path / "pl"), progress=False)
    assert m["method"] == "pl" and m["n_labeled"] == 12
    assert m["n_pseudo_images"] == 228                # no threshold: every unlabeled image is pseudo-labeled
    assert 0.0 <= m["pseudo_label_pck"] <= 100.0 and 0 <= m["test_pck"] <= 100
    assert json.load(open(tmp_path / "pl" / "metrics.json"))["test_pck"] == m["test_pck"]
    with pytest.raises(UserError, match="not defined at 100 % labels"):
        runs.run(_cfg(method="pl", labeled=1.0), str(tmp_path / "pl100"), progress=False)
    with pytest.raises(UserError, match="unknown method"):
        runs.run(_cfg(method="magic"), str(tmp_path / "x"), progress=False)


def test_tables_have_the_baseline_rows():
    t1 = reproduce.grid("1", "smoke", fractions=(0.05, 1.0))
    assert {c.row for c in t1} == {"supervised", "pl", "elt", "gen", "ours", "mean_teacher", "dual"}
    assert not [c for c in t1 if c.row in ("pl", "mean_teacher", "dual") and c.labeled == 1.0]
    assert [(c.method, c.losses) for c in t1 if c.row == "dual"] == [("dual", ["sup", "dual"])]
    assert next(c for c in t1 if c.row == "gen").losses == ["sup", "gen"]
    sq = reproduce.grid("seqmt", "smoke")
    assert len(sq) == 4 * 5 and {tuple(c.losses) for c in sq} == {("sup",), ("sup", "attr"), ("sup", "elt_lm"),
                                                                  ("sup", "elt_lm", "attr")}


def test_seqmt_table_renders_error_and_pck_beside_hgr1(tmp_path):
    cells = reproduce.grid("seqmt", "smoke", fractions=(0.05,))
    done = [(c, {"test_pck": 50.0, "test_error_percent": 12.5}) for c in cells]
    md = reproduce.render("seqmt", done, str(tmp_path))
    assert "12.5 (PCK 50.0)" in md and "57.6" in md and "38.5" in md     # HGR1 5 %: L 57.6, L+ELT+A 38.5


def test_train_cli_method_pl(tmp_path, smoke_dir):
    r = subprocess.run([sys.executable, "-m", "kpsemi", "train", "--preset", "smoke", "--method", "pl", "--labeled",
                        "1", "--out", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2 and "not defined at 100 % labels" in r.stderr and "Traceback" not in r.stderr
