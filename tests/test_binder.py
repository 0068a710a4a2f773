"""binder/ holds what mybinder.org needs to run the notebooks on CPU, consistent with requirements.txt."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _reqs(path):
    out = {}
    for line in open(path):
        line = line.split("#")[0].strip()
        if not line or line.startswith("-"):
            continue
        name = re.split(r"[<>=!~\[ ]", line, 1)[0].lower()
        out[name] = line[len(name):].strip()
    return out


def test_binder_requirements_match_the_main_ones():
    main = _reqs(os.path.join(ROOT, "requirements.txt"))
    binder = _reqs(os.path.join(ROOT, "binder", "requirements.txt"))
    assert set(binder) == set(main)
    for name, spec in main.items():
        assert binder[name] == spec, f"{name}: binder has {binder[name]!r}, requirements.txt {spec!r}"
    text = open(os.path.join(ROOT, "binder", "requirements.txt")).read()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in text   # CPU wheels on binder


def test_binder_runtime_and_postbuild():
    runtime = open(os.path.join(ROOT, "binder", "runtime.txt")).read().strip()
    assert re.fullmatch(r"python-3\.(1[0-9])", runtime)
    py = open(os.path.join(ROOT, "pyproject.toml")).read()
    assert 'requires-python = ">=3.10"' in py
    post = os.path.join(ROOT, "binder", "postBuild")
    assert os.access(post, os.X_OK)
    body = open(post).read()
    assert "pip install --no-deps -e ." in body and "synth.ensure" in body
    # the notebooks binder opens exist and import only the installed kit
    assert os.path.isdir(os.path.join(ROOT, "notebooks"))
