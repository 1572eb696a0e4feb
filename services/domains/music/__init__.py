"""Music: jingles and hooks — a melody, tempo, key, instrument and a lyric line, judged by
listeners (play, listen-through, skip, like, replay).

Renderings: `wav` (synthesized, `synth`), `mid` (Standard MIDI File, `midi`) and `txt` (the
lyric line). Admission rules on the melody (`MusicOptions`): every degree within
[`lowest`, `highest`], the last degree a stable one, no leap wider than `max_leap` degrees.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.domains.base import Domain, Feedback, Rule
from services.domains.music.midi import render_midi
from services.domains.music.synth import TIMBRES, render_wav
from services.domains.music.theory import key_name, parse_degree, parse_duration

__all__ = ["MusicDomain", "MusicOptions"]


class MusicOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    melody: str = "melody"  # the sequence attribute holding degree and duration
    lyric: str = "lyric"
    lowest: int = Field(1, ge=-14, le=22)
    highest: int = Field(8, ge=-14, le=22)
    stable_degrees: list[int] = Field(default_factory=lambda: [1, 3, 5, 8], min_length=1)
    max_leap: int | None = Field(5, ge=1)

    @model_validator(mode="after")
    def _order(self) -> MusicOptions:
        if self.lowest > self.highest:
            raise ValueError(f"lowest ({self.lowest}) is above highest ({self.highest})")
        return self


class MusicDomain(Domain):
    name = "music"
    meanings: ClassVar[Mapping[str, str]] = {
        "melody": "sequence of (degree, duration): scale degrees (1 = tonic, 8 = octave) and "
        "beats (n or n/d quarter notes)",
        "tempo": "beats per minute (numeric)",
        "key": "position on the circle of fifths, circular 0..12 step 1 (0 = C, 1 = G, …)",
        "mode": "major or minor (categorical; default major)",
        "instrument": f"timbre: {', '.join(TIMBRES)} (categorical; default sine)",
        "lyric": "the lyric line, sung over the melody (categorical text)",
    }
    formats: ClassVar[Mapping[str, str]] = {
        "wav": "audio/wav",
        "mid": "audio/midi",
        "txt": "text/plain; charset=utf-8",
    }
    feedback: ClassVar[Mapping[str, Feedback]] = {
        "play": Feedback("the track started playing"),
        "listen_through": Feedback(
            "the listener stopped or finished; value = fraction heard", 1.0, value=True
        ),
        "skip": Feedback("the listener skipped to something else"),
        "like": Feedback("the listener liked the track", 0.5),
        "replay": Feedback("the listener played it again", 0.25, once=False),
    }
    Options = MusicOptions

    def space_problems(
        self, attributes: Sequence[Mapping[str, Any]], options: BaseModel
    ) -> list[str]:
        assert isinstance(options, MusicOptions)
        by_name = {a.get("name"): a for a in attributes}
        mel = by_name.get(options.melody)
        if mel is None or mel.get("kind") != "sequence":
            return [f"needs a sequence attribute {options.melody!r} (degree, duration)"]
        fields = {f["name"]: f["values"] for f in mel.get("fields") or []}
        if set(fields) != {"degree", "duration"}:
            return [f"{options.melody!r} needs exactly the fields degree and duration"]
        problems = []
        for token in fields["degree"]:
            try:
                parse_degree(token)
            except ValueError as exc:
                problems.append(f"{options.melody}.degree: {exc}")
        for token in fields["duration"]:
            try:
                parse_duration(token)
            except (ValueError, ZeroDivisionError) as exc:
                problems.append(f"{options.melody}.duration: {exc}")
        return problems

    def rules(self, options: BaseModel, campaign: Mapping[str, Any]) -> list[Rule]:
        assert isinstance(options, MusicOptions)
        o = options

        def degrees(attrs: Mapping[str, object]) -> list[int]:
            text = str(attrs.get(o.melody, ""))
            try:
                return [parse_degree(step.split(":")[0]) for step in text.split(" ")]
            except ValueError:
                return []  # not a melody of integer degrees: every rule below refuses it

        def in_range(attrs: Mapping[str, object]) -> str | None:
            d = degrees(attrs)
            out = [x for x in d if not o.lowest <= x <= o.highest]
            if not d or out:
                return f"degrees {out or 'unreadable'} outside [{o.lowest}, {o.highest}]"
            return None

        def ends_stable(attrs: Mapping[str, object]) -> str | None:
            d = degrees(attrs)
            if d and d[-1] in o.stable_degrees:
                return None
            return f"ends on {d[-1] if d else '?'}, not one of {o.stable_degrees}"

        def leaps(attrs: Mapping[str, object]) -> str | None:
            d, most = degrees(attrs), o.max_leap or 0
            wide = [(a, b) for a, b in itertools.pairwise(d) if abs(b - a) > most]
            return f"leaps {wide} wider than {most} degrees" if wide or not d else None

        rules = [Rule("melody_range", in_range), Rule("melody_ending", ends_stable)]
        return rules + ([Rule("melody_leap", leaps)] if o.max_leap is not None else [])

    def render(
        self,
        fmt: str,
        attributes: Mapping[str, object],
        campaign: Mapping[str, Any],
        view: Mapping[str, Any] | None = None,
    ) -> bytes:
        options = self.parse_options(campaign.get("domain_options"))
        assert isinstance(options, MusicOptions)
        if fmt == "wav":
            return render_wav(attributes, options.melody)
        if fmt == "mid":
            return render_midi(attributes, options.melody, options.lyric)
        lyric = attributes.get(options.lyric)
        return f"{key_name(attributes)}\n{lyric if isinstance(lyric, str) else ''}\n".encode()
