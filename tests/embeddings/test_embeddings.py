"""Keypoint embeddings (kpsemi.embeddings.analysis) on hand-computable cases; the explorer: test_explorer.py."""
import numpy as np
import pytest
import torch

from kpsemi.embeddings import analysis as E
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

