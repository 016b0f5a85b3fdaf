"""/docs works offline: headless Chromium, with every host but loopback unresolvable, lists the
gateway's operations, and every resource the page loaded came from the gateway itself."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import TEST_JWT_KEYS
from tests.support.processes import running_gateway

pytestmark = pytest.mark.ui


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[str]:
    env = {"SOMA_JWT_KEYS": json.dumps(TEST_JWT_KEYS), "SOMA_JWT_ACTIVE_KID": "k2"}
    with running_gateway(env, tmp_path / "gateway.log") as base:
        yield base


def test_docs_list_every_operation_without_internet(
    gateway: str, browser: webdriver.Chrome
) -> None:
    paths = httpx.get(f"{gateway}/openapi.json", timeout=5).json()["paths"]
    operations = {(method.upper(), path) for path, ops in paths.items() for method in ops}

    browser.get(f"{gateway}/docs")
    WebDriverWait(browser, 30).until(
        lambda b: len(b.find_elements(By.CSS_SELECTOR, ".opblock")) >= len(operations)
    )
    shown = {
        (
            block.find_element(By.CSS_SELECTOR, ".opblock-summary-method").text.strip(),
            block.find_element(By.CSS_SELECTOR, ".opblock-summary-path").get_attribute("data-path"),
        )
        for block in browser.find_elements(By.CSS_SELECTOR, ".opblock")
    }
    assert operations <= shown, operations - shown
    assert "SomaStream gateway" in browser.find_element(By.CSS_SELECTOR, ".title").text
    loaded = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert loaded and all(url.startswith(gateway) for url in loaded), loaded
