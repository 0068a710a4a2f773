"""Drawing one scene of the embedded dataset: textured background, clutter, articulated animals, occluders.

`render_scene(rng, cfg)` is the whole picture: a background (optionally tinted with the animal's coat), distractor
shapes, an optional smaller unannotated animal behind, the annotated animal(s) built from capsules by `animal.py`,
foreground occluders, lighting and noise. It returns the image and COCO-like annotations whose visibility flags are
true (2 visible, 1 hidden, 0 outside). `writer.py` calls it per (seed, split, index) and writes the dataset.
"""
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from kpsemi.data.synthetic import animal as A

PATTERNS = ("stripes", "spots", "patches", "solid", "saddle")
FAR_SHADE = 0.45      # brightness of the far flank's parts (the near flank is 1)
_BG_PALETTE = np.array([[0.35, 0.45, 0.2], [0.55, 0.5, 0.35], [0.45, 0.38, 0.28], [0.6, 0.6, 0.55],
                        [0.25, 0.35, 0.2], [0.75, 0.68, 0.5], [0.4, 0.42, 0.45], [0.3, 0.25, 0.2]])


def _noise(rng, h, w, cells):
    """Smooth value noise in [0, 1]: a random (cells x cells) grid upsampled bicubically."""
    g = Image.fromarray((rng.random((cells, cells)) * 255).astype(np.uint8))
    return np.asarray(g.resize((w, h), Image.BICUBIC), dtype=np.float32) / 255.0


def _background(rng, s, tint=None):
    c = _BG_PALETTE[rng.choice(len(_BG_PALETTE), 3)] * rng.uniform(0.7, 1.2, (3, 1))
    if tint is not None:  # camouflage: the background takes the animal's coat colour
        c[rng.integers(2)] = tint * rng.uniform(0.8, 1.15, 3)
    n1, n2 = _noise(rng, s, s, rng.integers(2, 6)), _noise(rng, s, s, rng.integers(8, 32))
    img = c[0] * (1 - n1[..., None]) + c[1] * n1[..., None]
    img = img * (0.75 + 0.5 * n2[..., None])
    if rng.random() < 0.35:  # grass-like strokes or stripes, a hard negative for striped coats
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
        a = rng.uniform(0, np.pi)
        wave = np.sin((np.cos(a) * xx + np.sin(a) * yy) * rng.uniform(15, 60) + 3 * n1) > rng.uniform(0.3, 0.8)
        img = np.where(wave[..., None], img * 0.6 + c[2] * 0.4, img)
    return img.astype(np.float32)


def _clutter(rng, img, n):
    """Distractor shapes on the background, some in animal-like colours and limb-like shapes."""
    s = img.shape[0]
    pil = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))
    d = ImageDraw.Draw(pil)
    for _ in range(n):
        if rng.random() < 0.4:
            col = np.array(A.SPECIES[rng.integers(len(A.SPECIES))].colour) * rng.uniform(0.6, 1.1)
        else:
            col = rng.random(3)
        col = tuple(int(v) for v in np.clip(col * 255, 0, 255))
        x, y = rng.uniform(-0.1, 1.1, 2) * s
        r = rng.uniform(0.03, 0.18) * s
        kind = rng.integers(4)
        if kind == 0:
            d.ellipse([x - r, y - r * rng.uniform(0.3, 1), x + r, y + r * rng.uniform(0.3, 1)], fill=col)
        elif kind == 1:
            d.rectangle([x - r, y - r * 0.5, x + r, y + r * 0.5], fill=col)
        elif kind == 2:  # limb-like stroke
            a = rng.uniform(0, 2 * np.pi)
            d.line([x, y, x + 2 * r * np.cos(a), y + 2 * r * np.sin(a)], fill=col, width=max(1, int(r * 0.25)))
        else:
            pts = [(x + r * np.cos(t) * rng.uniform(0.5, 1.2), y + r * np.sin(t) * rng.uniform(0.5, 1.2))
                   for t in np.sort(rng.uniform(0, 2 * np.pi, rng.integers(3, 7)))]
            d.polygon(pts, fill=col)
    return np.asarray(pil, dtype=np.float32) / 255.0


def _capsule_polygon(p0, p1, r0, r1, n=8):
    d = p1 - p0
    L = np.hypot(*d)
    if L < 1e-6:
        t = np.linspace(0, 2 * np.pi, 2 * n, endpoint=False)
        return [(p0[0] + max(r0, r1) * np.cos(u), p0[1] + max(r0, r1) * np.sin(u)) for u in t]
    th = np.arctan2(d[1], d[0])
    a1 = th + np.linspace(-np.pi / 2, np.pi / 2, n)
    a0 = th + np.linspace(np.pi / 2, 3 * np.pi / 2, n)
    return ([(p1[0] + r1 * np.cos(u), p1[1] + r1 * np.sin(u)) for u in a1]
            + [(p0[0] + r0 * np.cos(u), p0[1] + r0 * np.sin(u)) for u in a0])


class _Animal:
    """One animal placed in a scene: its projected primitives, keypoints and colours."""

    def __init__(self, rng, species, s, side_px, centre_px, pose=None, p_random_coat=0.0):
        self.species = species
        sp = A.SPECIES[species]
        self.pose = A.sample_pose(rng) if pose is None else pose
        jitter = rng.normal(1.0, [0.12, 0.15, 0.15, 0.2, 0.12, 0.25]).clip(0.6, 1.5)
        kp3, self.prims3 = A.build(sp, self.pose, jitter)
        self.R = A.camera(self.pose)
        dist = self.pose.get("distance")
        xy, _ = A.project(np.concatenate([p[1] for p in self.prims3]), self.R, 1.0, np.zeros(2), dist)
        lo, hi = xy.min(0), xy.max(0)
        self.scale = side_px / max(hi - lo)
        offset = centre_px - (lo + hi) / 2 * self.scale
        self.kp, _ = A.project(kp3, self.R, self.scale, offset, dist)  # (K, 2)
        self.prims = []
        for kind, pts, radii, cls, owners in self.prims3:
            p2, depth = A.project(pts, self.R, self.scale, offset, dist)
            f = 1.0 if dist is None else dist / (dist - depth)      # perspective size of each end
            # (kind, 2-D points, radii px, colour class, owned keypoints, depth, lateral position in the animal)
            self.prims.append((kind, p2, radii * f * self.scale, cls, owners, float(depth.mean()),
                               float(pts[:, 2].mean())))
        self.prims.sort(key=lambda p: p[5])
        axis, _ = A.project(np.array([[-0.5, 0, 0], [0.5, 0, 0]]), self.R, 1.0, np.zeros(2), dist)
        u = axis[1] - axis[0]
        self.axis = u / (np.hypot(*u) + 1e-6)
        self.origin = offset
        col = np.array(sp.colour) * rng.uniform(0.8, 1.15, 3)
        pat_col = np.array(sp.pattern_colour, dtype=np.float32)
        self.pattern, self.pattern_scale = sp.pattern, sp.pattern_scale * rng.uniform(0.75, 1.35)
        if rng.random() < p_random_coat:
            col, pat_col = rng.uniform(0.08, 0.95, 3), rng.uniform(0.0, 1.0, 3).astype(np.float32)
            self.pattern = PATTERNS[rng.integers(len(PATTERNS))]
        self.coat = np.clip(col, 0, 1)
        paw = 0.5 * col + 0.5 * np.array(sp.paw_colour)   # paws a darker shade of the coat: the flank shadow shows
        self.palette = np.clip(np.stack([col, paw, [0.03, 0.03, 0.03],
                                         col * 0.7, [0.1, 0.06, 0.06]]), 0, 1).astype(np.float32)
        self.pattern_colour = pat_col
        self.sp = sp

    def raster(self, s):
        """Part-id buffer (s, s) uint8 (0 = background, i + 1 = primitive i in drawing order)."""
        ids = Image.new("L", (s, s), 0)
        d = ImageDraw.Draw(ids)
        for i, (kind, p, r, *_) in enumerate(self.prims):
            if kind == "capsule":
                d.polygon(_capsule_polygon(p[0], p[1], r[0], r[1]), fill=i + 1)
            elif kind == "sphere":
                d.ellipse([p[0, 0] - r[0], p[0, 1] - r[0], p[0, 0] + r[0], p[0, 1] + r[0]], fill=i + 1)
            else:
                d.polygon([tuple(q) for q in p], fill=i + 1)
        return np.asarray(ids)

    def colours(self, rng, ids):
        """RGB (s, s, 3) of the animal where ids > 0: palette by part class, depth shading, coat pattern.

        Computed inside the animal's bounding box only (the rest stays black)."""
        s = ids.shape[0]
        rgb_full = np.zeros((s, s, 3), np.float32)
        ys, xs = np.nonzero(ids)
        if len(ys) == 0:
            return rgb_full
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        ids = ids[y0:y1, x0:x1]
        h, w = ids.shape
        depth = np.array([0.0] + [p[5] for p in self.prims])
        dn = (depth - depth[1:].min()) / (np.ptp(depth[1:]) + 1e-6)
        # the flank facing the camera is lit, the far one (its legs, eye and ear) in the body's shadow: as in a
        # photograph, a cue for near vs far, hence (with the facing direction) for left vs right
        near = np.sign(self.R[2, 2]) * np.array([0.0] + [p[6] for p in self.prims])
        side = np.where(near > 0.02, 1.0, np.where(near < -0.02, FAR_SHADE, 0.8))
        shade = (side * (0.85 + 0.15 * dn)).astype(np.float32)[ids][..., None]
        cls = np.array([0] + [p[3] for p in self.prims])[ids]
        rgb = self.palette[cls] * shade
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        xx, yy = xx - self.origin[0], yy - self.origin[1]
        u = (xx * self.axis[0] + yy * self.axis[1]) / self.scale
        v = (xx * -self.axis[1] + yy * self.axis[0]) / self.scale
        ps, pat = self.pattern_scale, self.pattern
        n = _noise(rng, h, w, 4)
        if pat == "stripes":
            m = np.sin(2 * np.pi * u / ps + 4 * n) > 0.45
        elif pat == "spots":
            m = np.sin(2 * np.pi * u / ps + 3 * n) * np.sin(2 * np.pi * v / ps + 3 * n) > 0.55
        elif pat == "patches":
            m = _noise(rng, h, w, max(3, int(1.5 * max(h, w) / (ps * self.scale + 1)))) > 0.62
        elif pat == "saddle":
            m = v * np.sign(-self.axis[0] + 1e-6) < -0.05 + 0.1 * n
        else:
            m = np.zeros((h, w), bool)
        rgb = np.where(((cls == A.COAT) & m)[..., None], self.pattern_colour * shade, rgb)
        rgb_full[y0:y1, x0:x1] = rgb * (0.9 + 0.2 * n[..., None])
        return rgb_full


def _occluders(rng, img, who, box, n):
    """Rocks, bushes and branches in front of the animals; they own their pixels in `who` (-2)."""
    s = img.shape[0]
    pil = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))
    mask = Image.new("L", (s, s), 0)
    d, dm = ImageDraw.Draw(pil), ImageDraw.Draw(mask)
    x0, y0, x1, y1 = box
    for _ in range(n):
        cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
        r = rng.uniform(0.08, 0.22) * max(x1 - x0, y1 - y0)
        kind = rng.integers(3)
        col = tuple(int(c) for c in (rng.choice(_BG_PALETTE) * rng.uniform(0.5, 1.0) * 255))
        if kind == 0:
            pts = [(cx + r * np.cos(t) * rng.uniform(0.6, 1.1), cy + r * np.sin(t) * rng.uniform(0.6, 1.1))
                   for t in np.sort(rng.uniform(0, 2 * np.pi, 7))]
            for dd in (d, dm):
                dd.polygon(pts, fill=col if dd is d else 255)
        elif kind == 1:
            for _ in range(5):
                ox, oy, rr = cx + rng.normal(0, r * 0.6), cy + rng.normal(0, r * 0.4), r * rng.uniform(0.3, 0.6)
                for dd in (d, dm):
                    dd.ellipse([ox - rr, oy - rr, ox + rr, oy + rr], fill=col if dd is d else 255)
        else:
            a = rng.uniform(0, np.pi)
            line = [cx - 3 * r * np.cos(a), cy - 3 * r * np.sin(a), cx + 3 * r * np.cos(a), cy + 3 * r * np.sin(a)]
            for dd in (d, dm):
                dd.line(line, fill=col if dd is d else 255, width=max(2, int(r * 0.3)))
    m = np.asarray(mask) > 0
    who[m] = -2
    return np.asarray(pil, dtype=np.float32) / 255.0


def render_scene(rng: np.random.Generator, cfg, poses=None):
    """One image (s, s, 3) uint8 and a list of annotation dicts (one per annotated animal).

    poses: optional list of `animal.sample_pose`-like dicts for the annotated animals (tests, figures)."""
    s = cfg.image_size
    who = np.full((s, s), -1, np.int16)      # which animal owns each pixel (-1 none, -2 occluder)
    part = np.zeros((s, s), np.uint8)         # primitive id within that animal
    n_ann = int(rng.integers(cfg.animals[0], cfg.animals[1] + 1))
    multi = cfg.animals[1] > 1
    placed = []
    if rng.random() < cfg.p_distractor_animal:  # an unannotated animal behind the others
        placed.append((None, _Animal(rng, rng.integers(len(A.SPECIES)), s, s * rng.uniform(0.2, 0.6),
                                     rng.uniform(0.1, 0.9, 2) * s, p_random_coat=cfg.p_random_coat)))
    for j in range(n_ann):
        side = s * (rng.uniform(0.18, 0.4) if multi else rng.uniform(*cfg.scale))
        lo, hi = side * 0.5, s - side * 0.5
        if rng.random() < cfg.p_truncate:  # push it over an edge
            centre = rng.uniform(lo, hi, 2)
            k = rng.integers(2)
            centre[k] = rng.choice([side * rng.uniform(0.0, 0.3), s - side * rng.uniform(0.0, 0.3)])
        else:
            centre = rng.uniform(lo, max(lo, hi), 2) if hi > lo else np.full(2, s / 2)
        pose = poses[j] if poses is not None else None
        placed.append((j, _Animal(rng, rng.integers(len(A.SPECIES)), s, side, centre, pose, cfg.p_random_coat)))
    tint = placed[-1][1].coat if rng.random() < cfg.p_camouflage else None
    img = _clutter(rng, _background(rng, s, tint), int(rng.integers(*cfg.clutter)))
    anns, boxes = [], {}
    for j, an in placed:
        ids = an.raster(s)
        m = ids > 0
        rgb = an.colours(rng, ids)
        img = np.where(m[..., None], rgb, img)
        code = -3 if j is None else j
        who[m], part[m] = code, ids[m]
        if j is not None and m.any():
            ys, xs = np.nonzero(m)
            boxes[j] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    for j, an in placed:
        if j is not None and j in boxes and rng.random() < cfg.p_occluder:
            img = _occluders(rng, img, who, boxes[j], int(rng.integers(1, 4)))
    for j, an in placed:
        if j is None or j not in boxes:
            continue
        kps = np.zeros((A.K, 3))
        owners = [set() for _ in range(A.K)]
        for i, p in enumerate(an.prims):
            for name in p[4]:
                owners[A.KEYPOINTS.index(name)].add(i + 1)
        for k, (x, y) in enumerate(an.kp):
            if not (0 <= x < s and 0 <= y < s):
                continue
            xi, yi = int(x), int(y)
            vis = 2 if (who[yi, xi] == j and part[yi, xi] in owners[k]) else 1
            kps[k] = (x, y, vis)
        if (kps[:, 2] > 0).sum() == 0:
            continue
        x0, y0, x1, y1 = boxes[j]
        anns.append(dict(category_id=int(an.species) + 1, keypoints=kps, bbox=[float(x0), float(y0),
                         float(x1 - x0), float(y1 - y0)], area=float((who == j).sum()),
                         attributes=dict(an.pose["attributes"])))
    light = rng.uniform(0.75, 1.2) * (1 + 0.25 * (_noise(rng, s, s, 2) - 0.5))[..., None]
    img = img * light + rng.uniform(0.0, 0.035) * rng.standard_normal(img.shape, dtype=np.float32)
    out = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))
    if rng.random() < 0.5:
        out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.9)))
    return np.asarray(out), anns
