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
