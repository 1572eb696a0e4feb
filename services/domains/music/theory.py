"""From a music creative's attributes to notes: key on the circle of fifths, scale degrees,
durations in beats, tempo. Shared by the WAV synthesizer and the MIDI writer, so both play
the same notes.

- `key`: a circular attribute, position k on the circle of fifths (0 = C, 1 = G, 2 = D, …,
  11 = F); tonic pitch class 7·k mod 12;
- `mode`: `major` (default) or `minor` (natural);
- `melody`: a sequence with fields `degree` (integer scale degrees, 1 = tonic, 8 = the octave
  above, 0 and below go under the tonic) and `duration` (beats as `n` or `n/d`, a beat being
  a quarter note);
- `tempo`: beats per minute (default 110, clamped to [30, 300]);
- `instrument`: a timbre of `synth.TIMBRES` (default `sine`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

__all__ = [
    "KEY_NAMES",
    "Note",
    "frequency",
    "key_name",
    "melody_notes",
    "parse_degree",
    "parse_duration",
    "tempo_of",
]

KEY_NAMES = ("C", "G", "D", "A", "E", "B", "F#", "Db", "Ab", "Eb", "Bb", "F")
_SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
DEFAULT_TEMPO = 110.0


@dataclass(frozen=True)
class Note:
    pitch: int  # MIDI note number
    start: Fraction  # beats
    length: Fraction  # beats


def parse_degree(token: str) -> int:
    """'5' → 5; ValueError for anything but an integer in [-14, 22]."""
    d = int(token)
    if not -14 <= d <= 22:
        raise ValueError(f"degree {token!r} is outside [-14, 22]")
    return d


def parse_duration(token: str) -> Fraction:
    """'1/2' → 1/2 beat; ValueError unless a positive fraction of at most 8 beats."""
    f = Fraction(token)
    if not 0 < f <= 8:
        raise ValueError(f"duration {token!r} is not in (0, 8] beats")
    return f


def key_index(attributes: Mapping[str, object]) -> int:
    raw = attributes.get("key", 0)
    try:
        return round(float(raw)) % 12  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return 0


def key_name(attributes: Mapping[str, object]) -> str:
    mode = "minor" if attributes.get("mode") == "minor" else "major"
    return f"{KEY_NAMES[key_index(attributes)]} {mode}"


def tempo_of(attributes: Mapping[str, object]) -> float:
    raw = attributes.get("tempo", DEFAULT_TEMPO)
    try:
        bpm = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return DEFAULT_TEMPO
    return DEFAULT_TEMPO if not math.isfinite(bpm) else min(300.0, max(30.0, bpm))


def melody_notes(attributes: Mapping[str, object], melody: str = "melody") -> list[Note]:
    """The melody's notes, one per step, back to back; ValueError for a malformed melody."""
    scale = _SCALES["minor" if attributes.get("mode") == "minor" else "major"]
    pc = 7 * key_index(attributes) % 12
    tonic = 60 + pc - (12 if pc > 6 else 0)  # tonic between F#3 and F#4
    text = attributes.get(melody)
    if not isinstance(text, str) or not text:
        raise ValueError(f"no {melody!r} to play")
    notes, t = [], Fraction(0)
    for step in text.split(" "):
        degree, duration = step.split(":")[:2]
        idx = parse_degree(degree) - 1
        pitch = tonic + scale[idx % 7] + 12 * (idx // 7)
        length = parse_duration(duration)
        notes.append(Note(pitch, t, length))
        t += length
    return notes


def frequency(pitch: int) -> float:
    """Equal temperament, A4 = MIDI 69 = 440 Hz."""
    return 440.0 * 2.0 ** ((pitch - 69) / 12.0)
