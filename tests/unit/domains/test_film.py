"""Film: storyboard cards that stay well-formed and escaped whatever the text, synopses from
the beats, and the story rules."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.domains import get_domain
from services.domains.film.story import story_of, synopsis
from services.domains.film.storyboard import PALETTES, storyboard_svg
from services.inference.admission import admit

from .fixtures import FILM_SPEC, record

CAMPAIGN = record(FILM_SPEC)
FILM = get_domain("film")
CUT = {
    "beats": "hook meet betrayal trial climax",
    "protagonist": "trickster",
    "tone": "dark",
    "ending": "bittersweet",
}
SVG = "{http://www.w3.org/2000/svg}"


def test_storyboard_has_a_panel_per_beat_with_captions_traits_and_palette() -> None:
    root = ET.fromstring(FILM.render("svg", CUT, CAMPAIGN))
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert texts[0] == 'Pilot <Episode> & "Co"'  # escaped in the SVG, intact once parsed
    assert "Protagonist: trickster" in texts
    assert "A stranger arrives in town" in texts and "The storm breaks" in texts
    assert "Betrayal" in texts
    panels = [r for r in root.iter(f"{SVG}rect") if r.get("rx")]
    assert len(panels) == 5
    assert root.find(f"{SVG}rect").get("fill") == PALETTES["dark"][0]
    assert texts[-1] == "Tone: dark · Ending: bittersweet"


@settings(max_examples=60)
@given(st.text(max_size=300), st.text(max_size=60), st.text(max_size=60))
def test_hostile_text_never_breaks_the_card(caption: str, trait: str, tone: str) -> None:
    story = story_of(
        {"beats": "a b", "protagonist": trait, "tone": tone},
        beat_text={"a": caption, "b": "<script>alert('x')</script>"},
    )
    svg = storyboard_svg(story, title=caption)
    root = ET.fromstring(svg)  # well-formed XML whatever the text
    assert root.tag == f"{SVG}svg"
    assert not list(root.iter("script")) and not list(root.iter(f"{SVG}script"))
    assert "<script>" not in svg and all(e.tag.startswith(SVG) for e in root.iter())


def test_synopsis_tells_the_beats_in_order() -> None:
    text = FILM.render("txt", CUT, CAMPAIGN).decode()
    assert text == (
        "A trickster protagonist. First, a stranger arrives in town. Meet. Betrayal. Trial. "
        "Finally, the storm breaks. Told in a dark tone with a bittersweet ending.\n"
    )
    assert synopsis(story_of({})) == "Our protagonist."


@pytest.mark.parametrize(
    "change, rule",
    [
        ({"beats": "meet hook trial betrayal party"}, "story_required"),
        ({"beats": "climax meet trial betrayal hook"}, "story_required"),
        ({"beats": "hook funeral trial party climax"}, "story_forbidden"),
        ({"beats": "hook betrayal trial meet climax", "tone": "comic"}, "story_forbidden"),
    ],
)
def test_story_rules_refuse_with_the_rule_named(change: dict, rule: str) -> None:
    verdict = admit(CUT | change, CAMPAIGN, [])
    assert verdict.reason == "domain_rule" and (verdict.detail or "").startswith(rule)
    assert admit(CUT, CAMPAIGN, []).admitted
