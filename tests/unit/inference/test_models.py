"""Model bundles: contract checks on load, generation and scoring with tiny ONNX models."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from services.inference.admission import admit
from services.inference.models import ModelBundle, ModelRejected, choose_providers
from tests.unit.inference import onnx_fixtures as fx

SEG = fx.SEGMENTS[0]


@pytest.fixture(scope="module")
def bundle() -> ModelBundle:
    return ModelBundle.load(fx.metadata(), fx.generator(), fx.reward_model())


def test_load_exposes_the_version(bundle: ModelBundle) -> None:
    assert bundle.version == "v1"
    assert bundle.campaign_id == "spring"
    assert bundle.segments == fx.SEGMENTS
    assert bundle.metadata["seed"] == 7
    assert bundle.providers == ["CPUExecutionProvider"]


def test_choose_providers_is_cpu_and_quiet_here(capfd: pytest.CaptureFixture[str]) -> None:
    choose_providers.cache_clear()
    assert choose_providers() == ["CPUExecutionProvider"]  # onnxruntime (CPU build) in CI
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_generated_creatives_are_valid_attribute_maps(bundle: ModelBundle) -> None:
    creatives = bundle.generate(SEG, 64, np.random.default_rng(0))
    assert len(creatives) == 64
    rules = fx.campaign(min_contrast=1.0)
    for c in creatives:
        assert set(c) == {e["name"] for e in fx.ENCODING}
        result = admit(c, rules, [])
        assert result.admitted, (c, result)
    assert len({c["headline"] for c in creatives}) > 1  # Gumbel noise varies the choice


def test_generation_is_reproducible_from_the_rng(bundle: ModelBundle) -> None:
    a = bundle.generate(SEG, 8, np.random.default_rng(42))
    b = bundle.generate(SEG, 8, np.random.default_rng(42))
    c = bundle.generate(SEG, 8, np.random.default_rng(43))
    assert a == b and a != c
    assert bundle.generate(SEG, 0, np.random.default_rng(0)) == []
    assert len(bundle.generate("country=XX|device=tv", 3, np.random.default_rng(0))) == 3


def test_score_matches_the_reward_model(bundle: ModelBundle) -> None:
    creatives: list[dict[str, Any]] = [
        {"headline": "Last chance", "cta": "Shop", "font_scale": 1.2,
         "background": "#000000", "text_color": "#ffffff"},
        {"headline": "New in", "cta": "Shop", "font_scale": 1.2,
         "background": "#000000", "text_color": "#ffffff"},
    ]  # fmt: skip
    p = bundle.score(SEG, creatives)
    assert p.shape == (2,) and p.dtype == np.float64
    assert p[0] > p[1]  # the fixture's reward model favours "Last chance"
    # By hand: sigmoid(w · [segment one-hot, encoded creative] + b).
    w = fx.reward_weights()
    x = np.zeros(len(fx.SEGMENTS) + fx.CREATIVE_DIM)
    x[0] = 1.0  # SEG
    x[2 + 2] = 1.0  # headline "Last chance"
    x[2 + 4 + 1] = 1.0  # cta "Shop"
    x[2 + 7] = (1.2 - 0.8) / 0.8
    x[2 + 11 : 2 + 14] = 1.0  # white text
    assert p[0] == pytest.approx(1 / (1 + np.exp(-(w @ x - 2.0))), rel=1e-5)
    # Unknown segment: all-zero one-hot.
    x[0] = 0.0
    unknown = bundle.score("country=XX|device=tv", creatives[:1])
    assert unknown[0] == pytest.approx(1 / (1 + np.exp(-(w @ x - 2.0))), rel=1e-5)
    assert bundle.score(SEG, []).shape == (0,)
    # Creative records score like their attribute maps.
    records = [{"creative_id": "c1", "attributes": creatives[0]}]
    assert bundle.score(SEG, records)[0] == pytest.approx(p[0])


def test_unavailable_providers_fall_back_to_cpu_quietly(capfd: pytest.CaptureFixture[str]) -> None:
    bundle = ModelBundle.load(
        fx.metadata(),
        fx.generator(),
        fx.reward_model(),
        providers=["CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    assert bundle.providers == ["CPUExecutionProvider"]
    assert capfd.readouterr().err == ""


def test_encoding_round_trip(bundle: ModelBundle) -> None:
    creatives = bundle.generate(SEG, 16, np.random.default_rng(1))
    again = bundle.encoding.decode_many(bundle.encoding.encode_lenient(creatives), digits=6)
    for a, b in zip(creatives, again, strict=True):
        assert a["font_scale"] == pytest.approx(b["font_scale"], abs=1e-6)
        assert {k: v for k, v in a.items() if k != "font_scale"} == {
            k: v for k, v in b.items() if k != "font_scale"
        }


def _bad_meta(**kw: Any) -> dict[str, Any]:
    return fx.metadata(**kw)


def _shifted_encoding() -> list[dict[str, Any]]:
    enc = fx.metadata()["encoding"]
    enc[1]["offset"] = 5
    return enc


@pytest.mark.parametrize(
    ("meta", "gen", "rew", "reason"),
    [
        (None, b"not an onnx model", None, "invalid_onnx"),
        (None, None, b"\x08\x07garbage", "invalid_onnx"),
        (None, lambda: fx.generator(names=("z", "segment", "gumbel")), None, "signature_mismatch"),
        (None, lambda: fx.generator(out_name="x"), None, "signature_mismatch"),
        (None, lambda: fx.generator(out_width=13), None, "signature_mismatch"),
        (None, lambda: fx.generator(noise_dim=5), None, "signature_mismatch"),
        (None, lambda: fx.generator(batch=1), None, "signature_mismatch"),
        (None, None, lambda: fx.reward_model(out_width=2), "signature_mismatch"),
        (None, None, lambda: fx.reward_model(out_name="p"), "signature_mismatch"),
        (None, lambda: fx.generator(bias=np.full(14, np.nan)), None, "warmup_failed"),
        (None, None, lambda: fx.reward_model(bias=float("nan")), "warmup_failed"),
        (lambda: _bad_meta(format=2), None, None, "bad_metadata"),
        (lambda: _bad_meta(gumbel_dim=6), None, None, "bad_metadata"),
        (lambda: _bad_meta(creative_dim=15), None, None, "bad_metadata"),
        (lambda: _bad_meta(encoding=_shifted_encoding()), None, None, "bad_metadata"),
        (lambda: _bad_meta(segments="DE"), None, None, "bad_metadata"),
        (lambda: _bad_meta(version=None), None, None, "bad_metadata"),
        (lambda: _bad_meta(segments=["only-one"]), None, None, "signature_mismatch"),
    ],
)
def test_bad_models_are_rejected_with_a_reason(meta: Any, gen: Any, rew: Any, reason: str) -> None:
    def make(x: Any, default: Any) -> Any:
        if x is None:
            return default()
        return x() if callable(x) else x

    with pytest.raises(ModelRejected) as caught:
        ModelBundle.load(
            make(meta, fx.metadata), make(gen, fx.generator), make(rew, fx.reward_model)
        )
    assert caught.value.reason == reason
    assert reason in str(caught.value)
