"""One house: the import graph of ``harness`` has no circle and its arrows only go down (catalog <-
envelope <- bench <- store/memory <- report/evidence/launch/planner <- pytest_plugin <- cli; bench reaches the
memory room only through the hook it holds, harness.bench.predictors); the store and the reports load
without torch; one configuration is looked up once and checked once."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HARNESS = REPO / "harness"
# Each room's floor; a module may import its own room and rooms on lower floors. The base modules
# (errors and constructor overrides) sit under everything.
FLOORS = {"harness": 0, "harness.options": 0, "harness.overrides": 0, "harness.stats": 0,
          "harness.catalog": 1, "harness.envelope": 2, "harness.bench": 3,
          "harness.store": 4, "harness.memory": 4, "harness.repro": 4,
          "harness.report": 5, "harness.evidence": 5, "harness.launch": 5, "harness.planner": 5,
          "harness.pipeline": 5,
          "harness.pytest_plugin": 6, "harness.cli": 7, "harness.__main__": 8}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every harness module this file imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import; the rooms import each other by absolute name")
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("harness"):
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names
                      if (HARNESS.parent / f"{node.module}.{alias.name}".replace(".", "/")).with_suffix(".py").exists()
                      or (HARNESS.parent / f"{node.module}.{alias.name}".replace(".", "/")).is_dir()}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("harness")}
    return found


def _graph() -> dict[str, set[str]]:
    return {_module_name(path): _imports(path) for path in HARNESS.rglob("*.py")}


def _floor(module: str) -> tuple[str, int]:
    room = max((r for r in FLOORS if module == r or module.startswith(r + ".")), key=len)
    return room, FLOORS[room]


def test_arrows_only_go_down():
    upward = []
    for module, imported in _graph().items():
        room, floor = _floor(module)
        for target in imported:
            target_room, target_floor = _floor(target)
            if target_room != room and target_floor >= floor:
                upward.append(f"{module} (floor {floor}) imports {target} (floor {target_floor})")
    assert not upward, "\n".join(sorted(upward))


def test_the_import_graph_has_no_circle():
    graph = _graph()
    state: dict[str, int] = {}
    circles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if target not in graph or target == module:  # a package importing its own submodules
                continue
            if state.get(target) == 1:
                circles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not circles, "\n".join(circles)


def test_the_walks_see_an_upward_import_and_a_circle(monkeypatch):
    fake = {"harness.catalog.fake": {"harness.store.schema"},
            "harness.bench.a": {"harness.bench.b"}, "harness.bench.b": {"harness.bench.a"}}
    monkeypatch.setattr(sys.modules[__name__], "_graph", lambda: fake)
    with pytest.raises(AssertionError, match=r"harness.catalog.fake \(floor 1\) imports harness.store.schema \(floor 4\)"):
        test_arrows_only_go_down()
    with pytest.raises(AssertionError, match="harness.bench.a -> harness.bench.b -> harness.bench.a"):
        test_the_import_graph_has_no_circle()


def test_store_and_report_import_where_torch_cannot_be_imported(tmp_path):
    blocker = tmp_path / "torch.py"
    blocker.write_text("raise ImportError('torch is not installed here (blocked by the test)')\n")
    code = ("import harness.store, harness.store.run_store, harness.store.merge, harness.report, "
            "harness.report.load, harness.report.tables, harness.report.__main__, harness.report.reproducibility, "
            "harness.bench.spec\n"
            "import sys; assert 'torch' not in sys.modules or sys.modules['torch'] is None\n"
            "try:\n    import torch\nexcept ImportError:\n    print('torch blocked')\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          env={"PYTHONPATH": f"{tmp_path}:{REPO}", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0 and "torch blocked" in done.stdout, done.stderr


def test_a_training_configuration_is_looked_up_once_and_checked_once(monkeypatch):
    """``measure`` resolves the variant and its verdict once and hands them on (workload, training target,
    FLOP count, the row's source, the expected output shape)."""
    from harness.bench.run import measure
    from harness.bench.spec import BenchSpec
    from harness.catalog import registry
    from harness.envelope import walkers

    looked_up, checked = [], []

    class CountingRegistry(dict):
        def __getitem__(self, name):
            looked_up.append(name)
            return super().__getitem__(name)

    monkeypatch.setattr(registry, "_REGISTRY", CountingRegistry(registry._REGISTRY))
    walk = walkers.WALKERS["unet"]
    monkeypatch.setitem(walkers.WALKERS, "unet", lambda *args: checked.append(args[1]) or walk(*args))
    m = measure(BenchSpec("unet2d", (1, 32, 32), 2, "train", warmup=1, rounds=1, blocks=1, overrides="base_c=4"))
    assert m.error == "" and m.source == "article" and m.output_shape == m.expected_output_shape == (2, 2, 32, 32)
    assert looked_up == ["unet2d"], looked_up
    assert checked == [(2, 1, 32, 32)], checked
