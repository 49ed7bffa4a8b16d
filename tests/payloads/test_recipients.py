"""Reading recipient ids from raw bodies: every one, anywhere, in linear time (§18.11)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.domain import NO_RECIPIENTS, Recipients
from exporter.normalize.recipients import FIELDS, MAX_IDS, read_recipients, union
from exporter.normalize.values import ID_LIMIT, SURROGATE
from tests.payloads.test_properties import JSON_VALUES, PROPERTY_SETTINGS, slots

THEIRS = "someone-elses-client-id"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(b'{"recipientclientid":"a","event":{"recipient_client_id":"b"}}',
                     Recipients(frozenset({"a", "b"})), id="envelope and payload"),
        pytest.param(b'{"x":"\\"recipientclientid\\":\\"in a string\\"","recipientclientid":"a"}',
                     Recipients(frozenset({"a"})), id="a key inside a string is no key"),
        pytest.param(b'{"a":"recipientclientid","b":["recipient_client_id"]}', NO_RECIPIENTS,
                     id="the name as a value"),
        pytest.param(b'{"recipi\\u0065ntclientid" :\n "\\u0061"}', Recipients(frozenset({"a"})),
                     id="escaped name and value"),
        pytest.param(b'{"recipientclientid": " a "}', Recipients(frozenset({"a"})), id="spaces"),
        pytest.param(b'{"recipientclientid":12}', Recipients(unmatchable=True), id="number"),
        pytest.param(b'{"recipientclientid":{"id":"x"}}', Recipients(unmatchable=True),
                     id="object"),
        pytest.param(b'{"recipientclientid":"' + b"x" * 300 + b'"}', Recipients(unmatchable=True),
                     id="longer than an id"),
        pytest.param(b'{"recipientclientid":"unterminated', Recipients(unmatchable=True),
                     id="unterminated"),
        pytest.param(b'{"recipientclientid":', Recipients(unmatchable=True), id="no value"),
        pytest.param(b'{"recipientclientid":null,"recipient_client_id":""}', NO_RECIPIENTS,
                     id="null and empty name no one"),
        pytest.param(b"[" * 10_000 + b'{"recipient_client_id":"deep"}' + b"]" * 10_000,
                     Recipients(frozenset({"deep"})), id="10000 deep"),
        pytest.param(b'\xff{"recipientclientid":"a", broken', Recipients(frozenset({"a"})),
                     id="not UTF-8, not JSON"),
        pytest.param(b'{"recipientclientid":"a","recipientclientid":"b"}',
                     Recipients(frozenset({"a", "b"})), id="a repeated key"),
    ],
)  # fmt: skip
def test_read_recipients(body: bytes, expected: Recipients) -> None:
    """Every recipient field of the text, at any depth, parseable or not, is read."""
    assert read_recipients(body) == expected


def test_more_ids_than_kept_are_unmatchable() -> None:
    """A body naming more distinct ids than MAX_IDS keeps MAX_IDS of them, unmatchable."""
    body = json.dumps([{"recipientclientid": f"id-{n}"} for n in range(MAX_IDS + 1)]).encode()
    recipients = read_recipients(body)
    assert recipients.unmatchable
    assert len(recipients.ids) == MAX_IDS
    merged = union(Recipients(frozenset({"a"})), Recipients(frozenset({"b"}), unmatchable=True))
    assert merged == Recipients(frozenset({"a", "b"}), unmatchable=True)


def walk(value: Any) -> Iterator[dict[str, Any]]:
    """Every object inside a decoded JSON value, without recursion."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            yield item
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


def decoded_recipients(value: Any) -> Recipients:
    """What read_recipients must find, computed from the decoded value instead of the text."""
    ids: set[str] = set()
    unmatchable = False
    for obj in walk(value):
        for name in FIELDS:
            found = obj.get(name)
            if isinstance(found, str):
                text = SURROGATE.sub("\ufffd", found.strip())
                if len(text) > ID_LIMIT:
                    unmatchable = True
                elif text:
                    ids.add(text)
            elif name in obj and found is not None:
                unmatchable = True
    return union(Recipients(frozenset(ids), unmatchable), NO_RECIPIENTS)


def spellings(seed: int, value: Any) -> bytes:
    """The value as JSON text, in one of the spellings a sender may choose."""
    rng = random.Random(seed)
    indent = rng.choice([None, 0, 2])
    separators = rng.choice([(",", ":"), (", ", " : ")])
    text = json.dumps(value, ensure_ascii=False, indent=indent, separators=separators)
    if rng.random() < 0.5 or SURROGATE.search(text):  # a lone surrogate is not UTF-8: escape it
        text = json.dumps(value, ensure_ascii=True, indent=indent, separators=separators)
    if rng.random() < 0.5:  # the field names with some characters escaped, as JSON allows
        for name in FIELDS:
            escaped = "".join(f"\\u{ord(c):04x}" if rng.random() < 0.3 else c for c in name)
            text = text.replace(f'"{name}"', f'"{escaped}"')
    return text.encode()


@PROPERTY_SETTINGS
@given(st.binary(max_size=400))
def test_no_bytes_make_the_reading_raise(body: bytes) -> None:
    """Any bytes at all are read without an exception."""
    assert isinstance(read_recipients(body), Recipients)


@PROPERTY_SETTINGS
@given(JSON_VALUES, st.integers(0, 2**32))
def test_the_text_reading_agrees_with_the_decoded_value(value: Any, seed: int) -> None:
    """For any JSON value, in any spelling, the text says what the decoded value says."""
    assert read_recipients(spellings(seed, value)) == decoded_recipients(value)


@PROPERTY_SETTINGS
@given(JSON_VALUES, st.integers(0, 2**32), st.sampled_from(FIELDS), st.integers(0, 200))
def test_a_foreign_id_anywhere_is_found(value: Any, seed: int, field: str, depth: int) -> None:
    """A foreign id put anywhere, at any depth (past any parser's limit too), is always found."""
    foreign: Any = {field: THEIRS}
    for _ in range(depth):
        foreign = [foreign]
    places = slots(value) if isinstance(value, dict | list) else []
    if places:
        container, key = random.Random(seed).choice(places)
        container[key] = foreign
    else:
        value = foreign
    recipients = read_recipients(spellings(seed, value))
    assert THEIRS in recipients.ids or recipients.unmatchable
