"""A film creative's story: its beats in order with their captions, the protagonist's traits,
the tone and the ending; and the one-paragraph synopsis assembled from the beats' text.

Captions come from the campaign's `beat_text` option (token → sentence), else the token with
underscores as spaces. Everything here is plain text; `storyboard` escapes it for SVG.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Story", "story_of", "synopsis"]


@dataclass(frozen=True)
class Story:
    beats: tuple[str, ...]  # tokens, in order
    captions: tuple[str, ...]  # one sentence per beat
    traits: tuple[str, ...]
    tone: str
    ending: str


def _words(token: object) -> str:
    return str(token).replace("_", " ").strip()


def story_of(
    attributes: Mapping[str, object],
    *,
    beats: str = "beats",
    traits: Sequence[str] = ("protagonist",),
    beat_text: Mapping[str, str] | None = None,
) -> Story:
    """Read a creative's story; missing or odd values become empty parts, never an error."""
    raw = attributes.get(beats)
    tokens = tuple(s.split(":")[0] for s in raw.split(" ") if s) if isinstance(raw, str) else ()
    text = beat_text or {}
    captions = tuple(text.get(t) or _words(t).capitalize() for t in tokens)
    found: list[str] = []
    for name in traits:
        value = attributes.get(name)
        if isinstance(value, str) and value:
            found.extend(_words(v.split(":")[0]) for v in value.split(" ") if v)
    tone = attributes.get("tone")
    ending = attributes.get("ending")
    return Story(
        tokens,
        captions,
        tuple(found),
        _words(tone) if isinstance(tone, str) else "",
        _words(ending) if isinstance(ending, str) else "",
    )


def synopsis(story: Story) -> str:
    """One paragraph: who the protagonist is, then the beats in order, then tone and ending."""
    who = f"A {', '.join(story.traits)} protagonist" if story.traits else "Our protagonist"
    parts = [f"{who}."]
    for i, caption in enumerate(story.captions):
        sentence = caption.rstrip(".!?") + "."
        if len(story.captions) > 1 and i == 0:
            sentence = "First, " + sentence[0].lower() + sentence[1:]
        elif len(story.captions) > 1 and i == len(story.captions) - 1:
            sentence = "Finally, " + sentence[0].lower() + sentence[1:]
        parts.append(sentence)
    tail = [
        f"a {story.tone} tone" if story.tone else "",
        f"a {story.ending} ending" if story.ending else "",
    ]
    tail = [t for t in tail if t]
    if tail:
        parts.append(f"Told in {' with '.join(tail)}.")
    return " ".join(parts)
