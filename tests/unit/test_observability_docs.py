"""docs/observability.md lists every metric of soma/metrics.py, as `soma plane metrics-table`."""

from pathlib import Path

from soma.metrics_doc import metrics_table_markdown
from tests.unit.test_dashboards import defined_metric_names

DOC = Path(__file__).parents[2] / "docs" / "observability.md"


def test_metrics_table_in_the_docs_is_current() -> None:
    text = DOC.read_text()
    table = text.split("<!-- metrics-table:start -->\n", 1)[1].split("<!-- metrics-table:end -->")[
        0
    ]
    assert table == metrics_table_markdown(), "paste `soma plane metrics-table` into the docs"


def test_every_metric_is_documented() -> None:
    text = DOC.read_text()
    missing = [name for name in defined_metric_names() if f"`{name}" not in text]
    assert not missing
