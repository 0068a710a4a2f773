"""Label splits: which training samples keep their labels, written once to data/splits/ and reused by every run.

For each seed a random permutation of the training ids is drawn; the labeled subset at fraction f is its first
max(1, round(f * n)) ids, so the 5 % subset is inside the 10 % one, and so on (the paper repeats each fraction over
three random subsets). For the unlabeled-amount study (paper Table 3) the labels stay at 5 % and the unlabeled pool
(the other 95 %) is cut to 10/20/50/100 % by another seeded permutation.

    s = splits.get("synthetic-default-s0", train.ids)
    lab, unl = s.labeled(0.05, seed=0), s.unlabeled(0.05, seed=0, fraction=0.2)
"""
import hashlib
import json
import os

import numpy as np

from kpsemi.paths import splits_dir, write_json_atomic
from kpsemi.errors import DataError

FRACTIONS = (0.05, 0.1, 0.2, 0.5, 1.0)
UNLABELED_FRACTIONS = (0.1, 0.2, 0.5, 1.0)
SEEDS = (0, 1, 2)


def _key(f):
    return f"{f:g}"


def _digest(ids):
    return hashlib.sha1("\n".join(ids).encode()).hexdigest()[:16]


def digest(ids):
    """A short fingerprint of a list of training ids (names the split file of a user's own dataset)."""
    return _digest([str(i) for i in ids])


def make(ids, seeds=SEEDS, fractions=FRACTIONS, unlabeled_fractions=UNLABELED_FRACTIONS, base_fraction=0.05):
    """The split document for training ids (list of str)."""
    ids = [str(i) for i in ids]
    n = len(ids)
    doc = {"n_train": n, "digest": _digest(ids), "labeled": {}, "unlabeled": {}, "base_fraction": base_fraction,
           "order": {}}
    for s in seeds:
        perm = np.random.default_rng([1234, s]).permutation(n)
        order = [ids[i] for i in perm]
        doc["order"][str(s)] = order
        for f in fractions:
            doc["labeled"].setdefault(_key(f), {})[str(s)] = order[:max(1, round(f * n))]
        nl = max(1, round(base_fraction * n))
        pool = order[nl:]
        perm2 = np.random.default_rng([5678, s]).permutation(len(pool))
        pool = [pool[i] for i in perm2]
        for f in unlabeled_fractions:
            doc["unlabeled"].setdefault(_key(f), {})[str(s)] = pool[:max(1, round(f * len(pool)))] if pool else []
    return doc


class Splits:
    def __init__(self, doc, ids):
        self.doc, self.ids = doc, [str(i) for i in ids]
        self.index = {i: k for k, i in enumerate(self.ids)}

    def labeled(self, fraction, seed=0):
        """Indices (into the training set) of the labeled subset: the written list for the standard fractions,
        else the first max(1, round(fraction * n)) ids of the seed's order (the same nesting)."""
        sel = self.doc["labeled"].get(_key(fraction), {}).get(str(seed))
        if sel is None:
            order = self.doc.get("order", {}).get(str(seed))
            if order is None or not 0 < fraction <= 1:
                raise DataError(f"no split for labeled fraction {fraction} seed {seed}; fractions in (0, 1], seeds "
                                f"{sorted(self.doc.get('order', {}))}")
            sel = order[:max(1, round(fraction * len(order)))]
        return np.array([self.index[i] for i in sel], dtype=np.int64)

    def unlabeled(self, fraction, seed=0, pool_fraction=1.0):
        """Indices of the unlabeled pool for a labeled fraction: everything else, or, at the base fraction
        (5 %), the first `pool_fraction` of it (paper Table 3)."""
        lab = set(self.labeled(fraction, seed).tolist())
        if pool_fraction >= 1.0:
            return np.array([i for i in range(len(self.ids)) if i not in lab], dtype=np.int64)
        if abs(fraction - self.doc["base_fraction"]) > 1e-9:
            raise DataError(f"the unlabeled-amount splits are defined at {self.doc['base_fraction']:g} labels only")
        try:
            sel = self.doc["unlabeled"][_key(pool_fraction)][str(seed)]
        except KeyError:
            raise DataError(f"no unlabeled split for fraction {pool_fraction}; available "
                            f"{sorted(self.doc['unlabeled'])}") from None
        return np.array([self.index[i] for i in sel], dtype=np.int64)


def path_for(name, folder=None):
    return os.path.join(folder or splits_dir(), f"{name}.json")


def get(name, ids, write=True, folder=None):
    """The splits of dataset `name` for these training ids: read from <folder>/<name>.json (default data/splits/),
    or made and written there on first use (with write=False: made, not written; they are deterministic). A file
    made for other ids is an error (it would silently change the subsets)."""
    ids = [str(i) for i in ids]
    p = path_for(name, folder)
    if os.path.exists(p):
        with open(p) as f:
            doc = json.load(f)
        if doc.get("digest") != _digest(ids) or doc.get("n_train") != len(ids):
            raise DataError(f"{p}: split file was made for a different training set ({doc.get('n_train')} ids, "
                            f"digest {doc.get('digest')}) than the one loaded ({len(ids)} ids, digest "
                            f"{_digest(ids)}); delete it to make new splits")
        return Splits(doc, ids)
    doc = make(ids)
    if write:
        os.makedirs(os.path.dirname(p), exist_ok=True)
        write_json_atomic(doc, p)
    return Splits(doc, ids)
