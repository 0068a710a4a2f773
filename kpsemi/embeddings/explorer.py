"""An interactive t-SNE explorer of keypoint embeddings for JupyterLab (plotly FigureWidget + ipywidgets).

    ex = Explorer({"supervised": "runs/sup-5/best.pt", "semi": "runs/ours-5"}, test)   # files or run folders
    ex.show()                      # model / keypoint types / perplexity controls, the map, a detail panel

Hover or click a point: the crop around that keypoint and the heatmap that pooled its z_i. Box or lasso a region:
the list of images in it. All state lives in plain methods (`select_model`, `set_types`, `set_perplexity`,
`on_point`, `on_select`) that return what the panels show; the widget callbacks are thin wrappers, so tests
drive the explorer without a browser. Embeddings are cached per model and t-SNE maps per (model, perplexity,
types); `Explorer(..., widgets=False)` builds no widgets at all.
"""
import io
import os

import matplotlib.pyplot as plt
import numpy as np
import torch

from kpsemi import draw
from kpsemi.embeddings import analysis as E
from kpsemi.errors import UserError
from kpsemi.method import heatmaps as H, models


def model_paths(models):
    """{name: best.pt path} from a dict name -> (best.pt | run folder), a list of run folders, or one path."""
    if isinstance(models, (str, os.PathLike)):
        models = [models]
    if not isinstance(models, dict):
        models = {os.path.basename(os.path.normpath(str(p))) or str(p): p for p in models}
    if not models:
        raise UserError("the explorer needs at least one model (a best.pt file or a run folder)")
    out = {}
    for name, p in models.items():
        path = os.path.join(p, "best.pt") if os.path.isdir(p) else str(p)
        if not os.path.isfile(path):
            raise UserError(f"model {name!r}: no checkpoint at {path} (give a best.pt or a run folder holding one)")
        out[str(name)] = path
    return out


def _png(fig, dpi):
    """PNG bytes of a figure, which is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def patch(image, xy, size):
    """(3, size, size) uint8 window of a (3, S, S) image centred on xy (crop pixels), zero outside the image."""
    S = image.shape[-1]
    x0, y0 = int(np.floor(xy[0])) - size // 2, int(np.floor(xy[1])) - size // 2
    out = torch.zeros(3, size, size, dtype=image.dtype)
    xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + size, S), min(y0 + size, S)
    if xa < xb and ya < yb:
        out[:, ya - y0:yb - y0, xa - x0:xb - x0] = image[:, ya:yb, xa:xb]
    return out


class Explorer:
    """models: {name: best.pt | run folder} (or a list of run folders); data: the KeypointData to embed (any set the
    kit loads, at the models' input size); embeddings / layouts: precomputed {name: Embeddings} / {name: (idx, xy)}
    (the latter at `perplexity`, all types) so the notebook's numbers and the explorer share one computation."""

    def __init__(self, models, data, source="predicted", types=None, perplexity=30.0, max_points=2000, seed=0,
                 patch_size=None, device="cpu", embeddings=None, layouts=None, widgets=True, progress=False):
        if source not in E.SOURCES:
            raise UserError(f"source must be one of {E.SOURCES}, got {source!r}")
        if not hasattr(data, "meta") or not hasattr(data, "images"):
            raise UserError(f"the explorer needs KeypointData (kpsemi.data.load(...)), got {type(data).__name__}")
        self.paths, self.data, self.source, self.device = model_paths(models), data, source, device
        self.max_points, self.seed, self.progress = max_points, seed, progress
        self.patch_size = patch_size or max(16, data.size // 3)
        self.names = list(data.meta.keypoints)
        self._models, self._heatmaps = {}, {}
        self.embeddings = dict(embeddings or {})                   # name -> Embeddings
        for name, e in self.embeddings.items():
            if e.source != source or e.names != self.names:
                raise UserError(f"embeddings of {name!r} come from {e.source} heatmaps with keypoints {e.names}; the "
                                f"explorer shows {source} ones of {self.names}")
        self.cache = {}                                            # (name, perplexity, types) -> (idx, xy)
        for name, lay in (layouts or {}).items():                  # precomputed maps at this perplexity, all types
            self.cache[(name, float(perplexity), tuple(range(len(self.names))))] = lay
        self.model_name, self.perplexity = next(iter(self.paths)), float(perplexity)
        self.types = self._type_indices(types)
        self.idx = self.xy = None                                  # shown points: indices into the embeddings, map
        self.detail, self.selection = None, []
        self.ui, self._syncing, self._picked = None, False, []
        self._compute()
        if widgets:
            self._build()

    # ---- state (no widgets needed) ----------------------------------------------------------------------------
    def _type_indices(self, types):
        if types is None:
            return tuple(range(len(self.names)))
        out = []
        for t in types:
            if isinstance(t, str):
                if t not in self.names:
                    raise UserError(f"unknown keypoint type {t!r}: choose from {', '.join(self.names)}")
                t = self.names.index(t)
            if not 0 <= int(t) < len(self.names):
                raise UserError(f"keypoint type index {t} is out of range 0..{len(self.names) - 1}")
            out.append(int(t))
        if not out:
            raise UserError("choose at least one keypoint type")
        return tuple(sorted(set(out)))

    def model(self, name):
        """(model, config dict) of a named checkpoint, loaded once (weights_only) and checked against the data."""
        if name not in self.paths:
            raise UserError(f"unknown model {name!r}: choose from {', '.join(self.paths)}")
        if name not in self._models:
            m, cfg, meta = models.load_model(self.paths[name], self.device)
            if list(meta["keypoints"]) != self.names:
                raise UserError(f"model {name!r} was trained on keypoints {meta['keypoints']}, the data has "
                                f"{self.names}")
            if cfg["input_size"] != self.data.size:
                raise UserError(f"model {name!r} was trained on {cfg['input_size']} px crops but the data has "
                                f"{self.data.size} px: load the data with input_size={cfg['input_size']}")
            self._models[name] = (m, cfg)
        return self._models[name]

    def emb(self, name=None):
        name = name or self.model_name
        if name not in self.embeddings:
            m, cfg = self.model(name)
            self.embeddings[name] = E.extract(m, self.data, self.source, cfg["stride"], cfg["sigma"],
                                              device=self.device, progress=self.progress)
        return self.embeddings[name]

    def _compute(self):
        key = (self.model_name, self.perplexity, self.types)
        if key not in self.cache:
            self.cache[key] = E.layout(self.emb(), self.perplexity, self.types, self.max_points, self.seed)
        self.idx, self.xy = self.cache[key]
        self.detail, self.selection = None, []
        self._redraw()
        return self.view()

    def view(self):
        """What the map shows: model, types, perplexity (asked and used), points and their map."""
        e = self.emb()
        return {"model": self.model_name, "types": [self.names[t] for t in self.types],
                "perplexity": self.perplexity, "effective_perplexity": E.effective_perplexity(self.perplexity,
                                                                                              len(self.idx)),
                "points": len(self.idx), "kind": e.kind[self.idx], "xy": self.xy}

    def select_model(self, name):
        self.model(name)
        self.model_name = name
        return self._compute()

    def set_types(self, types):
        self.types = self._type_indices(types)
        return self._compute()

    def set_perplexity(self, p):
        if not float(p) > 0:
            raise UserError(f"perplexity must be positive, got {p}")
        self.perplexity = float(p)
        return self._compute()

    def heatmap(self, image, kind):
        """(h, w) heatmap that pooled z for (image, kind): the model's prediction or the ground-truth Gaussian."""
        m, cfg = self.model(self.model_name)
        key = (self.model_name, int(image))
        if key not in self._heatmaps:
            with torch.no_grad():
                b = self.data.batch([int(image)], self.device)
                hm = m(b["image"])["heatmaps"].float()
                if self.source == "ground truth":
                    hm = H.render(b["keypoints"], hm.shape[-2:], cfg["stride"], cfg["sigma"])
            self._heatmaps[key] = hm[0].cpu()
        return self._heatmaps[key][int(kind)]

    def on_point(self, i):
        """Detail of shown point i (an index into the map): its type, image, class, location, patch and heatmap."""
        if not 0 <= int(i) < len(self.idx):
            raise UserError(f"point {i} is not on the map (0..{len(self.idx) - 1})")
        e, p = self.emb(), int(self.idx[int(i)])
        img, kind = int(e.image[p]), int(e.kind[p])
        classes = self.data.meta.classes
        self.detail = {"point": int(i), "row": p, "image": img, "id": self.data.ids[img], "kind": kind,
                       "name": self.names[kind], "class": classes[e.cls[p]] if 0 <= e.cls[p] < len(classes) else "",
                       "xy": tuple(float(v) for v in e.xy[p]),
                       "patch": patch(self.data.images[img], e.xy[p], self.patch_size),
                       "heatmap": self.heatmap(img, kind)}
        self._show_detail()
        return self.detail

    def on_select(self, points):
        """Images with points in a selected region (indices into the map), most selected points first."""
        e, pts = self.emb(), np.asarray(list(points), dtype=np.int64)
        if ((pts < 0) | (pts >= len(self.idx))).any():
            raise UserError(f"selected points must lie on the map (0..{len(self.idx) - 1}), got "
                            f"{pts.min()}..{pts.max()}")
        rows = self.idx[pts]
        imgs, counts = np.unique(e.image[rows], return_counts=True)
        order = np.lexsort((imgs, -counts))
        self.selection = [{"image": int(imgs[j]), "id": self.data.ids[imgs[j]], "points": int(counts[j]),
                           "types": sorted({self.names[k] for k in e.kind[rows][e.image[rows] == imgs[j]]})}
                          for j in order]
        self._show_selection()
        return self.selection

    # ---- widgets: thin wrappers around the methods above ------------------------------------------------------
    def _build(self):
        import ipywidgets as W     # the notebooks extra; only the widgets need it (tests drive the methods)
        try:
            import plotly.graph_objects as go
            fig = go.FigureWidget()
        except ImportError as e:
            raise UserError(f"the explorer needs plotly's FigureWidget ({e}): pip install plotly anywidget") from None
        fig.update_layout(width=640, height=520, dragmode="lasso", margin=dict(l=10, r=10, t=30, b=10),
                          legend=dict(font=dict(size=9)), xaxis=dict(visible=False), yaxis=dict(visible=False))
        self.fig = fig
        self.w = {"model": W.Dropdown(options=list(self.paths), value=self.model_name, description="model"),
                  "types": W.SelectMultiple(options=self.names, value=[self.names[t] for t in self.types],
                                            rows=8, description="types"),
                  "perplexity": W.FloatSlider(value=self.perplexity, min=2, max=max(100, self.perplexity), step=1,
                                              continuous_update=False, description="perplexity"),
                  "status": W.HTML(), "detail": W.Image(format="png"), "selection": W.HTML(),
                  "thumbs": W.Image(format="png")}
        self.w["model"].observe(lambda ch: self._control(self.select_model, ch["new"]), "value")
        self.w["types"].observe(lambda ch: self._control(self.set_types, ch["new"]) if ch["new"] else None, "value")
        self.w["perplexity"].observe(lambda ch: self._control(self.set_perplexity, ch["new"]), "value")
        controls = W.VBox([self.w["model"], self.w["types"], self.w["perplexity"], self.w["status"]])
        self.ui = W.HBox([controls, fig, W.VBox([self.w["detail"], self.w["thumbs"], self.w["selection"]])])
        self._redraw()

    def _control(self, method, value):
        if self._syncing:
            return
        self.w["status"].value = "<i>computing t-SNE ...</i>"
        try:
            method(value)
        except UserError as e:                                      # shown in the panel, not lost in a log
            self.w["status"].value = f"<span style='color:#c00'>{e}</span>"

    def _click(self, trace, points, state):
        if points.point_inds:
            self.on_point(trace.customdata[points.point_inds[0]])

    def _hover(self, trace, points, state):                         # hovering the shown point again: no redraw
        same = points.point_inds and self.detail and self.detail["point"] == trace.customdata[points.point_inds[0]]
        if not same:
            self._click(trace, points, state)

    def _select(self, trace, points, selector):
        """A box or lasso: plotly calls this once per trace, in trace order, with that trace's points (maybe none);
        the selection is the union, listed when the last trace has reported."""
        if points.trace_index == 0:
            self._picked = []
        self._picked += [int(trace.customdata[j]) for j in points.point_inds]
        if points.trace_index == len(self.fig.data) - 1:
            self.on_select(self._picked)

    def _redraw(self):
        if self.ui is None:
            return
        import plotly.graph_objects as go       # the notebooks extra, as in _build
        e, colours = self.emb(), draw.keypoint_colours(len(self.names))
        kind = e.kind[self.idx]
        with self.fig.batch_update():
            self.fig.data = []
            for t in self.types:
                sel = np.flatnonzero(kind == t)                     # this trace's points, as map indices
                rows = self.idx[sel]
                r, g, b = (int(255 * c) for c in colours[t][:3])
                self.fig.add_trace(go.Scattergl(
                    x=self.xy[sel, 0], y=self.xy[sel, 1], mode="markers", name=self.names[t], customdata=sel,
                    marker=dict(size=5, color=f"rgb({r},{g},{b})"), hoverinfo="text",
                    hovertext=[f"{self.names[t]} · image {self.data.ids[e.image[j]]}" for j in rows]))
            self.fig.layout.title = f"{self.model_name}: z from {self.source} heatmaps"
        for tr in self.fig.data:
            tr.on_click(self._click)
            tr.on_hover(self._hover)
            tr.on_selection(self._select)
            tr.on_deselect(lambda trace, points: self.on_select([]) if self.selection else None)
        v = self.view()
        self._syncing = True                                        # the methods moved the controls: no echo
        try:
            self.w["model"].value, self.w["types"].value = self.model_name, tuple(v["types"])
            self.w["perplexity"].value = self.perplexity
        finally:
            self._syncing = False
        self.w["status"].value = f"{v['points']} points, perplexity {v['effective_perplexity']:g}"
        self._show_detail()
        self._show_selection()

    def _show_detail(self):
        if self.ui is None:
            return
        self.w["detail"].value = b"" if self.detail is None else self.detail_png()

    def detail_png(self, size=2.2):
        """PNG bytes: the whole crop with the keypoint, the patch around it, and the heatmap over the crop."""
        d = self.detail
        img = self.data.images[d["image"]]
        fig, ax = plt.subplots(1, 3, figsize=(3 * size, size + 0.3))
        ax[0].imshow(img.permute(1, 2, 0).numpy())
        ax[0].scatter([d["xy"][0] - 0.5], [d["xy"][1] - 0.5], s=40, facecolors="none", edgecolors="yellow")
        ax[0].set_title(f"{d['id']} {d['class']}", fontsize=8)
        ax[1].imshow(d["patch"].permute(1, 2, 0).numpy())
        ax[1].set_title(d["name"], fontsize=8)
        draw.heatmap_overlay(ax[2], img, d["heatmap"], title=f"{self.source} heatmap")
        for a in ax:
            a.set_axis_off()
        fig.tight_layout()
        return _png(fig, 80)

    def _show_selection(self):
        if self.ui is None:
            return
        rows = "".join(f"<tr><td>{s['id']}</td><td>{s['points']}</td><td>{', '.join(s['types'])}</td></tr>"
                       for s in self.selection[:30])
        more = f"<p>… and {len(self.selection) - 30} more</p>" if len(self.selection) > 30 else ""
        self.w["selection"].value = (f"<b>{len(self.selection)} images selected</b><table><tr><th>image</th>"
                                     f"<th>points</th><th>types</th></tr>{rows}</table>{more}"
                                     if self.selection else "<i>box/lasso points to list their images</i>")
        self.w["thumbs"].value = self.selection_png() if self.selection else b""

    def selection_png(self, n=8, cols=4):
        """PNG bytes: the first `n` selected images with their ground truth (draw.grid)."""
        return _png(draw.grid(self.data, [s["image"] for s in self.selection[:n]], cols=cols, size=1.4), 70)

    def show(self):
        if self.ui is None:
            self._build()
        return self.ui
