"""The dead-letter page in headless Chromium against a running gateway and flows: a poison
record appears, is inspected, is replayed once its cause is fixed, and leaves the open list."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from gateway.auth import ADMIN_ROLE, issue_token
from processors.partitioning import partition_for
from soma.settings import Settings
from tests.conftest import TEST_JWT_KEYS
from tests.integration.test_flow_dead_letters import RawProducer, valid_value
from tests.support.flows import (
    WorkerProcess,
    create_topics,
    isolated_settings,
    running_flows,
    wait_until,
)
from tests.support.processes import running_gateway
from topics.registry import dead_letter_topics

pytestmark = pytest.mark.ui

TOPICS = (
    "conversation.inbound",
    *dead_letter_topics(),
    "dlq.actions",
    "dlq.invalid",
    "agent.audit.v1",
)


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[tuple[str, Settings, WorkerProcess]]:
    settings = isolated_settings(stack_dir=tmp_path, jwt_keys=TEST_JWT_KEYS, jwt_active_kid="k2")
    create_topics(settings, TOPICS)
    env = {
        "SOMA_TOPIC_PREFIX": settings.topic_prefix,
        "SOMA_STACK_DIR": str(tmp_path),
        "SOMA_JWT_KEYS": json.dumps(TEST_JWT_KEYS),
        "SOMA_JWT_ACTIVE_KID": "k2",
    }
    with (
        running_flows(settings, ("session-counts", "dlq-index"), tmp_path) as workers,
        running_gateway(env, tmp_path / "gateway.log") as base,
    ):
        yield base, settings, workers["session-counts"]


def test_a_poison_record_is_inspected_replayed_and_leaves_the_open_list(
    plane: tuple[str, Settings, WorkerProcess], browser: webdriver.Chrome, artifacts: Path
) -> None:
    base, settings, counts = plane
    # The poison: a valid event from a producer with the wrong partitioner (since fixed).
    wrong = (partition_for(b"acme/s9", 6) + 1) % 6
    RawProducer(settings).send(b"acme/s9", valid_value("acme", "s9"), partition=wrong)
    token = issue_token(settings, "acme", subject="ops@acme", roles=(ADMIN_ROLE,))

    browser.get(f"{base}/admin/dlq")
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.ID, "use-token").click()  # loads the list once
    WebDriverWait(browser, 30).until(
        lambda b: b.find_element(By.ID, "entries").get_attribute("data-loads") == "1"
    )

    def rows() -> list[WebElement]:
        """Reload the list and return its rows once the reload finished."""
        body = browser.find_element(By.ID, "entries")
        before = int(body.get_attribute("data-loads") or 0)
        browser.find_element(By.ID, "refresh").click()
        WebDriverWait(browser, 30).until(
            lambda b: int(body.get_attribute("data-loads") or 0) > before
        )
        return browser.find_elements(By.CSS_SELECTOR, "#entries tr")

    listed = WebDriverWait(browser, 60, poll_frequency=1).until(lambda b: rows())
    assert len(listed) == 1
    cells = [td.text for td in listed[0].find_elements(By.TAG_NAME, "td")]
    assert cells[1:4] == ["acme", f"{settings.topic_prefix}conversation.inbound", "wrong_partition"]
    assert cells[5] == "open"

    listed[0].find_element(By.CLASS_NAME, "inspect").click()
    WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "detail").is_displayed())
    assert '"session_id": "s9"' in browser.find_element(By.ID, "d-payload").text
    assert "murmur2" in browser.find_element(By.ID, "d-error").text
    assert browser.find_element(By.ID, "d-key").text == "acme/s9"
    browser.save_screenshot(str(artifacts / "1-inspected.png"))

    browser.find_element(By.ID, "replay").click()
    WebDriverWait(browser, 30).until(lambda b: "Replayed" in b.find_element(By.ID, "message").text)
    WebDriverWait(browser, 60, poll_frequency=1).until(lambda b: not rows())
    assert browser.find_element(By.ID, "message").text == "0 dead letter(s)"
    browser.save_screenshot(str(artifacts / "2-open-list-empty.png"))

    # The replayed record reached its flow: the count the poison never got.
    wait_until(
        lambda: counts.get("/state/session-counts/acme%2Fs9").json().get("count") == 1,
        timeout_s=60,
        what="the replayed record counted",
    )
    assert (artifacts / "1-inspected.png").stat().st_size > 0
