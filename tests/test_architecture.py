"""The layout's rules, checked on the source (docs/architecture.md): no import circles in codec/
or pilc_ray/, the runtime codec free of the cluster, web and training stacks, and pilc_ray's
data path one way (shared storage/index <- job, retrieval, reports <- CLI and API).

What counts as an import: every `import` and `from ... import` of a module, at module level or
inside a function. A lazy import is still a dependency; a circle through one is a circle in the
design, kept from failing at import time only by the order calls happen to come in. Left out:
imports under `if TYPE_CHECKING:` (they never run). `from pkg import name` is an edge to the
module `pkg.name` where there is one, else to `pkg`; relative imports are resolved. Importing
`a.b.c` adds no edges to `a` or `a.b` (Python runs their `__init__` first, but a package's
`__init__` naming its modules' public names is their surface, not something they depend on).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("codec", "pilc_ray")
# the runtime codec is numpy + its C kernels (CuPy on GPUs): none of these, and not pilc_ray
CODEC_FORBIDDEN = ("ray", "boto3", "botocore", "fastapi", "starlette", "uvicorn", "torch",
                   "pilc_ray", "codec.train")
# pilc_ray's layers: (importer, what it must not import). Shared modules sit below the roles;
# retrieval and reports read what the job wrote and never reach into it or each other; only the
# CLI and the API sit on top.
SHARED = ("pilc_ray.storage", "pilc_ray.storage_flags", "pilc_ray.index", "pilc_ray.runs",
          "pilc_ray.integrity")
ROLES = ("pilc_ray.job", "pilc_ray.retrieval", "pilc_ray.reports")
TOP = ("pilc_ray.cli", "pilc_ray.api", "pilc_ray.testing")
LAYER_RULES = (
    *((s, (*ROLES, *TOP)) for s in SHARED),
    ("pilc_ray.retrieval", ("pilc_ray.job", "pilc_ray.reports", *TOP)),
    ("pilc_ray.reports", ("pilc_ray.job", "pilc_ray.retrieval", *TOP)),
    ("pilc_ray.job", TOP),
)


# --------------------------------------------------------------------------------------------
# the checker


def module_names(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Dotted name -> file of every module of the packages (a package is its __init__)."""
    out = {}
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement under `node`, at any depth, except under `if TYPE_CHECKING:`."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield from _imports_in(other)
            continue
        yield from _imports_in(child)


def _imports_in(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    yield from _imports(node)


def imported(module: str, is_package: bool, tree: ast.AST, known: set[str]) -> set[str]:
    """Dotted names `module` imports: a known module where the name is one, else as written."""
    out = set()
    for node in _imports(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            package = module.split(".") if is_package else module.split(".")[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join([*package, base] if base else package)
        for alias in node.names:
            full = f"{base}.{alias.name}"
            out.add(full if full in known else base)
    return out


def import_graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    """Module -> every name it imports (internal modules and external ones alike)."""
    files = module_names(root, packages)
    known = set(files)
    return {name: imported(name, path.name == "__init__.py", ast.parse(path.read_text()), known)
            for name, path in files.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every group of modules that import each other, directly or around (Tarjan's SCCs), each
    sorted; a module importing itself is a group of one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v] & graph.keys()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1 or v in graph[v]:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(graph: dict[str, set[str]],
               rules: tuple[tuple[str, tuple[str, ...]], ...]) -> list[str]:
    """'importer -> imported' for each import a rule forbids."""
    return sorted(f"{mod} -> {name}" for mod, names in graph.items() for name in names
                  for importer, forbidden in rules if _under(mod, importer)
                  and any(_under(name, f) for f in forbidden))


# --------------------------------------------------------------------------------------------
# the rules on this repository


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(ROOT, PACKAGES)


def test_the_graph_sees_lazy_and_relative_imports(graph):
    """Not vacuous: module-level and function-level imports both appear as edges."""
    assert "pilc_ray.job.worker" in graph["pilc_ray.job.driver"]  # module level
    assert "pilc_ray.job.data_engine" in graph["pilc_ray.job.driver"]  # inside a method
    assert "codec.train.trainer" in graph["pilc_ray.cli"]  # inside a function
    assert "ray" in graph["pilc_ray.job.cluster"]


def test_no_import_circles(graph):
    assert circles(graph) == []


def test_runtime_codec_imports_no_cluster_web_or_training_stack(graph):
    runtime = {m: names for m, names in graph.items()
               if _under(m, "codec") and not _under(m, "codec.train")}
    assert violations(runtime, (("codec", CODEC_FORBIDDEN),)) == []


def test_pilc_ray_layers(graph):
    assert violations(graph, LAYER_RULES) == []


# --------------------------------------------------------------------------------------------
# the checker on packages made to break the rules


def _package(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_checker_finds_a_circle_through_a_lazy_relative_import(tmp_path):
    _package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg import b\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/c.py": "def f():\n    from .. import a\n",  # lazy and relative: pkg.a
        "pkg/b.py": "import os\n\ndef g():\n    from pkg.sub import c\n",
    })
    assert circles(import_graph(tmp_path, ("pkg",))) == [["pkg.a", "pkg.b", "pkg.sub.c"]]


def test_checker_finds_a_module_importing_itself(tmp_path):
    _package(tmp_path, {"pkg/__init__.py": "", "pkg/a.py": "import pkg.a\n"})
    assert circles(import_graph(tmp_path, ("pkg",))) == [["pkg.a"]]


def test_checker_ignores_type_checking_imports_but_not_their_else(tmp_path):
    _package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg.b import X\n",
        "pkg/b.py": ("import typing\nif typing.TYPE_CHECKING:\n    from pkg.a import Y\n"
                     "X = 1\n"),
        "pkg/c.py": "from pkg.d import Z\n",
        "pkg/d.py": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    pass\n"
                     "else:\n    from pkg import c\nZ = 1\n"),
    })
    assert circles(import_graph(tmp_path, ("pkg",))) == [["pkg.c", "pkg.d"]]


def test_checker_flags_a_forbidden_import_only_where_a_rule_says(tmp_path):
    _package(tmp_path, {
        "codec/__init__.py": "",
        "codec/api.py": "def f():\n    import torch.nn\n",
        "codec/train/__init__.py": "import torch\n",
    })
    graph = import_graph(tmp_path, ("codec",))
    runtime = {m: n for m, n in graph.items() if not _under(m, "codec.train")}
    assert violations(runtime, (("codec", CODEC_FORBIDDEN),)) == ["codec.api -> torch.nn"]
