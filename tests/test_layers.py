"""The package's layers: every dlmkit module imports only from its own layer or the layers below.

Walks every import of every module, at module level and inside functions, so a cycle cannot hide
behind a function-level import. Inside a function only optional third-party packages may be
imported; a dlmkit import there is a layering defect too. ``ALLOWED`` lists the violations still
to remove (it must shrink to empty, and an entry that no longer occurs fails the test).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "dlmkit"

# lowest first; a module may import from its own layer and the layers before it
LAYERS: list[tuple[str, ...]] = [
    # base ("": dlmkit/__init__; eval.metrics: pure functions on text and numbers): no models, no maths
    ("", "errors", "io", "registry", "runtime", "checks", "plotting", "eval.metrics"),
    ("diffusion", "sampling", "data"),  # maths (torch only) and data
    ("networks",),
    ("methods",),
    ("hub",),
    ("generate",),
    ("engine",),
    ("recipes",),
    ("eval",),
    ("cli", "cli_errors", "quickstart"),
]
LAYER_OF = {name: i for i, names in enumerate(LAYERS) for name in names}

# "importer -> imported (where)" still to remove
ALLOWED: set[str] = {
    "dlmkit.cli -> dlmkit.engine.config (inside a function)",
    "dlmkit.cli -> dlmkit.engine.curves (inside a function)",
    "dlmkit.cli -> dlmkit.engine.loop (inside a function)",
    "dlmkit.cli -> dlmkit.generate.seq2seq (inside a function)",
    "dlmkit.cli -> dlmkit.generate.text (inside a function)",
    "dlmkit.cli -> dlmkit.hub.released (inside a function)",
    "dlmkit.cli -> dlmkit.io (inside a function)",
    "dlmkit.cli -> dlmkit.quickstart (inside a function)",
    "dlmkit.cli -> dlmkit.recipes.dlm_one (inside a function)",
    "dlmkit.cli -> dlmkit.recipes.pretrain (inside a function)",
    "dlmkit.cli -> dlmkit.recipes.tcs (inside a function)",
    "dlmkit.cli -> dlmkit.runtime (inside a function)",
    "dlmkit.eval.metrics.seq2seq -> dlmkit.eval.metrics.bertscore (inside a function)",
    "dlmkit.quickstart -> dlmkit.data.default_corpus (inside a function)",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int | None:
    """The layer of the longest LAYERS entry that ``module`` is or lies in (``dlmkit.eval.tasks.x`` -> eval's)."""
    rel = module.split(".", 1)[1] if "." in module else ""
    best = None
    for name, layer in LAYER_OF.items():
        if rel == name or rel.startswith(name + ".") or (name == "" and rel == ""):
            if best is None or len(name) > len(best[0]):
                best = (name, layer)
    return None if best is None else best[1]


def _imports(tree: ast.AST) -> list[tuple[str, bool]]:
    """(imported dlmkit module, inside a function) for every import statement."""
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.ImportFrom) and child.module and child.level == 0 and child.module.startswith("dlmkit"):
                if child.module == "dlmkit":
                    found.extend((f"dlmkit.{a.name}", in_function) for a in child.names)
                else:
                    found.append((child.module, in_function))
            elif isinstance(child, ast.Import):
                found.extend((a.name, in_function) for a in child.names if a.name.startswith("dlmkit."))
            visit(child, inner)

    visit(tree, False)
    return found


def violations() -> set[str]:
    out = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        me = _module_name(path)
        mine = _layer(me)
        assert mine is not None, f"{me}: its package is in no layer of LAYERS"
        for target, in_function in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            theirs = _layer(target)
            assert theirs is not None, f"{me} imports {target}, which is in no layer"
            if theirs > mine:
                out.add(f"{me} -> {target} (up a layer)")
            elif in_function:
                out.add(f"{me} -> {target} (inside a function)")
    return out


def test_every_package_has_a_layer():
    tops = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if (p.suffix == ".py" or (p / "__init__.py").is_file())}
    tops.discard("__init__")
    assert tops <= set(LAYER_OF), f"packages in no layer: {sorted(tops - set(LAYER_OF))}"


def test_imports_go_down_the_layers():
    found = violations()
    new = sorted(found - ALLOWED)
    assert not new, "imports that go up a layer or hide in a function:\n" + "\n".join(new)
    gone = sorted(ALLOWED - found)
    assert not gone, "fixed: remove these from ALLOWED:\n" + "\n".join(gone)
