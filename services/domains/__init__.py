"""Creative domains as plug-ins (docs/domains.md): banner, music and film ship with admuse;
others register a `Domain` subclass under the entry-point group `admuse.domains`.

A layer between `services.common` and the services: the admission gate, the renderers of the
API and the reports, and the reward mapping all ask `domain_for(campaign)`.
"""

from __future__ import annotations

import functools
import importlib
import json
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from pydantic import BaseModel

from services.domains.base import Domain, DomainError, Feedback, NoOptions, Rule

__all__ = [
    "ENTRY_POINT_GROUP",
    "Domain",
    "DomainError",
    "Feedback",
    "NoOptions",
    "Rule",
    "available",
    "check_record",
    "domain_for",
    "get_domain",
    "rules_for",
]

ENTRY_POINT_GROUP = "admuse.domains"
_BUILT_IN = {
    "banner": "services.domains.banner:BannerDomain",
    "music": "services.domains.music:MusicDomain",
    "film": "services.domains.film:FilmDomain",
}


@functools.cache
def _registry() -> dict[str, str]:
    found = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return {**found, **_BUILT_IN}  # a plug-in cannot replace a built-in domain


def available() -> list[str]:
    return sorted(_registry())


@functools.cache
def get_domain(name: str) -> Domain:
    """The domain registered as `name`; DomainError naming the known ones otherwise."""
    target = _registry().get(name)
    if target is None:
        raise DomainError(f"unknown creative domain {name!r}; known: {available()}")
    module, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise DomainError(f"domain {name!r} ({target}) cannot be loaded: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Domain)):
        raise DomainError(f"domain {name!r} ({target}) is not a Domain subclass")
    return cls()


def domain_for(campaign: Mapping[str, Any]) -> tuple[Domain, BaseModel]:
    """A campaign record's (or spec mapping's) domain and its validated options; a record
    from before domains (no `domain` field) is a banner campaign."""
    domain = get_domain(str(campaign.get("domain") or "banner"))
    raw = campaign.get("domain_options")
    key = raw if isinstance(raw, str) else json.dumps(raw or {}, sort_keys=True)
    return domain, _options(domain.name, key)


@functools.lru_cache(maxsize=256)
def _options(name: str, raw: str) -> BaseModel:
    return get_domain(name).parse_options(raw)


def rules_for(campaign: Mapping[str, Any]) -> list[Rule]:
    domain, options = domain_for(campaign)
    return domain.rules(options, campaign)


def check_record(campaign: Mapping[str, Any]) -> None:
    """A Campaign record (`campaign_record(spec)`) its domain can serve: a known domain,
    options it accepts, attributes it can read, reward events it sends. DomainError saying
    everything that is wrong otherwise. `admuse campaign apply|show` call it before publishing.
    """
    domain, options = domain_for(campaign)
    problems = domain.space_problems(campaign.get("attributes") or [], options)
    reward = campaign.get("reward") or {}
    unknown = sorted(set(reward.get("event_weights") or {}) - set(domain.feedback))
    if unknown:
        problems.append(
            f"reward events {unknown} are not feedback events of this domain "
            f"({sorted(domain.feedback)})"
        )
    if problems:
        raise DomainError(f"domain {domain.name!r}: " + "; ".join(problems))
