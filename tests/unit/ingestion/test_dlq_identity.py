"""Dead letters keep the bytes that explain a failure, never a raw user id."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.codec import MAGIC, SchemaRegistry
from services.common.privacy import pseudonymize
from services.ingestion.dlq_identity import protect_key, protect_value, redaction_token

EVENTS = SchemaRegistry.load().codec("AdEvent")
SECRET = b"dlq-secret"


def pseud(user: str) -> str:
    return pseudonymize(SECRET, user)


def test_json_user_id_is_replaced_in_place_and_the_rest_kept() -> None:
    value = b'{"event_id": "e1", "user_id": "alice@example.com", "type": "purchase" , }'
    out, note = protect_value(value, pseud, EVENTS)
    assert out == value.replace(b"alice@example.com", pseud("alice@example.com").encode())
    assert b"alice" not in out and "redacted in 1" in note


def test_escaped_numeric_nested_and_truncated_ids() -> None:
    for value, user in (
        (b'{"user_id":"a\\"b\\u00e9"}', 'a"b\u00e9'),
        (b'{"user_id": 123456789}', "123456789"),
        (b'[{"x": {"user_id" :"deep-user"}}]', "deep-user"),
        (b'{"event_id": "e", "user_id": "cut-off-us', "cut-off-us"),
    ):
        out, _ = protect_value(value, pseud, EVENTS)
        assert pseud(user).encode() in out, (value, out)
        assert user.encode("utf-8") not in out or len(user) < 3


def test_avro_body_is_reencoded_with_the_writers_schema() -> None:
    event = {
        "event_id": "e1",
        "type": "click",
        "occurred_at": 1_795_000_000_000,
        "ingested_at": 1_795_000_000_000,
        "campaign_id": "c",
        "user_id": "bob-raw-id",
        "consent": {},
        "context": {},
    }
    value = EVENTS.encode(event)
    out, note = protect_value(value, pseud, EVENTS)
    assert out[:10] == value[:10] and b"bob-raw-id" not in out
    assert EVENTS.decode(out)["user_id"] == pseud("bob-raw-id") and "redacted" in note


def test_undecodable_avro_keeps_only_its_header() -> None:
    value = EVENTS.encode(
        {"event_id": "e1", "type": "click", "occurred_at": 1, "ingested_at": 1,
         "campaign_id": "c", "user_id": "carol-raw", "consent": {}, "context": {}}
    )[:-3]  # fmt: skip
    out, note = protect_value(value, pseud, EVENTS)
    assert out == value[:10] and out[:2] == MAGIC and "not kept" in note


def test_key_is_not_kept_and_tokens_link_to_nothing() -> None:
    assert protect_key(b"dave") == (None, " (record key of 4 bytes not kept)")
    assert protect_key(None) == (None, "")
    tokens = {redaction_token("same-user") for _ in range(100)}
    assert len(tokens) == 100 and all(t.startswith("redacted-") for t in tokens)


@given(user=st.text(min_size=1, max_size=40), junk=st.binary(max_size=40))
@settings(max_examples=200, deadline=None)
def test_no_raw_user_id_survives(user: str, junk: bytes) -> None:
    raw = json.dumps({"user_id": user, "x": 1}).encode()
    out, _ = protect_value(raw, pseud, EVENTS)
    assert json.loads(out) == {"user_id": pseud(user), "x": 1}
    assert protect_value(raw + junk, pseud, EVENTS)[0].startswith(out)  # junk kept after it
    assert protect_value(raw[:-1], pseud, EVENTS)[0] == out[:-1]
