"""dual: two networks teach each other, easy view to hard view (Xie et al., "An empirical study of the collapsing
problem in semi-supervised 2D human pose estimation", ICCV 2021, their dual variant).

Xie et al. find that consistency between two views of an unlabeled image collapses to all-background heatmaps when
neither view is more reliable than the other (kpsemi/baselines/consistency.py shows it); their remedy is an easy/hard
pair, the prediction on the easy view teaching the hard view, and two networks, each teaching the other. Here:

- the easy view is the unlabeled crop's standard augmentation x (kpsemi/baselines/views.py);
- the hard view of each network's student side is jitter(warp(x, H)) with Joint Cutout: squares centred on
  cutout_joints keypoints the *teaching* network predicts on x, moved into the hard frame by H (the same H and
  jitter for both networks, the cut squares follow each teacher's keypoints);
- A and B (two KLNs) each predict x in eval mode without gradient (the targets) and, in train mode, their labeled
  crops and their hard view in one pass; each network's loss is the supervised loss on the labeled crops plus
  || net(x_hard) - H(other(x)) ||^2 over the pixels of x_hard that come from x (`dual` in
  kpsemi/baselines/losses.py); the step minimises the sum of both losses (one Adam over both networks).

Starting points (init="supervised"): A from the supervised twin, B from the supervised run with the same labels and
seed run_seed + 1000 (runs.py); from scratch A and B are the seeded initialisation's first and second networks.
Network A is evaluated (validation PCK, early stopping) and saved as best.pt; B's validation PCK is in the history
(val_pck_b); last.pt holds both networks and the optimiser, so a resumed run continues exactly.
"""
import torch

from kpsemi.baselines import views
from kpsemi.data import geometry
from kpsemi.errors import UserError
from kpsemi.method import models
from kpsemi.method.evaluate import evaluate


class DualTrainer(views.ViewTrainer):
    """A = self.model (evaluated), B = self.model_b; `init_weights_b`: B's warm start."""
    RECORD = {"val_pck": "pck", "val_pck_b": "pck_b"}

    def __init__(self, cfg, train, val, labeled, unlabeled, out_dir, device=None, progress=True, init_weights=None,
                 init_weights_b=None):
        super().__init__(cfg, train, val, labeled, unlabeled, out_dir, device, progress, init_weights)
        meta = train.meta
        self.model_b = models.build_model(cfg, meta.num_keypoints, len(meta.attributes), cfg.pretrained)
        if init_weights_b is not None:
            missing, unexpected = self.model_b.load_state_dict(init_weights_b, strict=False)
            if unexpected or missing:
                raise UserError(f"dual: B's warm start does not fit the model (missing {missing[:3]}, unexpected "
                                f"{unexpected[:3]})")
        self.model_b.to(self.device)
        self.opt = torch.optim.Adam(list(self.model.parameters()) + list(self.model_b.parameters()), lr=cfg.lr)

    def losses(self, batch):
        cfg, g = self.cfg, self.g_aug
        x_lab, kp_lab, x = self.weak_views(batch)
        H = views.strong_homography(len(x), cfg, g, x.device)
        x_h = views.jitter(geometry.warp(x, H), cfg.strong_jitter, g)
        nets = (self.model, self.model_b)
        easy = [self.target_heatmaps(net, x) for net in nets]                 # (N, K, h, w) each
        side = cfg.cutout_size * x.shape[-1]
        n, outs = len(x_lab), []
        for i, net in enumerate(nets):
            teacher = easy[1 - i]
            centres = views.cutout_centres(teacher, H, cfg.cutout_joints, cfg.stride, g)
            hm = self.predict(net, torch.cat([x_lab, views.joint_cutout(x_h, centres, side)]))
            target, valid = views.to_frame(teacher, H)
            outs.append(self.outputs(hm[:n], kp_lab, hm[n:], target, valid))
        return self.total(outs)

    def evaluate(self):
        ev = evaluate(self.model, self.val, self.cfg.stride, self.device, self.cfg.amp)
        return {**ev, "pck_b": evaluate(self.model_b, self.val, self.cfg.stride, self.device, self.cfg.amp)["pck"]}

    def extra_state(self):
        return {"model_b": self.model_b.state_dict()}

    def load_extra_state(self, s):
        self.model_b.load_state_dict(s["model_b"])

    def run_metrics(self):
        return {"evaluated": "network A (B's validation PCK: history val_pck_b)"}
