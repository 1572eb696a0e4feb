"""The books of a fault run: what was sent, answered and written, reconciled from the topics.

Plain functions over decoded records (no I/O), so each rule is tested on its own:

- raw: every record on admuse.events.raw is forwarded, dead-lettered, dropped for consent or a
  duplicate of an event_id already seen — raw = forwarded + dead-lettered + consent-dropped +
  duplicates, no event forwarded twice, none missing;
- simulator: every event the simulator counted as written is on the raw topic (the ones it
  counted as not written are reported, and those of them that landed anyway);
- decisions: every answered Decide has exactly one Decision record;
- rewards: every click the simulator wrote (with consent) on a logged decision has a Reward,
  a clicked one — not a `timeout`, unless the click happened after the decision's attribution
  window by event time (`occurred_at` > `decided_at` + window: Decide answered slowly during a
  fault, so the app's click came late — a timeout is then the contract's answer, counted
  apart as `clicks_after_window`); a decision's Rewards never disagree. A Reward sent again
  unchanged is allowed (docs/contracts.md: features is at least once, readers keep one copy by
  decision_id) and counted; a click on a decision with no Decision record is counted apart
  (the decisions book reports that decision);
- models: once a model served, every later answer was served with one;
- availability: Decide failures and seconds with failures, per fault kind.

`balanced(books)` is the verdict; `problems(books)` says what does not add up.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "availability",
    "balanced",
    "clicks_after_window",
    "decision_books",
    "model_books",
    "problems",
    "raw_books",
    "reward_books",
    "simulator_books",
]


def raw_books(
    raw: Iterable[Mapping[str, Any]],
    forwarded_ids: Iterable[str],
    dead_letters: int,
    dead_lettered_ids: Iterable[str] = (),
) -> dict[str, int]:
    """`raw`: the raw topic's records as the JSON the apps sent (event_id, consent)."""
    records = consenting = 0
    consent_dropped = 0
    consenting_ids: set[str] = set()
    for event in raw:
        records += 1
        given = (event.get("consent") or {}).get("personalization") is True
        if not given:
            consent_dropped += 1
            continue
        consenting += 1
        consenting_ids.add(str(event.get("event_id")))
    fwd = Counter(forwarded_ids)
    dlq_ids = set(dead_lettered_ids)
    duplicates = consenting - len(consenting_ids)
    forwarded = sum(fwd.values())
    return {
        "raw": records,
        "forwarded": forwarded,
        "dead_lettered": dead_letters,
        "consent_dropped": consent_dropped,
        "duplicates": duplicates,
        "imbalance": records - (forwarded + dead_letters + consent_dropped + duplicates),
        "forwarded_twice": sum(n - 1 for n in fwd.values() if n > 1),
        "missing": len(consenting_ids - fwd.keys() - dlq_ids),
        "forwarded_not_sent": len(fwd.keys() - consenting_ids),
    }


def simulator_books(sent_log: Iterable[Mapping[str, Any]], raw_ids: set[str]) -> dict[str, int]:
    """`sent_log`: the simulator's events.jsonl rows (event_id, sent)."""
    written = unsent = lost = landed_anyway = 0
    for row in sent_log:
        if row["sent"]:
            written += 1
            lost += row["event_id"] not in raw_ids
        else:
            unsent += 1
            landed_anyway += row["event_id"] in raw_ids
    return {
        "written": written,
        "not_written": unsent,
        "lost": lost,
        "not_written_but_landed": landed_anyway,
    }


def decision_books(answered_ids: Iterable[str], decision_ids: Iterable[str]) -> dict[str, int]:
    """Answered Decide calls (results.jsonl) against Decision records (admuse.decisions)."""
    answered = set(answered_ids)
    logged = Counter(decision_ids)
    return {
        "answered": len(answered),
        "decision_records": sum(logged.values()),
        "without_decision": len(answered - logged.keys()),
        "duplicate_decisions": sum(n - 1 for d, n in logged.items() if n > 1 and d in answered),
    }


def _said(reward: Mapping[str, Any]) -> str:
    """Everything a Reward says: a re-sent copy says the same, field for field (features
    stamps it with the settling record's time, so `rewarded_at` repeats too)."""
    return json.dumps(dict(reward), sort_keys=True, default=str)


def reward_books(
    clicks: Iterable[Mapping[str, Any]],
    rewards: Iterable[Mapping[str, Any]],
    decision_ids: Iterable[str] | None = None,
    after_window: Iterable[str] = (),
) -> dict[str, int]:
    """`clicks`: click events the simulator wrote (decision_id, consent); `rewards`: the run's
    Reward records (decision_id, clicked, outcome, ...); `decision_ids`: the Decision records'
    ids (None: every clicked decision counts as logged); `after_window`: decisions whose click
    happened after their attribution window by event time (`clicks_after_window`)."""
    late = set(after_window)
    by_decision: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    total = 0
    for r in rewards:
        total += 1
        by_decision[str(r["decision_id"])].append(r)
    clicked_decisions = {str(c["decision_id"]) for c in clicks if c.get("consent", True)}
    unlogged: set[str] = set()
    if decision_ids is not None:
        unlogged = clicked_decisions - set(decision_ids)
        clicked_decisions -= unlogged
    rewarded_click = turned_timeout = missing = after = 0
    for d in clicked_decisions:
        rs = by_decision.get(d, [])
        if not rs:
            missing += 1
        elif any(r["clicked"] for r in rs):
            rewarded_click += 1
        elif d in late:
            after += 1
        else:
            turned_timeout += 1
    again = differently = 0
    for rs in by_decision.values():
        if len(rs) > 1:
            said = {_said(r) for r in rs}
            again += len(said) == 1
            differently += len(said) > 1
    return {
        "clicks_written": len(clicked_decisions) + len(unlogged),
        "clicks_on_unlogged_decisions": len(unlogged),
        "clicked_rewards": rewarded_click,
        "clicks_turned_into_timeout": turned_timeout,
        "clicks_after_window": after,
        "clicks_without_reward": missing,
        "rewards": total,
        "decisions_rewarded_again_unchanged": again,
        "decisions_rewarded_differently": differently,
    }


def clicks_after_window(
    events: Iterable[Mapping[str, Any]], decisions: Iterable[Mapping[str, Any]], window_ms: int
) -> set[str]:
    """Decisions whose click (an admuse.events record) occurred after decided_at + window."""
    decided = {str(d["decision_id"]): _ms(d["decided_at"]) for d in decisions}
    late = set()
    for e in events:
        d = str(e.get("decision_id"))
        if e.get("type") == "click" and d in decided:
            if _ms(e["occurred_at"]) > decided[d] + window_ms:
                late.add(d)
    return late


def _ms(value: Any) -> int:
    return int(value.timestamp() * 1000) if hasattr(value, "timestamp") else int(value)


def model_books(answers: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Answers in time order (results.jsonl rows): once one carried a model version, did any
    later one come without?"""
    first = next((i for i, r in enumerate(answers) if r.get("model_version")), None)
    after = answers[first:] if first is not None else []
    return {
        "answers_with_model": sum(1 for r in answers if r.get("model_version")),
        "served_without_model_after_first": sum(1 for r in after if not r.get("model_version")),
    }


def availability(
    rows: Iterable[Mapping[str, Any]], faults: Iterable[Mapping[str, Any]], grace_s: float
) -> dict[str, dict[str, float]]:
    """Per fault kind: Decide failures and seconds with a failure, from each fault's start to
    `grace_s` after it was lifted and the stack had recovered. `rows`: results.jsonl rows with
    `at` (epoch s) and maybe `error`; `faults`: {kind, start, end, recovered_s?}, epoch s."""
    rows = sorted(rows, key=lambda r: r["at"])
    out: dict[str, dict[str, float]] = {}
    for f in faults:
        lo = f["start"]
        hi = max(f["end"], f["start"] + f.get("recovered_s", 0.0)) + grace_s
        failed_at = [r["at"] for r in rows if lo <= r["at"] <= hi and "error" in r]
        book = out.setdefault(
            f["kind"], {"faults": 0, "decide_failures": 0, "unavailable_s": 0.0, "worst_s": 0.0}
        )
        seconds = len({int(t) for t in failed_at})
        book["faults"] += 1
        book["decide_failures"] += len(failed_at)
        book["unavailable_s"] += seconds
        book["worst_s"] = max(book["worst_s"], seconds)
    return out


def problems(books: Mapping[str, Any]) -> list[str]:
    """What does not add up, in words (empty: the books balance)."""
    out = []
    if books.get("supervisor_error"):
        out.append(f"the supervisor failed: {books['supervisor_error']}")
    raw, sim = books["raw"], books["simulator"]
    dec, rew, mod = books["decisions"], books["rewards"], books["models"]
    if raw["imbalance"]:
        out.append(f"raw records do not add up: {raw['imbalance']:+d}")
    for key, what in (
        ("forwarded_twice", "events forwarded twice"),
        ("missing", "raw events neither forwarded nor dead-lettered"),
        ("forwarded_not_sent", "forwarded events with no raw record"),
    ):
        if raw[key]:
            out.append(f"{raw[key]} {what}")
    if sim["lost"]:
        out.append(f"{sim['lost']} events the simulator wrote are not on the raw topic")
    if dec["without_decision"]:
        out.append(f"{dec['without_decision']} answered Decide calls have no Decision record")
    if dec["duplicate_decisions"]:
        out.append(f"{dec['duplicate_decisions']} Decision records are duplicates")
    if rew["clicks_turned_into_timeout"]:
        out.append(f"{rew['clicks_turned_into_timeout']} clicks became timeout rewards")
    if rew["clicks_without_reward"]:
        out.append(f"{rew['clicks_without_reward']} clicks have no reward")
    if rew["decisions_rewarded_differently"]:
        out.append(f"{rew['decisions_rewarded_differently']} decisions got differing rewards")
    if mod["served_without_model_after_first"]:
        out.append(
            f"{mod['served_without_model_after_first']} answers served without a model "
            "after the first model"
        )
    for name, s in books.get("services", {}).items():
        if s.get("gave_up") or s.get("state") != "up":
            out.append(f"{name} was {s.get('state')} at the end")
    return out


def balanced(books: Mapping[str, Any]) -> bool:
    return not problems(books)
