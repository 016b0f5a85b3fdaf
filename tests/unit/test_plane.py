"""What the plane runs derives from the flow specs: processes, ports, targets, docs, status."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flows.catalog import flow_spec, flow_specs, flow_table_markdown
from soma.plane import PORTS_PER_FLOW, plane_processes, prometheus_config, scrape_targets
from soma.plane_status import describe
from soma.settings import Settings
from soma.supervise import render_config
from state.catalog import page_routes

ROOT = Path(__file__).parents[2]


def test_every_flow_runs_its_workers_on_its_own_ports() -> None:
    settings = Settings(worker_base_port=7000, flow_workers={"session-counts": 3})
    processes = plane_processes(settings)
    assert processes[0].name == "gateway"
    flows = [p for p in processes if p.flow]
    assert {p.flow for p in flows} == {spec.name for spec in flow_specs()}
    counts = [p for p in flows if p.flow == "session-counts"]
    index = [s.name for s in flow_specs()].index("session-counts")
    assert [p.port for p in counts] == [7000 + PORTS_PER_FLOW * index + i for i in range(3)]
    assert [p.name for p in counts] == [f"flow-session-counts-{i}" for i in (1, 2, 3)]
    assert all(p.app_id == "soma-session-counts" for p in counts)
    assert counts[1].args[-2:] == ("--port", str(counts[1].port))
    assert len({p.port for p in flows}) == len(flows)


def test_worker_counts_are_bounded() -> None:
    with pytest.raises(ValueError):
        plane_processes(Settings(flow_workers={"session-counts": PORTS_PER_FLOW + 1}))


def test_scrape_targets_and_the_checked_in_prometheus_config_follow_the_specs() -> None:
    # The checked-in config is for default ports, whatever stack this test runs beside.
    fields = ("gateway_host", "gateway_port", "worker_host", "worker_base_port", "topic_prefix")
    settings = Settings(
        **{name: Settings.model_fields[name].default for name in fields}, flow_workers={}
    )
    targets = scrape_targets(settings)
    assert targets["soma-gateway"] == [f"127.0.0.1:{settings.gateway_port}"]
    for spec in flow_specs():
        assert f"soma-flow-{spec.name}" in targets
    checked_in = (ROOT / "infra" / "prometheus" / "prometheus.yml").read_text()
    expected = prometheus_config(settings, rule_files=("alerts.yml",))
    assert checked_in == expected, "run `soma plane prometheus-config --rule-file alerts.yml`"


def test_the_docs_flow_table_is_the_specs() -> None:
    docs = (ROOT / "docs" / "flows.md").read_text()
    table = re.search(r"<!-- flows:begin -->\n(.*?)<!-- flows:end -->", docs, re.S)
    assert table is not None, "docs/flows.md lost its generated flow table"
    assert table.group(1) == flow_table_markdown(), "run `soma plane flow-table`"


def test_state_routes_come_from_the_specs() -> None:
    routes = page_routes()
    assert routes["session-counts"].flow is flow_spec("session-counts")
    assert routes["session-events"].page is routes["session-counts"].page  # the upstream alias


def test_supervisor_config_restarts_crashes_but_not_halts(tmp_path: Path) -> None:
    settings = Settings(stack_dir=tmp_path)
    config = render_config(settings, plane_processes(settings))
    programs = re.findall(r"^\[program:(.+)\]$", config, re.M)
    assert programs == [p.name for p in plane_processes(settings)]
    assert config.count("autorestart=unexpected") == len(programs)
    assert config.count("exitcodes=0,78") == len(programs)  # 78: halted by the DLQ limit
    assert f"stdout_logfile={tmp_path}/logs/gateway.log" in config


@pytest.mark.parametrize(
    ("statename", "starts", "last", "halted", "state", "restarts", "code"),
    [
        ("RUNNING", 1, None, None, "running", 0, None),
        ("RUNNING", 3, "terminated by SIGKILL", None, "running", 2, "SIGKILL"),
        ("STARTING", 2, "exit status 70", None, "restarting", 1, "70"),
        ("BACKOFF", 4, "exit status 2", None, "restarting", 3, "2"),
        ("EXITED", 1, "exit status 78", "3 consecutive dead letters", "halted", 0, "78"),
        ("EXITED", 1, "exit status 0", None, "stopped", 0, "0"),
        ("FATAL", 9, "exit status 1", None, "crashed", 8, "1"),
        ("STOPPED", 1, None, None, "stopped", 0, None),
    ],
)
def test_status_lines_tell_the_truth(
    statename: str,
    starts: int,
    last: str | None,
    halted: str | None,
    state: str,
    restarts: int,
    code: str | None,
) -> None:
    info = {"statename": statename, "pid": 42, "start": 100, "now": 160, "spawnerr": ""}
    line = describe("flow-x-1", info, starts=starts, last_exit=last, halted_reason=halted)
    assert (line.state, line.restarts, line.last_exit) == (state, restarts, code)
    assert (line.uptime_s == 60) is (statename == "RUNNING")
    if halted:
        assert halted in line.detail


def test_an_unsupervised_process_is_absent() -> None:
    assert describe("gateway", None, starts=0).state == "absent"
