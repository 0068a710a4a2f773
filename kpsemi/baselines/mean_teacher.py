"""mean_teacher: an EMA teacher's heatmaps on the weak view teach the student on a strong view (Tarvainen & Valpola
2017, as semi-supervised keypoint detectors after the paper use it).

One step: the batch's standard augmentation gives the labeled crops and the unlabeled crops' weak views x; a strong
view x_s = jitter(warp(x, H)) of each (kpsemi/baselines/views.py); the student (the trained KLN) predicts the
labeled crops and the strong views in one pass (train mode); the teacher predicts x (eval mode, no gradient); its
heatmaps moved into the frame of x_s, H(teacher(x)), are the target of the student's heatmaps on x_s:

    L = w_sup * L_sup(student, labeled) + w_mt * || student(x_s) - H(teacher(x)) ||^2 over the pixels of x_s from x

(`mt` in kpsemi/baselines/losses.py): the plain mean teacher, config.mt_target = "heatmap" (the paper preset). With
mt_target = "peak" (the CPU presets) the target is instead a peak-1 Gaussian (sigma as the labels') at each keypoint
decoded from the teacher's heatmaps on x, moved into the frame of x_s, and each keypoint's squared error is weighted
by the height of its teacher peak (clamped to [0, 1]): the labels' scale for a confident teacher, little weight
where it is unsure (docs/deviations.md, row 11). After every optimiser step every floating-point entry of the
teacher's state dict (parameters and BatchNorm running statistics) becomes a * teacher + (1 - a) * student,
a = config.ema_decay (0.99 at the CPU presets, 0.999 at the paper preset); integer entries (BatchNorm's batch
counters) are copied.

Student and teacher both start from the same weights: the supervised twin's with init="supervised" (runs.warm_start),
else the seeded initialisation. The teacher is evaluated (validation PCK, early stopping) and saved as best.pt's
model, so predict / evaluate / the test PCK use the teacher; last.pt holds the student, its optimiser and the teacher
(`extra_state`), so a resumed run continues exactly.
"""
import copy

import torch

from kpsemi import config as C
from kpsemi.baselines import views
from kpsemi.errors import UserError
from kpsemi.method import heatmaps
from kpsemi.method.evaluate import evaluate


@torch.no_grad()
def ema_update(teacher, student, decay):
    """teacher <- decay * teacher + (1 - decay) * student, in place, for every floating-point entry of the state
    dicts (exactly t.mul_(decay).add_(s * (1 - decay))); integer entries are copied."""
    s = student.state_dict()
    for k, t in teacher.state_dict().items():
        if t.is_floating_point():
            t.mul_(decay).add_(s[k] * (1 - decay))
        else:
            t.copy_(s[k])


class MeanTeacherTrainer(views.ViewTrainer):
    """Student = self.model (optimised), teacher = its EMA (evaluated and checkpointed as best.pt)."""

    def __init__(self, cfg, train, val, labeled, unlabeled, out_dir, device=None, progress=True, init_weights=None):
        if cfg.mt_target not in ("heatmap", "peak"):
            raise UserError(f"mt_target={cfg.mt_target!r}: choose heatmap or peak")
        super().__init__(cfg, train, val, labeled, unlabeled, out_dir, device, progress, init_weights)
        self.teacher = copy.deepcopy(self.model).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    def losses(self, batch):
        x_lab, kp_lab, x = self.weak_views(batch)
        x_s, H = views.strong_view(x, self.cfg, self.g_aug)
        n = len(x_lab)
        hm = self.predict(self.model, torch.cat([x_lab, x_s]))                  # (n + N, K, h, w)
        t = self.target_heatmaps(self.teacher, x)                               # (N, K, h, w)
        if self.cfg.mt_target == "peak":
            t, conf = self.peak_targets(t)                                      # (N, K, h, w), (N, K)
        target, valid = views.to_frame(t, H)                                    # (N, K, h, w), (N, 1, h, w)
        if self.cfg.mt_target == "peak":
            valid = valid * conf[..., None, None]                               # (N, K, h, w)
        return self.total([self.outputs(hm[:n], kp_lab, hm[n:], target, valid)])

    def peak_targets(self, t):
        """Teacher heatmaps t (N, K, h, w) -> peak-1 Gaussians at their decoded peaks (N, K, h, w) and the peak
        heights clamped to [0, 1] (N, K)."""
        xy, score = heatmaps.decode(t, self.cfg.stride)                         # (N, K, 2), (N, K)
        kp = torch.cat([xy, torch.ones_like(xy[..., :1])], -1)                  # (N, K, 3), every keypoint "labeled"
        return heatmaps.render(kp, t.shape[-2:], self.cfg.stride, self.cfg.sigma), score.clamp(0, 1)

    def after_optimizer_step(self):
        ema_update(self.teacher, self.model, self.cfg.ema_decay)

    def evaluate(self):
        return evaluate(self.teacher, self.val, self.cfg.stride, self.device, self.cfg.amp)

    def best_state(self):
        return {"model": self.teacher.state_dict(), "config": C.to_dict(self.cfg),
                "meta": self.train.meta.to_dict(), "step": self.step}

    def extra_state(self):
        return {"teacher": self.teacher.state_dict()}

    def load_extra_state(self, s):
        self.teacher.load_state_dict(s["teacher"])

    def run_metrics(self):
        return {"evaluated": "teacher (EMA of the student)"}
