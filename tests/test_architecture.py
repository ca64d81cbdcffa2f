"""The layout's rule, checked: imports point one way, and no two packages import each other.

Layers, lowest first; a module may import its own layer or lower ones, never a higher one:

    foundation   tailor/{config,payloads,db,errors,send_time}.py, tailor/models/,
                 tailor/migrations/, tailor/journeys/definitions.py, tailor/profiles/features.py,
                 tailor/consent/ledger.py (the ledger's hash chain), tailor/consent/casl.py
                 (how long implied consent lasts), tailor/observability/ (in-memory metrics)
    store        tailor/store/                 all SQL
    library      rag/                          retrieval; imports nothing of Tailor's
    domain       tailor/<package>/ and tailor/<module>.py  (personalise, delivery, sending, ...)
    activities   activities/                   thin Temporal activity classes
    workflows    workflows/                    orchestration
    client       tailor/temporal/              starts, signals and queries workflows
    entry        api/, worker.py, tailor/cli/  processes

Within a layer, the graph of packages (``tailor.delivery``, ``tailor.sending``, ...) must have
no cycle. Every import counts, including those inside functions and ``TYPE_CHECKING`` blocks.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ["activities", "api", "rag", "tailor", "workflows", "worker.py"]
# The shared vocabulary, with no I/O of its own: settings, tables, Temporal payloads, errors,
# time zones, journey definitions, how an event changes a profile, how a consent row is hashed
# into its contact's chain, and the metrics (in-memory counters any layer may add to). Anything
# may import it; being the lowest layer, it imports only itself.
FOUNDATION = {"tailor", "tailor.config", "tailor.models", "tailor.payloads", "tailor.db",
              "tailor.errors", "tailor.migrations", "tailor.send_time",
              "tailor.journeys.definitions", "tailor.profiles.features",
              "tailor.consent.ledger", "tailor.consent.casl",
              "tailor.observability"}  # fmt: skip
LAYERS = ["foundation", "store", "library", "domain", "activities", "workflows", "client", "entry"]


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _component(module: str) -> str:
    """The unit whose imports are checked: a top-level package, or a package or module
    directly under ``tailor``."""
    for shared in FOUNDATION - {"tailor"}:
        if module == shared or module.startswith(shared + "."):
            return shared
    parts = module.split(".")
    if parts[0] == "tailor" and len(parts) > 1:
        return ".".join(parts[:2])
    return parts[0]


def _layer(component: str) -> str:
    if component in FOUNDATION:
        return "foundation"
    special = {"tailor.store": "store", "rag": "library", "activities": "activities",
               "workflows": "workflows", "tailor.temporal": "client", "api": "entry",
               "worker": "entry", "tailor.cli": "entry"}  # fmt: skip
    return special.get(component, "domain")


def _imports() -> dict[str, set[tuple[str, str]]]:
    """Module -> {(imported module, where)} for imports of Tailor's own code."""
    found: dict[str, set[tuple[str, str]]] = defaultdict(set)
    files = [ROOT / "worker.py"] + [p for top in SOURCES[:-1] for p in (ROOT / top).rglob("*.py")]
    for path in files:
        if "versions" in path.parts:  # migrations import tailor.models, nothing else
            continue
        module = _module(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if not isinstance(node, ast.stmt):
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                    + ([base] if base else []))  # fmt: skip
                names = [base]
            for name in names:
                if name.split(".")[0] in {"activities", "api", "rag", "tailor", "workflows",
                                          "worker"}:  # fmt: skip
                    found[module].add((name, f"{path.relative_to(ROOT)}:{node.lineno}"))
    return found


def test_imports_point_down_the_layers() -> None:
    wrong = []
    for module, targets in _imports().items():
        source = _layer(_component(module))
        for target, where in targets:
            layer = _layer(_component(target))
            if LAYERS.index(layer) > LAYERS.index(source):
                wrong.append(f"{where}: {module} ({source}) imports {target} ({layer})")
    assert not wrong, "imports against the layers:\n" + "\n".join(sorted(wrong))


def test_rag_is_a_library_of_its_own() -> None:
    leaks = [
        f"{where}: {module} imports {target}"
        for module, targets in _imports().items()
        if module.split(".")[0] == "rag"
        for target, where in targets
        if target.split(".")[0] != "rag"
    ]
    assert not leaks, "\n".join(leaks)


def test_only_workflows_and_the_worker_import_activities() -> None:
    wrong = [
        f"{where}: {module} imports {target}"
        for module, targets in _imports().items()
        if module.split(".")[0] not in {"activities", "workflows", "worker"}
        for target, where in targets
        if target.split(".")[0] == "activities"
    ]
    assert not wrong, "\n".join(sorted(wrong))


def test_no_two_packages_import_each_other() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, targets in _imports().items():
        for target, _ in targets:
            a, b = _component(module), _component(target)
            if a != b:
                graph[a].add(b)
    cycle = _find_cycle(graph)
    assert cycle is None, "package cycle: " + " -> ".join(cycle or [])


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_the_checker_sees_a_forbidden_import() -> None:
    """The rule itself can fail: a domain module importing an activity is caught."""
    assert _layer(_component("tailor.delivery.dispatch")) == "domain"
    assert LAYERS.index(_layer(_component("activities.errors"))) > LAYERS.index("domain")
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
