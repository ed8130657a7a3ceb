"""`ack_seq` (app/ws/frames.py), the parse of a mailbox socket's `ack` frame: a plain check for the well-formed
frame, AckFrameSchema for every other. It must accept exactly what the schema accepts, with the same seq, and
refuse the rest with the schema's own error (message, code, details): the error frames clients see."""

from __future__ import annotations

import pytest

from app.errors import InvalidRequest
from app.schemas import SEQ_MAX, AckFrameSchema, load_or_raise, parse_json
from app.ws.frames import ack_seq

FRAMES = [
    '{"type": "ack", "seq": 1}', '{"seq": 7, "type": "ack"}', f'{{"type": "ack", "seq": {SEQ_MAX}}}',
    f'{{"type": "ack", "seq": {SEQ_MAX + 1}}}', '{"type": "ack", "seq": 0}', '{"type": "ack", "seq": -1}',
    '{"type": "ack"}', '{"type": "ack", "seq": "1"}', '{"type": "ack", "seq": 1.5}', '{"type": "ack", "seq": 1.0}',
    '{"type": "ack", "seq": true}', '{"type": "ack", "seq": false}', '{"type": "ack", "seq": null}',
    '{"type": "ack", "seq": [1]}', '{"type": "ack", "seq": {"n": 1}}', '{"type": "ack", "seq": 1e3}',
    '{"type": "ack", "seq": 99999999999999999999999}', '{"type": "ack", "seq": 1, "id": "x"}',
    '{"type": "ack", "seq": 1, "ref": "r"}', '{"type": "ack", "seq": "x", "id": "x"}', '{"seq": 1}', '{}',
    '{"type": "nack", "seq": 1}', '{"type": 1, "seq": 1}', '{"type": ["ack"], "seq": 1}', '{"type": "ACK", "seq": 1}',
]


def outcome(parse, frame):
    try:
        return "seq", parse(frame)
    except InvalidRequest as exc:
        return "error", exc.status, exc.to_dict()


@pytest.mark.parametrize("raw", FRAMES)
def test_ack_seq_answers_as_the_schema_does(raw):
    frame = parse_json(raw, what="frame")
    expected = outcome(lambda f: load_or_raise(AckFrameSchema(), f, what="ack frame")["seq"], dict(frame))
    assert outcome(ack_seq, frame) == expected


def test_a_well_formed_ack_is_read_without_the_schema(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the schema was used for a well-formed ack frame")

    monkeypatch.setattr("app.ws.frames.load_or_raise", refuse)
    assert ack_seq({"type": "ack", "seq": 42}) == 42
