"""Console pages and security, over a fixed snapshot: sign-in, session cookie, CSRF, the
Content-Security-Policy, escaping of every value, inline spec errors equal to the CLI's."""

from __future__ import annotations

import re

import httpx
import pytest
import yaml

from services.common.campaign import SpecError, load_spec
from services.console.settings import Settings
from services.console.state import ConsoleState
from tests.unit.console.conftest import EVIL, KEY, sign_in, token

PAGES = [
    "/campaigns",
    "/campaigns/camp",
    "/experiment/camp",
    "/creatives",
    "/creatives?status=pending&segment=device%3Dmobile",
    "/models",
    "/operations",
    "/creatives/c-a.svg",
    "/experiment/camp.json",
    "/events",
]


async def test_health_needs_no_key_everything_else_does(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).status_code == 200
    for path in PAGES:
        r = await client.get(path, headers={"accept": "text/html"})
        assert r.status_code == 303 and r.headers["location"].startswith("/signin"), path
        assert (await client.get(path, headers={"accept": "*/*"})).status_code == 401, path


async def test_sign_in_refuses_a_wrong_key_and_sets_a_strict_cookie(
    client: httpx.AsyncClient,
) -> None:
    csrf = token((await client.get("/signin")).text)
    bad = await client.post("/signin", data={"csrf": csrf, "key": KEY + "x", "next": "/"})
    assert bad.status_code == 401 and "unknown admin key" in bad.text
    no_csrf = await client.post("/signin", data={"key": KEY})
    assert no_csrf.status_code == 403
    ok = await client.post("/signin", data={"csrf": csrf, "key": KEY, "next": "//evil.example/"})
    assert ok.status_code == 303 and ok.headers["location"] == "/campaigns"  # no open redirect
    cookie = ok.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert (await client.get("/campaigns")).status_code == 200
    await client.post("/signout", data={"csrf": csrf})
    assert (await client.get("/campaigns")).status_code == 401


async def test_every_page_renders_escaped_under_a_strict_csp(client: httpx.AsyncClient) -> None:
    await sign_in(client)
    for path in PAGES[:-1]:
        r = await client.get(path)
        assert r.status_code == 200, (path, r.text[:2000])
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp, path
        assert "unsafe-inline" not in csp
        assert EVIL not in r.text, f"{path} renders markup from the data unescaped"
        if r.headers["content-type"].startswith("text/html"):
            title = re.search(r"<title>(.*?)</title>", r.text, re.S)
            assert title and len(title.group(1)) < 60 and "<" not in title.group(1), path
            assert "<script>" not in r.text.replace('<script src="/static/console.js" defer>', "")
    gallery = (await client.get("/creatives?status=pending")).text
    assert 'data-creative="gen-1"' in gallery and 'data-creative="c-a"' not in gallery
    assert 'data-action="approve"' in gallery
    assert "device=mobile · headline" in gallery and "device=desktop · headline" in gallery
    ops = (await client.get("/operations")).text
    assert "schema_violation" in ops and "•••" in ops and "inference" in ops


async def test_experiment_page_shows_the_reports_numbers(client: httpx.AsyncClient) -> None:
    await sign_in(client)
    report = (await client.get("/experiment/camp.json")).json()["report"]
    page = (await client.get("/experiment/camp")).text
    for arm in report["arms"]:
        row = re.search(rf'<tr data-arm="{arm["arm"]}">(.*?)</tr>', page, re.S)
        assert row, arm["arm"]
        assert f"<td>{arm['impressions']}</td>" in row.group(1)
        assert f"{arm['rewarded']['rate']:.2%}" in row.group(1)
    assert "polyline" in page and 'data-arm="optimized"' in page


async def test_actions_need_the_sessions_csrf_token(client: httpx.AsyncClient) -> None:
    csrf = await sign_in(client)
    for path, data in [
        ("/campaigns/apply", {"spec": "x: 1"}),
        ("/campaigns/camp/state", {"action": "pause"}),
        ("/creatives/gen-1/review", {"action": "approve"}),
        ("/models/camp/rollback", {}),
        ("/models/camp/pin", {"version": "v"}),
    ]:
        for bad in ({}, {"csrf": csrf[:-2] + "xx"}):
            r = await client.post(path, data={**data, **bad})
            assert r.status_code == 403, (path, bad, r.text)


@pytest.mark.parametrize(
    "spec",
    [
        "campaign_id: x\n",
        "{not yaml: [",
        "- a list\n",
        yaml.safe_dump(
            {"campaign_id": "c", "name": "n", "attributes": [], "attribution_window": -1}
        ),
    ],
)
async def test_spec_errors_are_shown_inline_as_the_cli_says_them(
    client: httpx.AsyncClient, spec: str, tmp_path: object
) -> None:
    csrf = await sign_in(client)
    r = await client.post("/campaigns/apply", data={"csrf": csrf, "spec": spec})
    assert r.status_code == 422
    path = tmp_path / "campaign.yaml"  # type: ignore[operator]
    path.write_text(spec)
    with pytest.raises(SpecError) as cli:
        load_spec(path)
    shown = re.findall(r"<li>(.*?)</li>", r.text, re.S)
    expected = str(cli.value).replace(str(path), "campaign spec").splitlines()
    import html

    assert [html.unescape(s) for s in shown] == expected
    assert "textarea" in r.text  # the editor keeps the text to fix


@pytest.mark.parametrize("partial", [True, False])
def test_only_a_whole_page_takes_the_flash(
    settings: Settings, state: ConsoleState, partial: bool
) -> None:
    """A live refresh racing an action's redirect must leave the action's message to the page
    the redirect loads (the message was lost when the refresh got there first)."""
    from starlette.requests import Request

    from services.console.app import create_app
    from services.console.pages import render

    app = create_app(settings, state)
    headers = [(b"x-console-partial", b"1")] if partial else []
    session = {"user": "admin", "csrf": "t", "flash": "c-a: block → blocked"}
    scope = {"type": "http", "method": "GET", "path": "/campaigns", "headers": headers,
             "query_string": b"", "app": app, "session": session}  # fmt: skip
    html = render(Request(scope), "campaigns.html", spec_text="", problems=None).body.decode()
    assert ("block → blocked" in html) is not partial
    assert ("flash" in session) is partial


async def test_music_and_film_creatives_show_in_the_gallery_as_their_domain_renders_them(
    client: httpx.AsyncClient, state: ConsoleState
) -> None:
    """A track plays (audio player, WAV and MIDI from the domain's renderer; the CSP lets the
    page load media from itself); a film cut shows its storyboard."""
    import io

    import mido
    from scipy.io import wavfile

    from tests.unit.console.conftest import creative
    from tests.unit.domains.fixtures import FILM_SPEC, MUSIC_SPEC, record

    snap = state.snapshot
    assert snap is not None
    for spec in (MUSIC_SPEC, FILM_SPEC):
        rec = record(spec)
        snap.campaigns[rec["campaign_id"]] = rec
    snap.creatives["track-1"] = creative(
        "track-1",
        "live",
        campaign_id=MUSIC_SPEC["campaign_id"],
        attributes=MUSIC_SPEC["seeds"][0]["attributes"],
    )
    snap.creatives["cut-1"] = creative(
        "cut-1",
        "live",
        campaign_id=FILM_SPEC["campaign_id"],
        attributes=FILM_SPEC["seeds"][0]["attributes"],
    )
    await sign_in(client)
    page = await client.get("/creatives")
    assert "media-src 'self'" in page.headers["content-security-policy"]
    assert '<audio controls preload="none" src="/creatives/track-1.wav"' in page.text
    assert '<img src="/creatives/cut-1.svg"' in page.text
    wav = await client.get("/creatives/track-1.wav")
    assert wav.headers["content-type"] == "audio/wav"
    rate, pcm = wavfile.read(io.BytesIO(wav.content))
    assert rate > 0 and len(pcm) > rate  # over a second of sound
    mid = await client.get("/creatives/track-1.mid")
    assert any(m.type == "note_on" for m in mido.MidiFile(file=io.BytesIO(mid.content)))
    assert (await client.get("/creatives/track-1.svg")).status_code == 404
    board = await client.get("/creatives/cut-1.svg")
    assert board.headers["content-type"].startswith("image/svg+xml")
    assert (await client.get("/creatives/cut-1.exe")).status_code == 404


async def test_a_campaign_not_rewarded_by_clicks_shows_its_reward_rate_not_a_ctr(
    client: httpx.AsyncClient, state: ConsoleState
) -> None:
    from services.console.pages import rate_label

    assert rate_label(None) == rate_label({"reward": {"kind": "click"}}) == "CTR"
    assert rate_label({"reward": {"kind": "events"}}) == "reward rate"
    await sign_in(client)
    assert "<th>CTR</th>" in (await client.get("/experiment/camp")).text
    assert state.snapshot is not None
    state.snapshot.campaigns["camp"]["reward"] = {"kind": "events"}
    page = (await client.get("/experiment/camp")).text
    assert "<th>reward rate</th>" in page and "CTR" not in page
    gallery = (await client.get("/creatives")).text
    assert "impressions · reward rate" in gallery and "impressions · CTR" not in gallery
