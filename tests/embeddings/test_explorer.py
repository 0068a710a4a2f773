"""The t-SNE explorer (kpsemi.embeddings.explorer) driven headless: its state methods, and its widgets' traits set the way the
browser sets them (jupyter-scatter's `hovering` and `selection`, the controls' `value`). tests/embeddings/test_browser.py
checks in JupyterLab that the browser really sends them."""
import io
import os

import numpy as np
import pytest
import torch
from PIL import Image

from kpsemi import config
from kpsemi import data as datasets
from kpsemi.embeddings import analysis as E, explorer as X, trained
from kpsemi.errors import UserError
from kpsemi.method import models


def test_patch_pads_outside_the_image():
    img = torch.arange(3 * 8 * 8, dtype=torch.int32).reshape(3, 8, 8)
    p = X.patch(img, (0.5, 0.5), 4)
    assert p[:, 2:, 2:].tolist() == img[:, :2, :2].tolist() and int(p[:, :2].abs().sum() + p[:, :, :2].abs().sum()) == 0
    assert X.patch(img, (5.2, 3.9), 4).tolist() == img[:, 1:5, 3:7].tolist()


def _checkpoint(path, seed, data, **cfg_kw):
    torch.manual_seed(seed)
    m = models.KeypointModel(data.meta.num_keypoints, "hrnet_tiny", False, 64)
    meta = {"name": data.meta.name, "keypoints": list(data.meta.keypoints), "skeleton": data.meta.skeleton,
            "flip_pairs": [list(p) for p in data.meta.flip_pairs], "classes": data.meta.classes,
            "attributes": data.meta.attributes, "metric": data.meta.metric}
    meta.update(cfg_kw.pop("meta", {}))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save({"model": m.state_dict(), "config": config.to_dict(config.get("smoke", **cfg_kw)), "meta": meta,
                "step": 0}, path)
    return path


@pytest.fixture(scope="module")
def small_test():
    from kpsemi.data.synthetic import writer as synth
    synth.ensure("smoke", 0, progress=False)
    return datasets.load("synthetic", "test", 64, synth_size="smoke", progress=False).subset(range(12))


@pytest.fixture(scope="module")
def ex(small_test, tmp_path_factory):
    d = tmp_path_factory.mktemp("runs")
    a = _checkpoint(str(d / "a" / "best.pt"), 0, small_test)
    _checkpoint(str(d / "b" / "best.pt"), 1, small_test)
    return X.Explorer({"a": a, "b": str(d / "b")}, small_test, perplexity=20, max_points=60)


def test_model_paths(tmp_path):
    (tmp_path / "r1").mkdir()
    (tmp_path / "r1" / "best.pt").write_bytes(b"")
    assert trained.model_paths([str(tmp_path / "r1")]) == {"r1": str(tmp_path / "r1" / "best.pt")}
    with pytest.raises(UserError, match=r"model 'x': no checkpoint at .*nope"):
        trained.model_paths({"x": str(tmp_path / "nope")})


def _shown(image):
    """Whether an Image widget shows a picture (an empty one is hidden: no broken-image icon)."""
    visible = image.layout.display != "none" and image.layout.visibility != "hidden"
    assert visible == bool(image.value), "an empty image must be hidden, a picture shown"
    return visible


def test_explorer_controls_recompute_and_cache(ex, small_test):
    sw = ex.scatter.widget
    v = ex.view()
    assert v["model"] == "a" and v["points"] == 60 and v["types"] == small_test.meta.keypoints
    assert sw.points.shape == (60, 4) and np.abs(sw.points[:, :2]).max() < 0.95      # a margin around the map
    assert list(ex.scatter._data["keypoint"].cat.categories) == small_test.meta.keypoints
    xy_a = ex.xy
    ex.w["model"].value = "b"                                                  # the dropdown's callback
    assert ex.model_name == "b" and ex.w["status"].value.startswith("<b>b</b>") and len(ex.cache) == 2
    assert np.array_equal(ex.idx, ex.cache[("a", 20.0, tuple(range(16)))][0])  # same points, another model
    assert not np.allclose(ex.xy, xy_a)                                        # another model's map
    ex.w["model"].value = "a"
    assert ex.xy is xy_a and len(ex.cache) == 2                                # back: from the cache
    ex.w["types"].value = ("left_eye", "right_eye")
    assert ex.types == (1, 2) and set(ex.view()["kind"]) <= {1, 2}
    assert list(ex.scatter._data["keypoint"].cat.categories) == ["left_eye", "right_eye"]
    assert sw.points.shape == (len(ex.idx), 4) and "right_eye" in ex.w["legend"].value
    assert "withers" not in ex.w["legend"].value
    xy_eyes = ex.xy
    ex.w["perplexity"].value = 2                                               # the slider: a new t-SNE
    assert ex.perplexity == 2.0 and ex.view()["effective_perplexity"] == 2.0 and ("a", 2.0, (1, 2)) in ex.cache
    assert ex.xy.shape == xy_eyes.shape and not np.allclose(ex.xy, xy_eyes)
    pts, d = sw.points[:, :2], ex.xy - ex.xy.mean(0)                          # the plot shows the new map,
    scale = float((pts - pts.mean(0)).ravel() @ d.ravel() / (d.ravel() @ d.ravel()))   # one scale for x and y
    assert np.allclose(pts - pts.mean(0), scale * d, atol=1e-5) and 0.9 < np.abs(pts).max() < 0.95
    ex.set_types(range(16))
    assert ex.w["types"].value == tuple(small_test.meta.keypoints)             # widgets follow the methods
    ex.set_perplexity(20)
    assert ex.xy is xy_a and ex.w["perplexity"].value == 20


def test_explorer_hover_shows_the_keypoint_and_its_heatmap(ex, small_test):
    ex.select_model("a")
    sw = ex.scatter.widget
    assert ex.detail is None and not _shown(ex.w["detail"]) and not _shown(ex.w["thumbs"])   # nothing yet
    sw.hovering = 2                                                            # the browser: point 2 hovered
    d, e = ex.detail, ex.emb()
    row = ex.idx[2]
    assert d["point"] == 2 and d["image"] == e.image[row] and d["name"] == small_test.meta.keypoints[e.kind[row]]
    assert ex.scatter._data["image"][2] == small_test.ids[d["image"]]           # the tooltip names that image
    kp = small_test.keypoints[d["image"], d["kind"]]
    assert kp[2] == 2 and d["xy"] == pytest.approx((float(kp[0]), float(kp[1])))
    x, y, h = int(kp[0]), int(kp[1]), ex.patch_size // 2
    assert d["patch"].shape == (3, ex.patch_size, ex.patch_size)
    assert torch.equal(d["patch"][:, h, h], small_test.images[d["image"], :, y, x])   # the keypoint's pixel
    assert d["heatmap"].shape == (16, 16) and _shown(ex.w["detail"])
    m, _ = ex.model("a")
    with torch.no_grad():
        want = m(small_test.batch([d["image"]])["image"])["heatmaps"][0, d["kind"]]
    assert torch.allclose(d["heatmap"], want)
    sw.hovering = None                                                         # the mouse left: keep the detail
    assert ex.detail is d
    sw.hovering = 2                                                            # the shown point again: no redraw
    assert ex.detail is d
    sw.hovering = 3
    assert ex.detail["point"] == 3
    ex.set_perplexity(20)                                                      # a new map clears the detail
    assert ex.detail is None and not _shown(ex.w["detail"])


def test_explorer_pictures_are_drawn_at_the_size_shown(ex):
    """The panel shows each PNG at its own pixel size (no scaling), so 9 pt titles stay 12.5 px high."""
    ex.on_point(0)
    ex.on_select(range(10))
    for png, widget in ((ex.detail_png(), ex.w["detail"]), (ex.selection_png(), ex.w["thumbs"])):
        size = Image.open(io.BytesIO(png)).size
        assert (f"{size[0]}px", f"{size[1]}px") == (widget.layout.width, widget.layout.height)
    assert X.TITLE_PT * X.DPI / 72 >= 12
    ex.on_select([])
    assert not _shown(ex.w["thumbs"])


def test_explorer_lasso_and_click_list_the_images(ex, small_test):
    ex.select_model("a")
    sw, e = ex.scatter.widget, ex.emb()
    kind = e.kind[ex.idx]
    one_type = np.flatnonzero(kind == kind[0])                                 # a lasso around one type's points
    sw.selection = one_type.astype(np.uint32)
    imgs = e.image[ex.idx[one_type]]
    assert sorted(s["image"] for s in ex.selection) == sorted(imgs.tolist())   # one point per image and type
    assert all(s["points"] == 1 and s["types"] == [small_test.meta.keypoints[kind[0]]] for s in ex.selection)
    pts = [0, 1, 5, 9, 30, 59]                                                 # a region across types
    sw.selection = np.array(pts, dtype=np.uint32)
    imgs = e.image[ex.idx[pts]]
    counts = {int(i): int((imgs == i).sum()) for i in np.unique(imgs)}
    assert {s["image"]: s["points"] for s in ex.selection} == counts
    assert [s["points"] for s in ex.selection] == sorted(counts.values(), reverse=True)
    assert sum(len(s["types"]) for s in ex.selection) == len(pts)
    first = ex.selection[0]
    assert first["id"] == small_test.ids[first["image"]] and f"<td>{first['id']}</td>" in ex.w["selection"].value
    assert _shown(ex.w["thumbs"]) and ex.w["thumbs"].value[:4] == b"\x89PNG"
    sw.selection = np.array([7], dtype=np.uint32)                              # a click on one point
    assert len(ex.selection) == 1 and ex.selection[0]["image"] == e.image[ex.idx[7]]
    sw.selection = np.array([], dtype=np.uint32)                               # a double-click: cleared
    assert ex.selection == [] and not _shown(ex.w["thumbs"]) and "lasso" in ex.w["selection"].value


def test_explorer_switching_models_clears_the_selection_on_the_map(ex):
    ex.select_model("a")
    ex.scatter.widget.selection = np.arange(10, dtype=np.uint32)
    assert ex.selection
    ex.w["model"].value = "b"
    assert ex.selection == [] and len(ex.scatter.widget.selection) == 0        # no old lasso left on the map
    assert ex.detail is None and "lasso" in ex.w["selection"].value
    ex.w["model"].value = "a"


def test_a_new_map_reaches_the_browser_in_one_message(ex, monkeypatch):
    """jupyter-scatter rebuilds its hover index only if `non_spatial_points_update` is False when the points arrive;
    sent as separate messages the flag may be applied after the points, and hovers on the new map find nothing."""
    sent = []
    monkeypatch.setattr(ex.scatter.widget, "_send", lambda msg, buffers=None: sent.append(msg))
    ex.select_model("b")
    updates = [m["state"] for m in sent if m.get("method") == "update" and "points" in m["state"]]
    assert len(updates) == 1 and updates[0]["non_spatial_points_update"] is False
    resets = [m["content"] for m in sent if m.get("method") == "custom" and m["content"]["type"] == "view_reset"]
    assert len(resets) == 1 and "area" not in resets[0]                      # the whole map, zoom reset
    ex.select_model("a")


def test_explorer_reuses_precomputed_embeddings_and_maps(ex):
    e, (idx, xy) = ex.emb("a"), ex.cache[("a", 20.0, tuple(range(16)))]
    ex2 = X.Explorer({"a": ex.paths["a"]}, ex.data, perplexity=20, embeddings={"a": e}, layouts={"a": (idx, xy)},
                     widgets=False)
    assert ex2.xy is xy and ex2.emb() is e and ex2._models == {} and ex2.ui is None   # nothing recomputed
    assert ex2.on_select(range(len(idx)))[0]["points"] >= 1


def test_explorer_on_a_paper_format_dataset(tmp_path):
    from tests import realfixtures as R
    from kpsemi.data import crops as data
    R.make_lsp(str(tmp_path))                                                  # 2 LSP test images, 14 joints
    d = data.materialize(*datasets.load_records("lsp", "test", root=str(tmp_path)), 64, workers=1, progress=False)
    _checkpoint(str(tmp_path / "lsp-run" / "best.pt"), 0, d)
    ex = X.Explorer([str(tmp_path / "lsp-run")], d, perplexity=30)
    v = ex.view()
    assert v["model"] == "lsp-run" and v["points"] == int((d.keypoints[..., 2] == 2).sum())
    assert v["effective_perplexity"] == (v["points"] - 1) / 3                  # capped for a small set
    assert ex.on_point(0)["name"] in d.meta.keypoints and ex.detail["heatmap"].shape == (16, 16)
    assert sorted(s["image"] for s in ex.on_select(range(v["points"]))) == [0, 1]


def test_explorer_errors(ex, small_test, tmp_path):
    with pytest.raises(UserError, match="unknown model 'c'"):
        ex.select_model("c")
    with pytest.raises(UserError, match="unknown keypoint type 'tail'"):
        ex.set_types(["tail"])
    with pytest.raises(UserError, match="at least one keypoint type"):
        ex.set_types([])
    with pytest.raises(UserError, match="perplexity must be positive"):
        ex.set_perplexity(0)
    ex._control(ex.set_perplexity, -1)                                         # a widget callback: no raise
    assert "perplexity must be positive" in ex.w["status"].value and ex.perplexity == 20.0
    with pytest.raises(UserError, match="source must be one of"):
        X.Explorer({"a": ex.paths["a"]}, small_test, source="gt", widgets=False)
    with pytest.raises(UserError, match="needs KeypointData"):
        X.Explorer({"a": ex.paths["a"]}, "data/synthetic", widgets=False)
    with pytest.raises(UserError, match="at least one model"):
        X.Explorer({}, small_test, widgets=False)
    with pytest.raises(UserError, match="come from ground truth heatmaps"):
        X.Explorer({"a": ex.paths["a"]}, small_test, embeddings={"a": E.Embeddings(
            z=np.zeros((1, 64)), kind=np.zeros(1, int), image=np.zeros(1, int), cls=np.zeros(1, int),
            xy=np.zeros((1, 2)), names=small_test.meta.keypoints, source="ground truth")}, widgets=False)
    big = _checkpoint(str(tmp_path / "big" / "best.pt"), 0, small_test, input_size=128)
    with pytest.raises(UserError, match="trained on 128 px crops but the data has 64 px"):
        X.Explorer({"big": big}, small_test, widgets=False)
    other = _checkpoint(str(tmp_path / "o" / "best.pt"), 0, small_test,
                        meta={"keypoints": [f"k{i}" for i in range(16)]})
    with pytest.raises(UserError, match="trained on keypoints"):
        X.Explorer(str(tmp_path / "o"), small_test, widgets=False)
    assert os.path.exists(other)
