"""Music renderings read back by standard readers (scipy's WAV reader, mido), its feedback
→ reward mapping, and its melody rules."""

from __future__ import annotations

import io

import mido
import numpy as np
import pytest
from scipy.io import wavfile

from services.domains import get_domain
from services.domains.music.synth import SAMPLE_RATE
from services.domains.music.theory import frequency
from services.inference.admission import admit

from .fixtures import MUSIC_SPEC, record

CAMPAIGN = record(MUSIC_SPEC)
MUSIC = get_domain("music")
TRACK = {
    "melody": "1:1 3:1 5:1 8:2 5:1/2 3:1",
    "tempo": 120.0,
    "key": 1.0,  # G on the circle of fifths
    "instrument": "square",
    "lyric": "Ça va «bien»",
}
# G major from G3 (55): degrees 1 3 5 8 5 3 → G3 B3 D4 G4 D4 B3
PITCHES = [55, 59, 62, 67, 62, 59]
BEATS = [1, 1, 1, 2, 0.5, 1]


def test_wav_decodes_with_the_expected_length_rate_and_pitch() -> None:
    rate, pcm = wavfile.read(io.BytesIO(MUSIC.render("wav", TRACK, CAMPAIGN)))
    assert rate == SAMPLE_RATE and pcm.dtype == np.int16 and pcm.ndim == 1
    assert len(pcm) / rate == pytest.approx(sum(BEATS) * 60 / 120, abs=1 / rate)
    assert 0.5 * 32767 < np.abs(pcm).max() <= 32767
    start = 0.0
    for pitch, beats in zip(PITCHES, BEATS, strict=True):
        a, b = int((start + 0.05) * rate), int((start + beats * 0.5 - 0.05) * rate)
        seg = pcm[a:b].astype(np.float64) * np.hanning(b - a)
        spectrum = np.abs(np.fft.rfft(seg, n=1 << 16))
        peak = np.fft.rfftfreq(1 << 16, 1 / rate)[spectrum.argmax()]
        assert peak == pytest.approx(frequency(pitch), rel=0.01), (pitch, peak)
        start += beats * 0.5


def test_timbres_differ_but_keep_the_fundamental() -> None:
    sine = wavfile.read(io.BytesIO(MUSIC.render("wav", TRACK | {"instrument": "sine"}, CAMPAIGN)))[
        1
    ]
    square = wavfile.read(io.BytesIO(MUSIC.render("wav", TRACK, CAMPAIGN)))[1]
    assert len(sine) == len(square) and not np.array_equal(sine, square)
    seg = sine[2000:10000].astype(np.float64)
    spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
    third = round(3 * frequency(55) * len(seg) / SAMPLE_RATE)
    assert spec[third - 3 : third + 4].max() < 0.01 * spec.max()  # a sine has no 3rd harmonic


def test_midi_parses_with_mido_to_the_same_notes_tempo_and_lyric() -> None:
    midi = mido.MidiFile(file=io.BytesIO(MUSIC.render("mid", TRACK, CAMPAIGN)))
    assert midi.type == 0 and len(midi.tracks) == 1
    now, ons, offs, meta = 0, [], [], {}
    for msg in midi.tracks[0]:
        now += msg.time
        if msg.type == "note_on" and msg.velocity:
            ons.append((now, msg.note))
        elif msg.type == "note_off":
            offs.append((now, msg.note))
        elif msg.is_meta:
            meta[msg.type] = msg
    assert [n for _, n in ons] == PITCHES
    starts = np.cumsum([0, *BEATS[:-1]]) * midi.ticks_per_beat
    assert [t for t, _ in ons] == [round(s) for s in starts]
    assert offs[-1][0] == sum(BEATS) * midi.ticks_per_beat
    assert mido.tempo2bpm(meta["set_tempo"].tempo) == pytest.approx(120)
    assert meta["key_signature"].key == "G"
    assert meta["lyrics"].text == "Ça va «bien»"
    assert midi.length == pytest.approx(sum(BEATS) * 0.5)


def test_lyrics_as_text() -> None:
    assert MUSIC.render("txt", TRACK, CAMPAIGN).decode() == "G major\nÇa va «bien»\n"


def test_feedback_combines_as_the_weights_say() -> None:
    weights = {"listen_through": 0.6, "like": 0.3, "replay": 0.1, "skip": 0.0}
    events = [("play", None), ("listen_through", 0.5), ("replay", None), ("replay", None)]
    assert MUSIC.reward(events, weights) == pytest.approx(0.6 * 0.5 + 0.2)
    assert MUSIC.reward([("like", None), ("like", None)], weights) == pytest.approx(0.3)
    assert MUSIC.reward([("listen_through", 7.0), ("like", None)], {}) == 1.0  # clipped
    assert MUSIC.reward([("skip", None), ("mystery", 1.0)], weights) == 0.0


@pytest.mark.parametrize(
    "melody, rule",
    [
        ("1:1 3:1 5:1 10:2 5:1/2 3:1", "melody_range"),
        ("-2:1 1:1 3:1 5:2 5:1/2 3:1", "melody_range"),
        ("1:1 3:1 5:1 8:2 5:1/2 2:1", "melody_ending"),
        ("1:1 3:1 8:1 8:2 5:1/2 3:1", "melody_leap"),
    ],
)
def test_melody_rules_refuse_with_the_rule_named(melody: str, rule: str) -> None:
    verdict = admit(TRACK | {"melody": melody, "key": 0.0}, CAMPAIGN, [])
    assert verdict.reason == "domain_rule" and (verdict.detail or "").startswith(rule)
    assert admit(TRACK | {"key": 0.0, "lyric": "Sing it loud"}, CAMPAIGN, []).admitted
