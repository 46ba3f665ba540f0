"""The package's shape: imports run one way (no circle), and the root holds no layer's module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "connector"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Each module of `connector` and the `connector` modules it imports, wherever the import sits.

    Imports inside functions and `TYPE_CHECKING` blocks count: a circle hidden in a function is
    still a circle (it was one in `platforms/` before `platforms/http.py`).
    """
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                # `from pkg import module` imports the module; `from module import name` the module.
                targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_has_no_circle() -> None:
    graph = import_graph()
    assert cycles(graph) == []


def test_the_cycle_finder_sees_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_the_platforms_value_types_are_a_leaf() -> None:
    graph = import_graph()
    assert {m for m in graph["connector.platforms.http"] if m.startswith("connector.platforms")} == set()
    above = {"connector.platforms.base", "connector.platforms.auth"}
    assert graph["connector.platforms.transport"] & above == set()


def test_the_runtime_never_imports_the_commands_or_the_development_tools() -> None:
    # `order-sync run` is app.py and what it imports: nothing of it may need the demo extra or a command.
    graph = import_graph()
    top = ("connector.commands", "connector.devtools")
    upward = {
        (module, imported)
        for module, imports in graph.items()
        if not module.startswith(top)
        for imported in imports
        if imported.startswith(top)
    }
    assert upward == set()


#: Modules every layer uses (settings, errors, the canonical model and its bytes) and the wiring of a
#: running connector. Anything else belongs in a layer's package.
ROOT_MODULES = {
    "app",
    "codec",
    "config",
    "errors",
    "models",
}


def test_the_package_root_holds_only_shared_modules() -> None:
    root = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert root == ROOT_MODULES


def readme_module_rows() -> list[list[str]]:
    """The module column of README's architecture table: the code spans of each row."""
    readme = (PACKAGE.parent / "README.md").read_text()
    start = readme.index("| module | concern |")
    end = readme.index("\n#", start)
    rows = [line for line in readme[start:end].splitlines()[2:] if line.startswith("|")]
    return [re.findall(r"`([^`]+)`", row.split("|")[1]) for row in rows]


def named_in(module: str, rows: list[list[str]]) -> bool:
    """`pkg/a.py` is named by itself, by a folder row (`pkg/`), or by `b.py, a.py` after `pkg/b.py`."""
    folder, _, name = module.rpartition("/")
    for spans in rows:
        folders = {span.rpartition("/")[0] for span in spans if "/" in span}
        for span in spans:
            if span == module or (span.endswith("/") and module.startswith(span)):
                return True
            if "/" not in span and span == name and folder in folders:
                return True
    return False


def test_the_readme_architecture_table_names_every_module() -> None:
    rows = readme_module_rows()
    modules = [
        str(path.relative_to(PACKAGE)) for path in sorted(PACKAGE.rglob("*.py")) if path.name != "__init__.py"
    ]
    missing = [module for module in modules if not named_in(module, rows)]
    assert not missing, f"README's architecture table lacks {missing}"
    packages = {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    readme = (PACKAGE.parent / "README.md").read_text()
    tree = readme[readme.index("connector/\n") : readme.index("```", readme.index("connector/\n"))]
    assert not [p for p in packages if f"  {p}/" not in tree], "a package missing from the README's tree"
