"""Which proposal search gets the next challenger slot: a bandit over the two searches.

Candidates come from two searches (`candidates.propose`): the *global* one, the generator's
samples, trained on what was clicked and free to move every attribute at once; and the *local*
one, proven creatives with one or two attributes redrawn (`neighbours`). Both are scored by
the same reward model, but its word is not equally good for both: a generator trained to raise
the model's score finds where the model is wrong, so its samples come with the highest
predictions, and ranked together the global search took nearly every slot. On the demo
scenario at 2 % CTR (harness) the mobile slots went to generator samples that shifted the
incumbent's colours further the way the data pointed, predicted 1.5-8× the incumbent and
clicking at 0.3-0.7× it, while the local candidates in the same pool held 2-4× winners.

So the searches compete for slots on their record, not on the model's word: each slot goes to
the search with the higher draw from ``Beta(a + promoted, b + retired)`` of its decided
challengers in the campaign (Thompson sampling), and within a search candidates are ranked as
before. A search whose challengers keep losing gets fewer slots, never none.

The local search starts ahead (`PRIOR`: local ``Beta(2, 1)``, global ``Beta(1, 2)``, worth one
decided challenger each, so five slots in six go local before either has a record): a
neighbour asks one question about a creative the bandit already knows, a generator sample
several at once, where the model errs most. With an even start, half the first slots of the
e2e scenario's short runs went to far samples and 3 of 5 runs promoted no winner (2 of them
failed the e2e test: a run with no winner is behind the catalog bandit by its test cost);
started local, 6 of 6 promoted one. The head start is a prior, not a rule: two wins of the
generator's against two losses of the neighbours' give the generator three slots in four.

A creative's search is read off the creative itself, so records need no field for it: within
`LOCAL_CHANGES` attributes of a proven creative of its segment it is local, otherwise global
(a generator sample that close counts as local: it asks the same question a neighbour does).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from services.inference.admission import attributes_of, changed_attributes

__all__ = [
    "GLOBAL",
    "LOCAL",
    "LOCAL_CHANGES",
    "PRIOR",
    "SEARCHES",
    "Record",
    "pick",
    "record",
    "search_of",
]

LOCAL = "local"
GLOBAL = "global"
SEARCHES = (LOCAL, GLOBAL)
LOCAL_CHANGES = 2
PRIOR = {LOCAL: (2.0, 1.0), GLOBAL: (1.0, 2.0)}  # (a, b) of each search's Beta before its record

Record = dict[str, tuple[int, int]]  # search -> (promoted, retired)


def search_of(
    creative: Mapping[str, object],
    proven: Iterable[Mapping[str, object]],
    space: Mapping[str, Mapping[str, object]],
) -> str:
    """`LOCAL` when ``creative`` differs from some ``proven`` creative (attribute maps or
    Creative records) in at most `LOCAL_CHANGES` attributes, else `GLOBAL`."""
    attrs = attributes_of(creative)
    for other in proven:
        if changed_attributes(attrs, attributes_of(other), space) <= LOCAL_CHANGES:
            return LOCAL
    return GLOBAL


def record(decided: Iterable[tuple[str, bool]]) -> Record:
    """Per search, (promoted, retired) from ``(search, promoted)`` of decided challengers."""
    out = {s: (0, 0) for s in SEARCHES}
    for search, promoted in decided:
        wins, losses = out.get(search, (0, 0))
        out[search] = (wins + 1, losses) if promoted else (wins, losses + 1)
    return out


def pick(rec: Mapping[str, tuple[int, int]], n: int, rng: np.random.Generator) -> list[str]:
    """The search each of ``n`` slots goes to: one Thompson draw per slot."""
    posterior = {}
    for s in SEARCHES:
        won, lost = rec.get(s, (0, 0))
        posterior[s] = (PRIOR[s][0] + won, PRIOR[s][1] + lost)
    out = []
    for _ in range(max(n, 0)):
        draws = {s: rng.beta(*posterior[s]) for s in SEARCHES}
        out.append(max(SEARCHES, key=lambda s: draws[s]))
    return out
