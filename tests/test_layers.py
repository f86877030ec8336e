"""The package's layering, checked on the source: every `scaling.*` import, those inside functions
included, points down the layer table (or within a layer, without a cycle)."""
import ast
import os
import shutil

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The layer table (README "Code map" describes it): lowest first. A module may import modules of its
# own layer and of the layers below, never above; `scaling.laws` may import nothing of the workbench
# but `scaling.errors`, so a notebook can use it on any table.
LAYERS = (
    ("base", ("scaling", "scaling.errors", "scaling.display")),
    ("core", ("scaling.config", "scaling.family", "scaling.model", "scaling.data", "scaling.prepare",
              "scaling.sources", "scaling.corpus_check", "scaling.safeyaml", "scaling.mixspec", "scaling.mixture",
              "scaling.domains",
              "scaling.hardware", "scaling.track", "scaling.preempt")),
    ("engines", ("scaling.train", "scaling.laws", "scaling.runs")),
    ("workflows", ("scaling.sweep", "scaling.report")),
    ("execution", ("scaling.agents",)),
    ("commands", ("scaling.commands",)),
    ("cli", ("scaling.cli",)),
)
ONLY = {"scaling.laws": ("scaling.errors", "scaling.laws")}


def _owner(module: str, names) -> str | None:
    """The longest entry of `names` that is `module` or a package above it."""
    found = [n for n in names if module == n or module.startswith(n + ".")]
    return max(found, key=len) if found else None


def layer_of(module: str) -> int:
    """The layer of the most specific table entry that holds `module` (`scaling` itself is the package's
    docstring and version, at the bottom)."""
    matches = [(len(owner), i) for i, (_, members) in enumerate(LAYERS)
               if (owner := _owner(module, members)) is not None]
    if not matches:
        raise AssertionError(f"{module} is in no layer of the table")
    return max(matches)[1]


def import_graph(root: str) -> dict[str, set[str]]:
    """module -> the scaling modules it imports (anywhere in the file), from the source under root."""
    graph = {}
    pkg = os.path.join(root, "scaling")
    for dirpath, _, files in os.walk(pkg):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
            module = rel[: -len(".__init__")] if rel.endswith(".__init__") else rel
            with open(path) as fh:
                tree = ast.parse(fh.read(), path)
            edges = set()
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    edges |= {a.name for a in node.names if a.name.startswith("scaling")}
                elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("scaling"):
                    # `from scaling.pkg import sub` imports the submodule when `sub` is one.
                    for a in node.names:
                        sub = f"{node.module}.{a.name}"
                        is_module = (os.path.isfile(os.path.join(root, *sub.split(".")) + ".py")
                                     or os.path.isdir(os.path.join(root, *sub.split("."))))
                        edges.add(sub if is_module else node.module)
            graph[module] = edges - {module}
    return graph


def violations(root: str) -> list[str]:
    graph = import_graph(root)
    out = []
    for module, targets in sorted(graph.items()):
        mine = layer_of(module)
        for target in sorted(targets):
            if layer_of(target) > mine:
                out.append(f"{module} ({LAYERS[mine][0]}) imports {target} ({LAYERS[layer_of(target)][0]})")
            only = ONLY.get(_owner(module, ONLY) or "")
            if only and _owner(target, only) is None:
                out.append(f"{module} may import only {', '.join(only)}, not {target}")
    return out + [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected group of modules (depth-first search)."""
    found, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_every_import_points_down_the_layer_table_without_cycles():
    assert violations(ROOT) == []


def test_every_module_belongs_to_a_layer():
    for module in import_graph(ROOT):
        layer_of(module)


@pytest.fixture
def copy(tmp_path):
    shutil.copytree(os.path.join(ROOT, "scaling"), tmp_path / "scaling",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _append(path, text):
    with open(path, "a") as fh:
        fh.write(text)


def test_an_upward_import_inside_a_function_is_caught(copy):
    _append(copy / "scaling" / "family.py", "\n\ndef _late():\n    from scaling.train import plan_run\n")
    found = violations(str(copy))
    assert found[0] == "scaling.family (core) imports scaling.train (engines)"
    # The cycle is reported from whichever of its modules the walk meets first.
    assert found[1:] and all(f.startswith("import cycle: ") and "scaling.family -> scaling.train" in f
                             for f in found[1:])


def test_laws_importing_the_workbench_is_caught(copy):
    _append(copy / "scaling" / "laws" / "table.py", "\nfrom scaling.config import RunConfig\n")
    assert violations(str(copy)) == ["scaling.laws.table may import only scaling.errors, scaling.laws, "
                                     "not scaling.config"]


def test_a_cycle_within_a_layer_is_caught(copy):
    _append(copy / "scaling" / "runs" / "files.py", "\nfrom scaling.runs.table import runs_table\n")
    found = violations(str(copy))
    assert len(found) == 1 and found[0].startswith("import cycle:") and "scaling.runs.files" in found[0]
