"""The package boundaries of docs/architecture.md: imports go one way, exphead <- exptransfer <- expgen, and no two
modules import each other (directly or round a longer loop), lazy imports inside functions included."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
ORDER = {"exphead": 0, "exptransfer": 1, "expgen": 2}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str) -> set[str]:
    """Project modules ``path`` imports anywhere in its body (absolute and relative)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in found if m.split(".")[0] in ORDER}


def _graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in SRC.rglob("*.py")}
    return {name: {m for m in _imports(path, name) if m in paths and m != name} for name, path in paths.items()}


def test_imports_go_one_way():
    wrong = [(a, b) for a, deps in _graph().items() for b in deps if ORDER[b.split(".")[0]] > ORDER[a.split(".")[0]]]
    assert not wrong, wrong


def test_no_import_cycles_between_modules():
    graph = _graph()
    # a package's __init__ re-exports its modules: edges from a package to its own submodules are not dependencies
    graph = {a: {b for b in deps if not b.startswith(a + ".")} for a, deps in graph.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not cycles, cycles
