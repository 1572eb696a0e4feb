"""A music creative → a Standard MIDI File (format 0, one track), written by hand.

480 ticks per beat; a tempo meta event, the instrument as a General MIDI program change, the
key signature, the lyric line as a lyric meta event (Latin-1, what MIDI readers expect; other
characters become '?'), then each note on/off. Read back by `mido` in the tests (the
reference reader), not by this module.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

from services.domains.music.theory import key_index, melody_notes, tempo_of

__all__ = ["PROGRAMS", "TICKS_PER_BEAT", "render_midi"]

TICKS_PER_BEAT = 480
PROGRAMS = {"sine": 80, "square": 80, "organ": 19, "pluck": 24}  # GM: lead, organ, guitar
_SHARPS = (0, 1, 2, 3, 4, 5, 6, -5, -4, -3, -2, -1)  # key signature per circle position
_MAX_LYRIC = 200


def render_midi(
    attributes: Mapping[str, object], melody: str = "melody", lyric: str = "lyric"
) -> bytes:
    notes = melody_notes(attributes, melody)
    tempo_us = round(60_000_000 / tempo_of(attributes))
    program = PROGRAMS.get(str(attributes.get("instrument")), 80)
    minor = attributes.get("mode") == "minor"
    sharps = _SHARPS[key_index(attributes)] - (3 if minor else 0)
    sharps = sharps + 12 if sharps < -7 else sharps
    events: list[tuple[int, bytes]] = [
        (0, b"\xff\x51\x03" + tempo_us.to_bytes(3, "big")),
        (0, b"\xff\x59\x02" + struct.pack(">bB", sharps, int(minor))),
        (0, bytes((0xC0, program))),
    ]
    text = attributes.get(lyric)
    if isinstance(text, str) and text:
        data = text[:_MAX_LYRIC].encode("latin-1", "replace")
        events.append((0, b"\xff\x05" + _vlq(len(data)) + data))
    for note in notes:
        on = round(note.start * TICKS_PER_BEAT)
        off = round((note.start + note.length) * TICKS_PER_BEAT)
        events.append((on, bytes((0x90, note.pitch, 96))))
        events.append((off, bytes((0x80, note.pitch, 0))))
    events.sort(key=lambda e: (e[0], e[1][0] == 0x90))  # at one tick: offs before ons
    track, now = bytearray(), 0
    for tick, body in events:
        track += _vlq(tick - now) + body
        now = tick
    track += b"\x00\xff\x2f\x00"
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS_PER_BEAT)
    return header + b"MTrk" + struct.pack(">I", len(track)) + bytes(track)


def _vlq(value: int) -> bytes:
    """MIDI variable-length quantity: 7 bits per byte, high bit set on all but the last."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))
