"""The SVG renderer: always well-formed, never injectable, colors validated, templates chosen."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.domains.banner_render import TEMPLATES, render_svg

SVG = "{http://www.w3.org/2000/svg}"
ALLOWED_ATTRS = {
    "xmlns", "width", "height", "viewBox", "role", "font-family", "fill", "x", "y", "rx",
    "font-size", "text-anchor", "font-weight", "cx", "cy", "r",
}  # fmt: skip
ALLOWED_TAGS = {"svg", "title", "rect", "text", "circle"}

HOSTILE = {
    "headline": '<script>alert("x")</script>',
    "cta": '" onload="alert(1)" x="',
    "product": "]]><script>alert(2)</script><![CDATA[",
    "badge": "'><image href=javascript:alert(3)>",
    "background": '#000000" onclick="alert(4)',
    "accent": "url(javascript:alert(5))",
    "text_color": "#ffffff;fill:red",
    "font_scale": "1e309",
}


def _parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return root


def _check_safe(root: ET.Element) -> None:
    for el in root.iter():
        assert el.tag.removeprefix(SVG) in ALLOWED_TAGS, el.tag
        assert set(el.attrib) <= ALLOWED_ATTRS, el.attrib
        for name in ("fill",):
            if name in el.attrib:
                value = el.attrib[name]
                assert len(value) == 7 and value.startswith("#"), value


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_hostile_strings_are_text_not_markup(template: str) -> None:
    svg = render_svg(HOSTILE, template=template)
    root = _parse(svg)
    _check_safe(root)
    assert root.find(f".//{SVG}script") is None
    assert "<script" not in svg
    # The hostile strings are shown, literally, as text.
    texts = {el.text for el in root.iter(f"{SVG}text")}
    assert HOSTILE["headline"] in texts
    assert HOSTILE["cta"] in texts
    assert root.findtext(f"{SVG}title") == HOSTILE["headline"]


def test_bad_colors_fall_back_to_safe_defaults() -> None:
    root = _parse(render_svg(HOSTILE))
    background = root.find(f"{SVG}rect")
    assert background is not None and background.attrib["fill"] == "#ffffff"
    good = _parse(render_svg({"background": "#AABBCC", "headline": "Hi"}))
    first_rect = good.find(f"{SVG}rect")
    assert first_rect is not None and first_rect.attrib["fill"] == "#aabbcc"
    headline = good.find(f"{SVG}text")
    assert headline is not None and headline.attrib["fill"] == "#000000"  # auto: dark on light


def test_text_color_is_used_when_valid() -> None:
    root = _parse(render_svg({"background": "#112233", "text_color": "#ffeedd", "headline": "Hi"}))
    headline = root.find(f"{SVG}text")
    assert headline is not None and headline.attrib["fill"] == "#ffeedd"


def test_unicode_and_control_characters() -> None:
    attrs = {"headline": "Grüße 🎉 \u202e évènement", "cta": "a\x00b\x07c\ud800d", "badge": "–20 %"}
    root = _parse(render_svg(attrs))
    texts = [el.text or "" for el in root.iter(f"{SVG}text")]
    assert "Grüße 🎉 \u202e évènement" in texts
    assert "a\ufffdb\ufffdc\ufffdd" in texts
    assert render_svg(attrs).encode("utf-8")  # encodable: no lone surrogates left


def test_template_choice() -> None:
    attrs = {"headline": "Hi", "cta": "Go", "product": "Shoes", "accent": "#ff0000"}

    def first_shape(svg: str) -> ET.Element:
        return list(_parse(svg))[2]  # after <title> and the background <rect>

    # split opens with its accent panel; banner with the headline text.
    assert first_shape(render_svg({**attrs, "layout": "split"})).attrib["fill"] == "#ff0000"
    assert first_shape(render_svg({**attrs, "layout": "banner"})).tag == f"{SVG}text"
    assert render_svg({**attrs, "layout": "split"}) == render_svg(attrs, template="split")
    assert render_svg({**attrs, "template": "centered"}) == render_svg(attrs, template="centered")
    # The argument wins over the attribute; unknown names fall back to the default.
    assert render_svg({**attrs, "layout": "split"}, template="banner") == render_svg(attrs)
    assert render_svg({**attrs, "layout": "<nope>"}) == render_svg(attrs)


def test_size_and_font_scale_are_bounded() -> None:
    root = _parse(render_svg({"headline": "x", "font_scale": 1e9}, width=10**9, height=-5))
    assert root.attrib["width"] == "4000" and root.attrib["height"] == "30"
    small = _parse(render_svg({"headline": "x", "font_scale": 0.5}))
    big = _parse(render_svg({"headline": "x", "font_scale": 2.0}))
    size = lambda r: float(r.find(f"{SVG}text").attrib["font-size"])  # noqa: E731
    assert size(big) == pytest.approx(4 * size(small))


def test_long_text_is_shortened() -> None:
    root = _parse(render_svg({"headline": "A" * 5000}))
    headline = root.find(f"{SVG}text")
    assert headline is not None and len(headline.text or "") <= 80


@settings(max_examples=150, deadline=None)
@given(
    attrs=st.dictionaries(
        st.sampled_from(["headline", "cta", "product", "badge", "background", "layout",
                         "accent", "text_color", "font_scale", "call_to_action"]),
        st.one_of(st.text(max_size=60), st.floats(allow_nan=True), st.integers(), st.none()),
    ),
    template=st.one_of(st.none(), st.sampled_from([*TEMPLATES, "x"])),
)  # fmt: skip
def test_any_attributes_render_well_formed_safe_svg(
    attrs: dict[str, object], template: str | None
) -> None:
    svg = render_svg(attrs, template=template)
    _check_safe(_parse(svg))
