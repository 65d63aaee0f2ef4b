"""The gate's shape: three jobs (measure, decide, store) that import no cycle, not even under
TYPE_CHECKING or inside a function, and do not reach into each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest_tome.gate

GATE = Path(pytest_tome.gate.__file__).parent
JOBS = ("measure", "decide", "store")


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = GATE) -> dict[str, set[str]]:
    """Every module under `root` -> the modules of the same package tree it imports, anywhere
    in its body (top level, functions, `if TYPE_CHECKING:`)."""
    files = {_module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                targets.add(base)
                targets.update(f"{base}.{alias.name}" for alias in node.names)
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first repeated last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_find_cycle_sees_a_planted_cycle(tmp_path: Path) -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_import_graph_sees_imports_under_type_checking_and_in_functions() -> None:
    graph = import_graph()
    # check.py imports measure_ratio inside a method: it must be in the graph
    assert "pytest_tome.gate.measure.ratio" in graph["pytest_tome.gate.check"]


def test_gate_has_no_import_cycle() -> None:
    assert find_cycle(import_graph()) is None


def test_the_three_jobs_do_not_import_each_other() -> None:
    for module, targets in import_graph().items():
        job = module.split(".")[2] if module.count(".") >= 3 else None
        if job not in JOBS:
            continue
        others = {t for t in targets if t.count(".") >= 3 and t.split(".")[2] in JOBS}
        assert {t.split(".")[2] for t in others} <= {job}, (module, sorted(others))


def test_only_check_calls_pytest() -> None:
    """measure, decide and store return values or raise their own errors; the pytest control
    flow (fail, skip) is the fixture layer's (gate/check.py)."""
    for path in GATE.rglob("*.py"):
        if path.parent.name in JOBS:
            tree = ast.parse(path.read_text(encoding="utf-8"))
            names = {
                alias.name
                for node in ast.walk(tree)
                if isinstance(node, ast.Import | ast.ImportFrom)
                for alias in node.names
            } | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
            assert "pytest" not in names, path
            assert "pytest_tome.failures" not in names, path


def test_modules_stay_small() -> None:
    for path in GATE.rglob("*.py"):
        assert len(path.read_text(encoding="utf-8").splitlines()) <= 320, path
