"""The music and film scenarios: valid for their domains, and their hidden optimum lies
outside the catalog, admissible, and better than the best human-made creative everywhere."""

from __future__ import annotations

import pytest

from services.common.attribute_kinds import circular_distance
from services.common.campaign import SpecError, campaign_record
from services.domains import check_record
from services.inference.admission import admit
from services.simulator.groundtruth import GroundTruth
from services.simulator.scenario import load_scenario, parse_scenario


@pytest.mark.parametrize("name", ["music", "film"])
def test_the_optimum_lies_outside_the_catalog(name: str) -> None:
    scenario = load_scenario(name)
    record = campaign_record(scenario.campaign, revision=1)
    check_record(record)
    truth = GroundTruth(scenario)
    for segment in truth.segments:
        best, seed = truth.optimum(segment), truth.best_catalog(segment)
        assert best.p_click > 1.5 * seed.p_click and best.reward > seed.reward, segment
        assert admit(best.attributes, record, []).admitted, (segment, best.attributes)
        seeds = [s.attributes for s in scenario.campaign.seeds]
        assert all(best.attributes != s for s in seeds)


def test_circular_and_sequence_effects_score_as_declared() -> None:
    scenario = load_scenario("music")
    truth = GroundTruth(scenario)
    weight = {e.attribute: e.weight for e in scenario.truth.effects}
    track = {"melody": "1:1/2 2:1/2 3:1/2 5:1/2 6:1 8:2", "tempo": 150.0, "key": 2.0}
    track |= {"instrument": "sine", "lyric": "Wake up, go"}
    top = truth.logit("commute", track)
    # one key round the circle of fifths costs the same either way (1 and 3 around 2)
    assert truth.logit("commute", track | {"key": 1.0}) == pytest.approx(
        truth.logit("commute", track | {"key": 3.0})
    )
    # the opposite point of the circle costs the full weight
    assert top - truth.logit("commute", track | {"key": 8.0}) == pytest.approx(weight["key"])
    d = circular_distance(11, 2, 0, 12)
    assert top - truth.logit("commute", track | {"key": 11.0}) == pytest.approx(
        weight["key"] * d**2
    )
    one_step = track | {"melody": "1:1/2 2:1/2 3:1/2 5:1/2 6:1 5:2"}
    assert top - truth.logit("commute", one_step) == pytest.approx(weight["melody"] / 12)
    garbage = track | {"melody": "garbage"}
    assert top - truth.logit("commute", garbage) == pytest.approx(weight["melody"])


def test_bad_structured_effects_are_named() -> None:
    raw = load_scenario("music").model_dump()
    raw["truth"]["effects"][1]["peak"] = 12
    with pytest.raises(SpecError, match=r"truth.effects\[1\] \(key\): a circular effect"):
        parse_scenario(raw)
    raw = load_scenario("music").model_dump()
    raw["truth"]["effects"][2]["steps"] = "1:1 2:1"
    with pytest.raises(SpecError, match="a sequence effect needs full `steps`"):
        parse_scenario(raw)
