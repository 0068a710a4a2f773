"""Command line: `python -m kpsemi <command>`.

    python -m kpsemi quickstart [--preset demo] [--out results/quickstart]   # the main job on the embedded set
    python -m kpsemi train --preset P --losses sup,sc,te,ti --labeled 0.05 --split-seed 0 [--out DIR]
        [--data synthetic | --train-json F --val-json F --test-json F [--unlabeled-dir D] | --dlc PROJECT]
        [--unlabeled-fraction F] [--unlabeled-ratio R] [--no-gt-in-unsup] [--weights sup=1e3,sc=0.5,te=1e2,ti=1e2]
        [--resume]
        [--method standard | pl | mean_teacher | dual | consistency]   (a method with losses of its own ignores
        --losses; without --out the run goes to its folder of the run cache, results/runs/)
        [--pretrained-weights PATH [--pretrained-sha256 HEX]]
    torchrun --standalone --nproc_per_node=N -m kpsemi train ...             # one run on N processes (DDP)
    python -m kpsemi reproduce --table {1,2,3,4,fig3} --preset P [--datasets ...] [--seeds ...] [--rows ...] --out DIR
        [--executor sequential | submitit --cluster {local,slurm} [--partition P] [--gpus-per-job N]
         [--timeout-min M] [--array-parallelism K]] [--pretrained-weights PATH [--pretrained-sha256 HEX]]
    python -m kpsemi reproduce --table smp --preset P --root HONEYBEE [--train-sets train5,train25] [--seeds 0,1]
    python -m kpsemi data synth --out DIR [--size default|smoke|N] [--seed N] [--workers N]
    python -m kpsemi data preview [--dataset synthetic] [--out DIR]
    python -m kpsemi data splits [--dataset synthetic]
    python -m kpsemi data download {lsp,mpii,cub,atrw} [--allow-unverified]
    python -m kpsemi predict --run RUN (--video FILE | --images DIR | --coco JSON) --out DIR [--flag 12]
    python -m kpsemi evaluate --run RUN (--coco JSON | --dlc PROJECT [--split test]) [--out DIR]
    python -m kpsemi embeddings --run DIR [--run DIR2] --out z.csv|z.npz [--split test] [--json F --image-root D]

Bad inputs end with one clear `error:` line (exit status 2), not a traceback. Each command imports the modules it
needs when it runs (the one place in kpsemi with function-level imports), so `--help`, `data synth` and bad options
answer without loading torch and the networks.
"""
import argparse
import json
import os
import sys
import time
import warnings

from kpsemi.errors import UserError


def _add_data(sub):
    p = sub.add_parser("data", help="embedded dataset, downloads, splits, previews")
    dsub = p.add_subparsers(dest="data_cmd", required=True)
    s = dsub.add_parser("synth", help="write the embedded dataset as COCO keypoints JSON + images")
    s.add_argument("--out", required=True, help="folder for train/val/test.json and images/")
    s.add_argument("--size", default="default", help="smoke | default | number of training images")
    s.add_argument("--seed", type=int, default=0, help="generator seed: the same seed draws the same images")
    s.add_argument("--workers", type=int, default=None, help="rendering processes (default: CPU count, at most 8)")
    s.add_argument("--animals", default="1,1", help="min,max annotated animals per image (multi-animal scenes)")
    pv = dsub.add_parser("preview", help="a picture and a summary table of a dataset's crops")
    pv.add_argument("--dataset", default="synthetic", help="synthetic | lsp | mpii | cub | atrw")
    pv.add_argument("--preset", default=None, help="smoke | demo | paper (default: $KPSEMI_PRESET or demo)")
    pv.add_argument("--out", default=os.path.join("results", "preview"),
                    help="folder for preview.png, summary.md/.csv and meta.json")
    sp = dsub.add_parser("splits", help="write the label splits of a dataset to data/splits/")
    sp.add_argument("--dataset", default="synthetic", help="synthetic | lsp | mpii | cub | atrw")
    sp.add_argument("--preset", default=None, help="smoke | demo | paper (default: $KPSEMI_PRESET or demo)")
    dl = dsub.add_parser("download", help="download + verify + unpack a real dataset under data/")
    dl.add_argument("name", choices=["lsp", "mpii", "cub", "atrw"], help="the dataset")
    dl.add_argument("--root", default=None, help="where to unpack it (default: data/NAME)")
    dl.add_argument("--allow-unverified", action="store_true",
                    help="unpack archives that have no published checksum (prints their sha256)")


def _data(args):
    from kpsemi import config
    if args.data_cmd == "synth":
        from kpsemi.data.synthetic import writer
        lo, hi = (int(v) for v in args.animals.split(","))
        cfg = writer.SynthConfig.from_size(args.size, args.seed, animals=(lo, hi))
        stats = writer.write_coco(cfg, args.out, workers=args.workers)
        print(f"wrote {stats['images']} images to {args.out} (train/val/test.json + images/) in "
              f"{stats['seconds']:.1f} s: {stats['images_per_s']:.0f} images/s with {stats['workers']} workers")
        return
    if args.data_cmd == "download":
        from kpsemi import data
        from kpsemi.data import download
        root = download.download_dataset(data.source(args.name), root=args.root,
                                         allow_unverified=args.allow_unverified)
        print(f"{args.name} is ready under {root}")
        return
    cfg = config.get(args.preset, dataset=args.dataset)
    if args.data_cmd == "splits":
        from kpsemi import data
        from kpsemi.data import splits
        meta, inst = data.load_records(cfg.dataset, "train", synth_size=cfg.synth_size, seed=cfg.data_seed)
        s = splits.get(meta.name, [i.id for i in inst])
        print(f"splits of {meta.name} ({len(inst)} training samples) in {splits.path_for(meta.name)}: labeled "
              f"fractions {sorted(s.doc['labeled'])}, unlabeled-pool fractions {sorted(s.doc['unlabeled'])}")
        return
    if args.data_cmd == "preview":
        print(preview(cfg, args.out))


DEVICE_HELP = "cpu, cuda, cuda:N or mps (default: cuda if PyTorch sees a GPU, else cpu)"


def _add_pretrained(p):
    p.add_argument("--pretrained-weights", metavar="PATH",
                   help="ImageNet weights of the backbone from this file (offline machines; timm's state dict, "
                        ".safetensors or a torch file), for presets with pretrained weights (paper)")
    p.add_argument("--pretrained-sha256", metavar="HEX", help="its sha256 (default: read from PATH.sha256)")


def _use_pretrained(args):
    """Check --pretrained-weights and hand it to every run of this process and its children."""
    if args.pretrained_sha256 and not args.pretrained_weights:
        raise UserError("--pretrained-sha256 goes with --pretrained-weights PATH")
    if args.pretrained_weights:
        from kpsemi.method import imagenet
        imagenet.use(args.pretrained_weights, args.pretrained_sha256)


def _add_train(sub):
    t = sub.add_parser("train", help="train one run and write DIR/metrics.json")
    t.add_argument("--preset", default=None, help="smoke | demo | paper (default: $KPSEMI_PRESET or demo)")
    t.add_argument("--method", default="standard", choices=["standard", "pl", "mean_teacher", "dual", "consistency"],
                   help="standard: train with --losses; pl: pseudo-labels (teacher, confident labels, retrain); "
                        "after the paper, with losses of their own: mean_teacher (EMA teacher, weak -> strong view), "
                        "dual (Xie et al. 2021: two networks, easy -> hard view), consistency (two hard views: "
                        "collapses)")
    t.add_argument("--losses", default="sup,sc,te,ti",
                   help="comma list from sup, sc, te, ti, elt (the paper's); gen, attr, elt_lm (the baselines)")
    t.add_argument("--labeled", type=float, default=0.05, help="labeled fraction of the training set")
    t.add_argument("--split-seed", type=int, default=0, help="which random labeled subset (data/splits/, seeds 0-2)")
    t.add_argument("--unlabeled-fraction", type=float, default=1.0, help="share of the unlabeled pool used")
    t.add_argument("--unlabeled-ratio", type=float, default=None,
                   help="unlabeled crops per labeled crop in a semi-supervised step (default: the preset's, 1)")
    t.add_argument("--no-gt-in-unsup", action="store_true", help="unsupervised losses use predictions only")
    t.add_argument("--weights", default=None, help="loss weights, e.g. sup=1e3,sc=0.5,te=1e2,ti=1e2")
    t.add_argument("--out", default=None, help="the run's folder (default: its folder in the run cache, "
                   "results/runs/<configuration>/, shared with the notebooks and reproduce; a killed run there resumes)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/last.pt if it exists")
    t.add_argument("--data", default="synthetic", help="synthetic | lsp | mpii | cub | atrw")
    t.add_argument("--train-json", help="your COCO keypoints training file (--labeled picks its labeled images)")
    t.add_argument("--val-json", help="your COCO keypoints validation file (picks the best checkpoint)")
    t.add_argument("--test-json", help="your COCO keypoints test file (the reported PCK)")
    t.add_argument("--image-root", help="folder the COCO file_names are relative to (default: beside the JSON)")
    t.add_argument("--unlabeled-dir", help="extra unlabeled images")
    t.add_argument("--dlc", help="a DeepLabCut project folder (CollectedData*.csv + videos/)")
    t.add_argument("--max-steps", type=int,
                   help="stop after this many steps, a semi-supervised run too (default: the preset's)")
    t.add_argument("--seed", type=int, help="initialisation, sampling and augmentation seed (default: the split seed)")
    t.add_argument("--device", default=None, help=DEVICE_HELP)
    _add_pretrained(t)


def _train(args):
    from kpsemi import config, runs
    from kpsemi.method import distributed
    weights = None
    if args.weights:
        weights = dict(config.get(args.preset).weights)
        for item in args.weights.split(","):
            k, _, v = item.partition("=")
            try:
                weights[k.strip()] = float(v)
            except ValueError:
                raise UserError(f"--weights: {item!r} is not name=number") from None
    for p in (args.train_json, args.val_json, args.test_json, args.unlabeled_dir, args.dlc):
        if p and not os.path.exists(p):
            raise UserError(f"{p}: no such file or folder")
    cfg = config.get(args.preset, losses=tuple(x.strip() for x in args.losses.split(",") if x.strip()),
                     labeled=args.labeled, split_seed=args.split_seed, unlabeled_fraction=args.unlabeled_fraction,
                     unlabeled_ratio=args.unlabeled_ratio,
                     gt_in_unsup=not args.no_gt_in_unsup, weights=weights, dataset=args.data,
                     max_steps=args.max_steps, seed=args.seed, method=args.method)
    if not 0 < cfg.labeled <= 1:
        raise UserError(f"--labeled must be in (0, 1], got {cfg.labeled}")
    if not cfg.unlabeled_ratio > 0:
        raise UserError(f"--unlabeled-ratio must be above 0, got {cfg.unlabeled_ratio:g}")
    if args.pretrained_weights and not cfg.pretrained:
        raise UserError(f"--pretrained-weights: the {cfg.preset} preset trains {cfg.backbone} from scratch "
                        "(pretrained False); local ImageNet weights are for the paper preset")
    _use_pretrained(args)
    spec = runs.DataSpec(train_json=args.train_json, val_json=args.val_json, test_json=args.test_json,
                         image_root=args.image_root, unlabeled_dir=args.unlabeled_dir, dlc_project=args.dlc)
    out = args.out or runs.run_dir(cfg, spec)
    m = runs.run(cfg, out, spec, resume=args.resume or args.out is None, device=args.device)
    if not distributed.context().main:          # under torchrun rank 0 reports
        return
    name = {"standard": "+".join(cfg.losses), "pl": "PL"}.get(cfg.method, cfg.method)
    print(f"{name} at {cfg.labeled:g} labels: val {m['metric']} {m['val_pck']:.2f}, test "
          f"{m['test_pck']:.2f} (best step {m['best_step']} of {m['steps']}, {m['seconds']:.0f} s"
          + (f", {m['world_size']} processes" if m.get("world_size", 1) > 1 else "") + f") -> {out}/metrics.json")
    if config.plumbing_note(cfg.preset):
        print(config.plumbing_note(cfg.preset))


def _add_reproduce(sub):
    r = sub.add_parser("reproduce", help="regenerate a paper table over a grid of runs (papermill)")
    r.add_argument("--table", required=True, choices=["1", "2", "3", "4", "fig3", "seqmt", "smp"],
                   help="the paper's Table 1-4, Fig. 3, the Seq-MT table, or SemiMultiPose's honeybee table")
    r.add_argument("--preset", default=None, help="smoke | demo | paper (default: $KPSEMI_PRESET or demo)")
    r.add_argument("--datasets", default="synthetic", help="comma list: synthetic, lsp, mpii, cub, atrw")
    r.add_argument("--seeds", default="0", help="comma list of split seeds (the paper uses 0,1,2 for Table 1)")
    r.add_argument("--fractions", default=None, help="comma list of labeled fractions (default: the paper's)")
    r.add_argument("--out", default=os.path.join("results", "reproduce"),
                   help="folder for tableNAME/: the table (.md, .csv) and the executed notebooks")
    r.add_argument("--root", default=None, help="smp: the honeybee folder (default $KPSEMI_HONEYBEE, data/honeybee)")
    r.add_argument("--train-sets", default="train5,train25", help="smp: comma list of train135, train25, train5")
    r.add_argument("--rows", default=None, help="comma list: only these rows of the table (e.g. supervised,ours)")
    r.add_argument("--executor", default="sequential", choices=["sequential", "submitit"],
                   help="sequential: the cells one after another here; submitit: each cell a cluster job")
    r.add_argument("--cluster", default="slurm", choices=["local", "slurm"], help="submitit: where the jobs run")
    r.add_argument("--partition", default=None, help="submitit on SLURM: the partition (default: the cluster's)")
    r.add_argument("--gpus-per-job", type=int, default=1, help="submitit: GPUs (= DDP processes) per cell")
    r.add_argument("--timeout-min", type=int, default=1440,
                   help="submitit: a job's time limit in minutes (then it is requeued and resumes)")
    r.add_argument("--array-parallelism", type=int, default=16, help="submitit on SLURM: jobs running at once")
    _add_pretrained(r)


def _reproduce(args):
    from kpsemi import config
    from kpsemi.repro import grid
    preset = config.get(args.preset).preset

    def floats(s, kind):
        try:
            return tuple(kind(x) for x in s.split(",") if x.strip())
        except ValueError:
            raise UserError(f"not a comma list of numbers: {s!r}") from None

    _use_pretrained(args)
    if args.table == "smp" and args.executor != "sequential":
        raise UserError("--executor submitit: the smp table trains in this process, not as a grid of cells")
    if args.table == "smp":                        # SemiMultiPose honeybee table: kpsemi.multi.table, no papermill
        from kpsemi.multi import table
        print(table.reproduce_table(preset, tuple(t.strip() for t in args.train_sets.split(",") if t.strip()),
                                    floats(args.seeds, int), args.root, os.path.join(args.out, "tablesmp")))
        print(f"\n(smp.md/.csv, runs.md/.csv and curves-*.png are in {args.out}/tablesmp/)")
        if config.plumbing_note(preset):
            print(config.plumbing_note(preset))
        return
    executor = None
    if args.executor == "submitit":
        from kpsemi.repro import cluster
        executor = cluster.SubmititExecutor(args.cluster, args.partition, args.gpus_per_job, args.timeout_min,
                                            args.array_parallelism)
    md = grid.main(args.table, preset, tuple(d.strip() for d in args.datasets.split(",")),
                   floats(args.seeds, int), floats(args.fractions, float) if args.fractions else None,
                   os.path.join(args.out, f"table{args.table}"), executor=executor,
                   rows=tuple(r.strip() for r in args.rows.split(",") if r.strip()) if args.rows else None)
    print(md)
    print(f"\n(table{args.table}.md/.csv and the executed notebooks are in {args.out}/table{args.table}/"
          + (", submitit's logs in submitit/" if executor else "") + ")")


def _add_predict(sub):
    p = sub.add_parser("predict", help="keypoints of a trained run on a video, images or COCO boxes -> CSV, JSON, MP4")
    p.add_argument("--run", required=True, help="a run folder (holds best.pt)")
    p.add_argument("--video", help="a video file (every frame is predicted)")
    p.add_argument("--images", help="a folder of images (whole images)")
    p.add_argument("--coco", help="a COCO file: its boxes (whole images where it has none)")
    p.add_argument("--image-root", help="folder the COCO file_names are relative to (default: beside the JSON)")
    p.add_argument("--out", required=True, help="folder for predictions.csv/.json, labeled.mp4, frames to label")
    p.add_argument("--max-frames", type=int, help="predict only the first N frames / images")
    p.add_argument("--batch-size", type=int, default=64, help="frames per forward pass")
    p.add_argument("--flag", type=int, default=12, help="how many frames to flag for labeling (0: none)")
    p.add_argument("--flag-by", default="disagreement", help="disagreement (of flipped/scaled views) | peak")
    p.add_argument("--pcutoff", type=float, default=0.5, help="likelihood below which the video draws hollow points")
    p.add_argument("--no-video", action="store_true", help="do not write labeled.mp4")
    p.add_argument("--device", default=None, help=DEVICE_HELP)
    e = sub.add_parser("evaluate", help="PCK and errors per keypoint of a trained run on a labeled set")
    e.add_argument("--run", required=True, help="a run folder (holds best.pt)")
    e.add_argument("--coco", help="a COCO keypoints file")
    e.add_argument("--image-root", help="folder the COCO file_names are relative to (default: beside the JSON)")
    e.add_argument("--dlc", help="a DeepLabCut project folder (CollectedData*.csv)")
    e.add_argument("--split", default="all", help="all | train | val | test: the run's seeded split of a --dlc project")
    e.add_argument("--out", default=None, help="default: RUN/evaluate/<set name>")
    e.add_argument("--device", default=None, help=DEVICE_HELP)


def _predict(args):
    from kpsemi import predict
    if args.max_frames is not None and args.max_frames < 1:
        raise UserError(f"--max-frames must be at least 1, got {args.max_frames}")
    s = predict.predict(args.run, args.out, video=args.video, images=args.images, coco_json=args.coco,
                        image_root=args.image_root, device=args.device, batch_size=args.batch_size,
                        max_frames=args.max_frames, flag=max(0, args.flag), flag_by=args.flag_by,
                        write_video=not args.no_video, pcutoff=args.pcutoff)
    print(f"predicted {s['frames']} frames of {s['input']} in {s['seconds']:.1f} s ({s['frames_per_second']:.1f} "
          f"frames/s on {s['device']}) -> {args.out}/: {', '.join(s['files'])}")
    if s.get("flagged"):
        print("frames to label next: " + ", ".join(str(r["name"]) for r in s["flagged"]))


def _evaluate(args):
    from kpsemi.predict import assess
    r = assess.evaluate_run(args.run, coco_json=args.coco, dlc_project=args.dlc, split=args.split,
                            image_root=args.image_root, out=args.out, device=args.device)
    print(r["table"])
    print(f"\n{r['metric']} {r['pck']:.2f} on {r['name']} ({r['instances']} instances), mean error "
          f"{r['pixel_error']:.2f} px = {r['error_percent']:.2f} % of the box"
          + (f"; the run's own test split: {r['run_test_pck']:.2f}" if r["run_test_pck"] is not None else "")
          + f"\n-> {r['out']}/evaluation.md, .csv, .json, .png")


def _add_embeddings(sub):
    e = sub.add_parser("embeddings", help="export the keypoint embeddings z_i of trained runs as CSV or npz")
    e.add_argument("--run", action="append", required=True, help="a run folder (or its best.pt); repeat for more")
    e.add_argument("--out", required=True, help="file.csv (a row per run and visible keypoint) or file.npz")
    e.add_argument("--split", default="test", choices=["train", "val", "test"], help="split of the runs' data")
    e.add_argument("--source", default="predicted", choices=["predicted", "ground truth"],
                   help="heatmaps that pool z: the model's own or the labeled Gaussians")
    e.add_argument("--json", help="embed this COCO keypoints file instead of the data the runs trained on")
    e.add_argument("--image-root", help="folder the --json file_names are relative to (default: beside the JSON)")
    e.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps")


def _embeddings(args):
    from kpsemi import data
    from kpsemi.embeddings import trained
    from kpsemi.method import device, models
    dev = device.check_device(args.device)
    d = None
    if args.json:
        _, cfg, _ = models.load_model(next(iter(trained.model_paths(args.run).values())))
        d = data.load("coco", args.split, cfg["input_size"], progress=False, json=args.json, image_root=args.image_root)
    n = trained.export(args.run, d, args.out, args.split, args.source, dev)
    print(f"wrote {n} embeddings ({len(args.run)} run(s), {args.split} split, z from {args.source} heatmaps) to "
          f"{args.out}")


def preview(cfg, out):
    """Write preview.png and summary.md/csv for the dataset of `cfg`; returns the Markdown table."""
    import matplotlib
    matplotlib.use("Agg")
    from kpsemi import data, draw
    os.makedirs(out, exist_ok=True)
    rows, splits_ = [], {}
    for split in ("train", "val", "test"):
        d = data.load(cfg.dataset, split, cfg.input_size, synth_size=cfg.synth_size, seed=cfg.data_seed)
        splits_[split] = d
        v = d.keypoints[..., 2]
        rows.append({"split": split, "images": len(d), "keypoints": d.meta.num_keypoints,
                     "classes": len(d.meta.classes), "visible %": round(100 * float((v == 2).float().mean()), 1),
                     "hidden %": round(100 * float((v == 1).float().mean()), 1),
                     "unlabeled/out %": round(100 * float((v == 0).float().mean()), 1)})
    train = splits_["train"]
    fig = draw.grid(train, range(12), cols=6, title=f"{train.meta.name}: training crops at {cfg.input_size}px "
                                                    "(filled = visible, hollow = hidden)")
    fig.savefig(os.path.join(out, "preview.png"), dpi=110)
    table = draw.write_table(rows, os.path.join(out, "summary"))
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump({"keypoints": train.meta.keypoints, "classes": train.meta.classes,
                   "attributes": train.meta.attributes, "flip_pairs": train.meta.flip_pairs,
                   "skeleton": train.meta.skeleton}, f, indent=1)
    return table


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m kpsemi", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("quickstart", help="the main job: run on the embedded dataset and write a results table")
    q.add_argument("--preset", default=None, help="smoke | demo | paper (default: $KPSEMI_PRESET or demo)")
    q.add_argument("--out", default=os.path.join("results", "quickstart"),
                   help="folder for results.md/.csv, results.png, predictions.png and data/")
    _add_data(sub)
    _add_train(sub)
    _add_reproduce(sub)
    _add_predict(sub)
    _add_embeddings(sub)
    args = ap.parse_args(argv)
    warnings.formatwarning = lambda message, *_, **__: f"warning: {message}\n"   # one line, no source line
    t0 = time.time()
    try:
        if args.cmd == "data":
            _data(args)
        elif args.cmd == "train":
            _train(args)
        elif args.cmd == "reproduce":
            _reproduce(args)
        elif args.cmd == "predict":
            _predict(args)
        elif args.cmd == "evaluate":
            _evaluate(args)
        elif args.cmd == "embeddings":
            _embeddings(args)
        elif args.cmd == "quickstart":
            from kpsemi import config
            from kpsemi.repro import quickstart
            cfg = config.get(args.preset)
            print(preview(cfg, os.path.join(args.out, "data")))
            print(quickstart.run(cfg.preset, args.out))
            print(f"\nwrote {args.out}/results.md, results.csv, results.png, predictions.png and data/ in "
                  f"{time.time() - t0:.0f} s")
    except (UserError, FileNotFoundError) as e:
        if os.environ.get("KPSEMI_DEBUG"):
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
