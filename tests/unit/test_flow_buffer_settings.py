"""A flow worker's Faust app takes its buffer bounds from the settings, not Faust's defaults."""

from __future__ import annotations

from pathlib import Path

from flows.kit.worker import WorkerPlace, create_app
from soma.settings import Settings


def test_faust_buffers_are_the_settings_bounds(tmp_path: Path) -> None:
    settings = Settings(
        stack_dir=tmp_path, flow_stream_buffer_max=77, flow_fetch_max_bytes=300 * 1024
    )
    app = create_app(settings, WorkerPlace(app_id="bq-unit", port=6999, data_dir=tmp_path))
    assert app.conf.stream_buffer_maxsize == 77
    assert app.conf.consumer_max_fetch_size == 300 * 1024


def test_default_bounds_are_explicit_and_hold_the_largest_record() -> None:
    settings = Settings()
    # A record up to the broker's 1 MiB default fits one fetch; a 4 MiB dead letter fits the
    # producer queue (it would otherwise be refused forever).
    assert settings.flow_fetch_max_bytes >= 1024 * 1024
    assert settings.producer_queue_max_kbytes * 1024 > 4 * 1024 * 1024 + 65536
    assert settings.flow_stream_buffer_max > 0 and settings.producer_queue_max_messages > 0
