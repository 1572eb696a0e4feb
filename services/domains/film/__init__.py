"""Film: story and character variants — beats, the protagonist's traits, tone and ending —
judged by audience votes and watch-through in previews and interactive formats.

Renderings: `svg` (a storyboard card, `storyboard`) and `txt` (the synopsis, `story`).
Admission rules (`FilmOptions`): the `required` beats appear in that order, and no
`forbidden_together` set of tokens (beats or other attribute values) appears whole.
Votes between variants shown together become rewards as `votes` says (docs/analysis.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from services.domains.base import Domain, Feedback, Rule
from services.domains.film.story import story_of, synopsis
from services.domains.film.storyboard import storyboard_svg

__all__ = ["FilmDomain", "FilmOptions"]


class FilmOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    beats: str = "beats"  # the sequence attribute of story beats (field `beat`)
    traits: list[str] = Field(default_factory=lambda: ["protagonist"])
    beat_text: dict[str, str] = Field(default_factory=dict)  # beat token → caption sentence
    required: list[str] = Field(default_factory=list)  # beats that must appear, in order
    forbidden_together: list[list[str]] = Field(default_factory=list)


class FilmDomain(Domain):
    name = "film"
    meanings: ClassVar[Mapping[str, str]] = {
        "beats": "sequence of story beats (field beat), in screen order",
        "protagonist": "the protagonist's trait(s) (categorical, or a sequence of traits)",
        "tone": "tone: dark, warm, comic, tense, hopeful, … (the card's palette)",
        "ending": "the ending (categorical)",
    }
    formats: ClassVar[Mapping[str, str]] = {
        "svg": "image/svg+xml",
        "txt": "text/plain; charset=utf-8",
    }
    feedback: ClassVar[Mapping[str, Feedback]] = {
        "vote": Feedback("chosen among the variants shown together (docs/analysis.md)", 1.0),
        "watch_through": Feedback("watched; value = fraction of the preview seen", value=True),
        "drop_off": Feedback("stopped watching; value = the beat index it stopped at"),
    }
    Options = FilmOptions

    def space_problems(
        self, attributes: Sequence[Mapping[str, Any]], options: BaseModel
    ) -> list[str]:
        assert isinstance(options, FilmOptions)
        beats = next((a for a in attributes if a.get("name") == options.beats), None)
        if beats is None or beats.get("kind") != "sequence":
            return [f"needs a sequence attribute {options.beats!r} (field beat)"]
        fields = {f["name"]: list(f["values"]) for f in beats.get("fields") or []}
        if list(fields) != ["beat"]:
            return [f"{options.beats!r} needs exactly one field, beat"]
        unknown = sorted(set(options.required) - set(fields["beat"]))
        if unknown:
            return [f"required beats {unknown} are not in the beat vocabulary"]
        if len(options.required) > int(beats.get("length") or 0):
            return [f"{len(options.required)} required beats do not fit the sequence"]
        return []

    def rules(self, options: BaseModel, campaign: Mapping[str, Any]) -> list[Rule]:
        assert isinstance(options, FilmOptions)
        o = options

        def tokens(attrs: Mapping[str, object]) -> list[str]:
            raw = attrs.get(o.beats)
            return [s.split(":")[0] for s in raw.split(" ")] if isinstance(raw, str) else []

        def required_in_order(attrs: Mapping[str, object]) -> str | None:
            seq, at = tokens(attrs), 0
            for beat in o.required:
                try:
                    at = seq.index(beat, at) + 1
                except ValueError:
                    return f"{beat!r} missing or out of order (required: {o.required})"
            return None

        def not_forbidden(attrs: Mapping[str, object]) -> str | None:
            present = set(tokens(attrs)) | {v for v in attrs.values() if isinstance(v, str)}
            for combo in o.forbidden_together:
                if set(combo) <= present:
                    return f"{combo} together"
            return None

        return [Rule("story_required", required_in_order), Rule("story_forbidden", not_forbidden)]

    def render(
        self,
        fmt: str,
        attributes: Mapping[str, object],
        campaign: Mapping[str, Any],
        view: Mapping[str, Any] | None = None,
    ) -> bytes:
        o = self.parse_options(campaign.get("domain_options"))
        assert isinstance(o, FilmOptions)
        story = story_of(attributes, beats=o.beats, traits=o.traits, beat_text=o.beat_text)
        if fmt == "svg":
            return storyboard_svg(story, str(campaign.get("name") or "")).encode()
        return (synopsis(story) + "\n").encode()
