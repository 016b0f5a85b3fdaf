"""Alert rules are generated from soma/alerts.py, name only defined metrics and are all tested."""

import re
from pathlib import Path

import yaml

from soma.alerts import ALERTS, render_rules
from tests.unit.test_dashboards import base_name, defined_metric_names

RULES_DIR = Path(__file__).parents[2] / "infra" / "prometheus"


def test_committed_rules_are_what_the_code_generates() -> None:
    committed = (RULES_DIR / "alerts.yml").read_text()
    assert committed == render_rules(), "run `soma plane alert-rules > infra/prometheus/alerts.yml`"


def test_rules_parse_and_name_only_defined_metrics() -> None:
    rules = yaml.safe_load(render_rules())["groups"][0]["rules"]
    assert [r["alert"] for r in rules] == [a.name for a in ALERTS]
    defined = defined_metric_names()
    for rule in rules:
        assert rule["labels"]["severity"] in ("warning", "critical")
        for name in re.findall(r"\bsoma_[a-z0-9_]+", rule["expr"]):
            assert base_name(name) in defined, f"{rule['alert']}: {name} is not in soma/metrics.py"


def test_every_alert_has_a_promtool_test() -> None:
    tests = yaml.safe_load((RULES_DIR / "alerts_test.yml").read_text())["tests"]
    tested = {case["alertname"] for t in tests for case in t["alert_rule_test"]}
    firing = {
        case["alertname"] for t in tests for case in t["alert_rule_test"] if case["exp_alerts"]
    }
    names = {a.name for a in ALERTS}
    assert tested == names
    assert firing == names, f"never shown firing: {sorted(names - firing)}"


def test_upstream_wal_lag_thresholds() -> None:
    by_name = {a.name: a for a in ALERTS}
    assert by_name["SomaWALLagWarning"].conditions[0].threshold == 10
    assert by_name["SomaWALLagCritical"].conditions[0].threshold == 30
