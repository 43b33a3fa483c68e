"""The package's shape: an acyclic import graph, a leaf config module, stages that are wiring only,
one trainer core, and library code that raises instead of exiting."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "tvts"
CLI_MODULES = {"tvts.cli", "tvts.launch"}   # command lines besides tvts.stages.*


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def resolve(name: str) -> str | None:
    """The module an import of `name` executes last (`tvts.a.b` a module, else its package `tvts.a`)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> set[str]:
    """Every tvts module `module` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names]   # a submodule, or a name in node.module
        else:
            continue
        found |= {r for n in names if n.startswith("tvts") and (r := resolve(n)) and r != module}
    return found


GRAPH = {m: imports_of(m) for m in MODULES}


def find_cycle() -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(GRAPH[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (cycle := visit(n)):
                return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(GRAPH):
        if m not in state and (cycle := visit(m)):
            return cycle
    return None


def test_import_graph_has_no_cycle_counting_imports_inside_functions():
    assert find_cycle() is None, " -> ".join(find_cycle())


def test_the_graph_sees_deferred_imports():
    """The check above is only as good as its parser: a deferred import must be an edge."""
    assert "tvts.data.formats" in GRAPH["tvts.eval.config"]   # imported inside load_dataset_split


def test_config_is_a_leaf():
    assert GRAPH["tvts.config"] == set()


def test_no_stage_imports_another_stage():
    helpers = {"tvts.stages.common", "tvts.stages.eval_common"}   # command-line plumbing, not stages
    for m, deps in GRAPH.items():
        if m.startswith("tvts.stages."):
            assert not {d for d in deps if d.startswith("tvts.stages.")} - helpers - {m}, m
    assert not any(d.startswith("tvts.stages") for m, deps in GRAPH.items() if not m.startswith("tvts.stages")
                   and m not in CLI_MODULES for d in deps)


def test_one_trainer_core():
    text = {m: p.read_text() for m, p in MODULES.items()}
    assert [m for m, t in text.items() if re.search(r"^PREEMPTED = ", t, re.M)] == ["tvts.train.preemption"]
    assert [m for m, t in text.items() if "def optimizer_step(" in t] == ["tvts.train.trainer"]
    assert [m for m, t in text.items() if "class Preemption" in t] == ["tvts.train.preemption"]
    assert [m for m, t in text.items() if "def build_scheduler(" in t and "LambdaLR(" in t] == ["tvts.train.schedule"]
    assert [m for m, t in text.items() if "def newest_valid(" in t or "class CheckpointManager" in t] \
        == ["tvts.train.checkpoint"]


def test_only_the_distributed_module_touches_torch_distributed():
    pattern = re.compile(r"torch\.distributed|DistributedDataParallel|import torch\.nn\.parallel")
    assert [m for m, p in MODULES.items() if pattern.search(p.read_text())] == ["tvts.train.distributed"]


def test_library_code_raises_instead_of_exiting():
    def exits(path: Path) -> list[int]:
        return [n.lineno for n in ast.walk(ast.parse(path.read_text()))
                if (isinstance(n, ast.Raise) and n.exc is not None and "SystemExit" in ast.unparse(n.exc))
                or (isinstance(n, ast.Call) and ast.unparse(n.func) in ("sys.exit", "exit"))]
    library = {m: p for m, p in MODULES.items() if not m.startswith("tvts.stages") and m not in CLI_MODULES}
    assert {m: exits(p) for m, p in library.items() if exits(p)} == {}


@pytest.mark.parametrize("entry", ["tvts.models.load", "tvts.stages.eval_linear", "tvts.stages.eval_zeroshot_v2v"])
def test_loading_a_model_for_evaluation_does_not_import_the_training_loop(entry):
    code = (f"import sys, {entry}; print(sorted(m for m in sys.modules if m in "
            "('tvts.train.trainer', 'tvts.train.pretrain', 'tvts.train.pretext', 'tvts.train.data')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_the_workflow_config_check_loads_no_torch():
    """Snakemake checks the config at every parse (even a no-op `-n`): that must not import torch,
    timm, transformers or mlflow, which cost seconds."""
    code = ("import sys, tvts.workflow_config, tvts.grid, tvts.tracking; "
            "print(sorted(m for m in ('torch', 'timm', 'transformers', 'mlflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_test_only_dependencies_are_an_extra():
    """`make run` and a cluster install get the package without pytest; `make test` adds `.[test]`."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = [re.split(r"[=<>\[ ]", d)[0] for d in project["dependencies"]]
    assert "pytest" not in names and any(d.startswith("pytest==") for d in project["optional-dependencies"]["test"])
    makefile = (ROOT / "Makefile").read_text()
    assert '".[test]"' in makefile and not re.search(r"(?m)^run:.*TEST_STAMP", makefile)
    assert not [p for p in (ROOT / "tvts").rglob("*.py") if re.search(r"(?m)^\s*import pytest", p.read_text())]
