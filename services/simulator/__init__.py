"""admuse simulator service (see DESIGN.md §1): synthetic audiences and apps.

What the CLI and the fault suite use (tools reach the simulator only through these names):
`load_scenario`/`Scenario` (a scenario file and its campaign), `simulate` (play a scenario
against Decide), `CreativeWatch` (follow a campaign's creatives and models), `analyze`,
`load_results`, `print_result` and `write_html` (the result table and report), `measure_names`
(what a scenario's rates are called: CTR, or engagement for campaigns rewarded by events).
"""

from services.simulator.app import simulate
from services.simulator.htmlreport import write_html
from services.simulator.report import analyze, load_results, measure_names
from services.simulator.result_table import print_result
from services.simulator.scenario import Scenario, load_scenario
from services.simulator.watch import CreativeWatch

__all__ = [
    "CreativeWatch",
    "Scenario",
    "analyze",
    "load_results",
    "load_scenario",
    "measure_names",
    "print_result",
    "simulate",
    "write_html",
]
