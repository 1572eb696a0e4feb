"""Control vs treatment in one call: the result table of an experiment.

```python
from services.analysis import compare_arms

c = compare_arms(control=(120, 10_000), treatment=(151, 10_050), expected_control_share=0.5)
c.treatment.rate, (c.treatment.low, c.treatment.high)   # CTR with 95% Wilson interval
c.lift.estimate, c.lift.low, c.lift.high                # relative lift with 95% interval
c.prob_treatment_beats_control                          # Beta(1, 1) posteriors
c.srm.flagged, c.srm.p_value                            # sample-ratio mismatch (p < 0.001)
c.sequential.p_value, c.sequential.rejected             # always-valid mSPRT
c.to_dict()                                             # JSON-ready
```
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from services.analysis.stats import (
    Lift,
    Rate,
    SequentialResult,
    SrmResult,
    prob_beats,
    rate,
    relative_lift,
    sequential_test,
    srm_test,
)

__all__ = ["ArmComparison", "compare_arms", "jsonable"]


@dataclass(frozen=True)
class ArmComparison:
    """Everything a result table shows for control vs treatment."""

    control: Rate
    treatment: Rate
    lift: Lift
    prob_treatment_beats_control: float
    srm: SrmResult | None
    sequential: SequentialResult
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (nan becomes None)."""
        return jsonable(asdict(self))


def compare_arms(
    control: tuple[float, int],
    treatment: tuple[float, int],
    *,
    expected_control_share: float | None = None,
    confidence: float = 0.95,
    history: Sequence[tuple[float, int, float, int]] | None = None,
    srm_threshold: float = 0.001,
) -> ArmComparison:
    """Compare a treatment arm with the control arm.

    control, treatment: (successes, trials), e.g. (clicks, impressions).
    expected_control_share: the configured share of traffic in control (the holdout share);
        the SRM check runs only when it is given.
    history: optional cumulative looks (s_control, n_control, s_treatment, n_treatment) in time
        order, for the always-valid sequential test; without it the test uses the totals as a
        single look.
    """
    for name, (s, n) in (("control", control), ("treatment", treatment)):
        if n < 0 or s < 0 or s > n:
            raise ValueError(
                f"{name} must be (successes, trials) with 0 <= successes <= trials, got ({s}, {n})"
            )
    srm = None
    if expected_control_share is not None:
        if not 0 < expected_control_share < 1:
            raise ValueError(
                f"expected_control_share must be in (0, 1), got {expected_control_share}"
            )
        srm = srm_test(
            [int(control[1]), int(treatment[1])],
            [expected_control_share, 1 - expected_control_share],
            srm_threshold,
        )
    looks = list(history) if history else [(control[0], control[1], treatment[0], treatment[1])]
    s_c, n_c, s_t, n_t = (list(col) for col in zip(*looks, strict=True))
    seq = sequential_test(s_c, n_c, s_t, n_t, alpha=round(1 - confidence, 12))
    p_win = prob_beats(control, treatment) if control[1] > 0 and treatment[1] > 0 else float("nan")
    return ArmComparison(
        control=rate(control[0], int(control[1]), confidence),
        treatment=rate(treatment[0], int(treatment[1]), confidence),
        lift=relative_lift(control, treatment, confidence),
        prob_treatment_beats_control=p_win,
        srm=srm,
        sequential=seq,
        confidence=confidence,
    )


def jsonable(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value
