"""Event contracts: schemas are valid 2020-12, samples behave, and both validators agree."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import fastjsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from schemas import (
    SchemaValidationError,
    UnknownSchema,
    load_schema,
    schema_ids,
    validate,
    validator,
)
from schemas.dialect import FORMATS, is_date_time, is_uuid
from schemas.validation import explain, fast_validator, precise_validator
from soma.errors import SomaError
from topics.registry import ALL_TOPICS

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "schemas" / "samples"
DOCS = ROOT / "docs" / "reference" / "schemas.md"
IDS = schema_ids()

# Keywords whose semantics fastjsonschema (draft 7 at most) does not implement.
NEWER_THAN_DRAFT_7 = {
    "prefixItems", "unevaluatedProperties", "unevaluatedItems", "dependentSchemas",
    "dependentRequired", "$dynamicRef", "$dynamicAnchor", "$recursiveRef", "$recursiveAnchor",
    "$anchor", "minContains", "maxContains", "contentSchema",
}  # fmt: skip
# Draft 7 ignores every sibling of $ref, so only annotations may sit beside one.
ANNOTATIONS = {"description", "title", "default", "examples", "$comment"}


def _samples(kind: str) -> list[tuple[str, Path]]:
    return [(sid, path) for sid in IDS for path in sorted((SAMPLES / sid / kind).glob("*.json"))]


def _sample_id(param: tuple[str, Path]) -> str:
    return f"{param[0]}/{param[1].stem}"


VALID = _samples("valid")
INVALID = _samples("invalid")


def _read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _subschemas(node: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield where, node
        for key, value in node.items():
            yield from _subschemas(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _subschemas(value, f"{where}/{index}")


def _fast_accepts(schema_id: str, event: Any) -> bool:
    try:
        fast_validator(schema_id)(event)
    except fastjsonschema.JsonSchemaValueException:
        return False
    return True


def _precise_accepts(schema_id: str, event: Any) -> bool:
    return precise_validator(schema_id).is_valid(event)


# --- the schema files -------------------------------------------------------------------------


def test_the_package_ships_every_contract() -> None:
    expected = ["conversation_event", "tool_request", "tool_result", "memory_write", "memory_wal",
                "outbox_item", "dlq_envelope", "dlq_action", "agent_run", "agent_step",
                "agent_tool", "agent_audit", "agent_benchmark", "tenant_event_count"]  # fmt: skip
    assert sorted(expected) == IDS


def test_every_topic_schema_exists() -> None:
    referenced = {topic.schema for topic in ALL_TOPICS}
    assert referenced <= set(IDS), referenced - set(IDS)
    for schema_id in referenced:
        assert callable(validator(schema_id))


@pytest.mark.parametrize("schema_id", IDS)
def test_schema_is_valid_draft_2020_12(schema_id: str) -> None:
    schema = load_schema(schema_id)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://somastream.dev/schemas/{schema_id}.json"
    assert schema["title"] and schema["description"]
    assert schema["type"] == "object"


@pytest.mark.parametrize("schema_id", IDS)
def test_objects_with_declared_properties_are_closed(schema_id: str) -> None:
    # An object either declares its properties and refuses others, or is a declared free-form map.
    # (`if`/`then` only add conditions to an object that is closed where it is declared.)
    for where, node in _subschemas(load_schema(schema_id)):
        conditional = where.rsplit("/", 1)[-1] in {"if", "then", "else"}
        if "properties" in node and not where.endswith("/properties") and not conditional:
            assert node.get("additionalProperties") is False, f"{schema_id}{where} is open"


@pytest.mark.parametrize("schema_id", IDS)
def test_schema_stays_within_what_fastjsonschema_implements(schema_id: str) -> None:
    for where, node in _subschemas(load_schema(schema_id)):
        if where.endswith("/properties") or where.endswith("/$defs"):
            continue  # keys here are property or definition names, not keywords
        assert not NEWER_THAN_DRAFT_7 & node.keys(), f"{schema_id}{where}"
        ref = node.get("$ref")
        if ref is not None:
            assert ref.startswith("#/$defs/"), f"{schema_id}{where}: only local refs"
            assert node.keys() - {"$ref"} <= ANNOTATIONS, f"{schema_id}{where}: $ref siblings"
        if isinstance(node.get("format"), str):
            assert node["format"] in FORMATS, f"{schema_id}{where}: format unchecked by both"


def test_shared_definitions_are_identical_everywhere() -> None:
    seen: dict[str, tuple[str, Any]] = {}
    for schema_id in IDS:
        for name, definition in load_schema(schema_id)["$defs"].items():
            first = seen.setdefault(name, (schema_id, definition))
            assert definition == first[1], f"$defs/{name} differs: {schema_id} vs {first[0]}"


def test_outbox_item_embeds_memory_write_exactly() -> None:
    memory_write = load_schema("memory_write")
    embedded = load_schema("outbox_item")["$defs"]["memory_write"]
    for keyword in ("type", "additionalProperties", "required", "properties", "description"):
        assert embedded[keyword] == memory_write[keyword], keyword


def test_tenant_pattern_forbids_the_key_separator() -> None:
    tenant = load_schema("conversation_event")["$defs"]["tenant"]
    assert tenant["pattern"] == "^[A-Za-z0-9_.:-]{1,64}$"
    assert re.fullmatch(tenant["pattern"][1:-1], "acme/eu") is None


def test_conversation_event_matches_the_upstream_contract() -> None:
    schema = load_schema("conversation_event")
    upstream = {"event_id", "session_id", "persona_id", "role", "message", "attachments",
                "metadata", "type", "version", "trace_context"}  # fmt: skip
    assert upstream | {"tenant", "request_id", "occurred_at"} == schema["properties"].keys()
    assert schema["required"] == ["event_id", "session_id", "role", "message", "tenant"]
    assert schema["properties"]["message"]["maxLength"] == 65536
    assert schema["properties"]["attachments"]["default"] == []


# --- samples ----------------------------------------------------------------------------------


@pytest.mark.parametrize("schema_id", IDS)
def test_every_schema_has_enough_samples(schema_id: str) -> None:
    assert len(list((SAMPLES / schema_id / "valid").glob("*.json"))) >= 2
    assert len(list((SAMPLES / schema_id / "invalid").glob("*.json"))) >= 3


def test_samples_belong_to_existing_schemas() -> None:
    assert sorted(p.name for p in SAMPLES.iterdir() if p.is_dir()) == IDS


@pytest.mark.parametrize("case", VALID, ids=_sample_id)
def test_valid_sample_is_accepted_by_both_validators(case: tuple[str, Path]) -> None:
    schema_id, path = case
    event = _read(path)
    validate(schema_id, event)
    assert _fast_accepts(schema_id, event)
    assert explain(schema_id, event) is None


@pytest.mark.parametrize("case", INVALID, ids=_sample_id)
def test_invalid_sample_is_refused_naming_field_and_rule(case: tuple[str, Path]) -> None:
    schema_id, path = case
    sample = _read(path)
    expect = sample["expect"]
    with pytest.raises(SchemaValidationError) as refused:
        validate(schema_id, sample["event"])
    error = refused.value
    assert (error.field, error.rule) == (expect["field"], expect["rule"])
    assert error.schema_id == schema_id
    assert f"field '{expect['field']}'" in error.message
    assert f"(rule: {expect['rule']})" in error.message
    assert error.as_dict() == {
        "schema": schema_id, "field": error.field, "rule": error.rule, "message": error.message,
    }  # fmt: skip


@pytest.mark.parametrize("case", INVALID, ids=_sample_id)
def test_fast_and_precise_validators_agree_on_invalid_samples(case: tuple[str, Path]) -> None:
    schema_id, path = case
    sample = _read(path)
    with pytest.raises(fastjsonschema.JsonSchemaValueException) as fast:
        fast_validator(schema_id)(sample["event"])
    assert not _precise_accepts(schema_id, sample["event"])
    assert fast.value.rule == sample["expect"]["rule"]  # one defect per sample, same rule


# --- the API ----------------------------------------------------------------------------------


def test_unknown_schema_is_a_lookup_error() -> None:
    for bad in ("nope", "../pyproject", "conversation_event.json", ""):
        with pytest.raises(UnknownSchema) as unknown:
            load_schema(bad)
        assert isinstance(unknown.value, LookupError)
        assert isinstance(unknown.value, SomaError)
    with pytest.raises(UnknownSchema):
        validator("nope")


def test_validator_is_compiled_once_per_schema() -> None:
    assert validator("conversation_event") is validator("conversation_event")
    assert validator("conversation_event") is not validator("tool_request")


def test_load_schema_returns_a_copy() -> None:
    load_schema("conversation_event")["properties"].clear()
    assert "message" in load_schema("conversation_event")["properties"]


def test_compiling_leaves_the_schema_untouched() -> None:
    # fastjsonschema rewrites the $refs of the schema it compiles; it must get its own copy.
    before = load_schema("outbox_item")
    fast_validator.cache_clear()
    validator.cache_clear()
    validate("outbox_item", _read(SAMPLES / "outbox_item" / "valid" / "first_failure.json"))
    assert load_schema("outbox_item") == before


def test_a_refusal_only_the_fast_validator_sees_is_still_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Should the validators ever disagree, the fast validator's own error is still a clean 422.
    monkeypatch.setattr("schemas.validation.explain", lambda schema_id, event: None)
    event = _read(SAMPLES / "conversation_event" / "valid" / "minimal.json")
    with pytest.raises(SchemaValidationError) as refused:
        validate("conversation_event", {**event, "attachments": ["a", 1]})
    assert (refused.value.field, refused.value.rule) == ("/attachments/1", "type")
    assert refused.value.message.startswith("field '/attachments/1': must be of type string")


def test_validation_never_fills_in_defaults() -> None:
    event = _read(SAMPLES / "conversation_event" / "valid" / "minimal.json")
    before = json.dumps(event, sort_keys=True)
    validate("conversation_event", event)
    assert json.dumps(event, sort_keys=True) == before  # attachments default [] not inserted


def test_any_mapping_is_accepted() -> None:
    event = _read(SAMPLES / "conversation_event" / "valid" / "minimal.json")
    validate("conversation_event", MappingProxyType(event))
    with pytest.raises(SchemaValidationError) as refused:
        validate("conversation_event", MappingProxyType({**event, "role": "bot"}))
    assert refused.value.field == "/role"


def test_non_object_event_is_refused_at_the_root() -> None:
    with pytest.raises(SchemaValidationError) as refused:
        validate("conversation_event", ["not", "an", "object"])  # type: ignore[arg-type]
    assert (refused.value.field, refused.value.rule) == ("/", "type")


def test_enum_message_lists_the_allowed_values() -> None:
    event = _read(SAMPLES / "conversation_event" / "valid" / "minimal.json")
    with pytest.raises(SchemaValidationError) as refused:
        validate("conversation_event", {**event, "role": "bot"})
    assert refused.value.message == (
        "field '/role': must be one of ['user', 'assistant', 'system'] (rule: enum)"
    )
    assert "bot" not in str(refused.value)  # the offending value is never echoed


def test_first_missing_required_property_is_named() -> None:
    with pytest.raises(SchemaValidationError) as refused:
        validate("conversation_event", {"role": "user"})
    assert (refused.value.field, refused.value.rule) == ("/event_id", "required")


def test_message_length_counts_code_points_up_to_the_limit() -> None:
    event = _read(SAMPLES / "conversation_event" / "valid" / "minimal.json")
    validate("conversation_event", {**event, "message": "\U0001f600" * 65536})
    with pytest.raises(SchemaValidationError) as refused:
        validate("conversation_event", {**event, "message": "\U0001f600" * 65537})
    assert (refused.value.field, refused.value.rule) == ("/message", "maxLength")


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("2025-03-14T09:26:53Z", True),
        ("2025-03-14t09:26:53.123456789z", True),
        ("2024-02-29T00:00:00+05:30", True),
        ("2025-02-29T00:00:00Z", False),  # not a leap year
        ("2016-12-31T23:59:60Z", False),  # leap second: datetime cannot hold it
        ("2025-03-14T09:26:53", False),  # no offset
        ("2025-03-14 09:26:53Z", False),
        ("2025-03-14T24:00:00Z", False),
        ("2025-03-14T09:26:53.1234567890Z", False),  # more than nanoseconds
        ("2025-03-14T09:26:53Z\n", False),
    ],
)
def test_date_time_format(value: str, ok: bool) -> None:
    assert is_date_time(value) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("3f1c2a4e-8b7d-4c1e-9f2a-6d5b4c3a2e10", True),
        ("3F1C2A4E-8B7D-4C1E-9F2A-6D5B4C3A2E10", True),
        ("3f1c2a4e8b7d4c1e9f2a6d5b4c3a2e10", False),
        ("{3f1c2a4e-8b7d-4c1e-9f2a-6d5b4c3a2e10}", False),
        ("urn:uuid:3f1c2a4e-8b7d-4c1e-9f2a-6d5b4c3a2e10", False),
        ("3f1c2a4e-8b7d-4c1e-9f2a-6d5b4c3a2e1g", False),
    ],
)
def test_uuid_format(value: str, ok: bool) -> None:
    assert is_uuid(value) is ok


# --- properties -------------------------------------------------------------------------------

MINIMAL = {sid: _read(sorted((SAMPLES / sid / "valid").glob("*.json"))[0]) for sid in IDS}
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3)
    ),
    max_leaves=8,
)
PROPERTY_SETTINGS = settings(max_examples=300, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow])  # fmt: skip


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


@PROPERTY_SETTINGS
@given(schema_id=st.sampled_from(IDS), name=st.text(max_size=40), value=JSON_VALUES)
def test_unknown_properties_are_always_refused(schema_id: str, name: str, value: Any) -> None:
    if name in load_schema(schema_id)["properties"]:
        return
    with pytest.raises(SchemaValidationError) as refused:
        validate(schema_id, {**MINIMAL[schema_id], name: value})
    assert refused.value.rule == "additionalProperties"
    assert refused.value.field == "/" + _escape(name)


@PROPERTY_SETTINGS
@given(message=st.text(max_size=2000), attachments=st.lists(st.text(min_size=1, max_size=50)))
def test_any_unicode_message_within_the_limit_is_accepted(
    message: str, attachments: list[str]
) -> None:
    event = {**MINIMAL["conversation_event"], "message": message, "attachments": attachments}
    validate("conversation_event", event)


@PROPERTY_SETTINGS
@given(tenant=st.text(max_size=70))
def test_tenant_is_accepted_exactly_when_it_matches_the_key_rule(tenant: str) -> None:
    well_formed = re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", tenant) is not None
    event = {**MINIMAL["memory_write"], "tenant": tenant}
    assert _fast_accepts("memory_write", event) is well_formed
    assert _precise_accepts("memory_write", event) is well_formed


@PROPERTY_SETTINGS
@given(data=st.data(), schema_id=st.sampled_from(IDS))
def test_fast_and_precise_validators_agree_on_mutated_events(
    data: st.DataObject, schema_id: str
) -> None:
    event = dict(MINIMAL[schema_id])
    names = sorted(load_schema(schema_id)["properties"])
    for name in data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=3)):
        if data.draw(st.booleans(), label="drop"):
            event.pop(name, None)
        else:
            event[name] = data.draw(JSON_VALUES, label=name)
    fast = _fast_accepts(schema_id, event)
    assert fast is _precise_accepts(schema_id, event)
    if not fast:
        with pytest.raises(SchemaValidationError):
            validate(schema_id, event)


# --- reference docs ---------------------------------------------------------------------------


@pytest.mark.parametrize("schema_id", IDS)
def test_reference_docs_describe_every_field(schema_id: str) -> None:
    text = DOCS.read_text(encoding="utf-8")
    sections = re.split(r"^## ", text, flags=re.MULTILINE)
    section = next((s for s in sections if s.startswith(f"`{schema_id}`")), None)
    assert section is not None, f"docs/reference/schemas.md has no section for {schema_id}"
    for name in load_schema(schema_id)["properties"]:
        assert f"| `{name}` |" in section, f"{schema_id}.{name} is undocumented"
    for topic in ALL_TOPICS:
        if topic.schema == schema_id and not topic.name.endswith(".dlq"):
            assert f"`{topic.name}`" in section, f"{schema_id}: topic {topic.name} not named"


MESSAGING = {
    "agent.runs.v1": "agent-runs.md",
    "agent.steps.v1": "agent-steps.md",
    "agent.tools.v1": "agent-tools.md",
    "agent.audit.v1": "agent-audit.md",
    "agent.benchmarks.v1": "agent-benchmarks.md",
}


@pytest.mark.parametrize("topic_name", sorted(MESSAGING))
def test_messaging_page_matches_registry_and_schema(topic_name: str) -> None:
    text = (ROOT / "docs" / "messaging" / MESSAGING[topic_name]).read_text(encoding="utf-8")
    topic = next(t for t in ALL_TOPICS if t.name == topic_name)
    assert text.startswith(f"# {topic_name}\n")
    assert f"| key | `{topic.key_rule.value}` |" in text
    assert f"| partitions | {topic.partitions} |" in text
    assert f"`{topic.cleanup_policy}`, {topic.retention_ms // 86_400_000} days" in text
    assert f"`{topic.dlq}`" in text
    assert f"schema [`{topic.schema}`]" in text
    assert ("yes: `POST /v1/events/" in text) is topic.public
    for name in load_schema(topic.schema)["properties"]:
        assert f"| `{name}` |" in text, f"{topic_name}: field {name} undocumented"
