"""Experiment analysis and off-policy evaluation (a library; `admuse report|ope|replay` use it).

Public API:

- `compare_arms(control=(successes, trials), treatment=(successes, trials),
  expected_control_share=None, confidence=0.95, history=None) -> ArmComparison` — the result
  table of an A/B comparison: rates with Wilson intervals, relative lift with interval, P(beats
  control), SRM check, always-valid sequential test. `ArmComparison.to_dict()` is JSON-ready.
- the formulas on their own: `rate`, `wilson_interval`, `relative_lift`, `prob_beats`,
  `srm_test`, `sequential_test` (see `services.analysis.stats`).
- `LoggedData` (columns of logged decisions), `evaluate(data, policy) -> OpeResult` with the
  target policies in `services.analysis.policies`.
- `read_logs(path, ColumnMapping.parse("action=…,reward=…,propensity=…")) -> ReplayResult`.
- `build_report(campaign_id, rewards, ...) -> CampaignReport`.
"""

from services.analysis.compare import ArmComparison, compare_arms
from services.analysis.dataset import LoggedData
from services.analysis.ope import OpeResult, SupportThresholds, evaluate
from services.analysis.replay import ColumnMapping, ReplayError, read_logs
from services.analysis.report import CampaignReport, build_report
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
    wilson_interval,
)

__all__ = [
    "ArmComparison",
    "CampaignReport",
    "ColumnMapping",
    "Lift",
    "LoggedData",
    "OpeResult",
    "Rate",
    "ReplayError",
    "SequentialResult",
    "SrmResult",
    "SupportThresholds",
    "build_report",
    "compare_arms",
    "evaluate",
    "prob_beats",
    "rate",
    "read_logs",
    "relative_lift",
    "sequential_test",
    "srm_test",
    "wilson_interval",
]
