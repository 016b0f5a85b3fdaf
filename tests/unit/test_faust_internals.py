"""faust-streaming is pinned, and the upstream code our Faust internals depend on is unchanged.

If this fails after an upgrade: read each changed upstream function, adapt
flows/kit/faust_internals.py (its docstring says what each override relies on), then update
the fingerprints below and FAUST_VERSION.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import re
from pathlib import Path

import faust
import pytest
from faust import streams

from flows.kit.faust_internals import FAUST_VERSION, UPSTREAM, DurableTable

FINGERPRINTS = {
    "faust.tables.base:Collection.send_changelog": "3dd3884e1b5fc0e1",
    "faust.tables.table:Table.on_key_set": "a370e35ca55c2c7e",
    "faust.tables.table:Table.on_key_del": "4f2900b2f9d24a08",
    "faust.tables.base:Collection.partition_for_key": "3b2291811b8dd791",
    "faust.tables.recovery:Recovery.on_recovery_completed": "6ef567acf072e46d",
    "faust.tables.manager:TableManager.recovery": "f0bf5de78b4c3d23",
    "faust.streams:Stream.take_events": "607d48aead118ba8",
    "faust.types.tuples:Message.ack": "4751b72c4ed84153",
    "faust.transport.consumer:Consumer.ack": "5fcf41cf45153475",
    "faust.transport.consumer:Consumer.perform_seek": "0e8c130ff4b0afd8",
    "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread.call_thread": "479edda75b54734b",
    "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread._commit": "932852ce7a23f658",
    "faust.stores.rocksdb:Store._set": "4227e561e288d941",
    "faust.stores.rocksdb:Store._db_for_partition": "cb7e67d5f9efc4bc",
    "faust.stores.rocksdb:Store._visible_items": "545dc16a2b25e4a4",
    "faust.channels:Channel.put": "81477c39c70becce",
    "mode.utils.queues:FlowControlQueue.put_nowait_enhanced": "f1839f43dda3d2cf",
    "mode.utils.queues:FlowControlQueue.force_put_nowait": "e029f3d278247909",
}


def _resolve(ref: str) -> object:
    module, _, path = ref.partition(":")
    obj: object = importlib.import_module(module)
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj.fget if isinstance(obj, property) else obj


def test_the_pinned_version_is_installed_and_pinned_in_pyproject() -> None:
    assert faust.__version__ == FAUST_VERSION
    pyproject = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert re.search(rf'"faust-streaming=={re.escape(FAUST_VERSION)}"', pyproject)


def test_every_upstream_dependency_is_fingerprinted() -> None:
    assert set(FINGERPRINTS) == set(UPSTREAM)


@pytest.mark.parametrize("ref", sorted(FINGERPRINTS))
def test_upstream_code_is_what_the_internals_were_written_against(ref: str) -> None:
    source = inspect.getsource(_resolve(ref))  # type: ignore[arg-type]
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    assert digest == FINGERPRINTS[ref], f"{ref} changed upstream: re-read it (see module doc)"


def test_private_names_the_internals_use_still_exist() -> None:
    assert hasattr(streams, "_current_event")
    # on_key_set/on_key_del reach the changelog only through send_changelog, which the
    # durable table wraps: upstream TTL bookkeeping of windowed tables stays untouched.
    for method in (faust.Table.on_key_set, faust.Table.on_key_del):
        assert "self.send_changelog(" in inspect.getsource(method)
    assert "_maybe_set_key_ttl" in inspect.getsource(faust.Table.on_key_set)
    assert DurableTable.on_key_set is faust.Table.on_key_set
