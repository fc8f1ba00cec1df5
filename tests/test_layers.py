"""The package's layers, checked from its source: no import circles, and no import upwards.

Every ``import`` statement of every module counts (also those inside functions and under
``TYPE_CHECKING``): a deferred import hides a circle from Python, not from a reader.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "footfall"

FOUNDATION = frozenset(
    {
        "footfall",
        "footfall.config",
        "footfall.errors",
        "footfall.logs",
        "footfall.passwords",
        "footfall.words",
    }
)
"""Imported by every layer; they import nothing of Footfall but each other."""
STORE = ("footfall.store",)
DOMAIN = (
    "footfall.access",
    "footfall.ingest",
    "footfall.identity",
    "footfall.analytics",
    "footfall.sites",
    "footfall.retention",
    "footfall.demo",
)
ENTRY = ("footfall.http", "footfall.web", "footfall.cli", "footfall.__main__")
WRITE_PATH = (
    "footfall.ingest.validate",
    "footfall.ingest.commit",
    "footfall.ingest.direct",
    "footfall.ingest.journal",
    "footfall.ingest.writer",
)
"""The write path in order; a module may import only those before it (the two sinks,
``direct`` and ``journal``, not each other)."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str) -> Iterator[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every Footfall import in ``name``."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "footfall":
                    yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.split(".")[0] != "footfall":
                continue
            names = [alias.name for alias in node.names]
            # ``from footfall import analytics`` imports the module footfall.analytics.
            submodules = [n for n in names if f"{target}.{n}" in MODULES]
            for sub in submodules:
                yield f"{target}.{sub}", [], node.lineno
            rest = [n for n in names if n not in submodules]
            if rest or not submodules:
                yield target, rest, node.lineno


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {name: set() for name in MODULES}
    for name in MODULES:
        for target, _, _ in imports_of(name):
            assert target in MODULES, f"{name} imports {target}, which does not exist"
            if target != name:
                edges[name].add(target)
    return edges


def layer(name: str) -> int:
    if name in FOUNDATION:
        return 0
    for rank, prefixes in enumerate((STORE, DOMAIN, ENTRY), start=1):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return rank
    raise AssertionError(f"{name} belongs to no layer: add it to tests/test_layers.py")


def test_every_module_has_a_layer() -> None:
    assert len(MODULES) > 40
    for name in MODULES:
        layer(name)


def test_no_import_circles() -> None:
    edges = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []
    circles: list[list[str]] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for target in sorted(edges[name]):
            if state.get(target) == 1:
                circles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[name] = 2

    for name in sorted(edges):
        if name not in state:
            visit(name)
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)


def test_no_import_goes_up_a_layer() -> None:
    upward = [
        f"{name} ({layer(name)}) imports {target} ({layer(target)})"
        for name, targets in graph().items()
        for target in targets
        if layer(target) > layer(name)
    ]
    assert not upward, "\n".join(upward)


def leaf_services(edges: dict[str, set[str]]) -> set[str]:
    """HTTP modules of running state that import no other HTTP or dashboard module (the rate
    limiter, the identity turns, the origin refusals): ``http.shared`` holds them."""
    return {
        name
        for name in edges["footfall.http.shared"]
        if name.startswith("footfall.http")
        and not {
            t for t in edges.get(name, set()) if t.startswith(("footfall.http", "footfall.web"))
        }
    }


def test_only_the_http_layer_imports_it() -> None:
    """The dashboard shares what the routes share (``http.shared`` and its leaf services);
    the CLI starts the server through the app factory; nothing else reaches into HTTP."""
    allowed = {
        "footfall.web": {"footfall.http.shared", *leaf_services(graph())},
        "footfall.cli": {"footfall.http.app"},
    }
    wrong = []
    for name, targets in graph().items():
        if name.startswith("footfall.http"):
            continue
        owner = next((k for k in allowed if name.startswith(k)), None)
        for target in targets:
            if target.startswith("footfall.http") and target not in allowed.get(owner or "", ()):
                wrong.append(f"{name} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_http_routes_share_one_module_and_never_import_the_app() -> None:
    edges = graph()
    shared = edges["footfall.http.shared"]
    assert not {t for t in shared if t.startswith(("footfall.http", "footfall.web"))} - (
        leaf_services(edges)
    )
    assert "footfall.http.ratelimit" in leaf_services(edges)
    for name, targets in edges.items():
        if name.startswith(("footfall.http", "footfall.web")) and name != "footfall.http.app":
            assert "footfall.http.app" not in targets, f"{name} imports the app factory"


@pytest.mark.parametrize("position", range(len(WRITE_PATH)))
def test_write_path_points_one_way(position: int) -> None:
    name = WRITE_PATH[position]
    later = set(WRITE_PATH[position + 1 :])
    sinks = {"footfall.ingest.direct", "footfall.ingest.journal"}
    if name in sinks:
        later |= sinks - {name}
    reached = graph()[name] & later
    assert not reached, f"{name} imports {sorted(reached)}, later on the path"


def test_no_private_name_crosses_modules() -> None:
    crossing = [
        f"{name}:{line} takes {', '.join(p for p in names if p.startswith('_'))} from {target}"
        for name in MODULES
        for target, names, line in imports_of(name)
        if any(n.startswith("_") and n != "__version__" for n in names)
    ]
    assert not crossing, "\n".join(crossing)
