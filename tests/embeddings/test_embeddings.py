"""Keypoint embeddings (kpsemi.embeddings) on hand-computable cases, and the t-SNE explorer driven headless."""
import os

import numpy as np
import pytest
import torch

from kpsemi import config
from kpsemi import data as datasets
from kpsemi.embeddings import analysis as E, explorer as X
from kpsemi.method import models
from kpsemi.data.crops import KeypointData
from kpsemi.data.records import Meta
from kpsemi.errors import UserError


# ---- extraction ---------------------------------------------------------------------------------------------------
class Stub(torch.nn.Module):
    """Features (B, 16, 4, 4): channel c is image mean * (one-hot of heatmap pixel c), so z_i = mean * h_i flattened
    (GMP of F * h_i picks h_i at pixel c in channel c); predicted heatmaps are 0.5 everywhere (1 once the pooling
    masks divide them by their peak)."""

    def __init__(self, k=2):
        super().__init__()
        self.num_keypoints = k

    def forward(self, images):                                              # (B, 3, 16, 16)
        m = images.mean((1, 2, 3))[:, None, None, None]
        return {"features": m * torch.eye(16).view(1, 16, 4, 4),
                "heatmaps": torch.full((images.shape[0], self.num_keypoints, 4, 4), 0.5)}


def _tiny():
    """3 images of 16 px, 2 keypoints at (6, 10): heatmap row 2, column 1 for stride 4; v per image below."""
    n, S = 3, 16
    images = torch.stack([torch.full((3, S, S), 51 * i, dtype=torch.uint8) for i in range(1, n + 1)])
    kp = torch.tensor([[6.0, 10.0, 0.0]]).repeat(n, 2, 1)
    kp[:, :, 2] = torch.tensor([[2, 1], [2, 2], [0, 2]])
    return KeypointData(meta=Meta("tiny", ["left_eye", "right_eye"], classes=["cat", "dog"]), images=images,
                        keypoints=kp, boxes=torch.zeros(n, 4), norm=torch.ones(n), cls=torch.tensor([0, 1, -1]),
                        attributes=torch.zeros(n, 0, dtype=torch.long), labeled=torch.ones(n, dtype=torch.bool),
                        transforms=torch.eye(3, dtype=torch.float64).repeat(n, 1, 1), ids=["a", "b", "c"],
                        files=["", "", ""])


def test_extract_keeps_visible_keypoints_and_pools_the_heatmaps():
    d = _tiny()
    e = E.extract(Stub(), d, batch_size=2, progress=False)
    assert e.kind.tolist() == [0, 0, 1, 1] and e.image.tolist() == [0, 1, 1, 2] and e.cls.tolist() == [0, 1, 1, -1]
    assert np.allclose(e.xy, [[6, 10]] * 4) and e.flip_pairs == [(0, 1)] and e.source == "predicted"
    means = np.array([0.2, 0.4, 0.4, 0.6])                                   # 51 / 255 * (1, 2, 2, 3)
    assert e.z.shape == (4, 16) and np.allclose(e.z, means[:, None], atol=1e-6)
    g = E.extract(Stub(), d, source="ground truth", stride=4, sigma=1.0, batch_size=1, progress=False)
    gauss = np.exp(-((np.arange(4)[:, None] - 2) ** 2 + (np.arange(4) - 1) ** 2) / 2).ravel()   # peak at row 2, col 1
    assert np.allclose(g.z, means[:, None] * gauss, atol=1e-6) and (g.z.argmax(1) == 9).all()
    assert np.array_equal(e.subset([1, 3]).image, [1, 2])


def test_extract_errors():
    with pytest.raises(UserError, match="predicts 3 keypoints but the data has 2"):
        E.extract(Stub(3), _tiny(), progress=False)
    with pytest.raises(UserError, match="source must be one of"):
        E.extract(Stub(), _tiny(), source="gt", progress=False)


# ---- metrics ------------------------------------------------------------------------------------------------------
def test_neighbours_skip_the_query_image():
    z, image = np.array([[0.0], [1.0], [2.0], [10.0], [11.0]]), np.array([0, 0, 1, 1, 2])
    assert E.neighbours(z, image, 1).tolist() == [[2], [2], [1], [4], [3]]
    assert E.neighbours(z, image, 2).tolist() == [[2, 3], [2, 3], [1, 0], [4, 1], [3, 2]]
    with pytest.raises(UserError, match="k-NN needs"):
        E.neighbours(z, image, 4)


def test_vote_majority_then_nearest():
    assert E.vote(np.array([[0, 1, 1], [1, 0, 0], [2, 2, 0]]), 3).tolist() == [1, 0, 2]
    assert E.vote(np.array([[1, 0], [0, 1]]), 3).tolist() == [1, 0]                # 1-1 ties: the nearer
    assert E.vote(np.array([[0, 1, 2, 1, 0]]), 3).tolist() == [0]                   # 2-2 tie: 0 met first


def _emb(kind, names, pairs=()):
    n = len(kind)
    return E.Embeddings(z=np.zeros((n, 2), np.float32), kind=np.array(kind), image=np.arange(n),
                        cls=np.zeros(n, int), xy=np.zeros((n, 2)), names=names, flip_pairs=list(pairs))


def test_knn_accuracy_by_hand():
    r = E.knn_accuracy(_emb([0, 0, 1, 1], ["a", "b"]), np.array([[1], [2], [3], [0]]))
    assert r["accuracy"] == 50.0 and r["per_type"] == [50.0, 50.0] and r["confusion"].tolist() == [[1, 1], [1, 1]]


def test_left_right_confusion_by_hand():
    e = _emb([0, 1, 2, 1, 2], ["nose", "left_eye", "right_eye"], [(1, 2)])
    nb = np.array([[1, 2], [2, 3], [1, 0], [1, 0], [1, 2]])   # types: p1 (2, 1), p2 (1, 0), p3 (1, 0), p4 (1, 2)
    r = E.left_right_confusion(e, nb)
    assert r["rate"] == 37.5 and r["left_to_right"] == 25.0 and r["right_to_left"] == 50.0
    assert r["share_of_errors"] == 60.0 and r["points"] == 4
    with pytest.raises(UserError, match="flip_pairs"):
        E.left_right_confusion(_emb([0, 1], ["a", "b"]), np.array([[1], [0]]))


def test_twins_nearer_than_their_own_type_end_to_end():
    """2 images on a line: each left point lies 1 from the other image's right twin, noses sit together."""
    z = np.array([[0.0], [5.0], [100.0], [6.0], [1.0], [101.0]])             # image 0: L R N, image 1: L R N
    e = E.Embeddings(z=z, kind=np.array([1, 2, 0, 1, 2, 0]), image=np.array([0, 0, 0, 1, 1, 1]), cls=np.zeros(6, int),
                     xy=np.zeros((6, 2)), names=["nose", "left_eye", "right_eye"], flip_pairs=[(1, 2)])
    nb = E.neighbours(e.z, e.image, 1)
    assert nb[:, 0].tolist() == [4, 3, 5, 1, 0, 2]
    assert E.knn_accuracy(e, nb)["accuracy"] == pytest.approx(100 / 3)
    assert E.knn_accuracy(e, nb)["confusion"].tolist() == [[2, 0, 0], [0, 0, 2], [0, 2, 0]]
    r = E.left_right_confusion(e, nb)
    assert r["rate"] == r["left_to_right"] == r["right_to_left"] == r["share_of_errors"] == 100.0


def test_silhouette_by_hand():
    s = E.silhouette(np.array([[0.0], [1.0], [10.0], [11.0]]), np.array([0, 0, 1, 1]))
    assert s == pytest.approx((9.5 / 10.5 + 8.5 / 9.5) / 2)
    with pytest.raises(UserError, match="silhouette needs"):
        E.silhouette(np.zeros((3, 2)), np.zeros(3, int))


def _clusters(n=20, types=3, seed=0):
    rng = np.random.default_rng(seed)
    kind = np.repeat(np.arange(types), n)
    z = rng.normal(size=(n * types, 64)) + 20 * np.eye(64)[kind]             # type t sits 20 along axis t
    return E.Embeddings(z=z.astype(np.float32), kind=kind, image=np.tile(np.arange(n), types),
                        cls=np.zeros(n * types, int), xy=np.zeros((n * types, 2)), names=["a", "left_b", "right_b"],
                        flip_pairs=[(1, 2)])


def test_separated_types_are_recovered_by_knn_tsne_and_silhouette():
    e = _clusters()
    a = E.analyse(e, k=3, perplexity=10, max_points=45, progress=False)
    assert a["knn_accuracy"] == 100.0 and a["left_right"]["rate"] == 0.0 and len(a["idx"]) == 45
    assert a["silhouette_2d"] > 0.5 and a["silhouette_64d"] > 0.5
    idx, xy = E.layout(e, perplexity=10, max_points=45)
    assert np.array_equal(idx, a["idx"]) and np.array_equal(xy, a["xy"])     # seeded: the same map again
    idx2, _ = E.layout(e, perplexity=10, types=[1, 2])
    assert set(e.kind[idx2]) == {1, 2} and len(idx2) == 40


def test_tsne_perplexity_is_capped_and_checked():
    assert E.effective_perplexity(30, 10) == 3.0 and E.effective_perplexity(30, 1000) == 30.0
    assert E.tsne(np.random.default_rng(0).normal(size=(10, 4)), perplexity=30).shape == (10, 2)
    with pytest.raises(UserError, match="perplexity must be positive"):
        E.tsne(np.zeros((10, 4)), perplexity=0)
    with pytest.raises(UserError, match="at least 4 points"):
        E.tsne(np.zeros((3, 4)))


def test_figures_have_one_panel_per_model_and_a_legend():
    e = _clusters(n=5)
    fig = E.figure({"a": (e.z[:, :2], e.kind), "b": (e.z[:, 1:3], e.kind)}, e.names)
    assert len(fig.axes) == 2 and [t.get_text() for t in fig.legends[0].get_texts()] == e.names
    conf = E.confusion_figure({"a": np.eye(3, dtype=int)}, e.names)
    assert conf.axes[0].images[0].get_array()[1, 1] == 100.0


# ---- explorer -----------------------------------------------------------------------------------------------------
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
    assert X.model_paths([str(tmp_path / "r1")]) == {"r1": str(tmp_path / "r1" / "best.pt")}
    with pytest.raises(UserError, match=r"model 'x': no checkpoint at .*nope"):
        X.model_paths({"x": str(tmp_path / "nope")})


def _event(fig, event, picks=(), selector=None):
    """What the browser sends plotly's FigureWidget on a click / hover / selection / deselect: (trace, point) pairs.
    plotly then calls every trace's callbacks of that event, in trace order, with that trace's points."""
    fig._js2py_pointsCallback = {"event_type": f"plotly_{event}", "selector": selector, "device_state": None,
                                 "points": {"trace_indexes": [t for t, _ in picks],
                                            "point_indexes": [p for _, p in picks],
                                            "xs": [float(fig.data[t].x[p]) for t, p in picks],
                                            "ys": [float(fig.data[t].y[p]) for t, p in picks]}}


def test_explorer_controls_recompute_and_cache(ex, small_test):
    v = ex.view()
    assert v["model"] == "a" and v["points"] == 60 and v["types"] == small_test.meta.keypoints
    assert len(ex.fig.data) == len(np.unique(v["kind"])) and sum(len(t.x) for t in ex.fig.data) == 60
    xy_a = ex.xy
    ex.w["model"].value = "b"                                                  # the dropdown's callback
    assert ex.model_name == "b" and ex.fig.layout.title.text.startswith("b:") and len(ex.cache) == 2
    assert np.array_equal(ex.idx, ex.cache[("a", 20.0, tuple(range(16)))][0])  # same points, another model
    assert not np.allclose(ex.xy, xy_a)                                        # another model's map
    ex.w["model"].value = "a"
    assert ex.xy is xy_a and len(ex.cache) == 2                                # back: from the cache
    ex.w["types"].value = ("left_eye", "right_eye")
    assert ex.types == (1, 2) and set(ex.view()["kind"]) <= {1, 2} and [t.name for t in ex.fig.data] == [
        "left_eye", "right_eye"]
    xy_eyes = ex.xy
    ex.w["perplexity"].value = 2                                               # the slider: a new t-SNE
    assert ex.perplexity == 2.0 and ex.view()["effective_perplexity"] == 2.0 and ("a", 2.0, (1, 2)) in ex.cache
    assert ex.xy.shape == xy_eyes.shape and not np.allclose(ex.xy, xy_eyes)
    assert sum(len(t.x) for t in ex.fig.data) == len(ex.idx) and np.allclose(ex.fig.data[0].x, ex.xy[
        ex.fig.data[0].customdata, 0])                                         # the plot shows the new map
    ex.set_types(range(16))
    assert ex.w["types"].value == tuple(small_test.meta.keypoints)             # widgets follow the methods
    ex.set_perplexity(20)
    assert ex.xy is xy_a and ex.w["perplexity"].value == 20


def test_explorer_click_and_hover_show_the_keypoint_and_its_heatmap(ex, small_test):
    ex.select_model("a")
    t = max(range(len(ex.fig.data)), key=lambda j: len(ex.fig.data[j].x))
    tr = ex.fig.data[t]
    _event(ex.fig, "click", [(t, 2)])
    d, e = ex.detail, ex.emb()
    row = ex.idx[int(tr.customdata[2])]
    assert d["point"] == int(tr.customdata[2]) and d["image"] == e.image[row] and d["name"] == tr.name
    kp = small_test.keypoints[d["image"], d["kind"]]
    assert kp[2] == 2 and d["xy"] == pytest.approx((float(kp[0]), float(kp[1])))
    x, y, h = int(kp[0]), int(kp[1]), ex.patch_size // 2
    assert d["patch"].shape == (3, ex.patch_size, ex.patch_size)
    assert torch.equal(d["patch"][:, h, h], small_test.images[d["image"], :, y, x])   # the keypoint's pixel
    assert d["heatmap"].shape == (16, 16) and ex.w["detail"].value[:4] == b"\x89PNG"
    m, _ = ex.model("a")
    with torch.no_grad():
        want = m(small_test.batch([d["image"]])["image"])["heatmaps"][0, d["kind"]]
    assert torch.allclose(d["heatmap"], want)
    _event(ex.fig, "hover", [(t, 2)])                                           # the shown point: no redraw
    assert ex.detail is d
    _event(ex.fig, "hover", [(t, 3)])
    assert ex.detail["point"] == int(tr.customdata[3])
    ex.set_perplexity(20)                                                      # a new map clears the detail
    assert ex.detail is None and ex.w["detail"].value == b""


def test_explorer_box_and_lasso_list_the_images(ex, small_test):
    ex.select_model("a")
    e = ex.emb()
    tr = ex.fig.data[0]                                                        # lasso all points of one type
    _event(ex.fig, "selected", [(0, j) for j in range(len(tr.x))],
           {"type": "lasso", "selector_state": {"xs": [0, 1, 1], "ys": [0, 0, 1]}})
    imgs = e.image[ex.idx[np.asarray(tr.customdata, dtype=int)]]
    assert sorted(s["image"] for s in ex.selection) == sorted(imgs.tolist())   # one point per image and type
    assert all(s["points"] == 1 and s["types"] == [tr.name] for s in ex.selection)
    picks = [(0, 0), (0, 1), (2, 0), (len(ex.fig.data) - 1, 0)]                # a box across three traces
    _event(ex.fig, "selected", picks, {"type": "box", "selector_state": {"xrange": [-1, 1], "yrange": [-1, 1]}})
    pts = [int(ex.fig.data[t].customdata[p]) for t, p in picks]
    imgs = e.image[ex.idx[pts]]
    counts = {int(i): int((imgs == i).sum()) for i in np.unique(imgs)}
    assert {s["image"]: s["points"] for s in ex.selection} == counts
    assert [s["points"] for s in ex.selection] == sorted(counts.values(), reverse=True)
    assert sum(len(s["types"]) for s in ex.selection) == 4
    first = ex.selection[0]
    assert first["id"] == small_test.ids[first["image"]] and first["id"] in ex.w["selection"].value
    assert ex.w["thumbs"].value[:4] == b"\x89PNG"
    _event(ex.fig, "deselect")                                                 # double-click: cleared
    assert ex.selection == [] and ex.w["thumbs"].value == b"" and "box/lasso" in ex.w["selection"].value


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
