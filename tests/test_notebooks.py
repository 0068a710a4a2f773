"""Notebook conventions, and the metrics each notebook records in its last cell (smoke preset).

`python -m pytest` runs the notebooks first (nbval, testpaths order) with KPSEMI_PRESET=smoke; the tests here
read back what each one recorded. A notebook that has not run in this session is executed here with nbclient.
Every notebook needs an EXPECTED entry: the keys it records and their allowed range.
"""
import glob
import json
import math
import os

import pytest

from kpsemi import nbtools
from kpsemi.repro import report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))
PCT = (0.0, 100.0)
ANY = (-math.inf, math.inf)
EXPECTED = {
    "00_overview": {"test_pck_supervised_5": PCT, "test_pck_ours_5": PCT, "test_pck_supervised_100": PCT},
    "01_data_and_splits": {"n_train": (1, 1e6), "keypoints": (16, 16), "classes": (8, 8), "visible_percent": PCT,
                           "hidden_percent": PCT, "outside_percent": PCT, "decode_error_px": (0.0, 0.05),
                           "warp_agreement_px": (0.0, 1.0), "splits_nested": (1, 1), "labeled_5_percent": (1, 1e5)},
    "02_supervised_baseline": {"test_pck_5": PCT, "test_pck_100": PCT, "swap_rate_low": PCT,
                               "swap_rate_high": PCT, "drop_low_vs_high": (-100.0, 100.0),
                               "any_keypoint_pck_low": PCT, "any_keypoint_pck_high": PCT,
                               "twin_separation_high": (0.0, 2.0), "twin_separation_true": (0.01, 2.0),
                               "control_separation_ratio": (0.0, 50.0), "control_any_minus_pck": (0.0, 100.0),
                               "control_passes": (0, 1), "hrnet_head_separation_ratio": (0.0, 50.0),
                               "wrong_at_twin_high": PCT, "wrong_at_other_high": PCT, "wrong_near_own_high": PCT,
                               "crowding": PCT},
    "03_semantic_consistency": {"test_pck_sup": PCT, "test_pck_sup_sc": PCT, "kcn_accuracy": PCT,
                                "swap_rate_sup": PCT, "swap_rate_sup_sc": PCT},
    "04_equivariance_invariance": {"te_of_equivariant_map": (0.0, 1e-9), "elt_of_equivariant_map": (1e-6, 1.0),
                                   "test_pck_supervised": PCT, "test_pck_te": PCT, "test_pck_ti": PCT,
                                   "test_pck_te_ti": PCT, "test_pck_elt": PCT},
    "05_ablation": {f"test_pck_{r}_5": PCT for r in ("te_ti_sc", "te_ti", "sc", "ti_sc", "te_sc", "ti",
                                                      "supervised")},
    "06_unlabeled_amount_and_gt": {"test_pck_supervised_5": PCT, "test_pck_pool_10": PCT, "test_pck_pool_100": PCT,
                                   "test_pck_with_gt": PCT, "test_pck_without_gt": PCT},
    "07_loss_weights": {"test_pck_sc_0.1": PCT, "test_pck_sc_1": PCT},
    "08_baselines": {**{f"test_pck_{r}": PCT for r in ("supervised", "pl", "elt", "gen", "ours")},
                     "pl_pseudo_images": (0, 1e6), "pl_pseudo_label_pck": PCT,
                     **{f"seqmt_{m}_{r}": PCT for m in ("error", "pck") for r in ("L", "L_A", "L_ELT", "L_ELT_A")}},
    "09_weak_supervision": {"classifier_accuracy": PCT, "precision": PCT, "recall": PCT, "random_precision": PCT,
                            "random_recall": PCT, "precision_unrefined": PCT, "precision_coarse_only": PCT,
                            "precision_fine_only": PCT, "detections_per_image": (0.0, 10.0)},
    "10_embeddings_tsne": {**{f"{m}_{r}": PCT for m in ("knn_accuracy", "knn_accuracy_gt_heatmaps",
                                                         "left_right_confusion", "test_pck")
                              for r in ("supervised", "semi")},
                           **{f"{m}_{r}": (-1.0, 1.0) for m in ("silhouette", "silhouette_64d")
                              for r in ("supervised", "semi")},
                           "knn_chance": PCT, "points": (1, 1e7)},
    "11_multi_animal": {"test_ap_supervised": (0.0, 1.0), "test_ap_labeled": (0.0, 1.0), "test_ap_semi": (0.0, 1.0),
                        "semi_minus_supervised": (-1.0, 1.0), "oracle_ap": (0.8, 1.0), "fusion_grad_b2": (0.0, 0.0),
                        "fusion_grad_b3": (1e-9, math.inf)},
    "12_single_run": {"test_pck": PCT, "val_pck": PCT, "steps": (1, 1e7), "seconds": (0.0, 1e7),
                      "n_labeled": (1, 1e7), "n_unlabeled": (0, 1e7)},
    "13_after_the_paper": {**{f"test_pck_{r}": PCT for r in ("supervised", "pl", "elt", "gen", "ours", "mean_teacher",
                                                             "dual", "supervised_100")},
                           **{f"energy_{r}_{w}": (-1.0, 2.0) for r in ("consistency", "mean_teacher", "dual")
                              for w in ("first", "last")},
                           **{f"energy_share_{r}": ANY for r in ("consistency", "mean_teacher", "dual")},
                           "seeds": (1, 1)},
}
# what a notebook records only where ../shared holds a dataset: {notebook: (dataset, {key: range})}
WITH_SHARED = {"13_after_the_paper": ("mirror-mouse", {"mouse_test_pck_supervised": PCT, "mouse_test_pck_semi": PCT,
                                                      "mouse_error_px_supervised": (0.0, 1e4),
                                                      "mouse_error_px_semi": (0.0, 1e4)})}
SHARED = os.path.join(ROOT, "..", "shared", "datasets")


def _name(path):
    return os.path.splitext(os.path.basename(path))[0]


def test_there_are_notebooks_and_each_has_expectations():
    assert NOTEBOOKS
    assert sorted(map(_name, NOTEBOOKS)) == sorted(EXPECTED)


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=_name)
def test_conventions(nb):
    assert nbtools.problems(nb) == []


def _execute(nb):
    import nbformat
    from nbclient import NotebookClient
    book = nbformat.read(nb, as_version=4)
    NotebookClient(book, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": os.path.dirname(nb)}}).execute()


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=_name)
def test_recorded_metrics(nb):
    name = _name(nb)
    path = os.path.join(report.notebook_dir(name), "metrics.json")
    if not os.path.exists(path):
        _execute(nb)
    doc = json.load(open(path))
    assert doc["notebook"] == name and doc["preset"] == os.environ["KPSEMI_PRESET"]
    expected = dict(EXPECTED[name])
    if name in WITH_SHARED and os.path.isdir(os.path.join(SHARED, WITH_SHARED[name][0])):
        expected.update(WITH_SHARED[name][1])
    for key, (lo, hi) in expected.items():
        v = doc["metrics"][key]
        assert isinstance(v, (int, float)) and math.isfinite(v) and lo <= v <= hi, (key, v)
    if name == "02_supervised_baseline":             # the identity error, split: at the twin + at another keypoint
        m = doc["metrics"]
        assert math.isclose(m["wrong_at_twin_high"] + m["wrong_at_other_high"],
                            m["any_keypoint_pck_high"] - m["test_pck_100"], abs_tol=0.01), m
        assert m["wrong_near_own_high"] <= m["wrong_at_twin_high"] + m["wrong_at_other_high"] + 1e-9
    if doc["preset"] == "smoke":                     # smoke numbers test the plumbing: no gain is claimed
        assert not [k for k in doc["metrics"] if "gap" in k or "gain" in k], doc["metrics"]
