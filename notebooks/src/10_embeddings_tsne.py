# %% [markdown]
# # 10 · What the keypoint embeddings learned: t-SNE (paper Fig. 4) and an explorer
#
# The method gives every keypoint *i* of an image a **semantic keypoint representation**
# *z_i* = GMP(F ⊙ h_i): the 64-channel feature map F is weighted by keypoint *i*'s heatmap h_i and max-pooled over
# the pixels. Semantic consistency (SC) asks a tiny classifier to tell the keypoint type from *z_i*; transformation
# invariance (TI) asks *z_i* to stay put when the image is warped. The paper's Fig. 4 shows a t-SNE of these
# vectors on the LSP test set and reads it as "representations of the same keypoint cluster together".
#
# A t-SNE picture is a good illustration and a poor measurement (its look depends on the perplexity, and the
# distances between its clusters mean little), so this notebook also **measures** the claim, for a supervised
# model and the semi-supervised one trained with the same labels:
#
# - **k-NN keypoint-identity accuracy** in the 64-d space: does the majority of a point's *k* nearest neighbours
#   have its keypoint type? Leave-one-out, and neighbours from the **same image are excluded**: in one image every
#   keypoint has another type and the same background, so those neighbours could only be wrong, and the claim is
#   about keypoint *i* of one animal resembling keypoint *i* of *another* animal.
# - **silhouette score** by keypoint type of the 2-D t-SNE map (in [-1, 1]; > 0: points sit closer to their own
#   type than to the nearest other type), and of the 64-d points for reference.
# - **left/right confusion**: of a left keypoint's nearest neighbours, how many are its right twin (and vice
#   versa). Left and right eyes look alike, so this is the natural failure of appearance-based representations.

# %% tags=["parameters"]
preset = None            # "smoke" | "demo" | "paper"; None: $KPSEMI_PRESET, else "demo"
dataset = None           # None: the embedded set; "lsp" | "mpii" | "cub" | "atrw" after `kpsemi data download`
labeled = 0.05           # labeled fraction, the same for both models
split_seed = 0
source = "predicted"     # heatmaps that pool z: "predicted" (the model's own) or "ground truth"
k = 5                    # neighbours of the k-NN test
perplexity = 30.0        # t-SNE perplexity
max_points = None        # points in the t-SNE maps; None: 300 (smoke), 2000 (demo), 5000 (paper)
out_dir = None           # None: results/10_embeddings_tsne/

# %%
import matplotlib.pyplot as plt
import numpy as np

from kpsemi import config, course, data, draw, runs
from kpsemi.embeddings import analysis, explorer
from kpsemi.method import models
from kpsemi.repro import report

cfg = config.get(preset, dataset=dataset)
out = report.notebook_dir("10_embeddings_tsne", out_dir)
max_points = max_points or config.by_preset(cfg.preset, smoke=300, demo=2000, paper=5000)
print(f"preset {cfg.preset}, {cfg.dataset}: {cfg.backbone} at {cfg.input_size} px; z from {source} heatmaps; "
      f"results in {out}")

# %% [markdown]
# ## Two models, the same labels
# Both train with the preset's defaults through `runs.cached`, which calls `runs.run` in a folder of
# results/runs/ named by the configuration, or reads back a finished run of the same configuration (other
# notebooks share it). The supervised model never uses *z*, so its 1×1 embedding convolution keeps its random
# initialisation: its *z* is a random 64-d projection of what the backbone learned for the heatmaps. That is the
# baseline the unsupervised constraints have to beat.

# %%
setups = {"supervised": ("sup",), "semi-supervised": ("sup", "sc", "te", "ti")}
results, folders = {}, {}
for name, losses in setups.items():
    run_cfg = config.get(cfg.preset, dataset=cfg.dataset, losses=losses, labeled=labeled, split_seed=split_seed)
    results[name], folders[name] = runs.cached(run_cfg, progress=True)
print(draw.markdown([{"model": n, "losses": "+".join(m["losses"]),
                      f"test {m['metric']}": round(m["test_pck"], 2), "steps": m["steps"],
                      "seconds": round(m["seconds"])} for n, m in results.items()]))

# %% [markdown]
# ## One embedding per visible keypoint of the test set
# `analysis.extract` runs the model over the test crops (batched, no gradients), computes *z* for all K
# keypoints and keeps those that are visible (v = 2), with their type, image, class and location. With
# `source = "predicted"` the pooling uses the model's **own** heatmaps, which is what happens on unlabeled
# images; `"ground truth"` pools with the labeled Gaussians instead (what labeled images use in training) and
# separates what the features encode from where the model looks.

# %%
test = data.load(cfg.dataset, "test", cfg.input_size, synth_size=cfg.synth_size, seed=cfg.data_seed,
                 progress=False)
embs, nets = {}, {}
for name, folder in folders.items():
    model, c, _ = nets[name] = models.load_model(f"{folder}/best.pt")
    embs[name] = analysis.extract(model, test, source, c["stride"], c["sigma"])
e0 = next(iter(embs.values()))
print(f"{len(e0)} visible keypoints in {len(np.unique(e0.image))} test images, {e0.z.shape[1]}-d each; "
      f"left/right pairs: {[(e0.names[a], e0.names[b]) for a, b in e0.flip_pairs]}")

# %% [markdown]
# ## The numbers
# k-NN and left/right confusion use every point (64-d, Euclidean). The t-SNE maps use the same random subset of
# `max_points` points for both models (so their silhouettes compare like with like). Chance level for k-NN is
# about the share of the most frequent type, roughly 1/K.

# %%
ana = {name: analysis.analyse(e, k=k, perplexity=perplexity, max_points=max_points, desc=name)
       for name, e in embs.items()}
chance = 100.0 * float(np.bincount(e0.kind).max()) / len(e0)
print(draw.markdown([{"model": n, f"{k}-NN accuracy %": a["knn_accuracy"], "silhouette 2-D": a["silhouette_2d"],
                      "silhouette 64-d": a["silhouette_64d"], "left->right twin %": a["left_right"]["left_to_right"],
                      "right->left twin %": a["left_right"]["right_to_left"],
                      "twin share of errors %": a["left_right"]["share_of_errors"]} for n, a in ana.items()]))
print(f"k-NN chance level: {chance:.1f} %; t-SNE on {len(ana['supervised']['idx'])} points, perplexity "
      f"{analysis.effective_perplexity(perplexity, len(ana['supervised']['idx'])):g}")

# %% [markdown]
# ## Paper Fig. 4: t-SNE of the keypoint embeddings
# One colour per keypoint type (the colours of the skeleton drawings). Tight, separate islands mean that a type's
# embeddings resemble each other across animals more than they resemble other types.

# %%
fig = analysis.figure({f"{n}  ({a['knn_accuracy']:.0f} % {k}-NN, silhouette {a['silhouette_2d']:.2f})":
                       (a["xy"], embs[n].kind[a["idx"]]) for n, a in ana.items()}, e0.names,
                      suptitle=f"t-SNE of z_i from {source} heatmaps, {labeled:.0%} labels ({cfg.preset} preset)")
fig.savefig(f"{out}/tsne.png", dpi=150)
plt.show()
print("saved", f"{out}/tsne.png")

# %% [markdown]
# ## Which types get confused
# Rows: a point's true type; columns: its neighbours' vote. Left/right twins sit next to each other in the
# keypoint order, so twin confusion shows as bright cells beside the diagonal; the bars give each type's k-NN
# accuracy.

# %%
fig = analysis.confusion_figure({n: a["knn"]["confusion"] for n, a in ana.items()}, e0.names)
fig.savefig(f"{out}/knn_confusion.png", dpi=150)
plt.show()
fig, ax = plt.subplots(figsize=(10, 3))
w = 0.8 / len(ana)
for j, (n, a) in enumerate(ana.items()):
    ax.bar(np.arange(len(e0.names)) + j * w, a["knn"]["per_type"], w, label=n)
ax.set_xticks(np.arange(len(e0.names)) + w / 2, e0.names, rotation=60, ha="right", fontsize=7)
ax.set_ylabel(f"{k}-NN accuracy %")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Features or heatmaps?
# *z_i* = GMP(F ⊙ h_i) can tell keypoint types apart for two reasons: the features F *at the keypoint* differ
# between types, or heatmap h_i itself has a shape of its own (its tails, side bumps, overall scale) that the
# pooling passes on. Pooling with the **ground-truth** Gaussians instead (the same bump for every type, placed on
# the labeled location) keeps only the first reason. The same k-NN test with those embeddings:

# %%
gt = {}
for name, (model, c, _) in nets.items():
    e = embs[name] if source == "ground truth" else analysis.extract(model, test, "ground truth", c["stride"],
                                                                     c["sigma"])
    nb = analysis.neighbours(e.z, e.image, k)
    gt[name] = {"knn": analysis.knn_accuracy(e, nb)["accuracy"],
                "twin": analysis.left_right_confusion(e, nb)["rate"]}
print(draw.markdown([{"model": n, f"{k}-NN % ({source} h)": ana[n]["knn_accuracy"],
                      f"{k}-NN % (ground-truth h)": g["knn"], f"twin % ({source} h)": ana[n]["left_right"]["rate"],
                      "twin % (ground-truth h)": g["twin"]} for n, g in gt.items()]))

# %% [markdown]
# ## Explore it yourself
# Choose a model, the keypoint types to show and the perplexity; **hover** a point to see the crop, the patch
# around that keypoint and the heatmap that pooled its *z*; **lasso** a region (the map's toolbar: the lasso-type
# button switches to a rectangle) or click a point to list the images in it, e.g. a stray island of left eyes
# inside the right-eye cluster; a double-click on empty space clears the selection. Maps are cached per (model,
# perplexity, types); the state lives in plain methods (`select_model`, `set_types`, `set_perplexity`,
# `on_point`, `on_select`) that the widgets call, so you can also drive it from code.
#
# The same explorer opens on any run the kit trained, your own COCO or DeepLabCut data included (a run folder
# records its data, so the test crops load again): `embeddings.explore(["runs/mine", "runs/mine-sup"]).show()`;
# `embeddings.explore(runs, data=...)` takes any KeypointData at the runs' input size instead.
# `embeddings.export(runs, None, "z.csv")` (or `python -m kpsemi embeddings --run runs/mine --out z.npz`) writes the
# embeddings with their image ids and keypoint names for other tools.

# %%
ex = explorer.Explorer(folders, test, source=source, perplexity=perplexity, max_points=max_points,
                       embeddings=embs, layouts={n: (a["idx"], a["xy"]) for n, a in ana.items()})
ex.show()

# %% [markdown]
# **What to look for** in the numbers above (this run's, at its preset): Fig. 4's claim is that with the
# unsupervised losses the same keypoint of different animals clusters — a higher 5-NN keypoint-identity accuracy
# and silhouette for the semi-supervised model than for the supervised one — and that left/right twins stop
# sharing neighbours (a lower left/right confusion). With ground-truth Gaussians in place of the predicted
# heatmaps, the comparison tells whether the separation lives in the features at the keypoint or in how each
# model's own heatmap pools them (SC and TI train z through h_i).

# %% [markdown]
# ## Exercise · nearest neighbours from other images
# Write `my_neighbours(z, image, k)`: for each point of `z` (P, C), the indices (P, k) of its k nearest
# points (Euclidean, nearest first) among the points of *other* images; `image` (P,) gives each point's image. This
# is the k-NN of this notebook's accuracy, with the same-image neighbours left out for the reason given above.
# The checker runs it on a case computed by hand, then on random inputs against `analysis.neighbours`, and prints
# one line: PASS, or FAIL with the case and what is wrong. `course.show("neighbours")` repeats the task;
# `print(course.solution("neighbours"))` shows a solution (all of them: kpsemi/course/solutions.py).

# %%
def my_neighbours(z, image, k=5):
    ...                                       # your code here: return a (P, k) tensor of indices


course.check("neighbours", my_neighbours)

# %%
sup, semi = ana["supervised"], ana["semi-supervised"]
report.record({"knn_accuracy_supervised": sup["knn_accuracy"], "knn_accuracy_semi": semi["knn_accuracy"],
               "silhouette_supervised": sup["silhouette_2d"], "silhouette_semi": semi["silhouette_2d"],
               "silhouette_64d_supervised": sup["silhouette_64d"], "silhouette_64d_semi": semi["silhouette_64d"],
               "left_right_confusion_supervised": sup["left_right"]["rate"],
               "left_right_confusion_semi": semi["left_right"]["rate"], "knn_chance": chance, "points": len(e0),
               "knn_accuracy_gt_heatmaps_supervised": gt["supervised"]["knn"],
               "knn_accuracy_gt_heatmaps_semi": gt["semi-supervised"]["knn"],
               "test_pck_supervised": results["supervised"]["test_pck"],
               "test_pck_semi": results["semi-supervised"]["test_pck"]},
              "10_embeddings_tsne", out_dir, cfg.preset)
