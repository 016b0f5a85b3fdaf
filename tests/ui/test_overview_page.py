"""The plane overview page in headless Chromium against a running gateway and a group that really
lags: its numbers are shown, the history chart draws, and it refreshes by itself."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from gateway.auth import ADMIN_ROLE, issue_token
from soma.lag_exporter import plane_groups
from soma.settings import Settings
from tests.conftest import TEST_JWT_KEYS
from tests.support.flows import create_topics, delete_test_topics, isolated_settings
from tests.support.processes import running_gateway

pytestmark = pytest.mark.ui

SOURCE = "conversation.inbound"


def produce(settings: Settings, topic: str, partition: int, keys: list[str], age_s: float) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    stamp = int((time.time() - age_s) * 1000)
    for key in keys:
        producer.produce(topic, b"{}", key=key, partition=partition, timestamp=stamp)
    assert producer.flush(15) == 0


@pytest.fixture
def lagging(tmp_path: Path) -> Iterator[tuple[str, Settings, str, str]]:
    """A gateway, and a plane group with records it has not committed: (url, settings, group,
    topic). The group is the session-counts flow's, under a fresh prefix; no worker runs."""
    settings = isolated_settings(stack_dir=tmp_path, jwt_keys=TEST_JWT_KEYS, jwt_active_kid="k2")
    create_topics(settings, (SOURCE, f"{SOURCE}.dlq"))
    topic = f"{settings.topic_prefix}{SOURCE}"
    group = next(g.group for g in plane_groups(settings) if topic in g.topics)
    produce(settings, topic, 0, [f"acme/s{i}" for i in range(5)] + ["globex/s1"], age_s=30)
    produce(settings, topic, 3, ["acme/s9"] * 4, age_s=30)
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group})
    consumer.commit(
        offsets=[TopicPartition(topic, 0, 2), TopicPartition(topic, 3, 4)], asynchronous=False
    )
    consumer.close()
    env = {
        "SOMA_TOPIC_PREFIX": settings.topic_prefix,
        "SOMA_STACK_DIR": str(tmp_path),
        "SOMA_JWT_KEYS": json.dumps(TEST_JWT_KEYS),
        "SOMA_JWT_ACTIVE_KID": "k2",
    }
    try:
        with running_gateway(env, tmp_path / "gateway.log") as base:
            yield base, settings, group, topic
    finally:
        delete_test_topics(settings)


def test_lag_is_shown_charted_and_refreshed(
    lagging: tuple[str, Settings, str, str], browser: webdriver.Chrome, artifacts: Path
) -> None:
    base, settings, group, topic = lagging
    token = issue_token(settings, "acme", subject="ops@acme", roles=(ADMIN_ROLE,))
    browser.get(f"{base}/admin/overview")
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.ID, "use-token").click()

    def cells(partition: int) -> list[str]:
        selector = f'#lag-body tr[data-key="{group}|{topic}|{partition}"] td'
        return [td.text for td in browser.find_elements(By.CSS_SELECTOR, selector)]

    # group, topic, partition, committed, end, lag, lag seconds
    WebDriverWait(browser, 30).until(lambda b: cells(0))
    row = cells(0)
    assert row[:6] == [group, topic, "0", "2", "6", "4"]
    assert 30 <= float(row[6]) < 90  # the records were stamped 30 s ago
    assert cells(3) == []  # caught up: "only lagging partitions" hides it
    tenants = browser.find_element(By.ID, "tenant-body").text
    assert "acme" in tenants and "globex" not in tenants  # a tenant admin sees its own tenant
    dead_letters = browser.find_element(By.ID, "dlq-body").text
    assert f"{topic}.dlq 0" in dead_letters

    # It refreshes by itself: more records arrive, the number changes without a reload.
    produce(settings, topic, 0, ["acme/s20"] * 3, age_s=0)
    WebDriverWait(browser, 30, poll_frequency=0.5).until(lambda b: cells(0)[5:6] == ["7"])
    assert cells(0)[3:5] == ["2", "9"]

    # The chart drew the group's history: a line of at least three reads. (Every group reading
    # the topic lags, and gets its own line: write-through's never committed at all.)
    def drawn() -> tuple[int, str] | None:
        """The group's line (points, coordinates), read in one go: the page redraws it."""
        found = browser.execute_script(
            "const l = [...document.querySelectorAll('#lag-chart polyline')]"
            ".find((e) => e.dataset.series === arguments[0]);"
            "return l ? [Number(l.dataset.points), l.getAttribute('points')] : null;",
            f"{group} / {topic}",
        )
        return (int(found[0]), str(found[1])) if found else None

    line = WebDriverWait(browser, 30).until(lambda b: (d := drawn()) and d[0] >= 3 and d)
    assert len(line[1].split()) == line[0]
    assert int(browser.find_element(By.ID, "lag-body").get_attribute("data-loads") or 0) >= 2
    browser.set_window_size(1400, 1400)  # the whole page
    browser.save_screenshot(str(artifacts / "plane-overview.png"))
    assert (artifacts / "plane-overview.png").stat().st_size > 0
