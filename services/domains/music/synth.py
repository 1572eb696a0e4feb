"""A small additive synthesizer: a music creative → 16-bit mono WAV bytes.

Every note is a sum of harmonics of its fundamental (the instrument's timbre) under an
attack/decay/release envelope; notes follow each other at the creative's tempo. Written with
numpy and the standard library's `wave` module; no sound files are read. The output lasts
exactly the melody's beats × 60 / tempo seconds.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Mapping

import numpy as np

from services.domains.music.theory import frequency, melody_notes, tempo_of

__all__ = ["SAMPLE_RATE", "TIMBRES", "render_wav", "synthesize"]

SAMPLE_RATE = 22050
# instrument → (relative amplitude of harmonic 1, 2, 3, …; decay per second, 0 = sustained)
TIMBRES: dict[str, tuple[tuple[float, ...], float]] = {
    "sine": ((1.0,), 0.0),
    "square": ((1.0, 0.0, 1 / 3, 0.0, 1 / 5, 0.0, 1 / 7), 0.0),  # odd harmonics, band-limited
    "organ": ((1.0, 0.5, 0.25, 0.125), 0.0),
    "pluck": ((1.0, 0.6, 0.3, 0.2, 0.1), 4.0),  # bright attack dying away
}
_ATTACK_S, _RELEASE_S = 0.01, 0.03


def synthesize(
    attributes: Mapping[str, object], melody: str = "melody", rate: int = SAMPLE_RATE
) -> np.ndarray:
    """float32 samples in [-1, 1]; ValueError for a malformed melody."""
    notes = melody_notes(attributes, melody)
    seconds_per_beat = 60.0 / tempo_of(attributes)
    harmonics, decay = TIMBRES.get(str(attributes.get("instrument")), TIMBRES["sine"])
    total = round(float(sum(n.length for n in notes)) * seconds_per_beat * rate)
    out = np.zeros(total, np.float64)
    for note in notes:
        start = round(float(note.start) * seconds_per_beat * rate)
        end = min(total, round(float(note.start + note.length) * seconds_per_beat * rate))
        t = np.arange(end - start) / rate
        f0 = frequency(note.pitch)
        tone = sum(
            a * np.sin(2 * np.pi * f0 * (h + 1) * t)
            for h, a in enumerate(harmonics)
            if a and f0 * (h + 1) < rate / 2
        )
        out[start:end] += tone * _envelope(len(t), rate, decay)
    peak = float(np.max(np.abs(out))) if len(out) else 0.0
    return (out * (0.8 / peak) if peak > 0 else out).astype(np.float32)


def render_wav(attributes: Mapping[str, object], melody: str = "melody") -> bytes:
    """The creative as a RIFF/WAVE file: PCM 16-bit, mono, `SAMPLE_RATE` Hz."""
    pcm = np.rint(synthesize(attributes, melody) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def _envelope(n: int, rate: int, decay: float) -> np.ndarray:
    env = np.ones(n)
    a, r = min(n, int(_ATTACK_S * rate)), min(n, int(_RELEASE_S * rate))
    if a:
        env[:a] = np.linspace(0.0, 1.0, a, endpoint=False)
    if r:
        env[n - r :] *= np.linspace(1.0, 0.0, r)
    if decay:
        env *= np.exp(-decay * np.arange(n) / rate)
    return env
