"""The house rules, measured from the code: a layer imports only the layers below it, and
modules and functions stay small enough to read. What still breaks a size rule is listed
by name below, so the list can only shrink: a new offender fails, and so does a listed
one that was fixed but not struck off."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "sparsebench"

# Bottom to top. A package imports only from lower layers (never a sibling or above),
# so any layer can be read, tested and replaced with what is under it alone.
LAYERS = [
    {"errors"},
    {"files", "confusion", "measure", "ranking", "tracking"},
    {"models", "channels"},  # networks; the channel graph of any network
    {"data"},
    {"sparsity"},  # methods, masks and layers: on the channel graph
    {"settings"},  # what a run, a federation and a sweep are asked to do; run ids
    {"store"},
    {"train"},
    {"deploy", "report", "federated"},  # each reads runs, none trains one
    {"sweep"},
    {"cli"},
]
LAYER_OF = {package: index for index, layer in enumerate(LAYERS) for package in layer}

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 50
# Still to split (issue 38, "the fat modules split along their seams").
LONG_MODULES = {"sparsity/methods.py"}
LONG_FUNCTIONS = {
    "cli/federate.py:federate",
    "cli/sweep.py:sweep_file",
    "cli/sweep.py:sweep",
    "cli/use.py:predict",
    "cli/results.py:report",
    "cli/deploy.py:bench",
    "deploy/serve.py:make_app",
    "deploy/export.py:export_run",
    "report/figures.py:bar_figure",
    "report/results.py:load_results",
    "report/confusions.py:confusion_figure",
    "store/db.py:finish_run",
    "train/run.py:run_and_record",
    "train/loop.py:train_run",
}


def _modules() -> list[tuple[str, ast.Module, int]]:
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        found.append((path.relative_to(SOURCE).as_posix(), ast.parse(text), len(text.splitlines())))
    return found


def _package(module: str) -> str:
    return module.split("/")[0].removesuffix(".py")


def test_every_package_has_a_layer():
    packages = {_package(name) for name, _, _ in _modules()} - {"__init__", "__main__"}
    assert packages <= set(LAYER_OF), f"no layer for: {sorted(packages - set(LAYER_OF))}"


def test_a_layer_imports_only_the_layers_below_it():
    upward = []
    for name, tree, _ in _modules():
        source = _package(name)
        if source not in LAYER_OF:
            continue  # the top-level package re-exports the public API
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sparsebench."):
                target = node.module.split(".")[1]
                if target != source and LAYER_OF.get(target, -1) >= LAYER_OF[source]:
                    upward.append(f"{name}:{node.lineno} imports {node.module}")
    assert not upward, "\n".join(upward)


def _sizes() -> tuple[set[str], set[str]]:
    modules, functions = set(), set()
    for name, tree, lines in _modules():
        if lines > MAX_MODULE_LINES:
            modules.add(name)
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                    functions.add(f"{name}:{node.name}")
    return modules, functions


@pytest.mark.parametrize("kind", ["modules", "functions"])
def test_sizes_only_shrink(kind):
    modules, functions = _sizes()
    found, listed = (modules, LONG_MODULES) if kind == "modules" else (functions, LONG_FUNCTIONS)
    assert not found - listed, f"over the limit: {sorted(found - listed)}"
    assert not listed - found, f"within the limit now, strike off: {sorted(listed - found)}"


def test_only_train_reaches_into_a_trainer():
    """The trainer calls its method's hooks and its execution in the one order that is
    right; code outside `train/` that called them itself could get that order wrong."""
    pattern = re.compile(r"\btrainer\.(method|execution)\b")
    reaching = [
        f"{path.relative_to(SOURCE)}:{number}: {line.strip()}"
        for path in sorted(SOURCE.rglob("*.py"))
        if path.relative_to(SOURCE).parts[0] != "train"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert not reaching, "\n".join(reaching)
