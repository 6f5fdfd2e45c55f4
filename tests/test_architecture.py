"""The house's floors: which corenet module may import which (issue 14).

Every ``import`` in ``corenet/`` (module level and inside functions; ``if TYPE_CHECKING:`` blocks
excepted, they never run) is read with :mod:`ast`. A module may import from its own floor or a
lower one, never from a higher one, and the import graph has no cycle. Above ``functional/``
nothing reaches into ``kernels/`` or into a private module of ``functional/``: the public
functional ops are the only way down.

The floors, lowest first (a module takes the floor of the longest matching prefix)::

    0  utilities   config, geometry, _blas, _malloc, _ext (the compiled kernels' loader), and the
                   MPI world (distributed: world, collectives, sync batch norm; duck-typed models)
    1  data        readers, loaders, augmentation: utilities only
    2  kernels     every backend's op families
    3  functional  validated forward/backward pairs, the one device seam
    4  layers      init, the symbolic graph (SymbolicTensor, Node), the layer families
    5  graph       executing a graph; summary; fusion (graph rewrites); reading architecture configs
    6  training-blocks  losses, optim, metrics, schedules, callbacks
    7  io          checkpoints over plain state dicts, PyTorch and ONNX formats
    8  training    compile/fit/evaluate/predict, the epoch loop, progress, history, and the
                   hooks fit calls under MPI (distributed.fit)
    9  model       Model and Sequential (inherit their trainer)
    10 models      the zoo
    11 cli         the command, warm-up, the package facade

Importing ``a.b.c`` runs the ``__init__`` of ``a.b`` first, so for the floors a module also
depends on the packages above it (corenet's own facade excepted: it sits on top on purpose).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "corenet"

FLOORS: list[tuple[int, tuple[str, ...]]] = [
    (0, ("config", "geometry", "_blas", "_malloc", "_ext", "distributed", "viz")),
    (1, ("data",)),
    (2, ("kernels",)),
    (3, ("functional",)),
    (4, ("init", "layers", "graph.symbolic", "symbolic")),
    (5, ("graph", "summary", "fusion", "model_config")),
    (6, ("losses", "optim", "metrics", "schedules", "callbacks")),
    (7, ("io", "io_torch", "io_onnx", "io_checks")),
    (8, ("training", "distributed.fit")),
    (9, ("model",)),
    (10, ("models",)),
    (11, ("cli", "__main__", "warmup", "__init__")),
]
FUNCTIONAL_FLOOR = 3


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py")) if "__pycache__" not in p.parts}


def floor_of(module: str) -> int:
    """The floor of ``corenet.<...>`` by the longest matching prefix in :data:`FLOORS`."""
    rest = module.split(".")[1:] or ["__init__"]
    best, best_len = None, -1
    for floor, prefixes in FLOORS:
        for prefix in prefixes:
            p = prefix.split(".")
            if rest[: len(p)] == p and len(p) > best_len:
                best, best_len = floor, len(p)
    if best is None:
        raise AssertionError(f"module {module} has no floor: add it to FLOORS in {__file__}")
    return best


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                skip.update(id(n) for n in ast.walk(inner))
    return skip


def imports_of(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The corenet modules that ``module`` imports (submodules resolved where they exist)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skip = _type_checking_nodes(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{a.name}" if f"{target}.{a.name}" in known else target for a in node.names]
        else:
            continue
        for name in names:
            if name == "corenet" or name.startswith("corenet."):
                while name not in known and "." in name:
                    name = name.rpartition(".")[0]
                if name != module:
                    found.add(name)
    return found


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {m: imports_of(m, p, known) for m, p in known.items()}


def test_every_module_has_a_floor():
    for module in _modules():
        floor_of(module)


def _with_parent_packages(targets: set[str]) -> set[str]:
    out = set(targets)
    for t in targets:
        parts = t.split(".")
        out.update(".".join(parts[:i]) for i in range(2, len(parts)))
    return out


def test_no_import_runs_upward():
    upward = [
        f"{a} (floor {floor_of(a)}) imports {b} (floor {floor_of(b)})"
        for a, targets in _graph().items()
        for b in sorted(_with_parent_packages(targets))
        if floor_of(b) > floor_of(a)
    ]
    assert not upward, "imports from a higher floor:\n" + "\n".join(upward)


def test_nothing_above_functional_reaches_into_kernels_or_private_functional():
    def private(b):
        return b.startswith("corenet.kernels") or any(
            part.startswith("_") for part in b.split(".")[2:]) and b.startswith("corenet.functional.")

    bad = [
        f"{a} imports {b}"
        for a, targets in _graph().items()
        if floor_of(a) > FUNCTIONAL_FLOOR
        for b in sorted(targets)
        if private(b)
    ]
    assert not bad, "modules above functional/ must use the public functional ops:\n" + "\n".join(bad)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            for nxt in it:
                if nxt not in graph:
                    continue
                if nxt not in index:
                    index[nxt] = low[nxt] = counter[0]
                    counter[0] += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        m = stack.pop()
                        on_stack.discard(m)
                        comp.append(m)
                        if m == node:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_the_import_graph_has_no_cycle():
    graph = _graph()
    # A package's __init__ re-exporting its own submodules is not a cycle of the house: the
    # submodules never need the facade. Leave those edges out, keep every other one.
    pruned = {
        a: {b for b in targets if not (a + ".").startswith(b + ".") and not b.startswith(a + ".")}
        if ROOT.joinpath(*a.split(".")[1:], "__init__.py").exists() or a == "corenet"
        else {b for b in targets if not (a + ".").startswith(b + ".")}
        for a, targets in graph.items()
    }
    cycles = _cycles(pruned)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


@pytest.mark.parametrize("module,expected", [("corenet.kernels.cuda.conv", 2), ("corenet.models.resnet", 10),
                                             ("corenet", 11), ("corenet.data.loader", 1),
                                             ("corenet.distributed.fit", 8), ("corenet.distributed", 0)])
def test_floor_of_reads_the_table(module, expected):
    assert floor_of(module) == expected
