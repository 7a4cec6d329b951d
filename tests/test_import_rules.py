"""The import rules of docs/architecture.md, checked on the source (AST, nothing is imported).

``launch.py`` -> ``pipeline/`` -> ``analysis/`` -> ``search/`` -> ``trainables/`` -> ``model_zoo/``: a
package imports only packages to its right (``analysis`` may use ``search``, never the reverse). Only the
Tune trainable (``trainables/trainable.py``) of ``trainables/`` and nothing in ``model_zoo/`` imports Ray;
the model zoo, the data code, the loop and the metrics import no W&B either. No two modules import each
other, directly or round a longer loop. Imports inside functions count (they run when called); imports
under ``if TYPE_CHECKING:`` do not (they never run), and neither do names built at run time. Each
violation names the file, the line and the import.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("launch.py", "pipeline", "search", "analysis", "trainables", "model_zoo")

# Package -> the project packages it may import (itself aside), lowest layer first.
MAY_IMPORT: dict[str, frozenset[str]] = {
    "model_zoo": frozenset(),
    "trainables": frozenset({"model_zoo"}),
    "search": frozenset({"trainables", "model_zoo"}),
    "analysis": frozenset({"search", "trainables", "model_zoo"}),
    "pipeline": frozenset({"analysis", "search", "trainables", "model_zoo"}),
    "launch": frozenset({"pipeline", "analysis", "search", "trainables", "model_zoo"}),
}
PROJECT = frozenset(MAY_IMPORT)
RAY_MAY_IMPORT = ("launch.py", "pipeline/", "analysis/", "search/", "trainables/trainable.py")
NO_WANDB = ("model_zoo/", "trainables/data/", "trainables/loop.py", "trainables/metrics.py")


@dataclass(frozen=True)
class Import:
    """One import statement (or literal ``importlib.import_module("x")``) of a file."""

    file: str  # relative to the repository root, with forward slashes
    line: int
    module: str  # absolute dotted name as imported ("ray.tune", "model_zoo.build")
    names: tuple[str, ...] = ()  # the names of ``from module import a, b``

    def where(self) -> str:
        shown = (
            f"from {self.module} import {', '.join(self.names)}" if self.names else f"import {self.module}"
        )
        return f"{self.file}:{self.line}: {shown}"


def module_name(file: str) -> str:
    """``model_zoo/build.py`` -> ``model_zoo.build``; ``pipeline/__init__.py`` -> ``pipeline``."""
    parts = file.removesuffix(".py").split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST) -> Iterator[ast.AST]:
    """Every node below ``node`` except the bodies of ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield other
                yield from _walk(other)
            continue
        yield child
        yield from _walk(child)


def imports_of(file: str, source: str) -> list[Import]:
    """The imports of one file (module level and inside functions alike), relative ones made absolute."""
    package = module_name(file).split(".")
    if not file.endswith("__init__.py"):
        package = package[:-1]
    out: list[Import] = []
    for node in _walk(ast.parse(source, filename=file)):
        if isinstance(node, ast.Import):
            out += [Import(file, node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            out.append(Import(file, node.lineno, module, tuple(a.name for a in node.names)))
        elif (
            isinstance(node, ast.Call)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__"))
            )
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            out.append(Import(file, node.lineno, node.args[0].value))
    return out


def rule_violations(imports: Iterable[Import]) -> list[str]:
    """Every import that breaks the layering, Ray or W&B rules; one line each."""
    out: list[str] = []
    for imp in imports:
        top = imp.module.split(".")[0]
        owner = imp.file.split("/")[0].removesuffix(".py")
        if top in PROJECT and top != owner and top not in MAY_IMPORT[owner]:
            allowed = ", ".join(sorted(MAY_IMPORT[owner])) or "none of the project's packages"
            out.append(f"{imp.where()} -- {owner} may import {allowed}")
        if top == "ray" and not imp.file.startswith(RAY_MAY_IMPORT):
            out.append(f"{imp.where()} -- only the Tune trainable and the packages above it import Ray")
        if top == "wandb" and imp.file.startswith(NO_WANDB):
            out.append(f"{imp.where()} -- the model zoo, data, loop and metrics never import W&B")
    return out


def _targets(imp: Import, modules: Iterable[str]) -> list[str]:
    """The project modules an import loads by name: ``from pkg import mod`` is ``pkg.mod`` when that is a
    module, else ``pkg``; ``import a.b.c`` is the longest prefix that is a module."""
    known = set(modules)
    if imp.names and imp.module:
        subs = [f"{imp.module}.{n}" for n in imp.names if f"{imp.module}.{n}" in known]
        if len(subs) < len(imp.names) and imp.module in known:
            subs.append(imp.module)
        if subs:
            return subs
    parts = imp.module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in known:
            return [".".join(parts[:n])]
    return []


def cycle_violations(sources: Mapping[str, str]) -> list[str]:
    """Each import cycle between modules, as the imports that close it (Tarjan's strongly connected
    components; a module importing itself counts too)."""
    modules = {module_name(f): f for f in sources}
    edges: dict[str, dict[str, Import]] = {m: {} for m in modules}
    for file, source in sources.items():
        for imp in imports_of(file, source):
            for target in _targets(imp, modules):
                edges[module_name(file)].setdefault(target, imp)

    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[list[str]] = []

    def visit(m: str) -> None:  # recursion depth is bounded by the module count (a few hundred)
        index[m] = low[m] = len(index)
        stack.append(m)
        for t in edges[m]:
            if t not in index:
                visit(t)
                low[m] = min(low[m], low[t])
            elif t in stack:
                low[m] = min(low[m], index[t])
        if low[m] == index[m]:
            component = []
            while True:
                t = stack.pop()
                component.append(t)
                if t == m:
                    break
            components.append(sorted(component))

    for m in sorted(modules):
        if m not in index:
            visit(m)
    out = []
    for component in components:
        members = set(component)
        closing = [imp for m in component for t, imp in edges[m].items() if t in members]
        if len(component) > 1 or closing:
            lines = "; ".join(imp.where() for imp in closing)
            out.append(f"import cycle {' <-> '.join(component)}: {lines}")
    return out


def product_sources() -> dict[str, str]:
    """Every product ``.py`` file (tests, benchmarks and the virtual environment aside) -> its text."""
    files = [ROOT / "launch.py"]
    for package in PRODUCT[1:]:
        files += sorted((ROOT / package).rglob("*.py"))
    return {f.relative_to(ROOT).as_posix(): f.read_text(encoding="utf-8") for f in files}


def test_every_product_package_is_covered() -> None:
    sources = product_sources()
    assert {f.split("/")[0].removesuffix(".py") for f in sources} == PROJECT
    top_level = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    assert top_level - PROJECT <= {"tests", "benchmarks"}, "a new package: give it a layer in MAY_IMPORT"


def test_layering_ray_and_wandb_rules() -> None:
    imports = [imp for f, s in product_sources().items() for imp in imports_of(f, s)]
    assert len(imports) > 100  # the walk found the imports it is meant to check
    violations = rule_violations(imports)
    assert not violations, "\n".join(violations)


def test_no_import_cycles() -> None:
    violations = cycle_violations(product_sources())
    assert not violations, "\n".join(violations)


# ------------------------------------------------------------------- the checker catches violations


def test_checker_finds_each_kind_of_violation() -> None:
    sources = {
        "model_zoo/x.py": "import search.tuner\nfrom trainables import spec\n",
        "trainables/loop.py": "def f():\n    import ray\n    from wandb import init\n",
        "trainables/trainable.py": "import ray\n",
        "search/y.py": "from analysis.results import load_results\n",
        "analysis/z.py": "import importlib\nimportlib.import_module('pipeline.run')\n",
        "pipeline/ok.py": "import analysis.results\nimport ray\n",
    }
    found = rule_violations(imp for f, s in sources.items() for imp in imports_of(f, s))
    assert [v.split(" -- ")[0] for v in found] == [
        "model_zoo/x.py:1: import search.tuner",
        "model_zoo/x.py:2: from trainables import spec",
        "trainables/loop.py:2: import ray",
        "trainables/loop.py:3: from wandb import init",
        "search/y.py:1: from analysis.results import load_results",
        "analysis/z.py:2: import pipeline.run",
    ]


TYPE_CHECKING_HEAD = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"


def test_checker_finds_cycles_through_lazy_and_relative_imports_not_type_checking_ones() -> None:
    cycle = {
        "model_zoo/__init__.py": "",
        "model_zoo/a.py": "from model_zoo.b import B\n",
        "model_zoo/b.py": "def f():\n    from . import a\n",
        "model_zoo/c.py": f"{TYPE_CHECKING_HEAD}    from model_zoo.a import A\n",
        "model_zoo/d.py": "from model_zoo import c\n",
    }
    assert cycle_violations(cycle) == [
        "import cycle model_zoo.a <-> model_zoo.b: "
        "model_zoo/a.py:1: from model_zoo.b import B; model_zoo/b.py:2: from model_zoo import a"
    ]
    no_cycle = {
        **cycle,
        "model_zoo/b.py": f"{TYPE_CHECKING_HEAD}    import model_zoo.a\n",
    }
    assert cycle_violations(no_cycle) == []


@pytest.mark.parametrize(
    ("file", "expected"),
    [
        ("model_zoo/build.py", "model_zoo.build"),
        ("pipeline/__init__.py", "pipeline"),
        ("launch.py", "launch"),
    ],
)
def test_module_names(file: str, expected: str) -> None:
    assert module_name(file) == expected
