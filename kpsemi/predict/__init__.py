"""A trained run applied to new data — the loop after training on your own animal.

- `infer.py`: `predict(run_dir, out, video=... | images=... | coco_json=...)` — crops as training did, decodes with
  sub-pixel refinement, maps back to the frame's pixels; writes a DeepLabCut-style CSV, COCO results JSON and a
  labeled MP4 (`python -m kpsemi predict`).
- `assess.py`: `evaluate_run(run_dir, coco_json=... | dlc_project=...)` — PCK, pixel error and error in % of the box
  per keypoint on any labeled set (`python -m kpsemi evaluate`).
- `flag.py`: the frames to label next (most disagreement between flipped/rescaled views, or lowest peak).
Start with `infer.predict`; docs/own_data.md walks through the loop.
"""
from kpsemi.predict.assess import evaluate_run
from kpsemi.predict.infer import load_run, predict

__all__ = ["evaluate_run", "load_run", "predict"]
