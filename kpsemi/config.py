"""Run configuration: one dataclass, three presets of the same code path.

    smoke  - seconds on a CPU; what the tests run; its numbers only test the plumbing (`plumbing_note`)
    demo   - minutes on a 2-core CPU; small HRNet, small inputs, already shows each lesson's effect
    paper  - the paper's settings (HRNet-W32, 256x256 -> 64x64 heatmaps, sigma 2, Adam 1e-4); needs a GPU

`get(preset, **overrides)` returns a Config; `preset_name()` reads KPSEMI_PRESET (default "demo"). The multi-animal
and weak-supervision configs (kpsemi/multi/train.py, kpsemi/weak/pipeline.py) come from the same `from_presets`, and
`check_same` is the one policy for reusing a run, a checkpoint or a classifier made with another config.
"""
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, replace

from kpsemi.errors import UserError

PRESET_NAMES = ("smoke", "demo", "paper")


@dataclass
class Config:
    preset: str = "demo"
    # data
    dataset: str = "synthetic"
    synth_size: str = "default"      # embedded set size: smoke | default | <n train images>
    data_seed: int = 0               # embedded set generator seed
    input_size: int = 256
    stride: int = 4                  # heatmap = input / stride
    sigma: float = 2.0               # Gaussian target sigma in heatmap pixels
    # model
    backbone: str = "hrnet_w32"      # hrnet_w32 | hrnet_w18_small | hrnet_tiny (see models.py)
    pretrained: bool = True          # ImageNet weights when they can be had (falls back with a warning)
    embed_dim: int = 64              # C of the semantic keypoint representation
    head_channels: int = 64          # width of the heatmap neck (at least K is used; 0: HRNet's head; models.py)
    # method
    method: str = "standard"         # a key of runs.METHODS: standard (the losses below) | pl (pseudo-labels) |
                                     # mean_teacher | dual | consistency (after the paper: METHOD_LOSSES, below)
    pl_threshold: float = 0.5        # PL: keep a pseudo keypoint when its ensembled heatmap peak reaches this
    losses: tuple = ("sup", "sc", "te", "ti")
    weights: dict = field(default_factory=lambda: {"sup": 1e3, "sc": 0.5, "te": 1e2, "ti": 1e2, "elt": 1e2,
                                                   "gen": 1.0, "attr": 1.0, "elt_lm": 1e2})
    init: str = "scratch"            # scratch | supervised: a semi-supervised run starts from the best weights of
                                     # the supervised run with the same labels (a supervised warm-up; runs.warm_start)
    gt_in_unsup: bool = True         # labeled samples use ground-truth heatmaps in the unsupervised losses
    te_detach: bool = False          # TE's target side g(f(x)) passes no gradient (x teaches g(x))
    repr_grad_to_heatmaps: bool = True  # SC/TI gradients reach the heatmaps through z_i = GMP(F * h_i)
    labeled: float = 0.05            # labeled fraction of the training set
    split_seed: int = 0
    unlabeled_fraction: float = 1.0  # of the unlabeled pool (Table 3)
    # augmentation: standard (rotation, scale, flip) + the perspective g(., s) of TE/TI
    rotation: float = 30.0
    scale: tuple = (0.75, 1.25)
    flip: float = 0.5
    g_corner: float = 0.1
    g_rotation: float = 20.0
    # optimisation
    batch_size: int = 32             # labeled crops per step, the same for every method (a fair comparison)
    unlabeled_ratio: float = 1.0     # a semi-supervised step adds batch_size * this unlabeled crops
    lr: float = 1e-4
    max_steps: int = 100_000
    semi_max_steps: int = 0          # a semi-supervised run's own step budget (0: max_steps); its supervised twin,
                                     # the warm start, keeps max_steps
    eval_every: int = 1000
    patience: int = 10               # evaluations without val PCK improvement before stopping (or dropping lr)
    lr_drops: int = 0                # on a plateau first multiply lr by lr_drop_factor, this many times, then stop
    lr_drop_factor: float = 0.1
    lr_drop_at: float = 0.0          # the first drop comes at this share of max_steps at the latest (0: plateaus only)
    amp: bool = True                 # mixed precision on CUDA
    seed: int = None                 # initialisation and sampling seed; None: the split seed (see run_seed)
    num_threads: int = 0             # torch CPU threads (0: torch's default)
    # the methods after the paper (kpsemi/baselines/ mean_teacher.py, dual.py, consistency.py; notebook 13)
    ema_decay: float = 0.99          # mean_teacher: teacher <- a * teacher + (1 - a) * student after each step
    mt_target: str = "heatmap"       # mean_teacher's target: the teacher's heatmaps (heatmap) or a peak-1 Gaussian at
                                     # each decoded teacher peak, weighted by that peak's height (peak)
    strong_rotation: float = 40.0    # the strong (hard) view, a further warp of the standard view: rotation (deg),
    strong_scale: tuple = (0.75, 1.25)   # scale,
    strong_corner: float = 0.1       # perspective (each corner moves by up to this fraction of the side)
    strong_jitter: float = 0.3       # and photometric jitter (brightness, contrast, saturation x U[1 - j, 1 + j])
    cutout_joints: int = 3           # dual's Joint Cutout: squares centred on this many keypoints predicted on the
    cutout_size: float = 0.25        # easy view, of this fraction of the crop side


# CPU presets: 64-px inputs (16x16 heatmaps, so sigma 1), lr 1e-3 (1e-4 is too slow for a few thousand steps) and
# TI weight 10 (at 1e2 the invariance term collapses the representation early at lr 1e-3; measured on the embedded
# set: val PCK 16 vs 38 after 500 steps). The mean teacher learns from peak-1 Gaussians at its teacher's peaks
# (mt_target="peak": with the teacher's heatmaps as targets the student's peaks on unlabeled views stay at ~0.37;
# docs/deviations.md, row 11). The paper preset keeps the paper's values and the plain mean teacher.
CPU_WEIGHTS = {"sup": 1e3, "sc": 0.5, "te": 1e2, "ti": 10.0, "elt": 1e2, "gen": 1.0, "attr": 1.0, "elt_lm": 1e2}
PRESETS = {
    "smoke": dict(synth_size="smoke", input_size=64, sigma=1.0, backbone="hrnet_tiny", pretrained=False,
                  batch_size=16, lr=1e-3, weights=CPU_WEIGHTS, max_steps=40, eval_every=20, patience=2,
                  mt_target="peak"),
    "demo": dict(synth_size="default", input_size=64, sigma=1.0, backbone="hrnet_tiny", pretrained=False,
                 batch_size=32, lr=1e-3, weights=CPU_WEIGHTS, max_steps=4000, eval_every=250, patience=2,
                 lr_drops=1, lr_drop_at=0.75, init="supervised", mt_target="peak"),
    "paper": dict(synth_size="default", input_size=256, backbone="hrnet_w32", pretrained=True, batch_size=32,
                  max_steps=100_000, eval_every=1000, patience=10, ema_decay=0.999),
}
# the methods after the paper train with losses of their own (kpsemi/baselines/losses.py), whatever `losses` says,
# and read their weight under its own key (filled in from METHOD_WEIGHTS when a config lacks it)
METHOD_LOSSES = {"mean_teacher": ("sup", "mt"), "dual": ("sup", "dual"), "consistency": ("sup", "cons")}
METHOD_WEIGHTS = {"mt": 1e3, "dual": 1e3, "cons": 1e3}
# a method's own values at a preset, for fields that only semi-supervised runs read (_SEMI_ONLY) or only that
# method reads (_METHOD_ONLY), so no other run's name moves. The demo mean teacher learns from two unlabeled crops
# per labeled crop, for up to 6,000 steps after its warm start: with one crop and 4,000 steps its validation PCK
# was still rising when the budget's learning-rate drop came (docs/deviations.md, row 12).
METHOD_PRESETS = {"demo": {"mean_teacher": dict(unlabeled_ratio=2.0, semi_max_steps=6000)}}


def preset_name(default="demo"):
    """The preset named by $KPSEMI_PRESET, else `default`."""
    name = os.environ.get("KPSEMI_PRESET", default) or default
    if name not in PRESETS:
        raise UserError(f"KPSEMI_PRESET={name!r}: choose one of {', '.join(PRESET_NAMES)}")
    return name


def get(preset=None, **overrides):
    """Config of a preset (default: $KPSEMI_PRESET or demo) with field overrides (None values are ignored); a
    method's own preset values (METHOD_PRESETS) come between the preset and the overrides; a max_steps override is
    the budget of every run, so it also replaces a method's own semi_max_steps."""
    cfg = from_presets(Config, PRESETS, preset, **overrides)
    own = METHOD_PRESETS.get(cfg.preset, {}).get(cfg.method)
    if own and overrides.get("max_steps") is not None:
        own = {k: v for k, v in own.items() if k != "semi_max_steps"}
    return from_presets(Config, PRESETS, cfg.preset, own, **overrides) if own else cfg


def from_presets(cls, presets, preset=None, *layers, what="config", **overrides):
    """A config dataclass `cls` (with a `preset` field) at a preset (default: $KPSEMI_PRESET, else demo): its
    defaults, then `presets[preset]`, then each dict of `layers` (e.g. a dataset's settings on top), then the field
    overrides (None values are ignored). The single-animal, multi-animal and weak-supervision configs all come from
    here."""
    preset = preset or preset_name()
    if preset not in presets:
        raise UserError(f"unknown preset {preset!r}: choose one of {', '.join(presets)}")
    cfg = cls(preset=preset)
    for layer in (presets[preset],) + layers:
        cfg = replace(cfg, **{k: dict(v) if isinstance(v, dict) else v for k, v in layer.items()})
    unknown = set(overrides) - set(asdict(cfg))
    if unknown:
        raise UserError(f"unknown {what} fields: {sorted(unknown)}")
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


def run_seed(cfg):
    """The seed of a run's initialisation, sampling and augmentation: `seed`, or the split seed when it is None,
    so that the runs of split seeds 0, 1, 2 differ in their initialisation too (also at 100 % labels, where every
    split seed labels the same images)."""
    return cfg.split_seed if cfg.seed is None else cfg.seed


# fields that only a semi-supervised run (or the method on top of a supervised one) reads
_SEMI_ONLY = ("method", "pl_threshold", "weights", "init", "gt_in_unsup", "te_detach", "repr_grad_to_heatmaps",
              "unlabeled_fraction", "unlabeled_ratio", "semi_max_steps", "g_corner", "g_rotation")
# fields that only some methods read: a run of any other method has them at their defaults
_AFTER = ("mean_teacher", "dual", "consistency")
_METHOD_ONLY = {"ema_decay": ("mean_teacher",), "mt_target": ("mean_teacher",), "strong_rotation": _AFTER,
                "strong_scale": _AFTER, "strong_corner": _AFTER, "strong_jitter": _AFTER, "cutout_joints": ("dual",),
                "cutout_size": ("dual",)}


def canonical(cfg):
    """`cfg` with the fields its run does not read set to fixed values: the fields of other methods (_METHOD_ONLY)
    at their defaults; for a method with losses of its own (METHOD_LOSSES) those losses and its weight; for a
    supervised run (losses ("sup",), method standard) every semi-only field, and of the weights only "sup". Runs
    are cached under their canonical config, so the supervised row of every table, PL's teacher and the start of a
    warm-started run are one run, whatever the semi-supervised settings around them, and a preset value of one
    method's field leaves the other methods' run names as they are."""
    base = Config()
    own = METHOD_LOSSES.get(cfg.method)
    if own:
        cfg = replace(cfg, losses=own, weights={**{n: METHOD_WEIGHTS[n] for n in own if n in METHOD_WEIGHTS},
                                                **cfg.weights})
    cfg = replace(cfg, **{k: getattr(base, k) for k, methods in _METHOD_ONLY.items() if cfg.method not in methods})
    if tuple(cfg.losses) != ("sup",) or cfg.method != "standard":
        return cfg
    return replace(cfg, **{k: getattr(base, k) for k in _SEMI_ONLY if k != "weights"},
                   weights={"sup": cfg.weights["sup"]})


def supervised_twin(cfg):
    """The supervised run with the same data, labels, network and schedule as `cfg` (canonical)."""
    return canonical(replace(cfg, losses=("sup",), method="standard"))


def key_fields(cfg):
    """The fields of `cfg` that differ from the Config defaults: what names a run (a field added to Config later,
    with a default that keeps today's behaviour, leaves every existing run's name and cache as they are)."""
    base = to_dict(Config())
    return {k: v for k, v in to_dict(cfg).items() if v != base[k]}


def to_dict(cfg):
    """The config as a dict of JSON values (tuples as lists), as metrics.json and the checkpoints store it."""
    d = asdict(cfg)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def digest(obj, n=10):
    """A short stable hash of a JSON object (the run cache names its folders by the digest of the config)."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:n]


def check_same(saved, wanted, where):
    """The one policy for reusing what a folder holds (a finished run, a checkpoint to resume or branch from, a
    trained classifier): nothing when `saved`, the config dict it was made with, equals `wanted`; else a UserError
    naming both configs by the fields in which they differ. Nothing is ever silently retrained or overwritten."""
    saved, wanted = json.loads(json.dumps(saved)), json.loads(json.dumps(wanted))      # tuples read back as lists
    if saved == wanted:
        return
    diff = [k for k in sorted(set(saved) | set(wanted)) if saved.get(k) != wanted.get(k)]
    both = "; ".join(f"{k} {saved.get(k, '(unset)')!r} there, {wanted.get(k, '(unset)')!r} here" for k in diff)
    raise UserError(f"{where} was made with another config, so it is not reused: {both}. Delete it or choose another "
                    "folder.")


def plumbing_note(preset):
    """The line every output of the smoke preset carries (the quickstart table, notebook records, reproduced tables,
    a training run): its numbers come from a few steps on a tiny set and only show that the pipeline runs end to
    end. None for the other presets."""
    if preset != "smoke":
        return None
    return ("Smoke preset: a few training steps on a tiny set. These numbers only test the plumbing (data, training, "
            "evaluation, files); they say nothing about the method. Use --preset demo (CPU) or paper (GPU) for results.")


def by_preset(preset, **choices):
    """Pick a notebook's per-preset setting: by_preset(cfg.preset, smoke=..., demo=..., paper=...)."""
    return choices[preset]
