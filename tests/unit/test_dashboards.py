"""Dashboards are generated from soma/dashboards.py and query only metrics of soma/metrics.py."""

import json
import re
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

import soma.metrics
from soma.dashboards import BOARDS, DASHBOARDS_DIR, Board, all_queries, render

ROOT = Path(__file__).parents[2]
_SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")


def defined_metric_names() -> set[str]:
    """Every metric family name of soma/metrics.py (default and job registries)."""
    names = set()
    for registry in (REGISTRY, soma.metrics.JOB_REGISTRY):
        names |= {c._name for c in registry._collector_to_names if hasattr(c, "_name")}  # type: ignore[attr-defined]
    return {name for name in names if name.startswith("soma_")}  # not Bytewax's own


def base_name(name: str) -> str:
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


@pytest.mark.parametrize("board", BOARDS, ids=lambda b: b.uid)
def test_committed_json_is_what_the_code_generates(board: Board) -> None:
    path = DASHBOARDS_DIR / f"{board.uid.removeprefix('soma-')}.json"
    assert path.read_text() == render(board), f"run `soma plane dashboards`: {path.name} is stale"


def test_every_dashboard_file_comes_from_code() -> None:
    generated = {f"{b.uid.removeprefix('soma-')}.json" for b in BOARDS}
    assert {p.name for p in DASHBOARDS_DIR.glob("*.json")} == generated


@pytest.mark.parametrize("path", sorted((ROOT / "dashboards").glob("*.json")), ids=lambda p: p.name)
def test_dashboard_is_importable_with_a_datasource_variable(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    variables = dashboard["templating"]["list"]
    assert {"name": "datasource", "type": "datasource", "query": "prometheus"}.items() <= (
        variables[0].items()
    )
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert panels, f"{path.name} has no panels"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and 0 not in ids
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        assert all(t["refId"] and t["expr"] for t in panel["targets"]), panel["title"]


def test_dashboard_queries_use_only_defined_metrics() -> None:
    defined = defined_metric_names()
    queries = all_queries()
    assert len(queries) > 20
    for uid, title, query in queries:
        names = re.findall(r"\bsoma_[a-z0-9_]+", query.expr)
        assert names, f"{uid} / {title} queries no soma metric"
        for name in names:
            assert base_name(name) in defined, f"{uid} / {title}: {name} is not in soma/metrics.py"
