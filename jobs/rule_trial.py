"""`orderscope rules test`: a candidate rule set over recorded traffic, against the set in force.

The recording goes through the job's own code (jobs/baseline.py Stages: normalization
and every stage, state in dicts) once under each rule set, and the decisions are read
from the rows the job would write (orders_current and order_health_history, column
`rules`): an order is flagged by a rule if any assessment of it matched. Event time
moves with the records' own times and, at the end, to the recording's last record,
as in a job that has read every source to its end, so checks due by then fall due.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from connectors import kafka
from jobs.baseline import Record, Stages, normalized
from jobs.settings import Settings
from schemas.fields import Rejected
from schemas.normalize import Normalizer
from schemas.privacy import Pseudonymizer
from schemas.rules import PublishedRules, load_rules, read_published
from schemas.tables import ORDER_HEALTH_HISTORY, ORDERS_CURRENT, Row
from schemas.topics import RULES

Report = Callable[[str], None]
BATCH_RECORDS = 1_000
EXAMPLES = 10


@dataclass(frozen=True)
class Trial:
    """Orders (channel|order_id) each rule (id@version) flagged, under the candidate and the live set."""

    candidate: PublishedRules
    live: PublishedRules
    live_from: str
    records: int
    flagged: dict[str, dict[str, list[str]]]  # "candidate" / "live" -> rule -> orders

    def orders(self, which: str) -> set[str]:
        return {order for orders in self.flagged[which].values() for order in orders}

    def summary(self) -> dict[str, object]:
        candidate, live = self.orders("candidate"), self.orders("live")
        return {
            "candidate_version": self.candidate.version,
            "live_version": self.live.version,
            "live_from": self.live_from,
            "records": self.records,
            "flagged": self.flagged,
            "candidate_only": sorted(candidate - live),
            "live_only": sorted(live - candidate),
        }


def run_trial(
    candidate_file: Path, recording: Path, settings: Settings, live_file: Path | None, report: Report
) -> Trial:
    candidate = load_rules(candidate_file)
    live, live_from = _live_rules(settings, live_file, report)
    flagged, records = {}, 0
    for which, rules in (("candidate", candidate), ("live", live)):
        report(f"== the recording under the {which} rule set ({rules.version})")
        flagged[which], records = _flagged(rules, recording, settings, report)
    return Trial(candidate, live, live_from, records, flagged)


def _live_rules(settings: Settings, live_file: Path | None, report: Report) -> tuple[PublishedRules, str]:
    """The set in force: the last one published to the control topic, else the job's starting file."""
    if live_file is not None:
        return load_rules(live_file), str(live_file)
    if not kafka.is_reachable(settings.bootstrap_servers):
        report(f"Kafka at {settings.bootstrap_servers} is not reachable: comparing with the job's starting set "
               "(schemas/rules.yaml); give --live FILE to compare with another")  # fmt: skip
        return load_rules(), "schemas/rules.yaml"
    published = published_sets(settings.bootstrap_servers)
    if not published:
        return load_rules(), f"schemas/rules.yaml (nothing published to topic {RULES})"
    return max(published, key=lambda rules: rules.published_at_ms), f"topic {RULES}"


def published_sets(bootstrap_servers: str) -> list[PublishedRules]:
    """Every rule set on the control topic that the job would apply (it leaves the others out, as dead letters)."""
    published: list[PublishedRules] = []
    for value in kafka.read_topic(bootstrap_servers, RULES):
        try:
            published.extend(read_published(value.decode("utf-8")) if value is not None else ())
        except (Rejected, UnicodeDecodeError):
            continue
    return published


def _flagged(
    rules: PublishedRules, recording: Path, settings: Settings, report: Report
) -> tuple[dict[str, list[str]], int]:
    stages = Stages.in_memory(settings, rules)
    normalizer = Normalizer(Pseudonymizer(settings.pseudonymization_key()))
    flagged: dict[str, set[str]] = defaultdict(set)
    records, last_ts = 0, 0
    for batch in _batches(recording):
        _collect(stages.apply(normalized(normalizer, batch, stages.clock)), flagged)
        records += len(batch)
        last_ts = max(last_ts, *(record.timestamp for record in batch))
        if records % (50 * BATCH_RECORDS) < len(batch):
            report(f"  {records} records")
    _collect(stages.orders.check_due(last_ts).by_table(), flagged)
    report(f"  {records} records; {len({o for orders in flagged.values() for o in orders})} orders flagged")
    return {rule: sorted(orders) for rule, orders in sorted(flagged.items())}, records


RULE_COLUMN = {table.name: table.column_names.index("rules") for table in (ORDERS_CURRENT, ORDER_HEALTH_HISTORY)}


def _collect(rows: dict[str, list[Row]], flagged: dict[str, set[str]]) -> None:
    for table, column in RULE_COLUMN.items():
        for row in rows.get(table, ()):
            for rule in row[column]:
                flagged[rule].add(f"{row[0]}|{row[1]}")


def _batches(recording: Path) -> Iterator[list[Record]]:
    """The recording's records, without rule sets of its own: the rule sets under trial are the candidate's
    and the live one."""
    offsets: dict[str, int] = defaultdict(int)

    def record(message: kafka.RecordedMessage) -> Record:
        offset = offsets[message.topic]
        offsets[message.topic] += 1
        return Record(message.topic, 0, offset, message.value.encode("utf-8", "surrogatepass"), message.ts_ms)

    messages = (message for message in kafka.read_recording(recording) if message.topic != RULES)
    while batch := [record(message) for message in islice(messages, BATCH_RECORDS)]:
        yield batch


def print_trial(trial: Trial, say: Report) -> None:
    say(f"\ncandidate {trial.candidate.version} against the set in force {trial.live.version} ({trial.live_from}), "
        f"over {trial.records} records")  # fmt: skip
    rules = sorted({*trial.flagged["candidate"], *trial.flagged["live"]})
    say(f"{'rule':40} {'live':>8} {'candidate':>10}")
    for rule in rules:
        live, candidate = (len(trial.flagged[which].get(rule, ())) for which in ("live", "candidate"))
        say(f"{rule:40} {live:>8} {candidate:>10}")
    summary = trial.summary()
    for key, words in (("candidate_only", "by the candidate only"), ("live_only", "by the set in force only")):
        orders = summary[key]
        assert isinstance(orders, list)
        examples = ", ".join(orders[:EXAMPLES]) + (" ..." if len(orders) > EXAMPLES else "")
        say(f"orders flagged {words}: {len(orders)}{': ' + examples if orders else ''}")


def write_trial(trial: Trial, out: Path) -> None:
    out.write_text(json.dumps(trial.summary(), ensure_ascii=False, indent=1), encoding="utf-8")
