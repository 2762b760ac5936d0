"""signaling.protocol: validation of client frames (docs/protocol.md)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from signaling.protocol import (
    MAX_FRAME_BYTES,
    MAX_SDP_BYTES,
    Envelope,
    Join,
    Leave,
    Ping,
    ProtocolError,
    PublishOffer,
    SetConstraints,
    SubscribeAnswer,
    error_message,
    parse_frame,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
SDP = "v=0\r\no=- 4611 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


def frame(**fields: Any) -> str:
    return json.dumps(fields)


def error_of(text: str) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse_frame(text)
    return info.value


OMIT = object()


def join(**overrides: Any) -> str:
    fields: dict[str, Any] = {"type": "join", "v": 1, "room": "cm2-b", "name": "Mme Martin"}
    fields.update(overrides)
    return json.dumps({k: v for k, v in fields.items() if v is not OMIT})


# ----------------------------------------------------------------- documented messages


def documented_client_messages() -> list[dict[str, Any]]:
    text = DOCS.read_text()
    section = text.split("## Client → server", 1)[1].split("## Server → client", 1)[0]
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)\n```", section, re.S)]


def test_docs_list_every_client_message() -> None:
    kinds = [message["type"] for message in documented_client_messages()]
    assert kinds == ["join", "publish_offer", "subscribe_answer", "set_constraints", "leave",
                     "ping"]


@pytest.mark.parametrize("message", documented_client_messages(), ids=lambda m: m["type"])
def test_documented_examples_parse(message: dict[str, Any]) -> None:
    envelope = parse_frame(json.dumps(message))
    assert envelope.request_id == message.get("id")
    expected_type = {"join": Join, "publish_offer": PublishOffer,
                     "subscribe_answer": SubscribeAnswer, "set_constraints": SetConstraints,
                     "leave": Leave, "ping": Ping}
    assert type(envelope.message) is expected_type[message["type"]]


def test_join() -> None:
    envelope = parse_frame(join(id=1))
    assert envelope == Envelope(Join(room="cm2-b", name="Mme Martin"), 1)


def test_publish_offer() -> None:
    envelope = parse_frame(frame(type="publish_offer", id=2, sdp=SDP))
    assert envelope == Envelope(PublishOffer(sdp=SDP), 2)


def test_subscribe_answer() -> None:
    envelope = parse_frame(frame(type="subscribe_answer", revision=3, sdp=SDP))
    assert envelope == Envelope(SubscribeAnswer(revision=3, sdp=SDP), None)


def test_leave_and_ping() -> None:
    assert parse_frame('{"type": "leave"}') == Envelope(Leave(), None)
    assert parse_frame('{"type": "ping", "id": 9}') == Envelope(Ping(), 9)


def test_unknown_fields_are_ignored() -> None:
    assert parse_frame(frame(type="ping", extra={"a": [1]})).message == Ping()


# ----------------------------------------------------------------- request id


@pytest.mark.parametrize("request_id", [0, -5, 2**53 - 1, -(2**53) + 1, "", "abc", "x" * 64])
def test_request_id_is_echoed(request_id: int | str) -> None:
    assert parse_frame(frame(type="ping", id=request_id)).request_id == request_id


def test_null_request_id_is_none() -> None:
    assert parse_frame('{"type": "ping", "id": null}').request_id is None


@pytest.mark.parametrize("request_id", [True, False, 1.5, 1.0, [1], {"a": 1}, "x" * 65,
                                        2**53, -(2**53)])
def test_bad_request_id(request_id: Any) -> None:
    error = error_of(frame(type="ping", id=request_id))
    assert error.code == "bad_message"
    assert error.request_id is None
    assert "id" in error.message


@pytest.mark.parametrize(
    ("text", "code"),
    [
        (frame(type="nope", id="r1"), "unknown_type"),
        (frame(type=7, id="r1"), "bad_message"),
        (join(id="r1", v=2), "unsupported_version"),
        (join(id="r1", room="bad room"), "bad_message"),
        (frame(type="publish_offer", id="r1", sdp="hello"), "invalid_sdp"),
        (frame(type="subscribe_answer", id="r1", revision=0, sdp=SDP), "bad_message"),
    ],
)
def test_errors_echo_the_request_id(text: str, code: str) -> None:
    error = error_of(text)
    assert error.code == code
    assert error.request_id == "r1"


# ----------------------------------------------------------------- frame-level errors


@pytest.mark.parametrize("text", ["", "{", "{'type': 'ping'}", "ping", '{"type": "ping"',
                                  "[" * 10_000 + "]" * 10_000, "1" * 5000])
def test_not_json(text: str) -> None:
    assert error_of(text).code == "bad_json"


@pytest.mark.parametrize("text", ["[]", '[{"type": "ping"}]', "null", "42", '"ping"', "true"])
def test_json_but_not_an_object(text: str) -> None:
    error = error_of(text)
    assert error.code == "bad_json"
    assert error.request_id is None


def test_deeply_nested_json_is_bad_json_not_a_crash() -> None:
    text = '{"type": "ping", "x": ' + "[" * 200_000 + "]" * 200_000 + "}"
    assert len(text.encode()) > MAX_FRAME_BYTES
    assert error_of(text).code == "too_large"
    nested = '{"type": "ping", "x": ' + "[" * 30_000 + "]" * 30_000 + "}"
    assert len(nested.encode()) <= MAX_FRAME_BYTES
    assert error_of(nested).code == "bad_json"


def test_missing_type() -> None:
    error = error_of('{"id": 4}')
    assert (error.code, error.request_id) == ("bad_message", 4)
    assert "type" in error.message


@pytest.mark.parametrize("kind", [None, 1, ["join"], {"join": 1}, True])
def test_type_not_a_string(kind: Any) -> None:
    assert error_of(frame(type=kind)).code == "bad_message"


@pytest.mark.parametrize("kind", ["", "JOIN", "Ping", "joined", "subscribe_offer", "error",
                                  "x" * 1000])
def test_unknown_type(kind: str) -> None:
    error = error_of(frame(type=kind))
    assert error.code == "unknown_type"
    assert len(error.message) < 100  # the echoed type is cut short


def test_frame_size_limit_is_in_utf8_bytes() -> None:
    base = frame(type="ping", pad="")
    exact = frame(type="ping", pad="a" * (MAX_FRAME_BYTES - len(base)))
    assert len(exact.encode()) == MAX_FRAME_BYTES
    assert parse_frame(exact).message == Ping()
    over = frame(type="ping", pad="a" * (MAX_FRAME_BYTES - len(base) + 1))
    assert error_of(over).code == "too_large"
    # 22,000 characters but 66,000 bytes
    wide = '{"type": "ping", "pad": "' + "€" * 22_000 + '"}'
    assert len(wide) < MAX_FRAME_BYTES < len(wide.encode())
    assert error_of(wide).code == "too_large"


def test_too_large_is_checked_before_json() -> None:
    assert error_of("x" * (MAX_FRAME_BYTES + 1)).code == "too_large"


# ----------------------------------------------------------------- join


@pytest.mark.parametrize("version", [OMIT, 0, 2, "1", True, None, [1]])
def test_join_unsupported_version(version: Any) -> None:
    assert error_of(join(v=version)).code == "unsupported_version"


@pytest.mark.parametrize("room", ["a", "A-Z_a.z-0.9", "x" * 64, "cm2-b"])
def test_join_good_rooms(room: str) -> None:
    message = parse_frame(join(room=room)).message
    assert isinstance(message, Join)
    assert message.room == room


@pytest.mark.parametrize("room", [OMIT, None, 12, "", "x" * 65, "cm2 b", "cm2/b", "salle-é",
                                  "a\u00a0b", "\ncm2", "cm2\tb", "\uff21\uff22"])
def test_join_bad_rooms(room: Any) -> None:
    error = error_of(join(room=room))
    assert error.code == "bad_message"
    assert "room" in error.message


def test_join_room_with_trailing_newline_is_rejected() -> None:
    assert error_of(join(room="cm2-b\n")).code == "bad_message"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Mme Martin", "Mme Martin"),
        ("  Mme   Martin  ", "Mme Martin"),
        ("Mme\tMartin\n", "Mme Martin"),
        ("Zoé 🎨", "Zoé 🎨"),
        ("x" * 64, "x" * 64),
        (" " * 150 + "y" * 64 + " " * 30, "y" * 64),
    ],
)
def test_join_name_is_trimmed(raw: str, expected: str) -> None:
    message = parse_frame(join(name=raw)).message
    assert message == Join(room="cm2-b", name=expected)


@pytest.mark.parametrize("name", [OMIT, None, 5, ["a"], "", "   ", "\t\n", "x" * 65,
                                  "a" * 32 + " " + "b" * 32, " " * 250 + "x" * 7,
                                  "bad\x00name", "bell\x07", "esc\x1b[31m"])
def test_join_bad_names(name: Any) -> None:
    error = error_of(join(name=name))
    assert error.code == "bad_message"
    assert "name" in error.message


@pytest.mark.parametrize("name", ["del\x7f", "csi\x9b31m"])
def test_join_name_rejects_del_and_c1_controls(name: str) -> None:
    assert error_of(join(name=name)).code == "bad_message"


# ----------------------------------------------------------------- SDP and revision


@pytest.mark.parametrize("kind", ["publish_offer", "subscribe_answer"])
@pytest.mark.parametrize("sdp", [OMIT, None, 1, ["v=0"]])
def test_sdp_missing_or_not_a_string(kind: str, sdp: Any) -> None:
    fields: dict[str, Any] = {"type": kind, "revision": 1}
    if sdp is not OMIT:
        fields["sdp"] = sdp
    assert error_of(json.dumps(fields)).code == "bad_message"


@pytest.mark.parametrize("kind", ["publish_offer", "subscribe_answer"])
@pytest.mark.parametrize("sdp", ["", "hello", " v=0\r\n", "V=0\r\n", "o=- 1 1 IN IP4 0.0.0.0"])
def test_sdp_not_a_description(kind: str, sdp: str) -> None:
    assert error_of(frame(type=kind, revision=1, sdp=sdp)).code == "invalid_sdp"


def test_sdp_length_limit() -> None:
    longest = "v=0\r\n" + "a" * (MAX_SDP_BYTES - 5)
    assert parse_frame(frame(type="publish_offer", sdp=longest)).message == PublishOffer(longest)
    error = error_of(frame(type="publish_offer", sdp=longest + "a"))
    assert error.code == "bad_message"
    assert "sdp" in error.message


@pytest.mark.parametrize("revision", [1, 2**31 - 1])
def test_revision_in_range(revision: int) -> None:
    message = parse_frame(frame(type="subscribe_answer", revision=revision, sdp=SDP)).message
    assert message == SubscribeAnswer(revision=revision, sdp=SDP)


@pytest.mark.parametrize("revision", [OMIT, None, 0, -1, 2**31, True, 1.0, 2.5, "3", [3]])
def test_revision_out_of_range(revision: Any) -> None:
    fields: dict[str, Any] = {"type": "subscribe_answer", "sdp": SDP}
    if revision is not OMIT:
        fields["revision"] = revision
    error = error_of(json.dumps(fields))
    assert error.code == "bad_message"
    assert "revision" in error.message


# ----------------------------------------------------------------- error_message


def test_error_message() -> None:
    assert error_message("bad_json", "nope") == {"type": "error", "code": "bad_json",
                                                 "message": "nope"}
    assert error_message("invalid_sdp", "no codec", 2) == {"type": "error", "code": "invalid_sdp",
                                                           "message": "no codec", "id": 2}
    assert error_message("internal", "x", 0)["id"] == 0


def test_protocol_error_fields() -> None:
    error = ProtocolError("room_full", "full", "r9")
    assert (error.code, error.message, error.request_id, str(error)) == (
        "room_full", "full", "r9", "full")


# ----------------------------------------------------------------- never crash

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)

message_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["join", "publish_offer", "subscribe_answer", "set_constraints",
                              "leave", "ping"])},
    optional={
        "id": json_values,
        "v": st.sampled_from([1, 2, True]) | json_values,
        "room": st.from_regex(r"[A-Za-z0-9_.\-]{0,66}", fullmatch=True) | json_values,
        "name": st.text(max_size=80) | json_values,
        "revision": st.integers(-2, 2**32) | json_values,
        "sdp": st.text(max_size=20).map(lambda s: "v=0" + s) | json_values,
    },
)


def parse_or_protocol_error(text: str) -> Envelope | None:
    try:
        return parse_frame(text)
    except ProtocolError as error:
        assert error.code in {"bad_json", "bad_message", "unknown_type", "unsupported_version",
                              "too_large", "invalid_sdp"}
        return None


@given(st.text())
@example("\ud800")
@example('{"type": "ping", "id": "\\ud800"}')
@example("NaN")
@example('{"type": "join", "v": 1, "room": "a", "name": "\\u0000"}')
def test_arbitrary_text_only_raises_protocol_error(text: str) -> None:
    parse_or_protocol_error(text)


@given(json_values)
def test_arbitrary_json_only_raises_protocol_error(value: Any) -> None:
    assert parse_or_protocol_error(json.dumps(value)) is None or isinstance(value, dict)


@given(message_like)
def test_message_like_objects_only_raise_protocol_error(value: dict[str, Any]) -> None:
    envelope = parse_or_protocol_error(json.dumps(value))
    if envelope is not None:
        assert envelope.request_id == value.get("id")


@given(
    room=st.from_regex(r"[A-Za-z0-9_.\-]{1,64}", fullmatch=True),
    name=st.text(st.characters(min_codepoint=32, max_codepoint=0x7E), min_size=1, max_size=64),
    request_id=st.none() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=64),
)
def test_valid_joins_parse(room: str, name: str, request_id: int | str | None) -> None:
    normalized = " ".join(name.split())
    text = join(room=room, name=name, id=request_id)
    if not normalized:
        assert error_of(text).code == "bad_message"
        return
    assert parse_frame(text) == Envelope(Join(room=room, name=normalized), request_id)


def test_set_constraints_marks_stage_sources_and_validates_fields() -> None:
    envelope = parse_frame(json.dumps({"type": "set_constraints",
                                       "sources": {"s-1": {"max_height": 180},
                                                   "s-2": {"visible": False}},
                                       "on_stage": ["s-3"]}))
    message = envelope.message
    assert isinstance(message, SetConstraints)
    assert message.sources["s-1"].max_height == 180 and message.sources["s-1"].visible
    assert not message.sources["s-2"].visible
    assert message.sources["s-3"].on_stage
    for bad in ({"sources": []}, {"sources": {"s": {"max_height": -1}}},
                {"sources": {"s": {"visible": "yes"}}}, {"sources": {}, "on_stage": "s"}):
        with pytest.raises(ProtocolError) as error:
            parse_frame(json.dumps({"type": "set_constraints", **bad}))
        assert error.value.code == "bad_message"
