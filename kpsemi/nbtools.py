"""Notebook sources and hygiene: notebooks are written as percent-format scripts (notebooks/src/NN_name.py) and
built into clean .ipynb files (no outputs, no execution counts, one normalised metadata block).

    python -m kpsemi.nbtools build          # notebooks/src/*.py -> notebooks/*.ipynb
    python -m kpsemi.nbtools check          # fail if a notebook is stale, has outputs or breaks the conventions

Source format: `# %%` starts a code cell, `# %% [markdown]` a Markdown cell (its lines start with "# "),
`# %% tags=["parameters"]` the one papermill parameters cell.
"""
import glob
import json
import os
import re
import sys

import nbformat

from kpsemi.paths import notebooks_dir

KERNEL = {"display_name": "Python 3", "language": "python", "name": "python3"}
LANGUAGE = {"name": "python", "pygments_lexer": "ipython3"}
_HEAD = re.compile(r"^# %%(?P<md> \[markdown\])?(?: tags=(?P<tags>\[.*\]))?\s*$")


def parse(text):
    """[(kind, source, tags)] from a percent-format script."""
    cells, kind, tags, lines = [], None, [], []

    def flush():
        if kind is not None:
            src = "\n".join(lines).strip("\n")
            if kind == "markdown":
                src = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in src.split("\n"))
            cells.append((kind, src, tags))

    for line in text.split("\n"):
        m = _HEAD.match(line)
        if m:
            flush()
            kind, tags, lines = ("markdown" if m.group("md") else "code"), json.loads(m.group("tags") or "[]"), []
        elif kind is not None:
            lines.append(line)
    flush()
    return cells


def build_notebook(text):
    nb = nbformat.v4.new_notebook()
    for kind, src, tags in parse(text):
        cell = nbformat.v4.new_markdown_cell(src) if kind == "markdown" else nbformat.v4.new_code_cell(src)
        if tags:
            cell.metadata["tags"] = tags
        nb.cells.append(cell)
    return normalize(nb)


def normalize(nb):
    """Strip outputs, execution counts and volatile metadata; stable cell ids."""
    nb.metadata = {"kernelspec": dict(KERNEL), "language_info": dict(LANGUAGE)}
    for i, c in enumerate(nb.cells):
        c.id = f"cell-{i:02d}"
        c.metadata = {k: v for k, v in c.metadata.items() if k == "tags"}
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
    nb.nbformat, nb.nbformat_minor = 4, 5
    return nb


def dumps(nb):
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def source_for(ipynb):
    d, name = os.path.split(ipynb)
    return os.path.join(d, "src", os.path.splitext(name)[0] + ".py")


def problems(ipynb):
    """Convention violations of one committed notebook (empty list: fine)."""
    out = []
    raw = open(ipynb).read()
    nb = nbformat.reads(raw, as_version=4)
    src = source_for(ipynb)
    if os.path.exists(src) and dumps(build_notebook(open(src).read())) != raw:
        out.append(f"{ipynb} is stale: rebuild it from {src} (python -m kpsemi.nbtools build)")
    code = [c for c in nb.cells if c.cell_type == "code"]
    if any(c.outputs or c.execution_count for c in code):
        out.append(f"{ipynb} has outputs or execution counts")
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    if len(params) != 1:
        out.append(f"{ipynb} needs exactly one cell tagged 'parameters' (has {len(params)})")
    text = "\n".join(c.source for c in code)
    for bad in ("sys.path", "!pip", "%pip"):
        if bad in text:
            out.append(f"{ipynb} uses {bad}: notebooks import the installed kpsemi only")
    if not code or "report.record(" not in code[-1].source:
        out.append(f"{ipynb}: the last code cell must record the metrics with kpsemi.repro.report.record(...)")
    return out


def main(argv=None):
    argv = argv if argv is not None else sys.argv[1:]
    root = notebooks_dir()
    if argv[:1] == ["build"]:
        for src in sorted(glob.glob(os.path.join(root, "src", "*.py"))):
            dst = os.path.join(root, os.path.splitext(os.path.basename(src))[0] + ".ipynb")
            with open(dst, "w") as f:
                f.write(dumps(build_notebook(open(src).read())))
            print("built", dst)
    elif argv[:1] == ["check"]:
        errs = [p for nb in sorted(glob.glob(os.path.join(root, "*.ipynb"))) for p in problems(nb)]
        print("\n".join(errs) or "notebooks are clean")
        sys.exit(1 if errs else 0)
    else:
        print(__doc__)


if __name__ == "__main__":
    main()
