"""What the semantic keypoint representations z_i learned: extraction, t-SNE and the numbers behind paper Fig. 4.

The paper (§4.3, Fig. 4) shows a t-SNE of the 64-d z_i = GMP(F * h_i) of LSP test keypoints and says that
representations of the same keypoint cluster together. Here that claim is measured, not only pictured:

    emb = extract(model, test)                      # one row per visible (v = 2) keypoint of the test set
    nb = neighbours(emb.z, emb.image, k=5)          # 5 nearest neighbours from *other* images (64-d, Euclidean)
    knn_accuracy(emb, nb)["accuracy"]               # % of points whose neighbours vote for their own type
    left_right_confusion(emb, nb)["rate"]           # % of a left/right keypoint's neighbours that are its twin
    idx, xy = layout(emb, perplexity=30)            # t-SNE (scikit-learn) of a fixed random subset of points
    silhouette(xy, emb.kind[idx])                   # cluster quality by keypoint type in the 2-D map
    figure({"model": (xy, emb.kind[idx])}, emb.names).savefig("tsne.png")

k-NN is leave-one-out with the query's own image excluded: within an image every keypoint has a different type
and shares its background, so same-image neighbours can only be wrong and say nothing about whether keypoint i of
one animal looks like keypoint i of another, which is what Fig. 4 claims.

scikit-learn runs with `THREADS` OpenMP threads (default 1): its Barnes-Hut t-SNE enters thousands of tiny
parallel regions, and on a small shared CPU the threads wait on each other, so a map can take many times longer
than with one thread (one thread, 64-d: about 5 s for 400 points, 15 s for 2,000). Raise it on a big idle machine.
"""
from dataclasses import dataclass, field, fields

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.manifold import TSNE
from sklearn.metrics import silhouette_score
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from kpsemi import draw
from kpsemi.errors import UserError
from kpsemi.method import heatmaps as H, models

SOURCES = ("predicted", "ground truth")
THREADS = 1


def _threads():
    return threadpool_limits(THREADS)


@dataclass
class Embeddings:
    """One row per visible keypoint; `image` indexes the KeypointData the rows came from."""
    z: np.ndarray                 # (P, C) float32 semantic keypoint representations
    kind: np.ndarray              # (P,) int64 keypoint type (heatmap channel)
    image: np.ndarray             # (P,) int64 image index
    cls: np.ndarray               # (P,) int64 class of the image (-1 unknown)
    xy: np.ndarray                # (P, 2) float32 ground-truth location in crop pixels
    names: list                   # K keypoint names
    flip_pairs: list = field(default_factory=list)    # (left, right) type pairs
    source: str = "predicted"     # which heatmaps h_i pooled the features: the model's own or the ground truth

    def __len__(self):
        return len(self.kind)

    def subset(self, idx):
        idx = np.asarray(idx)
        return Embeddings(**{f.name: (getattr(self, f.name)[idx] if isinstance(getattr(self, f.name), np.ndarray)
                                      else getattr(self, f.name)) for f in fields(self)})


def concat(embs):
    """One Embeddings of several with the same keypoints and source, their rows one after the other."""
    first = embs[0]
    return Embeddings(**{f.name: (np.concatenate([getattr(e, f.name) for e in embs])
                                  if isinstance(getattr(first, f.name), np.ndarray) else getattr(first, f.name))
                         for f in fields(Embeddings)})


@torch.no_grad()
def extract(model, data, source="predicted", stride=4, sigma=2.0, batch_size=64, device="cpu", progress=True):
    """Embeddings of every visible (v = 2) keypoint of `data` (KeypointData), batched and without gradients.

    source "predicted": z_i pools F with the model's own heatmap i (what the method sees on unlabeled images);
    "ground truth": with the Gaussian target of the labeled location (what labeled images use in training)."""
    if source not in SOURCES:
        raise UserError(f"source must be one of {SOURCES}, got {source!r}")
    K = data.meta.num_keypoints
    if model.num_keypoints != K:
        raise UserError(f"the model predicts {model.num_keypoints} keypoints but the data has {K} "
                        f"({', '.join(data.meta.keypoints)})")
    was = model.training
    model.eval().to(device)
    zs, kinds, images = [], [], []
    for i in tqdm(range(0, len(data), batch_size), desc="embeddings", disable=not progress, leave=False):
        idx = torch.arange(i, min(i + batch_size, len(data)))
        b = data.batch(idx, device)
        o = model(b["image"])
        hm = o["heatmaps"].float()                                          # (B, K, h, w)
        if source == "ground truth":
            hm = H.render(b["keypoints"], hm.shape[-2:], stride, sigma)
        z = models.keypoint_embeddings(o["features"].float(), hm).cpu()     # (B, K, C)
        vis = b["keypoints"][..., 2].cpu() == 2                            # (B, K)
        bi, ki = vis.nonzero(as_tuple=True)
        zs.append(z[bi, ki])
        kinds.append(ki)
        images.append(idx[bi])
    model.train(was)
    kind, image = torch.cat(kinds), torch.cat(images)
    if len(kind) == 0:
        raise UserError(f"{data.meta.name}: no visible (v = 2) keypoints to embed")
    return Embeddings(z=torch.cat(zs).numpy().astype(np.float32), kind=kind.numpy(), image=image.numpy(),
                      cls=data.cls[image].numpy(), xy=data.keypoints[image, kind, :2].numpy(),
                      names=list(data.meta.keypoints), flip_pairs=[tuple(p) for p in data.meta.flip_pairs],
                      source=source)


def neighbours(z, image, k=5):
    """(P, k) indices of each point's k nearest neighbours (Euclidean, nearest first) among points of other images.

    A query's own image holds at most `m` points (itself included), so k + m neighbours always leave k valid."""
    z, image = np.asarray(z), np.asarray(image)
    m = int(np.bincount(image).max())
    n_other = len(image) - m
    if k < 1 or n_other < k:
        raise UserError(f"k-NN needs 1 <= k <= points outside the largest image ({n_other}); got k={k}")
    with _threads():
        _, nn = NearestNeighbors(n_neighbors=min(len(z), k + m)).fit(z).kneighbors(z)  # (P, k + m)
    keep = image[nn] != image[:, None]
    order = np.argsort(~keep, axis=1, kind="stable")                                  # valid ones first, in order
    return np.take_along_axis(nn, order, 1)[:, :k]


def vote(labels, num_classes):
    """Majority label per row of (P, k) neighbour labels; ties go to the label met first (the nearer one)."""
    P, k = labels.shape
    counts = np.zeros((P, num_classes), dtype=np.int64)
    np.add.at(counts, (np.arange(P)[:, None], labels), 1)
    first = np.full((P, num_classes), k, dtype=np.int64)
    for j in range(k - 1, -1, -1):                                                    # nearest wins last
        first[np.arange(P), labels[:, j]] = j
    return np.argmax(counts * (k + 1) - first, axis=1)


def knn_accuracy(emb, nb):
    """Keypoint-identity k-NN accuracy in percent (overall, per type) and the (K, K) confusion counts."""
    K = len(emb.names)
    pred = vote(emb.kind[nb], K)
    conf = np.zeros((K, K), dtype=np.int64)
    np.add.at(conf, (emb.kind, pred), 1)                                              # rows: truth, cols: vote
    n = conf.sum(1)
    per = [100.0 * conf[i, i] / n[i] if n[i] else float("nan") for i in range(K)]
    return {"accuracy": 100.0 * float((pred == emb.kind).mean()), "per_type": per, "confusion": conf,
            "pred": pred, "k": nb.shape[1]}


def left_right_confusion(emb, nb):
    """How often a left keypoint's neighbours are its right twin and vice versa (percent of neighbours).

    rate: over all left/right points; left_to_right / right_to_left: by the query's side; share_of_errors: of the
    neighbours with a wrong type, the percent that are the twin (chance would be about 1 / (K - 1))."""
    twin = np.full(len(emb.names), -1)
    side = np.zeros(len(emb.names), dtype=np.int64)                                   # 1 left, 2 right
    for a, b in emb.flip_pairs:
        twin[a], twin[b], side[a], side[b] = b, a, 1, 2
    q = twin[emb.kind] >= 0
    if not q.any():
        raise UserError("left/right confusion needs flip_pairs (left/right keypoint pairs) in the data's meta")
    nk = emb.kind[nb[q]]                                                              # (Q, k) neighbour types
    is_twin = nk == twin[emb.kind[q]][:, None]
    wrong = nk != emb.kind[q][:, None]
    s = side[emb.kind[q]]
    return {"rate": 100.0 * float(is_twin.mean()),
            "left_to_right": 100.0 * float(is_twin[s == 1].mean()) if (s == 1).any() else float("nan"),
            "right_to_left": 100.0 * float(is_twin[s == 2].mean()) if (s == 2).any() else float("nan"),
            "share_of_errors": 100.0 * float(is_twin.sum() / wrong.sum()) if wrong.any() else float("nan"),
            "points": int(q.sum())}


def sample(n, max_points=None, seed=0):
    """Sorted indices of a fixed random subset of range(n) (all when max_points is None or >= n)."""
    if max_points is None or max_points >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, int(max_points), replace=False))


def tsne(z, perplexity=30.0, seed=0):
    """(P, 2) t-SNE map of (P, C) points (scikit-learn, PCA init). Perplexity is capped at (P - 1) / 3 so small
    sets still run; `effective_perplexity` gives the value used."""
    if not perplexity > 0:
        raise UserError(f"perplexity must be positive, got {perplexity}")
    if len(z) < 4:
        raise UserError(f"t-SNE needs at least 4 points, got {len(z)}")
    p = effective_perplexity(perplexity, len(z))
    with _threads():
        xy = TSNE(2, perplexity=p, init="pca", learning_rate="auto", random_state=seed).fit_transform(
            np.asarray(z, dtype=np.float32))
    return xy.astype(np.float32)


def effective_perplexity(perplexity, n):
    return float(min(perplexity, max(1.0, (n - 1) / 3)))


def layout(emb, perplexity=30.0, types=None, max_points=None, seed=0):
    """(idx, xy): a fixed random subset of the points of `types` (indices into emb, None: all types) and their
    t-SNE map (len(idx), 2). The subset depends on seed and types only, so models share it."""
    pool = np.arange(len(emb)) if types is None else np.flatnonzero(np.isin(emb.kind, list(types)))
    idx = pool[sample(len(pool), max_points, seed)]
    return idx, tsne(emb.z[idx], perplexity, seed)


def silhouette(xy, kind):
    """Silhouette score of points (P, D) grouped by keypoint type, in [-1, 1] (scikit-learn, Euclidean)."""
    n_types = len(np.unique(kind))
    if not 2 <= n_types < len(kind):
        raise UserError(f"silhouette needs 2 .. {len(kind) - 1} keypoint types among {len(kind)} points, "
                        f"got {n_types}")
    with _threads():
        return float(silhouette_score(xy, kind))


def analyse(emb, k=5, perplexity=30.0, max_points=None, seed=0, progress=True, desc="analyse"):
    """All numbers for one model: k-NN (all points, 64-d), left/right confusion, t-SNE layout and silhouettes."""
    bar = tqdm(total=3, desc=f"{desc}: k-NN", disable=not progress, leave=False)
    nb = neighbours(emb.z, emb.image, k)
    knn = knn_accuracy(emb, nb)
    bar.update(1)
    bar.set_description(f"{desc}: t-SNE")
    idx, xy = layout(emb, perplexity, None, max_points, seed)
    bar.update(1)
    bar.set_description(f"{desc}: silhouettes")
    out = {"knn": knn, "knn_accuracy": knn["accuracy"], "idx": idx, "xy": xy,
           "silhouette_2d": silhouette(xy, emb.kind[idx]), "silhouette_64d": silhouette(emb.z[idx], emb.kind[idx])}
    out["left_right"] = left_right_confusion(emb, nb) if emb.flip_pairs else None
    bar.update(1)
    bar.close()
    return out


def scatter(ax, xy, kind, names, size=6, title=None):
    """2-D points coloured by keypoint type with the kit's keypoint colours (as draw.keypoints uses)."""
    colours = draw.keypoint_colours(len(names))
    for t in np.unique(kind):
        m = kind == t
        ax.scatter(xy[m, 0], xy[m, 1], s=size, color=colours[t], label=names[t], alpha=0.8, linewidths=0)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def figure(panels, names, suptitle=None, size=4.6):
    """Paper Fig. 4 for one or more models: {title: (xy (P, 2), kind (P,))} side by side, one legend of names."""
    fig, axes = plt.subplots(1, len(panels), figsize=(size * len(panels) + 1.8, size), squeeze=False)
    for ax, (title, (xy, kind)) in zip(axes[0], panels.items()):
        scatter(ax, xy, kind, names, title=title)
    handles = [plt.Line2D([], [], marker="o", ls="", color=c, label=n)
               for n, c in zip(names, draw.keypoint_colours(len(names)))]
    fig.legend(handles=handles, loc="center right", fontsize=7, frameon=False, markerscale=0.9)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1 - 1.7 / fig.get_figwidth(), 1))
    return fig


def confusion_figure(confusions, names, size=4.2):
    """k-NN confusion matrices {title: (K, K) counts}, rows normalised to percent: left/right twins show up as
    bright off-diagonal cells next to the diagonal."""
    fig, axes = plt.subplots(1, len(confusions), figsize=(size * len(confusions) + 1.5, size + 1.2), squeeze=False,
                             layout="constrained")
    for j, (ax, (title, conf)) in enumerate(zip(axes[0], confusions.items())):
        pct = 100.0 * conf / np.maximum(conf.sum(1, keepdims=True), 1)
        im = ax.imshow(pct, cmap="magma", vmin=0, vmax=100)
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
        ax.set_yticks(range(len(names)), names if j == 0 else [], fontsize=6)
        ax.set_xlabel("k-NN vote", fontsize=8)
        ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="% of the row's points")
    return fig
