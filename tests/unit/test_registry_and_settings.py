"""The topic registry covers DESIGN.md's topics; settings refuse signing keys anyone can know."""

from pathlib import Path

import pytest

from soma.errors import ConfigError
from soma.secrets import ensure_secret
from soma.settings import DEV_JWT_SECRET, PUBLIC_SECRETS, Settings
from topics.registry import ALL_TOPICS, TopicRegistry, UnknownTopic

DESIGN_TOPICS = {
    "conversation.inbound",
    "conversation.outbound",
    "tool.requests",
    "tool.results",
    "memory.requests",
    "memory.outbox",
    "memory.wal",
    "agent.audit.v1",
    "agent.runs.v1",
    "agent.steps.v1",
    "agent.tools.v1",
    "agent.benchmarks.v1",
}


def test_every_design_topic_is_registered_with_its_dlq() -> None:
    names = {spec.name for spec in ALL_TOPICS}
    assert names >= DESIGN_TOPICS
    for name in DESIGN_TOPICS:
        assert f"{name}.dlq" in names


def test_wal_is_compacted_and_deleted() -> None:
    assert TopicRegistry().get("memory.wal").cleanup_policy == "compact,delete"


def test_prefix_applies_to_topic_and_its_dlq() -> None:
    spec = TopicRegistry("x.").get("tool.results")
    assert spec.name == "x.tool.results" and spec.dlq == "x.tool.results.dlq"


def test_unknown_topic_raises() -> None:
    with pytest.raises(UnknownTopic):
        TopicRegistry().get("nope")


def test_public_topics_exclude_internal_ones() -> None:
    public = set(TopicRegistry().public())
    assert "conversation.inbound" in public
    assert not public & {"memory.wal", "memory.outbox", "agent.audit.v1", "memory.requests"}


@pytest.mark.parametrize("mode", ["dev", "prod"])
def test_a_key_published_in_the_source_is_refused_in_every_mode(mode: str) -> None:
    for public in PUBLIC_SECRETS:
        with pytest.raises(ConfigError, match="published"):
            Settings(mode=mode, jwt_keys={"dev": public}).check_secrets()


def test_short_keys_are_refused() -> None:
    with pytest.raises(ConfigError, match="shorter"):
        Settings(jwt_keys={"k1": "x" * 31}, jwt_active_kid="k1").check_secrets()
    Settings(mode="prod", jwt_keys={"k1": "x" * 40}, jwt_active_kid="k1").check_secrets()


def test_dev_mode_uses_the_per_install_key(tmp_path: Path) -> None:
    # No key in the code: without SOMA_JWT_KEYS and before `make up` there is none at all.
    with pytest.raises(ConfigError, match="make up"):
        Settings(stack_dir=tmp_path).check_secrets()
    key = ensure_secret(tmp_path, DEV_JWT_SECRET)
    settings = Settings(stack_dir=tmp_path)
    settings.check_secrets()
    assert settings.jwt_keys == {"dev": key} and len(key) >= 32
    assert (tmp_path / "secrets" / DEV_JWT_SECRET).stat().st_mode & 0o777 == 0o600
    # Another install has another key, and prod mode never falls back to a file.
    assert ensure_secret(tmp_path / "other", DEV_JWT_SECRET) != key
    assert Settings(stack_dir=tmp_path, mode="prod").jwt_keys == {}


def test_active_kid_must_exist() -> None:
    with pytest.raises(ConfigError, match="ACTIVE_KID"):
        Settings(jwt_keys={"a": "x" * 40}, jwt_active_kid="b").check_secrets()


def test_keys_parse_from_json_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOMA_JWT_KEYS", '{"k2": "secret-two"}')
    monkeypatch.setenv("SOMA_JWT_ACTIVE_KID", "k2")
    settings = Settings()
    assert settings.jwt_keys == {"k2": "secret-two"}


def test_topic_reference_doc_lists_every_registered_topic() -> None:
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "reference" / "topics.md").read_text()
    for spec in ALL_TOPICS:
        assert f"| `{spec.name}` | {spec.partitions} |" in doc, spec.name
