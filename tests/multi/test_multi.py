"""SemiMultiPose (multi-animal): focal loss, targets, the fusion loss's gradients, OKS AP through pycocotools,
augmentation geometry, the honeybee protocol (skips without ../shared) and smoke training with branching."""
import json
import math
import os
from dataclasses import replace

import numpy as np
import pytest
import torch

from kpsemi.multi import data as multi_data, eval as multi_eval, losses as multi_losses, model as multi_model
from kpsemi.multi import table as multi_table, train as multi_train
from kpsemi.data.records import Meta
from kpsemi.errors import DataError
from tests.conftest import shared


def test_focal_loss_by_hand():
    z = torch.zeros(1)                                   # p = 0.5
    pos = 0.25 * 0.5 ** 2 * math.log(2)                  # kappa (1 - p)^gamma (-log p)
    neg = 0.75 * 0.5 ** 2 * math.log(2)                  # (1 - kappa) p^gamma (-log (1 - p))
    assert math.isclose(multi_losses.focal(z, torch.ones(1)).item(), pos, rel_tol=1e-6)
    assert math.isclose(multi_losses.focal(z, torch.zeros(1)).item(), neg, rel_tol=1e-6)
    # confidence-weighted (Eq. 9): target v = 0.3 mixes the two terms
    assert math.isclose(multi_losses.focal(z, torch.full((1,), 0.3)).item(), 0.3 * pos + 0.7 * neg, rel_tol=1e-6)
    # a confident correct prediction costs almost nothing: p = sigmoid(5), y = 1
    p = torch.sigmoid(torch.tensor(5.0)).item()
    assert math.isclose(multi_losses.focal(torch.full((1,), 5.0), torch.ones(1)).item(),
                        -0.25 * (1 - p) ** 2 * math.log(p), rel_tol=1e-5)


def _scene():
    """8x8 cells, stride 1, K = 2 joined by one edge. A: a long diagonal animal; B: a short one inside A's box."""
    kp = torch.zeros(1, 3, 2, 3)
    kp[0, 0] = torch.tensor([[0.5, 0.5, 2], [6.5, 3.5, 2]])
    kp[0, 1] = torch.tensor([[4.5, 0.5, 2], [4.5, 1.5, 2]])
    kp[0, 2] = torch.tensor([[1.5, 6.5, 2], [0.0, 0.0, 0]])         # C: keypoint 1 not labeled
    return kp


def test_box_offset_and_window_targets_on_a_hand_made_scene():
    G, U, P, Pm = multi_losses.targets(_scene(), (8, 8), stride=1, window=0, margin=0.5, skeleton=[(0, 1)],
                                       offset_scale=1.0)
    # B1: one cell per labeled keypoint (window 0)
    assert G[0, 0].nonzero().tolist() == [[0, 0], [0, 4], [6, 1]] and G[0, 1].nonzero().tolist() == [[1, 4], [3, 6]]
    # B2: A's box [0, 7] x [0, 4] holds 7 x 4 cells (B's box is inside it), C's box is the single cell (1, 6)
    assert U.sum().item() == 7 * 4 + 1 and U[0, 0, 6, 1] == 1 and U[0, 0, 4, 0] == 0
    # cell (x=2, y=1) lies in A's box only: offsets to A's keypoints
    assert P[0, :, :, 1, 2].tolist() == [[-2.0, -1.0], [4.0, 2.0]]
    # cell (x=4, y=1) is in both boxes and on B's skeleton (A's is 0.89 cells away): B owns it
    assert P[0, :, :, 1, 4].tolist() == [[0.0, -1.0], [0.0, 0.0]]
    # C's missing keypoint 1 has no offset target; outside the boxes nothing is defined
    assert Pm[0, :, 6, 1].tolist() == [1.0, 0.0] and Pm[0, :, 7, 7].tolist() == [0.0, 0.0]
    # window 1: 3 x 3 blocks, clipped at the border: A's keypoint 0 gets 2 x 2 cells, B's 3 x 2, C's 3 x 3
    G1, *_ = multi_losses.targets(_scene(), (8, 8), stride=1, window=1, skeleton=[(0, 1)])
    assert G1[0, 0].sum() == 4 + 6 + 9 and G1[0, 0, :2, 3:6].sum() == 6 and G1[0, 0, 5:8, :3].sum() == 9


def test_pseudo_targets_by_hand():
    off = torch.zeros(1, 1, 2, 4, 4)
    box = torch.full((1, 1, 4, 4), -10.0)
    box[0, 0, 1, 2] = 0.0                                 # one proposal, v = 0.5, at cell (x=2, y=1), offset 0
    G = multi_losses.pseudo_targets(off, box, delta=0.05, window=0, offset_scale=1.0)
    assert G[0, 0, 1, 2].item() == 0.5 and G.sum().item() == 0.5
    off[0, 0, 0, 1, 2] = 0.25                             # move it a quarter cell right: coverage 0.75 / 0.25
    G = multi_losses.pseudo_targets(off, box, delta=0.05, window=0, offset_scale=1.0)
    assert torch.allclose(G[0, 0, 1, 2:4], torch.tensor([0.375, 0.125]))


def test_fusion_gradient_reaches_b3_but_not_b2():
    kp = torch.full((1, 1, 4, 4), -4.0)
    kp[0, 0, 1, 3] = 4.0                                  # B1 is confident one cell right of the pseudo keypoint
    kp.requires_grad_(True)
    box = torch.full((1, 1, 4, 4), -10.0)
    box[0, 0, 1, 2] = 2.0
    box.requires_grad_(True)
    off = torch.zeros(1, 1, 2, 4, 4)
    off[0, 0, 0, 1, 2] = 0.1                              # pseudo keypoint at x = 2.6: covers cell 2 (0.9), 3 (0.1)
    off.requires_grad_(True)
    out = {"kp": kp, "box": box, "off": off, "labeled": torch.tensor([False])}
    cfg = multi_train.get("smoke", window=0, offset_scale=1.0)
    multi_losses.fusion_unlabeled(out, cfg).backward()
    assert box.grad is None or box.grad.abs().sum() == 0  # hard threshold on B2: no gradient (the seed's point)
    assert off.grad[0, 0, 0, 1, 2] < 0                    # moving the pseudo keypoint right, to B1's peak, helps
    assert kp.grad.abs().sum() > 0                        # and B1 learns from the pseudo targets
    # through the real network: the box head gets nothing, the offset head and the shared backbone do
    torch.manual_seed(0)
    net = multi_model.MultiPoseNet(2, "hrnet_tiny", width=8, head_convs=1)
    torch.nn.init.zeros_(net.box[-1].bias)                # sigmoid(B2) ~ 0.5 > delta everywhere
    o = net(torch.rand(1, 3, 64, 64))
    o["labeled"] = torch.tensor([False])
    multi_losses.fusion_unlabeled(o, cfg).backward()
    assert all(p.grad is None for p in net.box.parameters())
    assert net.off[-1].weight.grad.abs().sum() > 0 and net.fuse[0].weight.grad.abs().sum() > 0


def _frames(kps, area=400.0):
    kps = torch.as_tensor(kps, dtype=torch.float32)       # (N, M, K, 3)
    N, M, K, _ = kps.shape
    return multi_data.MultiFrames(meta=Meta("t", [f"k{i}" for i in range(K)]),
                                  images=torch.zeros(N, 3, 32, 32, dtype=torch.uint8), keypoints=kps,
                                  areas=torch.full((N, M), area, dtype=torch.float64),
                                  scale=torch.full((N, 2), 0.5, dtype=torch.float64),
                                  valid=torch.full((N, 2), 32), labeled=torch.ones(N, dtype=torch.bool),
                                  ids=[str(i) for i in range(N)], files=[""] * N)


def test_oks_ap_perfect_perturbed_and_by_hand():
    g = torch.Generator().manual_seed(0)
    kps = torch.cat([torch.rand(3, 2, 4, 2, generator=g) * 30, torch.full((3, 2, 4, 1), 2.0)], -1)
    fr = _frames(kps)
    gt = multi_eval.coco_gt(fr)
    assert gt["annotations"][0]["keypoints"][:2] == pytest.approx((kps[0, 0, 0, :2] / 0.5).tolist())  # original px
    perfect = [{"image_id": a["image_id"], "keypoints": a["keypoints"], "score": 1.0} for a in gt["annotations"]]
    assert multi_eval.oks_ap(gt, perfect, [0.1] * 4)["ap"] == pytest.approx(1.0)
    noisy = [dict(d, keypoints=(np.array(d["keypoints"]) + np.tile([4.0, -3.0, 0], 4)).tolist()) for d in perfect]
    r = multi_eval.oks_ap(gt, noisy, [0.1] * 4)
    assert r["ap"] < 1.0
    # one animal, every keypoint 5 px off, area 400, sigma 0.5: OKS = exp(-25 / (2 * 400 * 1)) = 0.969 -> all ten
    # thresholds pass; sigma 0.1: OKS = exp(-25 / 32) = 0.458 -> none; sigma 0.2: exp(-25 / 128) = 0.823 -> 0.50..0.80
    one = _frames(torch.tensor([[[[10.0, 10.0, 2], [20.0, 12.0, 2]]]]))
    gt1 = multi_eval.coco_gt(one)
    det = [{"image_id": 0, "keypoints": [23.0, 24.0, 1, 43.0, 28.0, 1], "score": 0.9}]   # (20, 20), (40, 24) + (3, 4)
    assert multi_eval.oks_ap(gt1, det, [0.5, 0.5])["ap"] == pytest.approx(1.0)
    assert multi_eval.oks_ap(gt1, det, [0.1, 0.1])["ap"] == 0.0
    assert multi_eval.oks_ap(gt1, det, [0.2, 0.2])["ap"] == pytest.approx(0.7)
    assert multi_eval.oks_ap(gt1, [], [0.2, 0.2])["ap"] == 0.0


def test_decoding_oracle_outputs_recovers_every_animal():
    cfg = multi_train.get("smoke")
    _, test, _, _ = multi_train.load_data(cfg, progress=False)
    fr = test.subset(range(8))
    b = fr.batch(range(8))
    G, U, P, _ = multi_losses.targets(b["keypoints"], (32, 32), 4, cfg.window, cfg.margin, fr.meta.skeleton,
                                      cfg.offset_scale)
    res = multi_model.decode({"kp": G * 12 - 6, "box": U * 12 - 6, "off": P}, 4, cfg.delta, cfg.offset_scale,
                             0.1, cfg.nms_oks)
    dets = [{"image_id": n, "keypoints": torch.cat([p[:, :2] / fr.scale[n].float(), p[:, 2:]], 1).reshape(-1).tolist(),
             "score": float(s)} for n, (poses, sc) in enumerate(res) for p, s in zip(poses, sc)]
    assert multi_eval.oks_ap(multi_eval.coco_gt(fr), dets, fr.meta.sigmas)["ap"] > 0.97


def test_augmentation_moves_keypoints_with_the_image():
    img = torch.zeros(2, 3, 64, 96)
    kp = torch.zeros(2, 1, 2, 3)
    kp[:, 0, 0] = torch.tensor([30.5, 20.5, 2])
    kp[:, 0, 1] = torch.tensor([70.5, 40.5, 2])
    img[:, 0, 20, 30] = 1.0                               # keypoint 0: a red pixel, keypoint 1: a blue one
    img[:, 2, 40, 70] = 1.0
    batch = {"image": img, "keypoints": kp, "valid": torch.tensor([[96, 64], [96, 64]])}
    g = torch.Generator().manual_seed(3)
    x, k = multi_data.augment(batch, None, g, 0.0, (1.0, 1.0), 1.0, [1, 0])    # always flip, swap the two
    assert torch.allclose(k[:, 0, 1, :2], torch.tensor([96 - 30.5, 20.5]))   # keypoint 0 is now channel 1
    x, k = multi_data.augment(batch, 48, g, 90.0, (0.8, 1.2), 0.5, [0, 1])
    assert (k[..., 2] > 0).sum() >= 2                     # (seeded: at least two keypoints stay in the crop)
    for b in range(2):
        for c in range(2):
            if k[b, 0, c, 2] > 0:
                w = x[b, 2 * c]
                y, xx = np.unravel_index(int(w.argmax()), w.shape)
                assert (torch.tensor([xx + 0.5, y + 0.5]) - k[b, 0, c, :2]).norm() < 1.5


def test_honeybee_frames_and_subsets(tmp_path):
    root = shared("honeybee")
    meta, tr = multi_data.coco_frames(os.path.join(root, "train.json"))
    _, te = multi_data.coco_frames(os.path.join(root, "test.json"))
    assert len(tr) == 135 and sum(len(f.keypoints) for f in tr) == 1614
    assert len(te) == 30 and sum(len(f.keypoints) for f in te) == 333 and meta.num_keypoints == 5
    assert meta.flip_permutation() == [0, 1, 2, 4, 3]     # left/right antenna swap under a flip
    doc = multi_data.honeybee_splits([f.id for f in tr], str(tmp_path / "s.json"))
    assert len(doc["train135"]) == 135
    for name, n in (("train25", 25), ("train5", 5)):
        assert sorted(doc[name]) == ["0", "1", "2", "3", "4"]
        assert all(len(set(v)) == n and set(v) <= set(doc["train135"]) for v in doc[name].values())
        assert len({tuple(v) for v in doc[name].values()}) == 5
    assert multi_data.honeybee_splits([f.id for f in tr], str(tmp_path / "s.json")) == doc      # read back
    train, test, lab, unl = multi_data.honeybee(root, "train5", seed=2, scale=0.125, progress=False)
    assert len(lab) == 5 and len(unl) == 80 + 130 and len(test) == 30
    assert train.labeled[lab].all() and not train.labeled[unl].any() and (train.keypoints[unl] == 0).all()
    assert tuple(test.valid[0].tolist()) == (160, 90) and test.images.shape[-2:] == (96, 160)


def test_missing_honeybee_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no honeybee train.json"):
        multi_data.honeybee(str(tmp_path))
    with pytest.raises(DataError, match="made for other training frames"):
        multi_data.honeybee_splits(list(range(30)), str(tmp_path / "s.json"))
        multi_data.honeybee_splits(list(range(1, 31)), str(tmp_path / "s.json"))
    with pytest.raises(DataError, match="there are 20 training frames"):
        multi_data.honeybee_splits(list(range(20)), str(tmp_path / "t.json"))


def _coco(tmp_path, edit):
    """A 2-image COCO keypoints file (K = 2) after `edit(doc)`; both images are 40x30 JPEGs."""
    from PIL import Image
    for n in ("a.jpg", "b.jpg"):
        Image.new("RGB", (40, 30)).save(tmp_path / n)
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 30},
                      {"id": 2, "file_name": "b.jpg", "width": 40, "height": 30}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "keypoints": [5, 5, 2, 9, 9, 2], "area": 50},
                           {"id": 2, "image_id": 1, "category_id": 1, "keypoints": [20, 5, 2, 25, 9, 1]}],
           "categories": [{"id": 1, "name": "bee", "keypoints": ["head", "tail"], "skeleton": [[1, 2]]}]}
    edit(doc)
    path = tmp_path / "k.json"
    path.write_text(json.dumps(doc))
    return str(path)


def test_coco_frames_group_instances_and_name_bad_rows(tmp_path):
    meta, fr = multi_data.coco_frames(_coco(tmp_path, lambda d: None))
    assert [len(f.keypoints) for f in fr] == [2, 0] and fr[0].size == (40, 30)
    assert fr[0].areas.tolist() == pytest.approx([50.0, 6.0 * 4.8])   # given; else the box (extent 5x4 + 10 %)
    d = multi_data.materialize(meta, fr, scale=0.5, progress=False)
    assert d.images.shape == (2, 3, 32, 32) and d.valid[0].tolist() == [20, 15]
    assert d.keypoints[0, 1].tolist() == [[10.0, 2.5, 2.0], [12.5, 4.5, 1.0]]     # working px = 0.5 x original
    bad = {"repeats an earlier annotation's id": lambda d: d["annotations"][1].update(id=1),
           r"annotations\[0\]\): 'area' must be a number": lambda d: d["annotations"][0].update(area="big"),
           r"images\[1\] repeats image id": lambda d: d["images"][1].update(id=1),
           r"images\[0\] \(id 1\): width and height": lambda d: d["images"][0].update(width=40.5)}
    for msg, edit in bad.items():
        with pytest.raises(DataError, match=msg):
            multi_data.coco_frames(_coco(tmp_path, edit))
    meta, fr = multi_data.coco_frames(_coco(tmp_path, lambda d: d["images"][0].update(width=41)))
    with pytest.raises(DataError, match="a.jpg: image is 40x30 but its annotation file says 41x30"):
        multi_data.materialize(meta, fr, progress=False)


def test_smoke_runs_branch_exactly_and_write_metrics(tmp_path):
    cfg = multi_train.get("smoke")
    res = multi_train.run_methods(cfg, str(tmp_path / "rows"), progress=False)
    assert list(res) == ["supervised", "labeled", "semi"]
    for m, r in res.items():
        on_disk = json.load(open(tmp_path / "rows" / m / "metrics.json"))
        assert on_disk["test_ap"] == r["test_ap"] and 0.0 <= r["test_ap"] <= 1.0 and r["steps"] == cfg.max_steps
        assert [h["step"] for h in r["history"]] == [6, 12]
    assert "loss_fu" in res["semi"]["history"][-1] and "loss_fu" not in res["labeled"]["history"][-1]
    assert "loss_fl" in res["labeled"]["history"][-1] and "loss_fl" not in res["supervised"]["history"][-1]
    # the branched semi run is the run trained from scratch, exactly
    scratch = multi_train.run(replace(cfg, method="semi"), str(tmp_path / "scratch"), progress=False)
    assert scratch["test_ap"] == res["semi"]["test_ap"]
    a = torch.load(tmp_path / "scratch" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "rows" / "semi" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_summary_table_of_rows():
    rows = [{"method": "SemiMultiPose", "train_set": "train25", "test_ap": a} for a in (0.5, 0.7)]
    rows.append({"method": "DirectPose", "train_set": "train5", "test_ap": 0.25})
    t = {r["method"]: r for r in multi_table.summarize(rows)}
    assert t["SemiMultiPose"]["AP-25"] == "0.600 ± 0.100 (n=2)" and t["SemiMultiPose"]["paper AP-25"] == "0.837"
    assert t["DirectPose"]["AP-5"] == "0.250" and "AP-135" not in t["DirectPose"]


def test_reproduce_command_smp(tmp_path, capsys):
    from kpsemi import cli
    with pytest.raises(SystemExit) as e:
        cli.main(["reproduce", "--table", "smp", "--train-sets", "train7", "--out", str(tmp_path)])
    assert e.value.code == 2 and "unknown honeybee training set 'train7'" in capsys.readouterr().err
    root = shared("honeybee")
    cli.main(["reproduce", "--table", "smp", "--preset", "smoke", "--root", root, "--train-sets", "train5",
              "--out", str(tmp_path)])
    md = (tmp_path / "tablesmp" / "smp.md").read_text()
    assert "| SemiMultiPose-labeled |" in md and "0.776" in md and "0.734" in md      # the seed's Train5 numbers
    assert (tmp_path / "tablesmp" / "curves-train5-0.png").exists()
    runs = (tmp_path / "tablesmp" / "runs.csv").read_text().splitlines()
    assert len(runs) == 4 and runs[1].startswith("train5,0,DirectPose,")
