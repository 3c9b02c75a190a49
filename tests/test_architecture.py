"""The layout's rules, checked on the source (docs/architecture.md): no import circles in codec/
or pilc_ray/, the runtime codec free of the cluster, web and training stacks, and pilc_ray's
data path one way (shared storage/index <- job, retrieval, reports <- CLI and API): every
pilc_ray module has a layer, each layer imports only the layers below it, and the job's one
import from another role is reports' write_report.

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
# pilc_ray's layers (docs/architecture.md). Every module is classified: a subpackage of a role
# with all it holds, any other module by its exact name; a module the table misses fails
# test_every_pilc_ray_module_has_a_layer. `samples` (inputs for the demo job) and `testing` (the
# local Ray, moto and SeaweedFS of the tests; it starts Ray through job.cluster) are imported
# only by the CLI, tests and benchmarks, so they sit on top; the package `__init__` exports
# retrieval's open_archive, so it does too.
ROLES = ("pilc_ray.job", "pilc_ray.retrieval", "pilc_ray.reports")
MODULES = {
    "pilc_ray": "top", "pilc_ray.cli": "top", "pilc_ray.api": "top",
    "pilc_ray.samples": "top", "pilc_ray.testing": "top",
    "pilc_ray.storage": "shared", "pilc_ray.storage_flags": "shared", "pilc_ray.index": "shared",
    "pilc_ray.runs": "shared", "pilc_ray.integrity": "shared",
}
# which layers each layer may import: shared modules import no role; retrieval and reports read
# only the shared layer (never the job, nor each other); the job writes through it; only the top
# imports the roles
MAY_IMPORT = {
    "shared": {"shared"},
    "job": {"shared", "job"},
    "retrieval": {"shared", "retrieval"},
    "reports": {"shared", "reports"},
    "top": {"shared", "job", "retrieval", "reports", "top"},
}
# the one import across roles: at the end of a run the driver writes the report on what it
# wrote (in the direction the data goes), by this one name and nothing else from reports
EXCEPTIONS = {("job", "reports"): {("pilc_ray.reports", "write_report"),
                                   ("pilc_ray.reports.aggregate", "write_report")}}


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


def import_edges(module: str, is_package: bool, tree: ast.AST,
                 known: set[str]) -> set[tuple[str, str | None]]:
    """(imported module, name) pairs of `module`'s imports: (a known module where the name is
    one, else the module as written; None) for a module, (module, name) for another name."""
    out: set[tuple[str, str | None]] = set()
    for node in _imports(tree):
        if isinstance(node, ast.Import):
            out.update((alias.name, None) for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            package = module.split(".") if is_package else module.split(".")[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join([*package, base] if base else package)
        for alias in node.names:
            full = f"{base}.{alias.name}"
            out.add((full, None) if full in known else (base, alias.name))
    return out


def imported(module: str, is_package: bool, tree: ast.AST, known: set[str]) -> set[str]:
    """Dotted names `module` imports: a known module where the name is one, else as written."""
    return {target for target, _ in import_edges(module, is_package, tree, known)}


def edge_map(root: Path, packages: tuple[str, ...]) -> dict[str, set[tuple[str, str | None]]]:
    """Module -> the (module, name) pairs it imports (see import_edges)."""
    files = module_names(root, packages)
    known = set(files)
    return {name: import_edges(name, path.name == "__init__.py", ast.parse(path.read_text()),
                               known)
            for name, path in files.items()}


def import_graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    """Module -> every name it imports (internal modules and external ones alike)."""
    return {name: {target for target, _ in edges}
            for name, edges in edge_map(root, packages).items()}


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


def layer_of(module: str, modules: dict[str, str] = MODULES,
             roles: tuple[str, ...] = ROLES) -> str | None:
    """A pilc_ray module's layer: its role's (last part of the role's name) for anything under a
    role's package, else the table's entry for its exact name; None where neither says."""
    for role in roles:
        if _under(module, role):
            return role.rsplit(".", 1)[-1]
    return modules.get(module)


def layer_violations(edges: dict[str, set[tuple[str, str | None]]], package: str = "pilc_ray",
                     modules: dict[str, str] = MODULES, roles: tuple[str, ...] = ROLES,
                     may_import: dict[str, set[str]] = MAY_IMPORT,
                     exceptions: dict[tuple[str, str], set[tuple[str, str]]] = EXCEPTIONS,
                     ) -> list[str]:
    """'importer -> imported' (with the name, for a `from` import of a non-module) for each
    import of `package` that its layers forbid; 'module: no layer' for a module of the package,
    or a name it imports from it, that no layer holds."""
    out = []
    for mod, targets in edges.items():
        if not _under(mod, package):
            continue
        layer = layer_of(mod, modules, roles)
        if layer is None:
            out.append(f"{mod}: no layer")
            continue
        for target, name in targets:
            if not _under(target, package):
                continue
            to = layer_of(target, modules, roles)
            shown = f"{mod} -> {target}" + (f" ({name})" if name else "")
            if to is None:
                out.append(f"{shown}: no layer")
            elif to not in may_import[layer] and (target, name) not in exceptions.get(
                    (layer, to), set()):
                out.append(shown)
    return sorted(out)


# --------------------------------------------------------------------------------------------
# the rules on this repository


@pytest.fixture(scope="module")
def edges() -> dict[str, set[tuple[str, str | None]]]:
    return edge_map(ROOT, PACKAGES)


@pytest.fixture(scope="module")
def graph(edges) -> dict[str, set[str]]:
    return {name: {target for target, _ in e} for name, e in edges.items()}


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


def test_every_pilc_ray_module_has_a_layer(graph):
    """A new module must be placed in the table (or under a role) before its imports are
    checked: an unclassified one would otherwise escape every rule."""
    assert [m for m in sorted(graph) if _under(m, "pilc_ray") and layer_of(m) is None] == []


def test_pilc_ray_layers(edges):
    assert layer_violations(edges) == []


def test_the_job_reaches_reports_only_through_write_report(edges):
    """Not vacuous: the driver's one cross-role import is there, and is the allowed one."""
    assert ("pilc_ray.reports.aggregate", "write_report") in edges["pilc_ray.job.driver"]


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


def test_layer_checker_on_a_package_made_to_break_the_rules(tmp_path):
    """Shared importing a role, the job importing retrieval or more of reports than
    write_report, retrieval or reports importing the job, and a module with no layer: each
    flagged; the allowed imports (job -> shared, job -> write_report, top -> roles) are not."""
    _package(tmp_path, {
        "pilc_ray/__init__.py": "",
        "pilc_ray/cli.py": "from pilc_ray.job import driver\nimport pilc_ray.retrieval.archive\n",
        "pilc_ray/storage.py": "",
        "pilc_ray/index.py": "from pilc_ray import storage\n\ndef f():\n"
                             "    from pilc_ray.job.worker import X\n",
        "pilc_ray/stray.py": "",
        "pilc_ray/job/__init__.py": "",
        "pilc_ray/job/driver.py": ("from pilc_ray import index\n"
                                   "from pilc_ray.reports.aggregate import write_report\n"
                                   "from pilc_ray.reports import build_report\n"),
        "pilc_ray/job/worker.py": "X = 1\n\ndef f():\n    from pilc_ray.retrieval import archive\n",
        "pilc_ray/retrieval/__init__.py": "",
        "pilc_ray/retrieval/archive.py": "import pilc_ray.job\n",
        "pilc_ray/reports/__init__.py": "",
        "pilc_ray/reports/aggregate.py": ("from pilc_ray.storage import open_storage\n"
                                          "from ..job.driver import Driver\n"
                                          "def write_report(): ...\n"),
    })
    modules = {"pilc_ray": "top", "pilc_ray.cli": "top", "pilc_ray.storage": "shared",
               "pilc_ray.index": "shared"}
    found = layer_violations(edge_map(tmp_path, ("pilc_ray",)), modules=modules)
    assert found == [
        "pilc_ray.index -> pilc_ray.job.worker (X)",
        "pilc_ray.job.driver -> pilc_ray.reports (build_report)",
        "pilc_ray.job.worker -> pilc_ray.retrieval.archive",
        "pilc_ray.reports.aggregate -> pilc_ray.job.driver (Driver)",
        "pilc_ray.retrieval.archive -> pilc_ray.job",
        "pilc_ray.stray: no layer",
    ]
