"""DESIGN.md's dependency rules hold: checked on the import statements of every module."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]

FORBIDDEN = {
    "processors": {
        "flows",
        "state",
        "gateway",
        "topics",
        "confluent_kafka",
        "aiokafka",
        "faust",
        "bytewax",
        "redis",
        "httpx",
        "psycopg",
        "fastapi",
        "requests",
        "asyncpg",
    },
    "gateway": {"flows"},
    "flows": {"gateway"},
    "state": {"gateway", "fastapi"},
}

# state/ derives its pages from the flow specs, and may read nothing else of flows/.
ALLOWED_FLOWS_IN_STATE = {"flows.catalog", "flows.spec"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_respects_dependency_rules(package: str) -> None:
    modules = list((ROOT / package).rglob("*.py"))
    assert modules, f"{package}/ has no modules"
    for module in modules:
        bad = _imports(module) & FORBIDDEN[package]
        assert not bad, f"{module.relative_to(ROOT)} imports {sorted(bad)}"


def _full_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_state_reads_only_flow_specs() -> None:
    for module in (ROOT / "state").rglob("*.py"):
        used = {name for name in _full_imports(module) if name.split(".")[0] == "flows"}
        assert used <= ALLOWED_FLOWS_IN_STATE, f"{module.relative_to(ROOT)} imports {used}"


def test_flow_catalog_imports_no_engine() -> None:
    """The gateway reads the specs: importing them must not pull in Faust or Bytewax."""
    probe = (
        "import sys, flows.catalog as c; c.flow_specs(); "
        "print(sorted(m for m in ('faust', 'bytewax', 'aiokafka') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
