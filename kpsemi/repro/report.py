"""Result tables (Markdown + CSV) and the metrics record every notebook and run leaves behind."""
import csv
import math


def _fmt(v):
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.2f}"
    return str(v)


def markdown(rows, columns=None):
    """A Markdown table from a list of dicts (columns: the keys of the first row, in order)."""
    if not rows:
        return ""
    columns = columns or list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_table(rows, path_base, columns=None):
    """Write `path_base`.md and `path_base`.csv; returns the Markdown."""
    columns = columns or (list(rows[0]) if rows else [])
    md = markdown(rows, columns)
    with open(path_base + ".md", "w") as f:
        f.write(md + "\n")
    with open(path_base + ".csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return md


def notebook_dir(notebook, out_dir=None):
    """Where a notebook keeps its runs and figures: `out_dir`, or results/<notebook>/."""
    import os
    from kpsemi.paths import results_dir
    d = out_dir or os.path.join(results_dir(), notebook)
    os.makedirs(d, exist_ok=True)
    return d


def record(metrics, notebook, out_dir=None, preset=None):
    """The last cell of every notebook: write its key metrics to <notebook dir>/metrics.json (read back by the
    tests and by `kpsemi reproduce`) and show them as a table. Values must be JSON numbers, strings or dicts."""
    import os
    from kpsemi import config
    from kpsemi.paths import write_json_atomic
    doc = {"notebook": notebook, "preset": preset or config.preset_name(), "metrics": metrics}
    path = os.path.join(notebook_dir(notebook, out_dir), "metrics.json")
    write_json_atomic(doc, path, indent=1, default=float)
    flat = [{"metric": k, "value": v} for k, v in metrics.items() if not isinstance(v, dict)]
    print(f"recorded {len(metrics)} metrics of {notebook} ({doc['preset']} preset) in {path}")
    try:
        from IPython.display import Markdown, display
        display(Markdown(markdown(flat)))
    except ImportError:
        print(markdown(flat))
    return doc


def read_record(notebook, out_dir=None):
    import json
    import os
    with open(os.path.join(notebook_dir(notebook, out_dir), "metrics.json")) as f:
        return json.load(f)
