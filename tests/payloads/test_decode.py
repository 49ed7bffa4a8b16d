"""decode_body: UTF-8 JSON in, PayloadError out for anything else, in bounded time and stack."""

from __future__ import annotations

import json
import time

import pytest

from exporter.domain import ExporterError
from exporter.payloads.decode import PayloadError, decode_body
from tests.payloads.samples import fixture_bytes, normalize

MIB = 1 << 20


def nested(depth: int) -> bytes:
    """A JSON value nesting `depth` arrays and objects alternately around the number 1."""
    levels = [("[", "]") if level % 2 == 0 else ('{"a":', "}") for level in range(depth)]
    opening = "".join(open_ for open_, _ in levels)
    closing = "".join(close for _, close in reversed(levels))
    return (opening + "1" + closing).encode()


def test_nested_helper_counts_levels() -> None:
    """The helper builds exactly the requested nesting."""
    assert json.loads(nested(3)) == [{"a": [1]}]
    assert decode_body(nested(64)) is not None


def test_decodes_utf8_with_and_without_bom() -> None:
    """A UTF-8 body decodes with or without a byte-order mark."""
    assert decode_body('{"name": "flux é"}'.encode()) == {"name": "flux é"}
    assert decode_body(b"\xef\xbb\xbf[1, 2]") == [1, 2]


def test_accepts_nan_and_infinity_literals() -> None:
    """NaN and Infinity literals parse as Python's json does (normalization rejects the values)."""
    value = decode_body(b'{"a": NaN, "b": -Infinity}')
    assert value["a"] != value["a"]
    assert value["b"] == float("-inf")


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b"{",
        b"not json",
        b'{"a": 1,}',
        b'{"a": "unterminated',
        b"\xff\xfe{}",
        b'{"a": "\xc3"}',
        b"1" * 5000,  # an integer beyond Python's 4300-digit conversion limit
    ],
)
def test_rejects_what_is_not_utf8_json(body: bytes) -> None:
    """Bodies that are not UTF-8 JSON raise PayloadError("invalid_json")."""
    with pytest.raises(PayloadError) as caught:
        decode_body(body)
    assert caught.value.reason == "invalid_json"
    assert isinstance(caught.value, ExporterError)


def test_depth_limit_is_inclusive() -> None:
    """64 levels parse; 65 raise PayloadError("too_deep")."""
    assert decode_body(nested(64)) is not None
    with pytest.raises(PayloadError) as caught:
        decode_body(nested(65))
    assert caught.value.reason == "too_deep"


def test_max_depth_is_configurable() -> None:
    """The limit is the max_depth argument."""
    assert decode_body(nested(8), max_depth=8) is not None
    with pytest.raises(PayloadError, match="too_deep"):
        decode_body(nested(9), max_depth=8)


def test_brackets_inside_strings_do_not_count() -> None:
    """Brackets and escaped quotes inside strings are not nesting."""
    body = json.dumps({"text": "[" * 500 + '\\"{' * 100, "more": ["]]]"]}).encode()
    assert decode_body(body)["more"] == ["]]]"]


def test_too_deep_is_refused_even_when_invalid_later() -> None:
    """A depth bomb is too_deep even though the body would never close."""
    with pytest.raises(PayloadError) as caught:
        decode_body(b"[" * 100_000)
    assert caught.value.reason == "too_deep"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(b"[" * (2 * MIB), "too_deep", id="depth-bomb"),
        pytest.param(b"{" * (2 * MIB), "too_deep", id="object-bomb"),
        pytest.param(b"[]" * MIB, "invalid_json", id="flat-garbage"),
        pytest.param(b'"' + b'\\"' * MIB, "invalid_json", id="unterminated-escaped-quotes"),
        pytest.param(b'["' + b"a" * (2 * MIB - 3) + b"\\", "invalid_json", id="trailing-backslash"),
        pytest.param(b'"' * (2 * MIB), "invalid_json", id="quotes"),
        pytest.param(b"[" + b"1," * (MIB - 1) + b"1]", None, id="million-numbers"),
    ],
)
def test_hostile_2mib_bodies_are_handled_quickly(body: bytes, reason: str | None) -> None:
    """Hostile 2 MiB bodies parse or fail in well under a second, never blowing the stack."""
    started = time.perf_counter()
    if reason is None:
        decode_body(body)
    else:
        with pytest.raises(PayloadError) as caught:
            decode_body(body)
        assert caught.value.reason == reason
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0, f"{elapsed:.3f}s"


def test_2mib_batch_of_runs_normalizes_quickly() -> None:
    """A 2 MiB batch of real run documents decodes and normalizes in well under a second."""
    document = json.dumps(json.loads(fixture_bytes("seed_success.json"))).encode()
    count = (2 * MIB) // (len(document) + 1) - 10
    body = b"[" + b",".join([document] * count) + b"]"
    assert len(body) > 2 * MIB - 40_000
    started = time.perf_counter()
    documents = normalize(body)
    elapsed = time.perf_counter() - started
    assert len(documents) == count
    assert elapsed < 1.0, f"{elapsed:.3f}s"
