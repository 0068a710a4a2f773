"""Inference and evaluation: predicted keypoints of a KeypointData, PCK@0.1 / PCKh@0.5, mean pixel error."""
import torch

from kpsemi.method import heatmaps, metrics
from kpsemi.method.device import autocast


@torch.no_grad()
def predict(model, data, stride=4, batch_size=128, device="cpu", amp=True, return_heatmaps=False):
    """Keypoints (N, K, 2) in crop pixels and peak scores (N, K); optionally the heatmaps (N, K, h, w)."""
    was = model.training
    model.eval()
    coords, scores, hms = [], [], []
    for i in range(0, len(data), batch_size):
        b = data.batch(torch.arange(i, min(i + batch_size, len(data))), device)
        with autocast(device, amp):
            hm = model(b["image"])["heatmaps"].float()
        c, s = heatmaps.decode(hm, stride)
        coords.append(c.cpu())
        scores.append(s.cpu())
        if return_heatmaps:
            hms.append(hm.cpu())
    model.train(was)
    out = (torch.cat(coords), torch.cat(scores))
    return out + (torch.cat(hms),) if return_heatmaps else out


def alpha_for(meta):
    return 0.5 if meta.metric == "pckh" else 0.1


def evaluate(model, data, stride=4, device="cpu", amp=True, batch_size=128):
    """{'pck': percent, 'per_keypoint': {name: percent}, 'metric': 'PCK@0.1' | 'PCKh@0.5', 'pixel_error': mean
    distance in original-image pixels over labeled keypoints, 'error_percent': mean distance in percent of the
    normaliser l (Seq-MT's error), 'any_keypoint_pck': PCK without identity, 'twin_separation' and
    'twin_separation_true': predicted and true left/right pair distances in units of l (metrics.py)}."""
    pred, _ = predict(model, data, stride, batch_size, device, amp)
    a = alpha_for(data.meta)
    r = metrics.pck(pred, data.keypoints, data.norm, a)
    scale = data.transforms[:, 0, 0].float()                       # crop pixels per original pixel
    lab = data.keypoints[..., 2] > 0
    err = (pred - data.keypoints[..., :2]).norm(dim=-1) / scale[:, None]
    rel = (pred - data.keypoints[..., :2]).norm(dim=-1) / data.norm[:, None]
    twins = metrics.twin_separation(pred, data.keypoints, data.norm, data.meta.flip_pairs)
    return {"pck": r.mean, "per_keypoint": r.as_dict(data.meta.keypoints)["per_keypoint"],
            "metric": f"{'PCKh' if data.meta.metric == 'pckh' else 'PCK'}@{a:g}", "count": r.count,
            "any_keypoint_pck": metrics.any_keypoint_pck(pred, data.keypoints, data.norm, a),
            "twin_separation": twins[0], "twin_separation_true": twins[1],
            "pixel_error": float(err[lab].mean()) if lab.any() else float("nan"),
            "error_percent": 100 * float(rel[lab].mean()) if lab.any() else float("nan")}
