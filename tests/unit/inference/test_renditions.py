"""What `GET /v1/creatives/{id}.<fmt>` serves: each creative rendered by its campaign's domain."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import mido
import pytest
from scipy.io import wavfile

from services.domains.banner_render import render_svg
from services.inference.renditions import NoRendition, rendition
from tests.unit.domains.fixtures import FILM_SPEC, MUSIC_SPEC, record

BANNER = {"attributes": {"headline": "Hi", "background": "#112233", "layout": "split"}}
TRACK = {"attributes": MUSIC_SPEC["seeds"][0]["attributes"]}
CUT = {"attributes": FILM_SPEC["seeds"][0]["attributes"]}


def test_banners_render_as_before_with_the_request_view() -> None:
    view = {"template": "minimal", "width": 300, "height": 100}
    body, media = rendition(BANNER, None, "svg", view)
    assert media == "image/svg+xml"
    assert body.decode() == render_svg(
        BANNER["attributes"], template="minimal", width=300, height=100
    )
    assert rendition(BANNER, {"domain": "banner"}, "svg")[0].decode() == render_svg(
        BANNER["attributes"]
    )
    with pytest.raises(NoRendition) as info:
        rendition(BANNER, None, "wav")
    assert info.value.status == 404 and "banner creatives render as ['svg']" in str(info.value)


def test_music_creatives_serve_wav_midi_and_lyrics() -> None:
    campaign = record(MUSIC_SPEC)
    wav, media = rendition(TRACK, campaign, "wav")
    rate, pcm = wavfile.read(io.BytesIO(wav))
    assert media == "audio/wav" and abs(len(pcm) - rate * 3.25) <= 1  # 6.5 beats, 120 bpm
    mid, media = rendition(TRACK, campaign, "mid")
    assert media == "audio/midi"
    assert len([m for m in mido.MidiFile(file=io.BytesIO(mid)) if m.type == "note_on"]) == 6
    assert rendition(TRACK, campaign, "txt")[0] == b"C major\nSing it loud\n"
    with pytest.raises(NoRendition) as info:
        rendition({"attributes": {"melody": "1:x"}}, campaign, "wav")
    assert info.value.status == 422
    with pytest.raises(NoRendition) as info:
        rendition(TRACK, campaign, "svg")
    assert info.value.status == 404


def test_film_creatives_serve_a_storyboard_and_a_synopsis() -> None:
    campaign = record(FILM_SPEC)
    svg, media = rendition(CUT, campaign, "svg", {"template": "banner", "width": 600})
    assert media == "image/svg+xml" and ET.fromstring(svg).tag.endswith("svg")
    assert rendition(CUT, campaign, "txt")[0].startswith(b"A reluctant hero protagonist.")
    with pytest.raises(NoRendition):
        rendition(CUT, {"domain": "opera"}, "svg")
