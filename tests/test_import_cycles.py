"""No import cycles in carebench, counting imports inside functions.

The graph is read from the source with `ast`: an edge for every `import` or `from ... import`
of a carebench module anywhere in a module (at the top, in a function, in a method), except
under `if TYPE_CHECKING:`, which never runs. Importing a submodule also runs its parent
packages' `__init__`, which the graph leaves out: those are not cycles a reader untangles.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import carebench

SOURCE = Path(carebench.__file__).parent


def module_files(package_dir: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package in `package_dir`."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


class ImportFinder(ast.NodeVisitor):
    """The modules of `known` that one module imports (a set of dotted names)."""

    def __init__(self, name: str, is_package: bool, known: set[str]) -> None:
        self.package = name if is_package else name.rpartition(".")[0]
        self.known = known
        self.found: set[str] = set()

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        guarded = (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
        )
        if guarded:
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            package = self.package
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = f"{package}.{base}" if base else package
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            self._add(submodule if submodule in self.known else base)

    def _add(self, name: str) -> None:
        if name in self.known:
            self.found.add(name)


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports."""
    files = module_files(package_dir)
    graph = {}
    for name, path in files.items():
        finder = ImportFinder(name, path.name == "__init__.py", set(files))
        finder.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        graph[name] = finder.found - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a -> ... -> a) per strongly connected group of modules, each found by Tarjan's
    algorithm and then walked from its first module."""
    return [_walk(group, graph) for group in _strongly_connected(graph) if len(group) > 1]


def _strongly_connected(graph: dict[str, set[str]]) -> Iterator[set[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()

    def visit(node: str) -> Iterator[set[str]]:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                yield from visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            yield group

    for node in sorted(graph):
        if node not in index:
            yield from visit(node)


def _walk(group: set[str], graph: dict[str, set[str]]) -> list[str]:
    """A path around the cycle inside `group`, from its first module back to it."""
    start = min(group)
    path, seen = [start], {start}
    while True:
        options = sorted(graph[path[-1]] & group)
        if start in options and len(path) > 1:
            return [*path, start]
        fresh = [node for node in options if node not in seen]
        step = fresh[0] if fresh else options[0]
        if step in seen:
            return [*path[path.index(step) :], step]
        path.append(step)
        seen.add(step)


def test_carebench_has_no_import_cycles() -> None:
    """No chain of imports (function-level ones included) leads from a module back to itself."""
    found = [" -> ".join(cycle) for cycle in cycles(import_graph(SOURCE))]
    assert found == [], "import cycles:\n" + "\n".join(found)


def test_the_graph_sees_the_package(tmp_path: Path) -> None:
    """Absolute, relative and from-package imports become edges; stdlib and third party don't."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from . import leaf\n")
    (package / "sub" / "leaf.py").write_text("import json\nfrom pkg import top\n")
    (package / "top.py").write_text("from .sub.leaf import x\nimport pytest\n")
    assert import_graph(package) == {
        "pkg": set(),
        "pkg.sub": {"pkg.sub.leaf"},
        "pkg.sub.leaf": {"pkg.top"},
        "pkg.top": {"pkg.sub.leaf"},
    }


def test_a_cycle_through_a_function_level_import_is_found(tmp_path: Path) -> None:
    """An import inside a function closes a cycle; one under TYPE_CHECKING does not."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text("def late():\n    from pkg.c import thing\n")
    (package / "c.py").write_text("import pkg.a\n")
    (package / "d.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n"
    )
    assert cycles(import_graph(package)) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]
