"""The package's one-way dependency rule, read from the source with ast (nothing is imported):

    layer 0  base        kpsemi (the package), config, paths, errors, draw, nbtools
    layer 1  data        kpsemi/data/
    layer 2  method      kpsemi/method/
    layer 3  plug-ins    kpsemi/baselines/, multi/, weak/, embeddings/, course/ (none imports another)
    layer 4  runs        kpsemi/runs.py, kpsemi/predict/ (a trained run applied to new data)
    layer 5  repro       kpsemi/repro/
    layer 6  cli         kpsemi/cli.py, kpsemi/__main__.py

A module may import its own unit and any lower layer. The tests fail on an upward or sideways import, on a cycle
between modules, on importlib / __import__ in data or method (no way around the rule by name), and on a kpsemi
import inside a function outside the command line (imports stay at module level, where this test and a reader see
them).
"""
import ast
import pathlib

PKG = pathlib.Path(__file__).resolve().parents[1] / "kpsemi"
LAYERS = {"base": 0, "data": 1, "method": 2, "baselines": 3, "multi": 3, "weak": 3, "embeddings": 3, "course": 3,
          "runs": 4, "predict": 4, "repro": 5, "cli": 6}
BASE = {"kpsemi", "config", "paths", "errors", "draw", "nbtools"}


def _name(path):
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in sorted(PKG.rglob("*.py"))}


def unit(module):
    """The unit of a module: its subpackage, or base / runs / cli for the top-level modules."""
    top = module.split(".")[1] if "." in module else "kpsemi"
    return "base" if top in BASE else "cli" if top == "__main__" else top


def _targets(node):
    """The kpsemi modules an import statement loads (`from kpsemi.data import crops` -> kpsemi.data.crops)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "kpsemi"]
    if node.module is None or node.module.split(".")[0] != "kpsemi":
        return []
    return [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module for a in node.names]


def _imports():
    """{module: [(target module, line, inside a function)]}."""
    out = {}
    for mod, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        found = []

        def visit(node, in_function):
            for child in ast.iter_child_nodes(node):
                inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    found.extend((t, child.lineno, in_function) for t in _targets(child))
                visit(child, inner)

        visit(tree, False)
        out[mod] = found
    return out


IMPORTS = _imports()


def test_every_module_is_in_a_layer():
    assert "kpsemi.runs" in MODULES and "kpsemi.method.losses" in MODULES
    assert {unit(m) for m in MODULES} <= set(LAYERS), {unit(m) for m in MODULES} - set(LAYERS)
    for t in (t for targets in IMPORTS.values() for t, _, _ in targets):
        assert t in MODULES, f"import of {t}, which is not a module of the package"


def test_imports_go_down_the_layers():
    bad = [f"{m}:{line} imports {t} ({unit(m)}, layer {LAYERS[unit(m)]} -> {unit(t)}, layer {LAYERS[unit(t)]})"
           for m, targets in IMPORTS.items() for t, line, _ in targets
           if unit(t) != unit(m) and LAYERS[unit(t)] >= LAYERS[unit(m)]]
    assert not bad, "\n".join(bad)


def test_no_import_cycle_between_modules():
    graph = {m: {t for t, _, _ in targets if t != m} for m, targets in IMPORTS.items()}
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def strong(v):                                 # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            strong(v)
    assert not cycles, cycles


def test_data_and_method_import_nothing_by_name():
    bad = []
    for m, path in MODULES.items():
        if unit(m) not in ("data", "method"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "importlib" for a in node.names) or \
                    isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "importlib" or \
                    isinstance(node, ast.Name) and node.id == "__import__":
                bad.append(f"{m}:{node.lineno}")
    assert not bad, bad


def test_kpsemi_imports_are_at_module_level():
    """Except in the command line, which imports each command's modules when it runs (so `--help` and `data synth`
    answer without loading torch)."""
    bad = [f"{m}:{line} imports {t} inside a function" for m, targets in IMPORTS.items()
           for t, line, in_function in targets if in_function and m != "kpsemi.cli"]
    assert not bad, "\n".join(bad)


def test_the_method_knows_no_plug_in():
    """What the issue spells out: nothing in kpsemi/method imports baselines, multi, weak, embeddings, course, runs,
    repro or cli (the baselines register their losses in the method's registry instead)."""
    above = {u for u, layer in LAYERS.items() if layer > LAYERS["method"]}
    assert not [(m, t) for m, targets in IMPORTS.items() if unit(m) == "method" for t, _, _ in targets
                if unit(t) in above]
    assert not [(m, t) for m, targets in IMPORTS.items() if unit(m) == "data" for t, _, _ in targets
                if unit(t) not in ("data", "base")]
