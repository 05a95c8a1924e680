"""Fuzzed bytes from outside (envelopes, bundles, handshake files) end as a named rejection only.

Each property feeds generated input to the real parser or the real receive path; any exception
other than the rejection it documents is a crash the engine would have had."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.domain.envelope import MAX_SEQ, MESSAGE_TYPES, Envelope, bundle_text, split_bundle
from engine.errors import BackboneError, RejectedError
from engine.runtime.demo import Demo
from engine.runtime.engine import Engine
from engine.service.installation import Installation
from engine.vocab import Folder

FIXTURE_OK = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=25,
)
# JSON fragments that trip parsers: deep nesting, huge numbers, non-numbers, lone surrogates
raw_fragments = (
    st.integers(min_value=1, max_value=200_000).map(lambda n: "[" * n + "]" * n)
    | st.integers(min_value=1, max_value=5_000).map(lambda n: '{"a":' * n + "0" + "}" * n)
    | st.integers(min_value=20, max_value=6_000).map(lambda n: "9" * n)
    | st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-0", '"\\ud800"', '"\\udfff x"', "2e308"])
)
RAW = "\u0000raw\u0000"
ENVELOPE_KEYS = (
    "format",
    "sync",
    "from",
    "to",
    "id",
    "type",
    "created",
    "config",
    "issue",
    "epoch",
    "seq",
    "body",
)
BODY_KEYS = ("op", "type", "fields", "parent", "status", "comment", "attachment", "target", "kind")


def _base(sync: str = "ACME-GLOBEX-1", sender: str = "a", recipient: str = "b") -> dict[str, Any]:
    return {
        "format": 1,
        "sync": sync,
        "from": sender,
        "to": recipient,
        "id": str(uuid.uuid4()),
        "type": "ISSUE",
        "created": "2026-11-23T10:00:00.000000+00:00",
        "config": 1,
        "issue": uuid.uuid4().hex,
        "epoch": 1,
        "seq": 1,
        "body": {"op": "create", "type": "task", "fields": {}, "parent": None},
    }


@st.composite
def mutated_envelopes(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """A valid envelope with some fields replaced, dropped or added, and its body likewise."""
    data: dict[str, Any] = json.loads(json.dumps(base))
    data["id"] = str(uuid.uuid4())
    for key in draw(st.lists(st.sampled_from(ENVELOPE_KEYS), max_size=3)):
        if draw(st.booleans()):
            data[key] = draw(json_values)
        else:
            data.pop(key, None)
    if draw(st.booleans()):
        data["type"] = draw(st.sampled_from(sorted(MESSAGE_TYPES)))
        if data["type"] not in ("ISSUE", "RESYNC"):
            data["issue"] = None
    if isinstance(data.get("body"), dict):
        for key in draw(st.lists(st.sampled_from(BODY_KEYS), max_size=4)):
            data["body"][key] = draw(json_values)
    for key in ("seq", "epoch", "config"):
        if draw(st.integers(0, 3)) == 0:
            data[key] = draw(st.integers())
    return data


@st.composite
def envelope_texts(draw: st.DrawFn, base: dict[str, Any]) -> str:
    """A mutated envelope's JSON, sometimes with one value replaced by a raw hostile fragment."""
    data = draw(mutated_envelopes(base))
    if not draw(st.booleans()):
        return json.dumps(data)
    target = data["body"] if isinstance(data.get("body"), dict) and draw(st.booleans()) else data
    target[draw(st.sampled_from([*ENVELOPE_KEYS, *BODY_KEYS]))] = RAW
    return json.dumps(data).replace(json.dumps(RAW), draw(raw_fragments), 1)


@given(st.binary(max_size=3000) | st.text(max_size=3000).map(str.encode))
def test_envelope_bytes_are_parsed_or_rejected(data: bytes) -> None:
    with contextlib.suppress(RejectedError):
        Envelope.from_json(data)


@given(envelope_texts(_base()))
def test_envelope_structures_are_parsed_within_bounds_or_rejected(text: str) -> None:
    try:
        parsed = Envelope.from_json(text)
    except RejectedError:
        return
    assert 0 <= parsed.seq < MAX_SEQ and 0 <= parsed.epoch < MAX_SEQ and 0 <= parsed.config < MAX_SEQ
    assert Envelope.from_json(parsed.to_json()) == parsed


@given(
    st.text(max_size=2000)
    | envelope_texts(_base())
    | st.lists(json_values, max_size=5).map(lambda items: json.dumps({"bundle": items}))
    | raw_fragments.map(lambda fragment: '{"bundle": [' + fragment + "]}")
)
def test_bundles_are_split_or_rejected(text: str) -> None:
    with contextlib.suppress(RejectedError):
        split_bundle(text)


@pytest.fixture(scope="module")
def handshake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Installation, dict[str, Any]]]:
    """A real unencrypted handshake file's contents, and a second home to read variants of it."""
    root = tmp_path_factory.mktemp("hs")
    primary = Installation(root / "acme")
    primary.tracker.create_project("ACME", "Acme")
    out = root / "hs.json"
    primary.create_primary(
        project="ACME", user="sync-bot", protocol="file", name="fuzz", handshake_out=out, encryption=False
    )
    reader = Installation(root / "globex")
    yield reader, json.loads(out.read_text())
    primary.close()
    reader.close()


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_handshake_files_are_read_or_refused_with_a_message(
    handshake: tuple[Installation, dict[str, Any]],
    tmp_path_factory: pytest.TempPathFactory,
    data: st.DataObject,
) -> None:
    reader, contents = handshake
    variant = json.loads(json.dumps(contents))
    for key in data.draw(st.lists(st.sampled_from([*contents, "primary"]), max_size=3)):
        variant[key] = data.draw(json_values)
    if data.draw(st.booleans()):
        variant[data.draw(st.sampled_from(sorted(contents)))] = RAW
    text = json.dumps(variant).replace(json.dumps(RAW), data.draw(raw_fragments), 1)
    raw = data.draw(st.sampled_from([text.encode(), data.draw(st.binary(max_size=500))]))
    path = tmp_path_factory.mktemp("v") / "hs.json"
    path.write_bytes(raw)
    try:
        reader.read_handshake(path)
    except BackboneError as exc:
        assert str(path) in str(exc)


@FIXTURE_OK
@given(data=st.data())
def test_the_receive_path_files_every_input_with_a_reason(paired: Demo, data: st.DataObject) -> None:
    """Bytes and near-valid envelopes for the right synchronization, through ingest and apply."""
    (side,) = [s for s in paired.globex.pipeline.sides() if s.sync_key == paired.key]
    base = _base(paired.key, paired.acme.id, paired.globex.id)
    one = envelope_texts(base).map(str.encode)
    several = st.lists(envelope_texts(base), min_size=1, max_size=4).map(
        lambda items: bundle_text(items).encode()
    )
    raw = data.draw(one | several | st.binary(min_size=1, max_size=500))
    paired.globex.pipeline.ingest_bytes(side, "fuzz.bac", raw)
    Engine(paired.globex).run_once()
    bugs = [m for m in paired.globex.messages(paired.key) if m.reason_code == "INTERNAL_ERROR"]
    assert not bugs, bugs[0].reason_text
    assert not paired.globex.messages(paired.key, Folder.RECEIVE)
