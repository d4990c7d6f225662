"""The package's layers: every dlmkit module imports only from its own layer or the layers below.

Walks every import of every module, at module level and inside functions, so a cycle cannot hide
behind a function-level import. Inside a function only optional third-party packages may be
imported; a dlmkit import there is a layering defect too. A declared lazy import,
``lazy("dlmkit.x:f")`` (:func:`dlmkit.registry.lazy`), is an import of ``dlmkit.x`` where it is
declared; ``importlib.import_module`` appears only in ``lazy`` and in the loader of optional
packages, so no other dynamic import escapes the test.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

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

# the only functions that may call importlib.import_module (with a name known only at run time)
DYNAMIC_IMPORTERS = {("dlmkit.registry", "lazy"), ("dlmkit.eval.metrics.optional", "import_eval_dependency")}

# "importer -> imported (where)" still to remove: none left, and none may be added
ALLOWED: set[str] = set()


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


def _call_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Call):
        return node.func.id if isinstance(node.func, ast.Name) else node.func.attr if isinstance(node.func, ast.Attribute) else None
    return None


def _imports(tree: ast.AST, me: str = "") -> list[tuple[str, bool]]:
    """(imported dlmkit module, inside a function) for every import statement and ``lazy(...)``
    declaration; fails on a dynamic import outside :data:`DYNAMIC_IMPORTERS`."""
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, in_function: bool, function: str | None = None) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            name = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) and function is None else function
            call = _call_name(child)
            if call == "lazy":
                ref = child.args[0] if child.args else None
                assert isinstance(ref, ast.Constant) and isinstance(ref.value, str), f"{me}: lazy() takes a string literal (line {child.lineno})"
                found.append((ref.value.partition(":")[0], in_function))
            elif call in ("import_module", "__import__"):
                assert (me, function) in DYNAMIC_IMPORTERS, f"{me}: a dynamic import (line {child.lineno}); declare it with dlmkit.registry.lazy"
            if isinstance(child, ast.ImportFrom) and child.module and child.level == 0 and child.module.startswith("dlmkit"):
                if child.module == "dlmkit":
                    found.extend((f"dlmkit.{a.name}", in_function) for a in child.names)
                else:
                    found.append((child.module, in_function))
            elif isinstance(child, ast.Import):
                found.extend((a.name, in_function) for a in child.names if a.name.startswith("dlmkit."))
            visit(child, inner, name)

    visit(tree, False)
    return found


def violations() -> set[str]:
    out = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        me = _module_name(path)
        mine = _layer(me)
        assert mine is not None, f"{me}: its package is in no layer of LAYERS"
        for target, in_function in _imports(ast.parse(path.read_text(encoding="utf-8")), me):
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


def test_lazy_declarations_and_dynamic_imports_are_read():
    source = (
        "from dlmkit.io import write_text\n"
        "run = lazy('dlmkit.recipes.pretrain:train')\n"
        "def f():\n"
        "    g = lazy('dlmkit.cli:main')\n"
    )
    assert _imports(ast.parse(source), "dlmkit.generate.x") == [
        ("dlmkit.io", False), ("dlmkit.recipes.pretrain", False), ("dlmkit.cli", True)]
    with pytest.raises(AssertionError, match="string literal"):
        _imports(ast.parse("name = 'dlmkit.cli'\nrun = lazy(name + ':main')\n"), "dlmkit.generate.x")
    with pytest.raises(AssertionError, match="dynamic import"):
        _imports(ast.parse("import importlib\ndef f(m):\n    return importlib.import_module(m)\n"), "dlmkit.generate.x")
    # a lazy declaration that goes up a layer is a violation like a plain import
    assert _layer("dlmkit.recipes.pretrain") > _layer("dlmkit.generate.x")
