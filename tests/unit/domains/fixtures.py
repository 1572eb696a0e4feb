"""Campaign records of the music and film domains, as `campaign_record` publishes them."""

from __future__ import annotations

from typing import Any

from services.common.campaign import campaign_record, parse_spec

DEGREES = ["-2", "1", "2", "3", "4", "5", "6", "7", "8", "10"]
DURATIONS = ["1/2", "1", "2"]
BEATS = ["hook", "meet", "refusal", "mentor", "trial", "betrayal", "funeral", "climax", "party"]

MUSIC_SPEC: dict[str, Any] = {
    "campaign_id": "jingle",
    "name": "Jingle",
    "domain": "music",
    "domain_options": {"lowest": 1, "highest": 8, "stable_degrees": [1, 3, 5, 8], "max_leap": 4},
    "attributes": [
        {
            "name": "melody",
            "kind": "sequence",
            "length": 6,
            "fields": [
                {"name": "degree", "values": DEGREES},
                {"name": "duration", "values": DURATIONS},
            ],
        },
        {"name": "tempo", "kind": "numeric", "min": 70, "max": 160},
        {"name": "key", "kind": "circular", "min": 0, "max": 12, "step": 1},
        {"name": "instrument", "kind": "categorical", "values": ["sine", "square", "pluck"]},
        {"name": "lyric", "kind": "categorical", "values": ["Sing it loud", "Ça va «bien»"]},
    ],
    "attribution_window": 60,
    "min_contrast": 1,
    "seeds": [
        {
            "name": "Up",
            "attributes": {
                "melody": "1:1 3:1 5:1 8:2 5:1/2 3:1",
                "tempo": 120,
                "key": 0,
                "instrument": "sine",
                "lyric": "Sing it loud",
            },
        }
    ],
}

FILM_SPEC: dict[str, Any] = {
    "campaign_id": "pilot",
    "name": 'Pilot <Episode> & "Co"',
    "domain": "film",
    "domain_options": {
        "required": ["hook", "climax"],
        "forbidden_together": [["funeral", "party"], ["betrayal", "comic"]],
        "beat_text": {"hook": "A stranger arrives in town", "climax": "The storm breaks"},
    },
    "attributes": [
        {
            "name": "beats",
            "kind": "sequence",
            "length": 5,
            "fields": [{"name": "beat", "values": BEATS}],
        },
        {"name": "protagonist", "kind": "categorical", "values": ["reluctant_hero", "trickster"]},
        {"name": "tone", "kind": "categorical", "values": ["dark", "comic", "hopeful"]},
        {"name": "ending", "kind": "categorical", "values": ["happy", "bittersweet"]},
    ],
    "attribution_window": 60,
    "min_contrast": 1,
    "seeds": [
        {
            "name": "Classic",
            "attributes": {
                "beats": "hook meet mentor trial climax",
                "protagonist": "reluctant_hero",
                "tone": "hopeful",
                "ending": "happy",
            },
        }
    ],
}


def record(spec: dict[str, Any]) -> dict[str, Any]:
    return campaign_record(parse_spec(spec), revision=1)
