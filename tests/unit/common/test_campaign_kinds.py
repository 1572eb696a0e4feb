"""Campaign specs with circular and sequence attributes: validation, records, Avro."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from services.common.campaign import SpecError, campaign_record, creative_records, parse_spec
from services.common.codec import SchemaRegistry
from services.common.creative_space import CreativeSpace

SPEC: dict[str, Any] = {
    "campaign_id": "jingle",
    "name": "Jingle test",
    "attributes": [
        {"name": "key", "kind": "circular", "min": 0, "max": 12, "step": 1},
        {"name": "hue", "kind": "circular", "min": 0, "max": 360},
        {
            "name": "melody",
            "kind": "sequence",
            "length": 3,
            "fields": [
                {"name": "degree", "values": ["1", "3", "5", "8"]},
                {"name": "duration", "values": ["1/8", "1/4"]},
            ],
        },
    ],
    "attribution_window": 30,
    "seeds": [
        {"name": "A", "attributes": {"key": 0, "hue": 350.5, "melody": "1:1/4 3:1/8 1:1/4"}},
        {
            "name": "B",
            "attributes": {"key": 11, "hue": 0, "melody": [["5", "1/8"], "3:1/4", "1:1/4"]},
        },
    ],
}


def _with(**attrs: Any) -> dict[str, Any]:
    data = copy.deepcopy(SPEC)
    data["seeds"][0]["attributes"].update(attrs)
    return data


def test_structured_seeds_become_canonical_records_that_survive_avro() -> None:
    spec = parse_spec(SPEC)
    registry = SchemaRegistry.load()
    campaign = registry.codec("Campaign").decode(
        registry.codec("Campaign").encode(campaign_record(spec, revision=1))
    )
    key, _, melody = campaign["attributes"]
    assert key["kind"] == "circular" and key["step"] == 1.0 and key["max"] == 12.0
    assert melody["length"] == 3
    assert melody["fields"][1] == {"name": "duration", "values": ["1/8", "1/4"]}
    codec = registry.codec("Creative")
    creatives = [codec.decode(codec.encode(c)) for c in creative_records(spec)]
    assert creatives[1]["attributes"]["melody"] == "5:1/8 3:1/4 1:1/4"
    assert creatives[1]["attributes"]["key"] == 11.0
    # the record is what the creative space encodes: the model sees the seeds as declared
    space = CreativeSpace.from_attributes(campaign["attributes"])
    back = space.decode_many(space.encode_many(c["attributes"] for c in creatives))
    assert back[0]["melody"] == "1:1/4 3:1/8 1:1/4" and back[1]["key"] == 11.0
    assert abs(back[0]["hue"] - 350.5) < 1e-3


@pytest.mark.parametrize(
    "change, message",
    [
        ({"key": 12}, r"seeds\[0\] \('A'\).attributes.key: 12.0 is outside \[0.0, 12.0\)"),
        ({"key": 2.5}, "not min \\+ a multiple of step"),
        ({"melody": "1:1/4 3:1/8"}, "attributes.melody: has 2 steps, the sequence has 3"),
        ({"melody": "1:1/4 3:1/8 2:1/4"}, "step 2 degree='2' is not one of"),
    ],
)
def test_bad_structured_seeds_are_named(change: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec(_with(**change))


@pytest.mark.parametrize(
    "attribute, message",
    [
        ({"name": "k", "kind": "circular", "min": 0, "max": 12, "step": 5}, "divide"),
        ({"name": "k", "kind": "circular", "min": 1, "max": 1}, "must be below"),
        (
            {
                "name": "s",
                "kind": "sequence",
                "length": 0,
                "fields": [{"name": "b", "values": ["x"]}],
            },
            "length",
        ),
        (
            {
                "name": "s",
                "kind": "sequence",
                "length": 2,
                "fields": [{"name": "b", "values": ["a b"]}],
            },
            "not tokens",
        ),
    ],
)
def test_bad_declarations_are_named(attribute: dict, message: str) -> None:
    data = copy.deepcopy(SPEC)
    data["attributes"].append(attribute)
    with pytest.raises(SpecError, match=message):
        parse_spec(data)
