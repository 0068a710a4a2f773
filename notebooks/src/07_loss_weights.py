# %% [markdown]
# # 07 · Sensitivity to the loss weights (paper Fig. 3)
#
# The total loss is $\mathcal{L} = \lambda_1 \mathcal{L}_{sup} + \lambda_2 \mathcal{L}_{sc} + \lambda_3
# \mathcal{L}_{te} + \lambda_4 \mathcal{L}_{ti}$. The scales differ (mean squared errors of heatmaps are tiny,
# cross-entropies are not), hence weights of very different magnitudes. The paper fixes $\lambda_1 = 10^3$ and
# tries $\lambda_2 \in \{0.1, 0.5, 1\}$, $\lambda_3, \lambda_4 \in \{10, 10^2, 10^3\}$, one at a time: LSP is
# insensitive to TE and TI, and loses most when SC's weight drops to 0.1. Here: the same sweep on the embedded
# dataset, around this preset's defaults. The demo preset's sweep over split seeds, measured on a 2-core CPU, is in
# `docs/deviations.md`.

# %% tags=["parameters"]
preset = None         # "smoke" | "demo" | "paper"; None: $KPSEMI_PRESET, else "demo"
labeled = 0.05
split_seed = 0
out_dir = None        # None: results/07_loss_weights/

# %%
import matplotlib.pyplot as plt

from kpsemi import config, course, runs
from kpsemi.repro import paper, report

cfg = config.get(preset)
out = report.notebook_dir("07_loss_weights", out_dir)
grid = config.by_preset(cfg.preset, smoke={"sc": (0.1, 1.0)}, demo=paper.FIG3_GRID, paper=paper.FIG3_GRID)
print("default weights of this preset:", cfg.weights)

# %%
res = {}
for loss, values in grid.items():
    for v in values:
        c = config.get(cfg.preset, losses=("sup", "sc", "te", "ti"), labeled=labeled, split_seed=split_seed,
                       weights={**cfg.weights, loss: v})
        res[loss, v] = runs.cached(c)[0]["test_pck"]
fig, axes = plt.subplots(1, len(grid), figsize=(4 * len(grid), 3.2), sharey=True, squeeze=False)
for ax, (loss, values) in zip(axes[0], grid.items()):
    ax.plot([str(v) for v in values], [res[loss, v] for v in values], "o-")
    ax.axvline([str(v) for v in values].index(str(cfg.weights[loss])) if cfg.weights[loss] in values else -1,
               color="gray", ls=":")
    ax.set_xlabel(f"λ of {loss.upper()}")
axes[0, 0].set_ylabel("test PCK@0.1 (%)")
fig.suptitle("sensitivity to the loss weights (dotted: this preset's default)")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Exercise · the weighted sum
# Write `my_total(values, weights, names)`: the total loss L = Σ λ_n · L_n over the losses named in `names`,
# with the unweighted values and the weights given as dicts by loss name. Then look at this preset's weights: which
# term would dominate the gradient if the four losses had similar values?
# The checker runs it on a case computed by hand, then on random inputs against `losses.total`, and prints one line:
# PASS, or FAIL with the case and what is wrong. `course.show("total")` repeats the task;
# `print(course.solution("total"))` shows a solution (all of them: kpsemi/course/solutions.py).

# %%
def my_total(values, weights, names):
    ...                                       # your code here: return a number


course.check("total", my_total)

# %%
report.record({f"test_pck_{loss}_{v:g}": p for (loss, v), p in res.items()}, "07_loss_weights", out_dir,
              cfg.preset)
