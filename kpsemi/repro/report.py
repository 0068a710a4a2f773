"""The metrics record every notebook leaves behind: its last cell writes its key metrics to
results/<notebook>/metrics.json, which the tests and `python -m kpsemi reproduce` read back."""
import json
import os

from kpsemi import config, draw
from kpsemi.paths import results_dir, write_json_atomic


def notebook_dir(notebook, out_dir=None):
    """Where a notebook keeps its runs and figures: `out_dir`, or results/<notebook>/."""
    d = out_dir or os.path.join(results_dir(), notebook)
    os.makedirs(d, exist_ok=True)
    return d


def record(metrics, notebook, out_dir=None, preset=None):
    """The last cell of every notebook: write its key metrics to <notebook dir>/metrics.json (read back by the
    tests and by `kpsemi reproduce`) and show them as a table, under the plumbing note at the smoke preset. Values
    must be JSON numbers, strings or dicts."""
    doc = {"notebook": notebook, "preset": preset or config.preset_name(), "metrics": metrics}
    path = os.path.join(notebook_dir(notebook, out_dir), "metrics.json")
    write_json_atomic(doc, path, indent=1, default=float)
    flat = [{"metric": k, "value": v} for k, v in metrics.items() if not isinstance(v, dict)]
    print(f"recorded {len(metrics)} metrics of {notebook} ({doc['preset']} preset) in {path}")
    if config.plumbing_note(doc["preset"]):
        print(config.plumbing_note(doc["preset"]))
    try:     # IPython (the notebooks' kernel) is optional: outside a notebook the table is printed
        from IPython.display import Markdown, display
        display(Markdown(draw.markdown(flat)))
    except ImportError:
        print(draw.markdown(flat))
    return doc


def read_record(notebook, out_dir=None):
    """The metrics.json a notebook recorded."""
    with open(os.path.join(notebook_dir(notebook, out_dir), "metrics.json")) as f:
        return json.load(f)
