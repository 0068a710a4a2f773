"""consistency: plain consistency between two equally hard views, the setting that collapses (a lesson of notebook 13,
not a Table 1 row).

Xie et al. (ICCV 2021) observe that when a pose network is asked to give the same heatmaps on two augmentations of
an unlabeled image, neither more reliable than the other, the predictions drift to all background: a keypoint
covers a few pixels of a heatmap and the background all others, so wherever the two views disagree the cheapest
agreement is zero, and zero agrees with everything. Here both views of an unlabeled crop are strong views
x_1 = jitter(warp(x, H_1)), x_2 = jitter(warp(x, H_2)) of its standard augmentation x (kpsemi/baselines/views.py);
the network predicts the labeled crops and both views in one pass, both with gradient, and

    L = w_sup * L_sup + w_cons * || f(x_1) - M(f(x_2)) ||^2,  M = H_1 H_2^-1 (view 2's frame -> view 1's),

over the pixels of x_1 that come from x and from inside x_2 (`cons` in kpsemi/baselines/losses.py). The history
records the heatmap energy (mean heatmap maximum) of the unlabeled views and of the labeled crops at every
evaluation: on unlabeled views it falls when the run collapses, while the supervised loss holds it up on labeled
crops; mean_teacher and dual record the same quantities.
"""
import torch

from kpsemi.baselines import views


class ConsistencyTrainer(views.ViewTrainer):
    """Two strong views of every unlabeled crop, consistent with each other, both with gradient."""

    def losses(self, batch):
        x_lab, kp_lab, x = self.weak_views(batch)
        x1, H1 = views.strong_view(x, self.cfg, self.g_aug)
        x2, H2 = views.strong_view(x, self.cfg, self.g_aug)
        n, N = len(x_lab), len(x)
        hm = self.predict(self.model, torch.cat([x_lab, x1, x2]))                          # (n + 2N, K, h, w)
        moved, inside2 = views.to_frame(hm[n + N:], H1 @ torch.linalg.inv(H2))              # view 2 -> view 1
        valid = inside2 * views.inside(moved, H1)                                          # and from inside x
        return self.total([self.outputs(hm[:n], kp_lab, hm[n:n + N], moved, valid)])

    def run_metrics(self):
        return {"evaluated": "the network"}
