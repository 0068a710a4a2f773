"""An interactive t-SNE explorer of keypoint embeddings for JupyterLab (jupyter-scatter + ipywidgets).

    ex = Explorer({"supervised": "runs/sup-5/best.pt", "semi": "runs/ours-5"}, test)   # files or run folders
    ex.show()                      # model / keypoint types / perplexity controls, the map, a detail panel
    explore(["runs/mine", "runs/mine-sup"]).show()      # any runs: on the test crops of the data they trained on

Hover a point: the crop around that keypoint and the heatmap that pooled its z_i. Lasso a region (the lasso-type
button: a rectangle) or click a point: the images it holds are listed; a double-click on empty space clears it.
All state lives in plain methods (`select_model`, `set_types`, `set_perplexity`, `on_point`, `on_select`); the
widget callbacks are thin wrappers, so tests drive the explorer without a browser (tests/test_browser.py drives it
in JupyterLab). Embeddings are cached per model, t-SNE maps per (model, perplexity, types); `widgets=False` builds
no widgets. The map is jupyter-scatter, which syncs the hovered point and the selection as two traits (plotly's
FigureWidget sends hover, click and selection through one trait, and while the kernel is busy with a hover
ipywidgets keeps only that trait's newest value, so hovers after a lasso overwrite the selection).
"""
import html

import numpy as np
import torch

from kpsemi import draw
from kpsemi.embeddings import analysis as E
from kpsemi.embeddings.trained import load_for, model_paths, runs_and_data
from kpsemi.errors import UserError
from kpsemi.method import heatmaps as H

# panel geometry in screen pixels: fixed, so nothing moves when a detail or a selection appears, and the PNGs are
# drawn at the size they are shown (9 pt titles at 100 dpi are 12.5 px high)
MAP_PX, POINT_PX, TYPES_PX, PANEL_PX = 440, 5, 160, 430
DETAIL_PX, THUMBS_PX, DPI, TITLE_PT = (420, 160), (420, 230), 100, 9
LIST_ROWS = 200                                                   # images listed in the selection table


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
        self.ui, self._syncing = None, False
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
            self._models[name] = load_for(name, self.paths[name], self.data, self.device)
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
        import ipywidgets as W
        try:
            import jscatter
        except ImportError as e:
            raise UserError(f"the explorer needs jupyter-scatter ({e}): pip install jupyter-scatter") from None

        def fixed(width, height=None, **kw):                        # a box that neither grows nor shrinks
            return W.Layout(width=f"{width}px", height=f"{height}px" if height else None, flex="0 0 auto", **kw)

        sc = jscatter.Scatter(x="x", y="y", data=self._frame())
        sc.x("x", scale=(-1, 1)).y("y", scale=(-1, 1)).color(by="keypoint", map=self._colours())
        sc.size(default=POINT_PX).opacity(unselected=0.3).width(MAP_PX).height(MAP_PX).axes(False)
        sc.legend(False).tooltip(True, properties=["color", "image"]).mouse("lasso")
        self.scatter, sw = sc, sc.widget
        sw.show(["pan_zoom", "lasso", "lasso_type", "divider", "reset"])
        sw.layout = W.Layout(flex="0 0 auto")
        sw.add_class("kpsemi-map")
        (dw, dh), (tw, th) = DETAIL_PX, THUMBS_PX
        self.w = {"model": W.Dropdown(options=list(self.paths), value=self.model_name, description="model",
                                      style={"description_width": "initial"}, layout=fixed(320)),
                  "perplexity": W.FloatSlider(value=self.perplexity, min=2, max=max(100, self.perplexity), step=1,
                                              continuous_update=False, description="perplexity",
                                              style={"description_width": "initial"}, layout=fixed(340)),
                  "status": W.HTML(layout=W.Layout(flex="1 1 auto")),
                  "types": W.SelectMultiple(options=self.names, value=[self.names[t] for t in self.types],
                                            rows=min(16, len(self.names)), layout=fixed(TYPES_PX)),
                  "detail": W.Image(format="png", layout=fixed(dw, dh, visibility="hidden")),
                  "thumbs": W.Image(format="png", layout=fixed(tw, th, display="none")),
                  "selection": W.HTML(layout=fixed(PANEL_PX)),
                  "legend": W.HTML(layout=fixed(MAP_PX + 40))}
        for name in ("model", "detail", "thumbs", "selection", "status", "types", "legend"):
            self.w[name].add_class(f"kpsemi-{name}")
        self.w["model"].observe(lambda ch: self._control(self.select_model, ch["new"]), "value")
        self.w["types"].observe(lambda ch: self._control(self.set_types, ch["new"]) if ch["new"] else None, "value")
        self.w["perplexity"].observe(lambda ch: self._control(self.set_perplexity, ch["new"]), "value")
        sw.observe(self._hovered, "hovering")
        sw.observe(self._selected, "selection")
        types = W.VBox([W.HTML("keypoint types"), self.w["types"]], layout=fixed(TYPES_PX))
        panel = W.VBox([self.w["detail"], self.w["selection"], self.w["thumbs"]], layout=fixed(PANEL_PX))
        top = W.HBox([self.w["model"], self.w["perplexity"], self.w["status"]])
        plot = W.VBox([sw, self.w["legend"]], layout=fixed(MAP_PX + 40))
        self.ui = W.VBox([top, W.HBox([types, plot, panel], layout=W.Layout(flex_flow="row wrap",
                                                                            align_items="flex-start"))])
        self.ui.add_class("kpsemi-explorer")
        self._sync_controls()

    def _frame(self):
        """The shown map as a table: row i is map point i (x, y in [-1, 1], keypoint type, image id)."""
        import pandas as pd
        e = self.emb()
        xy = _unit(self.xy)
        return pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1],
                             "keypoint": pd.Categorical([self.names[k] for k in e.kind[self.idx]],
                                                        categories=[self.names[t] for t in self.types]),
                             "image": [str(self.data.ids[i]) for i in e.image[self.idx]]})

    def _colours(self):
        """The kit's keypoint colours of the shown types, in the order of the frame's categories (a list: a dict
        map breaks jupyter-scatter's `data()` update)."""
        from matplotlib.colors import to_hex
        colours = draw.keypoint_colours(len(self.names))
        return [to_hex(colours[t]) for t in self.types]

    def _control(self, method, value, busy=True):
        """Run a state method from a widget callback; a UserError goes to the status line, not lost in a log."""
        if self._syncing:
            return
        if busy:
            self.w["status"].value = "<i>computing t-SNE ...</i>"
        try:
            method(value)
        except UserError as e:
            self.w["status"].value = f"<span style='color:#c00'>{html.escape(str(e))}</span>"
            return
        self._show_status()

    def _hovered(self, change):                                     # None: the mouse left the point; keep the detail
        i = change["new"]
        if i is None or self._syncing or (self.detail is not None and self.detail["point"] == int(i)):
            return
        self._control(self.on_point, int(i), busy=False)

    def _selected(self, change):                                    # a lasso, a rectangle, a click, or cleared
        pts = change["new"]
        self._control(self.on_select, [] if pts is None else np.asarray(pts, dtype=np.int64).tolist(), busy=False)

    def _redraw(self):
        """A new map: new points, colours and legend; nothing selected, no detail."""
        if self.ui is None:
            return
        self._syncing = True                                        # the methods moved the controls: no echo
        try:
            # one message: jupyter-scatter decides from `non_spatial_points_update` whether to rebuild its hover
            # index when the points arrive; sent apart, the flag may come late and hovers then find nothing
            with self.scatter.widget.hold_sync():
                self.scatter.data(self._frame())                    # the axes stay [-1, 1]: one points update
                self.scatter.color(map=self._colours())
                self.scatter.selection([])
            self.scatter.widget.reset_view()                        # the whole map, whatever the last zoom was
        finally:
            self._syncing = False
        self._sync_controls()

    def _sync_controls(self):
        self._syncing = True
        try:
            self.w["model"].value, self.w["types"].value = self.model_name, tuple(self.names[t] for t in self.types)
            self.w["perplexity"].value = self.perplexity
        finally:
            self._syncing = False
        self._show_status()
        self._show_detail()
        self._show_selection()

    def _show_status(self):                                         # the status line and the colour legend
        v = self.view()
        self.w["status"].value = (f"<b>{html.escape(self.model_name)}</b>: z from {self.source} heatmaps, "
                                  f"{v['points']} points, perplexity {v['effective_perplexity']:g}")
        items = "".join(f"<span style='display:inline-block;width:150px'><span style='color:{c}'>●</span> "
                        f"{html.escape(self.names[t])}</span>" for t, c in zip(self.types, self._colours()))
        self.w["legend"].value = f"<div style='font-size:12px;line-height:18px'>{items}</div>"

    def _show_detail(self):
        if self.ui is None:
            return
        _set_image(self.w["detail"], None if self.detail is None else self.detail_png(), keep_space=True)

    def detail_png(self):
        """PNG bytes of DETAIL_PX: the whole crop with the keypoint, the patch around it, the heatmap over the crop."""
        d = self.detail
        fig = draw.detail_figure(self.data.images[d["image"]], d["xy"], d["patch"], d["heatmap"],
                                 (f"{d['id']} {d['class']}", d["name"], f"{self.source} heatmap"), DETAIL_PX, DPI,
                                 TITLE_PT)
        return draw.png(fig, DPI)

    def _show_selection(self):
        if self.ui is None:
            return
        rows = "".join(f"<tr><td>{html.escape(str(s['id']))}</td><td>{s['points']}</td>"
                       f"<td>{html.escape(', '.join(s['types']))}</td></tr>" for s in self.selection[:LIST_ROWS])
        more = (f"<p>… and {len(self.selection) - LIST_ROWS} more</p>" if len(self.selection) > LIST_ROWS else "")
        self.w["selection"].value = (
            f"<b>{len(self.selection)} images selected</b><div style='max-height:240px;overflow-y:auto;"
            f"font-size:12px;line-height:16px'><table style='border-spacing:8px 2px'><tr><th>image</th><th>points</th>"
            f"<th>types</th></tr>{rows}</table>{more}</div>" if self.selection else
            "<i>hover a point to see its keypoint; lasso points (or click one) to list their images</i>")
        _set_image(self.w["thumbs"], self.selection_png() if self.selection else None)

    def selection_png(self):
        """PNG bytes of THUMBS_PX: the first 8 selected images with their ground truth."""
        first = self.selection[:8]
        fig = draw.thumbnails_figure(self.data, [s["image"] for s in first], [str(s["id"]) for s in first],
                                     THUMBS_PX, DPI, TITLE_PT)
        return draw.png(fig, DPI)

    def show(self):
        if self.ui is None:
            self._build()
        return self.ui


def explore(runs, data=None, split="test", **kw):
    """The Explorer of run folders or best.pt files (one, a list, or a dict name -> run). data: KeypointData at the
    runs' input size; None: the `split` of the data the first run trained on (trained.run_data). kw go to Explorer
    (source, perplexity, max_points, device, ...)."""
    paths, data = runs_and_data(runs, data, split)
    return Explorer(paths, data, **kw)


def _unit(xy, margin=0.06):
    """(P, 2) map coordinates scaled into [-1 + margin, 1 - margin] around their centre, one scale for both axes
    (the map keeps its aspect, no point sits on the canvas edge)."""
    lo, hi = xy.min(0), xy.max(0)
    half = max(float((hi - lo).max()) / 2, 1e-9)
    return (xy - (lo + hi) / 2) * ((1 - margin) / half)


def _set_image(widget, png, keep_space=False):
    """Show PNG bytes in an Image widget, or hide it (an empty Image is a broken-image icon in the browser); with
    keep_space its box stays, so what lies below does not move when a picture comes."""
    widget.value = png or b""
    if keep_space:
        widget.layout.visibility = None if png else "hidden"
    else:
        widget.layout.display = None if png else "none"
