# %% [markdown]
# # 06 · How much unlabeled data, and ground-truth heatmaps in the unsupervised losses (Tables 3 and 4)
#
# **Amount of unlabeled data (Table 3).** The labels stay at 5 % and the unlabeled pool shrinks to 50, 20 and
# 10 %. In the paper the gain over the supervised baseline (SB) falls with the pool: on ATRW from 93 % with the
# whole pool to 72 % with a tenth of it, against 70 % for SB. The semi-supervised signal comes from the unlabeled
# images, so it needs many of them.
#
# **Ground truth in the unsupervised losses (Table 4).** Early in training the predicted heatmaps and features
# are noise, so the unsupervised losses could hurt. Instead of a warm-up schedule, the paper lets the *labeled*
# samples of each batch enter SC, TE and TI with their ground-truth heatmaps; on LSP, turning this off costs
# 1–2 points at every fraction.

# %% tags=["parameters"]
preset = None         # "smoke" | "demo" | "paper"; None: $KPSEMI_PRESET, else "demo"
pool_fractions = None  # shares of the unlabeled pool; None: the preset's choice below
split_seed = 0
out_dir = None        # None: results/06_unlabeled_amount_and_gt/

# %%
import matplotlib.pyplot as plt

from kpsemi import config, course, draw, runs
from kpsemi.repro import paper, report

cfg = config.get(preset)
pool_fractions = pool_fractions or config.by_preset(cfg.preset, smoke=[0.1, 1.0], demo=[0.1, 0.5, 1.0],
                                                    paper=list(paper.UNLABELED_FRACTIONS))
out = report.notebook_dir("06_unlabeled_amount_and_gt", out_dir)
FULL = ("sup", "sc", "te", "ti")

# %% [markdown]
# ## Table 3: 5 % labels, a growing unlabeled pool

# %%
sb = runs.cached(config.get(cfg.preset, losses=("sup",), labeled=0.05, split_seed=split_seed))[0]["test_pck"]
pool = {u: runs.cached(config.get(cfg.preset, losses=FULL, labeled=0.05, split_seed=split_seed,
                                  unlabeled_fraction=u))[0]["test_pck"] for u in pool_fractions}
print(draw.markdown([{"unlabeled pool": f"{u:.0%}", "test PCK@0.1": round(v, 2)} for u, v in pool.items()]
                    + [{"unlabeled pool": "SB (supervised)", "test PCK@0.1": round(sb, 2)}]))
fig, ax = plt.subplots(figsize=(5, 3.2))
ax.plot([100 * u for u in pool], list(pool.values()), "o-", label="SC+TE+TI, 5 % labels")
ax.axhline(sb, color="gray", ls="--", label="supervised baseline")
ax.set_xscale("log")
ax.set_xlabel("share of the unlabeled pool used (%)")
ax.set_ylabel("test PCK@0.1 (%)")
ax.legend()
plt.show()

# %% [markdown]
# ## Table 4: with and without ground-truth heatmaps for the labeled samples

# %%
gt = {flag: runs.cached(config.get(cfg.preset, losses=FULL, labeled=0.05, split_seed=split_seed,
                                   gt_in_unsup=flag))[0]["test_pck"] for flag in (True, False)}
print(draw.markdown([{"method": "with g/t heatmaps", "test PCK@0.1 (5 %)": round(gt[True], 2),
                      "paper LSP": paper.TABLE4_LSP["with gt heatmaps"][0]},
                     {"method": "without g/t heatmaps", "test PCK@0.1 (5 %)": round(gt[False], 2),
                        "paper LSP": paper.TABLE4_LSP["without gt heatmaps"][0]}]))

# %% [markdown]
# ## Exercise · ground truth in the unsupervised losses
# Write `my_unsup(heatmaps, target, weight, use_gt)`: the heatmaps (B, K, h, w) the unsupervised losses
# see. With `use_gt` (Table 4's "with g/t heatmaps"), a labeled keypoint (weight > 0) uses its ground-truth
# `target`; every other keypoint, and every keypoint when `use_gt` is False, uses the prediction `heatmaps`.
# The checker runs it on a case computed by hand, then on random inputs against `losses.unsup_heatmaps`, and prints
# one line: PASS, or FAIL with the case and what is wrong. `course.show("unsup")` repeats the task;
# `print(course.solution("unsup"))` shows a solution (all of them: kpsemi/course/solutions.py).

# %%
def my_unsup(heatmaps, target, weight, use_gt=True):
    ...                                       # your code here: return a (B, K, h, w) tensor


course.check("unsup", my_unsup)

# %%
report.record({"test_pck_supervised_5": sb, **{f"test_pck_pool_{int(round(100 * u))}": v for u, v in pool.items()},
               "test_pck_with_gt": gt[True], "test_pck_without_gt": gt[False]},
              "06_unlabeled_amount_and_gt", out_dir, cfg.preset)
