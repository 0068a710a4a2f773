"""The embedded dataset: rendered scenes of articulated animals, written as COCO keypoints JSON + JPEG images.

Every image is a pure function of (seed, split, index), so the set is identical whatever the number of worker
processes, and any single sample can be regenerated in memory (`render_sample`). A scene is a textured, cluttered
background with distractor shapes, optionally a smaller unannotated animal behind, the annotated animal(s), and
foreground occluders. Visibility flags are *true*: a keypoint is 2 when the pixel under it shows the body part it
belongs to, 1 when it is inside the image but hidden (self-occlusion, another animal, an occluder), and 0 with
x = y = 0 when it lies outside the image (truncation), as in COCO. The drawing itself is `scene.py`.

    python -m kpsemi data synth --out DIR [--size default|smoke|N] [--seed N]
"""
import fcntl
import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from kpsemi.data.synthetic import animal as A
from kpsemi.data.synthetic.scene import render_scene
from kpsemi.errors import UserError
from kpsemi.paths import data_dir, write_json_atomic

SPLITS = ("train", "val", "test")
SIZES = {  # name -> (n_train, n_val, n_test, image side)
    "smoke": (240, 60, 60, 128),
    "default": (5000, 500, 1000, 256),
}
_SPLIT_ID = {"train": 0, "val": 1, "test": 2}


@dataclass(frozen=True)
class SynthConfig:
    image_size: int = 256
    n_train: int = 5000
    n_val: int = 500
    n_test: int = 1000
    seed: int = 0
    animals: tuple = (1, 1)          # min, max annotated animals per image (multi-animal scenes: e.g. (2, 5))
    scale: tuple = (0.4, 0.85)       # animal box side as a fraction of the image side (single animal)
    p_occluder: float = 0.3
    p_truncate: float = 0.1
    p_distractor_animal: float = 0.3
    p_random_coat: float = 0.25   # an individual with a random coat colour / pattern
    p_camouflage: float = 0.15    # background tinted with the animal's coat colour
    clutter: tuple = (4, 14)
    version: int = 5              # generator version: a cached set (and a run) of another version is never reused

    @staticmethod
    def from_size(size="default", seed=0, **kw):
        if isinstance(size, str) and not size.isdigit():
            if size not in SIZES:
                raise UserError(f"unknown synthetic size {size!r}: use one of {sorted(SIZES)} or a number of "
                                "training images")
            n_tr, n_va, n_te, side = SIZES[size]
        else:
            n_tr = int(size)
            n_va, n_te, side = max(1, n_tr // 10), max(1, n_tr // 5), 256
        return SynthConfig(image_size=side, n_train=n_tr, n_val=n_va, n_test=n_te, seed=seed, **kw)

    def count(self, split):
        return {"train": self.n_train, "val": self.n_val, "test": self.n_test}[split]


def render_sample(cfg: SynthConfig, split: str, index: int):
    """The `index`-th image of `split`, regenerated in memory: (image uint8 (s, s, 3), annotations)."""
    rng = np.random.default_rng([cfg.seed, _SPLIT_ID[split], index])
    return render_scene(rng, cfg)


def categories():
    return [dict(id=i + 1, name=sp.name, supercategory="animal", keypoints=list(A.KEYPOINTS),
                 skeleton=[[a + 1, b + 1] for a, b in A.SKELETON]) for i, sp in enumerate(A.SPECIES)]


def _render_and_save(args):
    cfg, split, index, out = args
    img, anns = render_sample(cfg, split, index)
    name = f"images/{split}/{index:06d}.jpg"  # relative to the JSON files
    Image.fromarray(img).save(os.path.join(out, name), quality=92)
    return index, name, anns


def write_coco(cfg: SynthConfig, out: str, workers: int = None, progress: bool = True) -> dict:
    """Render every split of `cfg` to `out/images/<split>/*.jpg` + `out/<split>.json`; returns timing stats."""
    workers = workers or min(os.cpu_count() or 1, 8)
    t0, total = time.time(), 0
    for split in SPLITS:
        os.makedirs(os.path.join(out, "images", split), exist_ok=True)
        n = cfg.count(split)
        jobs = [(cfg, split, i, out) for i in range(n)]
        images, anns = [], []
        with ProcessPoolExecutor(workers) if workers > 1 else _Serial() as ex:
            it = ex.map(_render_and_save, jobs, chunksize=32)
            for index, name, a in tqdm(it, total=n, desc=f"synth {split}", disable=not progress):
                images.append(dict(id=index + 1, file_name=name, width=cfg.image_size, height=cfg.image_size))
                for ann in a:
                    kp = ann["keypoints"]
                    anns.append(dict(ann, id=len(anns) + 1, image_id=index + 1, iscrowd=0,
                                     keypoints=[round(float(v), 2) for v in kp.reshape(-1)],
                                     num_keypoints=int((kp[:, 2] > 0).sum())))
        doc = dict(info=dict(description="kpsemi embedded synthetic animals", config=asdict(cfg), split=split),
                   images=images, annotations=anns, categories=categories(),
                   attributes=list(A.ATTRIBUTES))
        write_json_atomic(doc, os.path.join(out, f"{split}.json"))
        total += n
    dt = time.time() - t0
    return dict(images=total, seconds=dt, images_per_s=total / dt, workers=workers)


class _Serial:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False

    def map(self, fn, it, chunksize=1):
        return map(fn, it)


def ensure(size="default", seed=0, root=None, progress=True, **kw) -> str:
    """Directory of the cached embedded dataset for (size, seed), generating it on first use.

    The folder name carries the generator version; generation holds a lock and renders into a temporary folder
    that is renamed into place, so concurrent callers never see (or write) a half-finished set."""
    cfg = SynthConfig.from_size(size, seed, **kw)
    tag = f"synthetic-{size}-s{seed}-v{cfg.version}" + ("" if not kw else "-" + "-".join(
        f"{k}{v}" for k, v in sorted(kw.items())))
    out = os.path.join(root or data_dir(), tag.replace(" ", "").replace(",", "_").replace("(", "").replace(")", ""))
    want = json.loads(json.dumps(asdict(cfg)))

    def done():
        stamp = os.path.join(out, "config.json")
        if not os.path.exists(stamp):
            return False
        with open(stamp) as f:
            return json.load(f) == want

    if done():
        return out
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)          # another process may be generating it right now
        if not done():
            tmp = f"{out}.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            stats = write_coco(cfg, tmp, progress=progress)
            with open(os.path.join(tmp, "config.json"), "w") as f:
                json.dump(want, f)
            if os.path.exists(out):
                shutil.rmtree(out)
            os.replace(tmp, out)
            if progress:
                print(f"embedded dataset written to {out}: {stats['images']} images, "
                      f"{stats['images_per_s']:.0f} images/s")
    return out
