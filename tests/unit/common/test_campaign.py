"""Campaign spec files: what `admuse campaign apply|show` accepts, and the errors it gives."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from services.cli import app
from services.common.campaign import (
    SpecError,
    campaign_record,
    creative_records,
    load_spec,
    parse_spec,
)
from services.common.codec import SchemaRegistry

SPEC: dict[str, Any] = {
    "campaign_id": "spring",
    "name": "Spring sale",
    "attributes": [
        {"name": "headline", "kind": "categorical", "values": ["Save 20%", "New in"]},
        {"name": "cta", "kind": "categorical", "values": ["Buy now", "Learn more"]},
        {"name": "font_scale", "kind": "numeric", "min": 0.8, "max": 1.6},
        {"name": "background", "kind": "color"},
    ],
    "segment_keys": ["country", "device"],
    "reward": {"kind": "weighted", "weights": {"click": 1.0, "conversion": 5.0}},
    "attribution_window": 30,
    "holdout_share": 0.2,
    "forbidden": [{"headline": "New in", "cta": "Buy now"}],
    "seeds": [
        {
            "name": "Classic",
            "attributes": {
                "headline": "Save 20%",
                "cta": "Buy now",
                "font_scale": 1.0,
                "background": "#FFFFFF",
            },
        },
        {
            "name": "Soft",
            "id": "soft-1",
            "attributes": {
                "headline": "New in",
                "cta": "Learn more",
                "font_scale": 1.2,
                "background": "#112233",
            },
        },
    ],
}


def spec_with(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(SPEC)
    data.update(changes)
    return data


def error_of(data: Any) -> str:
    with pytest.raises(SpecError) as info:
        parse_spec(data, "spring.yaml")
    return str(info.value)


def test_valid_spec_becomes_avro_campaign_and_catalog_creatives(registry: SchemaRegistry) -> None:
    spec = parse_spec(SPEC)
    campaign = campaign_record(spec, revision=3)
    decoded = registry.codec("Campaign").decode(registry.codec("Campaign").encode(campaign))
    assert decoded["attribution_window_ms"] == 30_000
    assert decoded["catalog_share"] == 0.0  # no catalog-bandit arm unless asked for
    three = campaign_record(parse_spec(spec_with(catalog_share=0.3)), revision=4)
    assert registry.codec("Campaign").decode(registry.codec("Campaign").encode(three))[
        "catalog_share"
    ] == pytest.approx(0.3)
    assert decoded["reward"]["conversion_weight"] == 5.0
    assert decoded["forbidden"] == [{"headline": "New in", "cta": "Buy now"}]
    assert decoded["attributes"][2] == {
        "name": "font_scale",
        "kind": "numeric",
        "values": [],
        "min": 0.8,
        "max": 1.6,
    }
    creatives = creative_records(spec)
    codec = registry.codec("Creative")
    got = [codec.decode(codec.encode(c)) for c in creatives]
    assert [c["creative_id"] for c in got] == ["spring-classic", "soft-1"]
    assert all(c["origin"] == "catalog" and c["status"] == "live" for c in got)
    assert got[0]["attributes"]["background"] == "#ffffff"
    assert got[0]["attributes"]["font_scale"] == 1.0


def test_creative_ids_are_stable_across_applies() -> None:
    first = [c["creative_id"] for c in creative_records(parse_spec(SPEC))]
    again = [c["creative_id"] for c in creative_records(parse_spec(copy.deepcopy(SPEC)))]
    assert first == again


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"campaign_id": "has space"}, "spring.yaml: campaign_id: String should match pattern"),
        ({"holdout_share": 0}, "holdout_share: Input should be greater than 0"),
        ({"attribution_window": -1}, "attribution_window: Input should be greater than 0"),
        ({"reward": {"kind": "weighted"}}, "reward: kind 'weighted' needs weights"),
        (
            {"reward": {"kind": "likes"}},
            "reward.kind: Input should be 'click', 'conversion' or 'weighted'",
        ),
        ({"surprise": 1}, "surprise: Extra inputs are not permitted"),
        (
            {"attributes": [{"name": "x", "kind": "numeric", "min": 2, "max": 1}]},
            "attributes[0]: Value error, min (2.0) must be below max (1.0)",
        ),
        ({"attributes": [{"name": "x", "kind": "shape"}]}, "attributes[0]: Input tag 'shape'"),
        (
            {"forbidden": [{"headline": "Nope", "cta": "Buy now"}]},
            "forbidden[0].headline: 'Nope' is not one of",
        ),
        (
            {"forbidden": [{"font_scale": "1", "cta": "Buy now"}]},
            "forbidden[0].font_scale: not a categorical attribute",
        ),
        ({"seeds": []}, "seeds: List should have at least 1 item"),
        ({"catalog_share": -0.1}, "catalog_share: Input should be greater than or equal to 0"),
        (
            {"catalog_share": 0.8},
            "holdout_share + catalog_share must leave traffic for the full loop",
        ),
    ],
)
def test_bad_specs_name_the_field(change: dict[str, Any], expected: str) -> None:
    assert expected.replace("Value error, ", "") in error_of(spec_with(**change))


def test_seed_errors_name_the_seed_and_attribute() -> None:
    data = spec_with()
    data["seeds"][0]["attributes"]["background"] = "white"
    assert "seeds[0] ('Classic').attributes.background: 'white' is not a color" in error_of(data)
    data = spec_with()
    data["seeds"][1]["attributes"]["font_scale"] = 3.0
    assert "seeds[1] ('Soft').attributes.font_scale: 3.0 is outside [0.8, 1.6]" in error_of(data)
    data = spec_with()
    del data["seeds"][0]["attributes"]["cta"]
    assert "seeds[0] ('Classic').attributes: missing ['cta']" in error_of(data)
    data = spec_with()
    data["seeds"][1]["attributes"]["cta"] = "Buy now"
    assert "seeds[1] ('Soft'): uses the forbidden combination" in error_of(data)
    data = spec_with()
    data["seeds"][1]["name"] = "Classic"
    data["seeds"][1]["id"] = None
    assert "creative id 'spring-classic' repeats seeds[0]" in error_of(data)


def test_files_yaml_and_json_and_their_errors(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text(json.dumps(SPEC))
    assert load_spec(tmp_path / "c.json").campaign_id == "spring"
    (tmp_path / "bad.yaml").write_text("campaign_id: [unclosed\n")
    with pytest.raises(SpecError, match=r"bad\.yaml: not valid YAML"):
        load_spec(tmp_path / "bad.yaml")
    with pytest.raises(SpecError, match="cannot read the file"):
        load_spec(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(SpecError, match="expected a mapping"):
        load_spec(tmp_path / "list.yaml")


def test_cli_show_prints_and_rejects(tmp_path: Path) -> None:
    good = tmp_path / "c.json"
    good.write_text(json.dumps(SPEC))
    runner = CliRunner()
    out = runner.invoke(app, ["campaign", "show", str(good)])
    assert out.exit_code == 0, out.output
    assert "spring-classic" in out.output and "seed creatives" in out.output
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(spec_with(holdout_share=2)))
    out = runner.invoke(app, ["campaign", "show", str(bad)])
    assert out.exit_code == 2
    assert "holdout_share" in out.output


@pytest.mark.parametrize("bad", ["\x00", "\n", "\x1b[31m", "\x7f", "\x85"])
@pytest.mark.parametrize("where", ["name", "value", "seed", "forbidden", "segment_key"])
def test_control_characters_are_refused_everywhere(where: str, bad: str) -> None:
    data = copy.deepcopy(SPEC)
    if where == "name":
        data["name"] = f"Spring{bad}sale"
    elif where == "value":
        data["attributes"][0]["values"][1] = f"New{bad}in"
    elif where == "seed":
        data["seeds"][0]["name"] = f"Clas{bad}sic"
    elif where == "forbidden":
        data["forbidden"] = [{f"head{bad}line": "New in"}]
    else:
        data["segment_keys"] = [f"coun{bad}try"]
    message = error_of(data)
    assert f"U+{ord(bad[0]):04X}" in message and bad not in message


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_huge_numbers_get_our_words_not_pythons(tmp_path: Path, suffix: str) -> None:
    from services.common.campaign import load_spec

    path = tmp_path / f"spec{suffix}"
    path.write_text('{"campaign_id": "x", "attribution_window": ' + "9" * 5000 + "}")
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert "more than 4300 digits" in str(err.value) and "sys." not in str(err.value)


def test_records_written_before_the_third_arm_still_read(registry: SchemaRegistry) -> None:
    """Campaign v1 (no catalog_share) and Creative v1 (no stage) decode with the defaults: no
    catalog-bandit arm, and a generated creative counts as a challenger."""
    spec = parse_spec(SPEC)
    campaign = {k: v for k, v in campaign_record(spec, revision=1).items() if k != "catalog_share"}
    old = registry.codec("Campaign", 1).encode(campaign)
    assert registry.codec("Campaign").decode(old)["catalog_share"] == 0.0
    creative = {k: v for k, v in creative_records(spec)[0].items() if k != "stage"}
    old = registry.codec("Creative", 1).encode({**creative, "origin": "generated"})
    assert registry.codec("Creative").decode(old)["stage"] is None
