"""DESIGN.md's dependency rules hold: checked on the import statements of every module."""

import ast
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
    "state": {"gateway", "fastapi", "flows"},
}


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
