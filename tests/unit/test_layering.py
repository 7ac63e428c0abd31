"""The house rules of `retrain/`, read from the code's own imports (every import statement,
also those inside functions): the core imports neither Prefect nor the layers above it, the
pure modules import no adapter, the adapters import no stage room, and no modules import each
other in a loop. Then one fresh interpreter checks the same at run time."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).parents[2]
CORE = ROOT / "retrain"
ROOMS = ("config", "io", "data", "model", "training", "promotion", "serving", "monitoring",
         "scoring")  # fmt: skip
STAGE_ROOMS = ROOMS[2:]
# DataFrames, arrays and figures in, the same out: no database, MLflow, process or network.
PURE = (
    "retrain.config.dataset_schema", "retrain.data.cleaning_rules", "retrain.data.features",
    "retrain.data.split", "retrain.training.families", "retrain.training.pictures",
    "retrain.training.notes", "retrain.promotion.rules", "retrain.monitoring.drift",
    "retrain.monitoring.usage", "retrain.monitoring.performance",
    "retrain.training.calibration", "retrain.training.leakage", "retrain.promotion.guards",
    "retrain.training.tomorrow",
)  # fmt: skip
ADAPTER_LIBRARIES = ("sqlalchemy", "pymysql", "mlflow", "prefect", "subprocess", "pyspark",
                     "urllib.request", "requests", "httpx", "socket")  # fmt: skip
ABOVE_THE_CORE = ("prefect", "flows", "tasks", "cli", "deployments")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def core_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(CORE.rglob("*.py"))}


def imports_of(path: Path) -> Iterator[str]:
    """Every module an import statement of the file names (`from a import b` names `a` and,
    when `a.b` is a module of the core, `a.b`)."""
    known = core_modules()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{a.name}" for a in node.names
                        if f"{node.module}.{a.name}" in known)  # fmt: skip


def names(imported: str, roots: tuple[str, ...]) -> bool:
    return any(imported == r or imported.startswith(f"{r}.") for r in roots)


def test_every_core_module_lives_in_a_room_with_a_docstring_saying_what_it_holds() -> None:
    loose = {m for m in core_modules() if m.count(".") == 1 and m.split(".")[1] not in ROOMS}
    assert loose == {"retrain.errors", "retrain.links", "retrain.pyfunc"}
    for room in ROOMS:
        assert ast.get_docstring(ast.parse((CORE / room / "__init__.py").read_text())), room


def test_the_core_imports_nothing_above_it() -> None:
    wrong = {
        (m, i) for m, p in core_modules().items() for i in imports_of(p)
        if names(i, ABOVE_THE_CORE)
    }  # fmt: skip
    assert wrong == set()


def test_pure_modules_import_no_adapter() -> None:
    wrong = {
        (m, i) for m in PURE for i in imports_of(core_modules()[m])
        if names(i, (*ADAPTER_LIBRARIES, "retrain.io"))
    }  # fmt: skip
    assert wrong == set()


def test_the_model_room_imports_no_stage_room_but_the_features() -> None:
    """Every stage imports `retrain.model`; it imports none of them (rows are prepared for the
    Pipelines by `data.features`, the one part of a stage the served model needs)."""
    stage = tuple(f"retrain.{r}" for r in STAGE_ROOMS if r != "model")
    wrong = {
        (m, i) for m, p in core_modules().items() if m.startswith("retrain.model.")
        for i in imports_of(p) if names(i, stage) and i != "retrain.data.features"
    }  # fmt: skip
    assert wrong == set()


def test_adapters_import_no_stage_room() -> None:
    stage = tuple(f"retrain.{r}" for r in STAGE_ROOMS)
    wrong = {
        (m, i) for m, p in core_modules().items() if m.startswith("retrain.io.")
        for i in imports_of(p) if names(i, stage)
    }  # fmt: skip
    assert wrong == set()


def test_no_modules_import_each_other_in_a_loop() -> None:
    modules = core_modules()
    graph = {m: {i for i in imports_of(p) if i in modules and i != m} for m, p in modules.items()}
    # a package's face (__init__) is imported with every module under it; it imports nothing
    assert all(not graph[f"retrain.{r}"] for r in ROOMS)
    loops = [m for m in graph if reaches(graph, m, m)]
    assert loops == []


def reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = set(), list(graph[start])
    while todo:
        here = todo.pop()
        if here == goal:
            return True
        if here not in seen:
            seen.add(here)
            todo.extend(graph[here])
    return False


def test_the_cli_sits_above_the_flows_and_nothing_imports_it() -> None:
    layers = [ROOT / "flows", ROOT / "tasks", ROOT / "deployments", CORE]
    wrong = {
        str(p.relative_to(ROOT)) for layer in layers for p in layer.rglob("*.py")
        if any(names(i, ("cli",)) for i in imports_of(p))
    }  # fmt: skip
    assert wrong == set()
    assert any(names(i, ("flows",)) for i in imports_of(ROOT / "cli" / "app.py"))


def test_at_run_time_pure_modules_load_no_adapter_and_the_core_no_prefect() -> None:
    """One fresh interpreter (imports are the cost): the pure modules run on DataFrames and
    arrays alone (no database, MLflow or process), then every `retrain` module is imported
    and Prefect is still not loaded."""
    loaded = ("sqlalchemy", "mlflow", "prefect", "retrain.io.store", "retrain.io.tracking",
              "retrain.serving.model_server")  # fmt: skip
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in PURE)
        + f"print(sorted(m for m in {loaded!r} if m in sys.modules))\n"
        + "".join(f"import {m}\n" for m in core_modules())
        + "print('prefect' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["[]", "False"]
