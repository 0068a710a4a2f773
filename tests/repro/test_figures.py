"""Figures that readers look at: quickstart's predictions.png (also notebook 00's) labels its rows beside the crops,
never over them, and notebook 00 describes the marks that figure draws."""
import os

import numpy as np
from matplotlib.markers import MarkerStyle

from kpsemi import data, nbtools
from kpsemi.repro import quickstart

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_prediction_rows_are_labelled_beside_the_crops(smoke_dir):
    test = data.load("synthetic", "test", 64, synth_size="smoke", progress=False)
    idx = list(range(6))
    preds = {name: test.keypoints[idx, :, :2].numpy() + k for k, name in
             enumerate(["supervised 5%", "SC+TE+TI 5% (ours)"])}
    fig = quickstart.predictions_figure(test, idx, preds)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    labels = [t for t in fig.texts if t.get_text() in preds]
    assert [t.get_text() for t in labels] == list(preds)
    crops = [ax.get_window_extent(renderer) for ax in fig.axes]
    for row, label in enumerate(labels):
        box = label.get_window_extent(renderer)
        assert not any(box.overlaps(c) for c in crops), f"{label.get_text()!r} overlaps a crop"
        first = fig.axes[row * len(idx)].get_window_extent(renderer)
        assert box.x1 < first.x0 and first.y0 <= (box.y0 + box.y1) / 2 <= first.y1   # left of its own row
    marks = fig.axes[0].collections[0]                                      # the predicted keypoints: dots
    assert np.allclose(marks.get_offsets(), preds["supervised 5%"][0][:1] - 0.5)
    dot = MarkerStyle("o")
    assert np.allclose(marks.get_paths()[0].vertices, dot.get_path().transformed(dot.get_transform()).vertices)


def test_notebook_00_describes_the_prediction_marks_as_drawn():
    cells = nbtools.parse(open(os.path.join(ROOT, "notebooks", "src", "00_overview.py")).read())
    i = next(j for j, (kind, src, _) in enumerate(cells) if "quickstart.predictions_figure" in src)
    text = cells[i - 1][1].lower()                                          # the Markdown above that cell
    assert cells[i - 1][0] == "markdown" and "dots" in text and "cross" not in text
