"""Dashboards query only metrics that soma/metrics.py defines (no panel on a missing metric)."""

import json
import re
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

import soma.metrics  # noqa: F401  (registers every metric)

ROOT = Path(__file__).parents[2]
_SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")


def _defined_metric_names() -> set[str]:
    return {c._name for c in REGISTRY._collector_to_names if hasattr(c, "_name")}  # type: ignore[attr-defined]


def _base_name(name: str) -> str:
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _exprs(dashboard: dict) -> list[str]:  # type: ignore[type-arg]
    return [t["expr"] for p in dashboard.get("panels", []) for t in p.get("targets", [])]


@pytest.mark.parametrize("path", sorted((ROOT / "dashboards").glob("*.json")), ids=lambda p: p.name)
def test_dashboard_metrics_exist(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    exprs = _exprs(dashboard)
    assert exprs, f"{path.name} has no queries"
    defined = _defined_metric_names()
    for expr in exprs:
        for name in re.findall(r"\bsoma_[a-z0-9_]+", expr):
            assert _base_name(name) in defined, f"{path.name}: {name} is not in soma/metrics.py"
