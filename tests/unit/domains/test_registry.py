"""The domain registry: built-ins, a fourth domain from an entry point, clear refusals."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import services.domains as domains
from services.domains import DomainError, check_record, domain_for, get_domain, rules_for
from services.inference.admission import admit

from .fixtures import FILM_SPEC, MUSIC_SPEC, record

PLUGIN = """
from services.domains import Domain, Feedback, Rule


class PosterDomain(Domain):
    name = "poster"
    meanings = {"slogan": "the poster's slogan"}
    formats = {"txt": "text/plain"}
    feedback = {"stare": Feedback("looked for a while", 1.0)}

    def rules(self, options, campaign):
        return [Rule("short_slogan", lambda a: None if len(str(a.get("slogan"))) < 12 else "long")]

    def render(self, fmt, attributes, campaign):
        return str(attributes.get("slogan")).upper().encode()
"""


def test_built_in_domains_and_banner_by_default() -> None:
    assert {"banner", "music", "film"} <= set(domains.available())
    domain, _ = domain_for({"attributes": []})  # a record from before domains
    assert domain.name == "banner"
    check_record(record(MUSIC_SPEC))
    check_record(record(FILM_SPEC))


def test_unknown_domains_and_bad_options_are_named() -> None:
    with pytest.raises(DomainError, match=r"unknown creative domain 'opera'.*banner"):
        get_domain("opera")
    with pytest.raises(DomainError, match=r"music.*highest"):
        check_record(record(MUSIC_SPEC | {"domain_options": {"highest": "high"}}))
    no_melody = MUSIC_SPEC | {"attributes": MUSIC_SPEC["attributes"][1:]}
    no_melody["seeds"] = [{"name": "x", "attributes": {**MUSIC_SPEC["seeds"][0]["attributes"]}}]
    del no_melody["seeds"][0]["attributes"]["melody"]
    with pytest.raises(DomainError, match="needs a sequence attribute 'melody'"):
        check_record(record(no_melody))
    unknown_beat = FILM_SPEC | {"domain_options": {"required": ["wedding"]}}
    with pytest.raises(DomainError, match="wedding"):
        check_record(record(unknown_beat))
    # the gate admits nothing for a domain it does not know (or options it cannot read)
    verdict = admit({}, {"attributes": [], "domain": "opera"}, [])
    assert verdict.reason == "domain_rule" and "opera" in (verdict.detail or "")
    verdict = admit({}, {"attributes": [], "domain": "music", "domain_options": "{oops"}, [])
    assert verdict.reason == "domain_rule" and "not JSON" in (verdict.detail or "")


def test_a_fourth_domain_plugs_in_through_an_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "poster_domain.py").write_text(PLUGIN)
    dist = tmp_path / "poster_domain-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: poster-domain\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[admuse.domains]\nposter = poster_domain:PosterDomain\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    domains._registry.cache_clear()
    domains.get_domain.cache_clear()
    try:
        assert "poster" in domains.available()
        campaign = {"attributes": [{"name": "slogan", "kind": "categorical"}], "domain": "poster"}
        poster = get_domain("poster")
        assert poster.render("txt", {"slogan": "hi"}, campaign) == b"HI"
        assert poster.reward([("stare", None)], {}) == 1.0
        assert [r.name for r in rules_for(campaign)] == ["short_slogan"]
        space = {
            "attributes": [
                {"name": "slogan", "kind": "categorical", "values": ["ok", "a very long one"]}
            ],
            "domain": "poster",
        }
        assert admit({"slogan": "ok"}, space, []).admitted
        assert admit({"slogan": "a very long one"}, space, []).reason == "domain_rule"
    finally:
        sys.modules.pop("poster_domain", None)
        domains._registry.cache_clear()
        domains.get_domain.cache_clear()
