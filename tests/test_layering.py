"""The library's import order runs one way, with no cycles; workflow scripts call stages only.

errors/logs/registry -> physics -> data -> optics -> models -> solvers -> metrics -> report ->
stages -> cli. Imports are read from the source (ast), inside functions too, so a lazy import
counts. ``solvers`` is the library's one front door to the methods: every ``make_solver`` is
there and no model imports it back; ``data`` reads image files itself (``data.images``), so
calibration (``optics``) builds on data and never the other way round.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from workflow_helpers import REPO

from thincam.codehash import direct_imports, module_file
from thincam.registry import METHODS

SRC = REPO / "src"
LEVELS = {
    "": 0,
    "errors": 0,
    "logs": 0,
    "registry": 0,
    "codehash": 0,
    "physics": 1,
    "data": 2,
    "optics": 3,
    "models": 4,
    "solvers": 5,
    "metrics": 6,
    "report": 7,
    "stages": 8,
    "config_checks": 8,
    "cli": 9,
}


def all_modules() -> list[str]:
    names = []
    for path in sorted((SRC / "thincam").rglob("*.py")):
        parts = list(path.relative_to(SRC / "thincam").with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


def level(module: str) -> int:
    top = module.split(".")[0]
    if top not in LEVELS:
        raise AssertionError(f"{module_file(SRC, module)}: package {top!r} has no place in LEVELS")
    return LEVELS[top]


def upward_imports(src: Path, modules: list[str]) -> list[str]:
    return [
        f"{module_file(src, m).relative_to(src)} imports {module_file(src, d).relative_to(src)}"
        for m in modules
        for d in sorted(direct_imports(src, m))
        if level(d) > level(m)
    ]


def import_cycle(src: Path, modules: list[str]) -> list[str] | None:
    """One cycle of the module import graph (as a list of files), or None."""
    graph = {m: sorted(d for d in direct_imports(src, m) if d != m) for m in modules}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node], _ = 1, stack.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                return [str(module_file(src, m).relative_to(src)) for m in cycle]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        stack.pop()
        return None

    for module in modules:
        if module not in state and (found := visit(module)):
            return found
    return None


def test_every_package_has_a_level():
    for module in all_modules():
        level(module)


def test_no_upward_import():
    assert upward_imports(SRC, all_modules()) == []


def imports_between(src: Path, modules: list[str], lower: str, upper: str) -> list[str]:
    """Every import of package ``upper`` inside package ``lower``, as "file imports file"."""
    return [
        f"{module_file(src, m).relative_to(src)} imports {module_file(src, d).relative_to(src)}"
        for m in modules
        if m.split(".")[0] == lower
        for d in sorted(direct_imports(src, m))
        if d.split(".")[0] == upper
    ]


@pytest.mark.parametrize(("lower", "upper"), [("models", "solvers"), ("data", "optics")])
def test_front_door_rules(lower, upper):
    """No model imports a solver (every method's make_solver is in solvers/) and no data module
    imports optics (image reading is data.images)."""
    assert imports_between(SRC, all_modules(), lower, upper) == []


def test_registry_points_into_solvers_only():
    """Every method's module is under solvers/: the registry has one front door."""
    assert {name: m.module for name, m in METHODS.items() if not m.module.startswith("solvers.")} == {}


def test_no_import_cycle():
    assert import_cycle(SRC, all_modules()) is None


def test_checks_name_the_offending_files(tmp_path):
    """The checks fail, naming both files, on a planted upward import and a planted cycle."""
    package = tmp_path / "thincam"
    (package / "physics").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "physics" / "__init__.py").write_text("")
    (package / "physics" / "ops.py").write_text("def f():\n    from thincam.stages import run\n")
    (package / "stages").mkdir()
    (package / "stages" / "__init__.py").write_text("")
    (package / "stages" / "run.py").write_text("from thincam.physics import ops\n")
    modules = ["", "physics", "physics.ops", "stages", "stages.run"]
    assert upward_imports(tmp_path, modules) == [
        "thincam/physics/ops.py imports thincam/stages/__init__.py",
        "thincam/physics/ops.py imports thincam/stages/run.py",
    ]
    assert import_cycle(tmp_path, modules) == [
        "thincam/physics/ops.py",
        "thincam/stages/run.py",
        "thincam/physics/ops.py",
    ]


@pytest.mark.parametrize("script", sorted((REPO / "workflow_scripts").glob("*.py")), ids=lambda p: p.name)
def test_workflow_scripts_call_one_stage_function(script):
    """A rule's script is a thin call: it imports the job's log context and one stage function."""
    tree = ast.parse(script.read_text())
    imported = [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module.startswith("thincam")]
    stages = [node for node in imported if node.module.startswith("thincam.stages.")]
    assert len(stages) == 1 and len(stages[0].names) == 1, f"{script.name}: {[n.module for n in imported]}"
    assert {node.module for node in imported} <= {"thincam.logs", stages[0].module}


def test_schema_methods_are_the_registry():
    """The config schema types each method's parameters; its method list is the registry's."""
    import yaml

    schema = yaml.safe_load((REPO / "schemas" / "config.schema.yaml").read_text())
    assert set(schema["definitions"]["methods"]["properties"]) == set(METHODS)


PROBE = "__no_such_parameter__"
# Variant keys the workflow turns into inputs before the solver sees the variant.
WORKFLOW_KEYS = {"dmdiff": {"model"}}


def solver_check(method: str, params: dict) -> str:
    """What the method's make_solver says of ``params`` before loading anything ("" if it takes them)."""
    from thincam.errors import BadInputError
    from thincam.solvers import method_solver

    try:
        method_solver(method, None, params, {})
    except BadInputError as err:
        return str(err)
    except (KeyError, AttributeError, TypeError):  # past the parameter check, into loading the models
        return ""
    return ""


@pytest.mark.parametrize("method", sorted(METHODS))
def test_schema_parameters_are_the_solvers(method):
    """Each method's schema entry offers only parameters its solver takes, and requires those it needs."""
    import yaml

    schema = yaml.safe_load((REPO / "schemas" / "config.schema.yaml").read_text())["definitions"]
    variant = schema["methods"]["properties"][method]["additionalProperties"]
    if "$ref" in variant:
        variant = schema[variant["$ref"].rsplit("/", 1)[-1]]
    refusal = solver_check(method, {PROBE: 0})
    accepted = set(ast.literal_eval(refusal[refusal.index("it takes ") + len("it takes ") :]))
    needed = solver_check(method, {})
    required = set(ast.literal_eval(needed[needed.index("[") :])) if needed else set()
    assert set(variant.get("properties", {})) - WORKFLOW_KEYS.get(method, set()) <= accepted
    assert required <= set(variant.get("required", []))


def test_registry_tables_are_paper_tables():
    """A method's ``tables`` name paper tables the report stage writes."""
    from thincam.registry import PAPER_TABLE_ROWS
    from thincam.stages.report import PAPER_TABLES

    assert set(PAPER_TABLE_ROWS) <= set(PAPER_TABLES)
    assert {table for method in METHODS.values() for table in method.tables} == set(PAPER_TABLE_ROWS)
