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
- Kafka reading/writing for the CLI (`CampaignLogs`, `ReadWindow`, `load_campaign`,
  `read_topic`, `read_bandit_state`, `write_replay`), target policies (`parse_policy_spec`,
  `uniform`, `fixed`, `greedy`, `from_distribution`) and output (`print_report`, `print_ope`,
  `report_html`, `ope_html`, `write_html`, `write_json`).

Tools import only these names (the layer contract in pyproject.toml checks it).
"""

from services.analysis.compare import ArmComparison, compare_arms
from services.analysis.dataset import LoggedData
from services.analysis.effects import GroupEffect
from services.analysis.effects import attribute_effects as group_attribute_effects
from services.analysis.kafka_io import (
    CampaignLogs,
    ReadWindow,
    ReplayWrite,
    load_campaign,
    parse_offsets,
    parse_time,
    read_bandit_state,
    read_latest,
    read_topic,
    write_replay,
)
from services.analysis.ope import OpeResult, SupportThresholds, evaluate
from services.analysis.output import (
    ope_html,
    print_ope,
    print_report,
    report_html,
    write_html,
    write_json,
)
from services.analysis.policies import (
    PolicyError,
    TargetPolicy,
    fixed,
    from_distribution,
    greedy,
    load_bandit_state,
    load_distribution,
    parse_policy_spec,
    uniform,
)
from services.analysis.replay import ColumnMapping, ReplayError, read_logs
from services.analysis.report import CampaignReport, build_report, report_from_logs
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
    "CampaignLogs",
    "CampaignReport",
    "ColumnMapping",
    "GroupEffect",
    "Lift",
    "LoggedData",
    "OpeResult",
    "PolicyError",
    "Rate",
    "ReadWindow",
    "ReplayError",
    "ReplayWrite",
    "SequentialResult",
    "SrmResult",
    "SupportThresholds",
    "TargetPolicy",
    "build_report",
    "compare_arms",
    "evaluate",
    "fixed",
    "from_distribution",
    "greedy",
    "group_attribute_effects",
    "load_bandit_state",
    "load_campaign",
    "load_distribution",
    "ope_html",
    "parse_offsets",
    "parse_policy_spec",
    "parse_time",
    "print_ope",
    "print_report",
    "prob_beats",
    "rate",
    "read_bandit_state",
    "read_latest",
    "read_logs",
    "read_topic",
    "relative_lift",
    "report_from_logs",
    "report_html",
    "sequential_test",
    "srm_test",
    "uniform",
    "wilson_interval",
    "write_html",
    "write_json",
    "write_replay",
]
