"""Alerts: one incident per order and factor (or business rule) while it lasts, with its lifecycle. (A channel's
breaker is an incident of the channel, order_id '': schemas/kpi.py.)

An incident opens when a factor's finding reaches the severity its configuration
alerts from (schemas/health.yaml), is updated when its severity changes, and is
resolved only when the factor clears altogether: a finding that drops below the
alerting severity keeps its incident open, so an order hovering at a threshold
raises one incident, not one per crossing. An order that leaves state (its
retention ran out) closes its incidents as expired. A business rule whose action
is an alert (schemas/rules.py) keeps its incident open while it matches. Every step has an idempotency key
(incident key and revision): the same step told twice, after a restore, is one
step to whoever reads it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from typing import NamedTuple

from schemas.compact import compact_pickle
from schemas.events import OrderRef
from schemas.health import Health, HealthPolicy, Severity
from schemas.rules import Decisions
from schemas.tables import utc


@compact_pickle
@dataclass(frozen=True, slots=True)
class Incident:
    alert_type: str  # the factor that raised it
    severity: Severity
    opened_at_ms: int  # event time from which the facts show it (Finding.since_ms), not when it was found
    revision: int  # 1 when opened, one more at each later step
    reason: str
    rule_id: str  # health.<factor>, or a business rule's id@version (schemas/rules.py)
    serial: int = 0  # a rule's incidents: the order's nth rule incident (a rule's match tells no time of its own)


@dataclass(frozen=True)
class AlertStep:
    """One step of an incident's lifecycle: what the alerts table and topic receive."""

    order: OrderRef
    incident: Incident
    step: str  # opened, updated, resolved, or expired (the order left state with it open)
    at_ms: int
    config_version: str

    @property
    def incident_key(self) -> str:
        """Stable across restarts and replays: the order, the factor, and when the facts show it began; for a
        business rule, which of the order's rule incidents it is (kept in state, so a restore counts alike)."""
        order, incident = self.order, self.incident
        began = f"#{incident.serial}" if incident.serial else incident.opened_at_ms
        return f"{order.channel}|{order.order_id}|{incident.alert_type}|{began}"

    @property
    def alert_id(self) -> str:
        return hashlib.blake2b(self.incident_key.encode(), digest_size=8).hexdigest()

    @property
    def resolved_at_ms(self) -> int | None:
        return self.at_ms if self.step in ("resolved", "expired") else None

    def row(self) -> tuple[object, ...]:
        """The alerts row (schemas/tables.py ALERTS)."""
        order, incident = self.order, self.incident
        return (
            self.alert_id, self.incident_key, incident.alert_type, incident.severity.label, order.channel,
            order.order_id, incident.opened_at_ms, self.resolved_at_ms, incident.reason, incident.rule_id,
            self.config_version, incident.revision, self.step, self.at_ms,
        )  # fmt: skip

    def json(self) -> str:
        """The record on the alerts topic."""
        incident, resolved_at = self.incident, self.resolved_at_ms
        return json.dumps(
            {
                "alert_id": self.alert_id,
                "incident_key": self.incident_key,
                "idempotency_key": f"{self.incident_key}#{incident.revision}",
                "step": self.step,
                "revision": incident.revision,
                "alert_type": incident.alert_type,
                "severity": incident.severity.label,
                "channel": self.order.channel,
                "order_id": self.order.order_id,
                "opened_at": utc(incident.opened_at_ms).isoformat(),
                "resolved_at": utc(resolved_at).isoformat() if resolved_at is not None else None,
                "at": utc(self.at_ms).isoformat(),
                "reason": incident.reason,
                "rule_id": incident.rule_id,
                "config_version": self.config_version,
            },
            ensure_ascii=False,
        )


RULE_ALERT = "rule."  # a business rule's alert type is rule.<id>


def closed(order: OrderRef, incident: Incident, step: str, at_ms: int, config_version: str) -> AlertStep:
    """The last step of an incident: resolved (its factor cleared) or expired (its order left state)."""
    return AlertStep(order, replace(incident, revision=incident.revision + 1), step, at_ms, config_version)


def follow(
    order: OrderRef,
    open_incidents: tuple[Incident, ...],
    health: Health,
    decisions: Decisions,
    policy: HealthPolicy,
    now_ms: int,
    rule_incidents: int,
    rules_version: str,
) -> tuple[tuple[Incident, ...], list[AlertStep], int]:
    """The incidents open after an assessment, the lifecycle steps it took, and how many rule incidents the
    order has opened (rule_incidents before): health factors alert from their alerting severity on, and
    business rules whose action is an alert from the assessment that first matched them. Each step records
    the version of what decided it: the health configuration's, or the rule set's (rules_version, in force)."""
    causes = _alerting_causes(health, decisions, policy, now_ms)
    if not open_incidents and not causes:
        return (), [], rule_incidents
    steps: list[AlertStep] = []
    still_open: list[Incident] = []

    def version(incident: Incident) -> str:
        return rules_version if incident.alert_type.startswith(RULE_ALERT) else health.config_version

    def step(incident: Incident, name: str) -> None:
        steps.append(AlertStep(order, incident, name, now_ms, version(incident)))

    for incident in open_incidents:
        cause = causes.pop(incident.alert_type, None)
        if cause is None:
            steps.append(closed(order, incident, "resolved", now_ms, version(incident)))
            continue
        if (cause.severity, cause.rule_id) != (incident.severity, incident.rule_id):
            incident = replace(incident, severity=cause.severity, revision=incident.revision + 1,
                               reason=cause.reason, rule_id=cause.rule_id)  # fmt: skip
            step(incident, "updated")
        still_open.append(incident)
    for alert_type, cause in causes.items():
        if cause.opens:
            serial = 0
            if alert_type.startswith(RULE_ALERT):
                rule_incidents += 1
                serial = rule_incidents
            incident = Incident(alert_type, cause.severity, cause.since_ms, 1, cause.reason, cause.rule_id, serial)
            step(incident, "opened")
            still_open.append(incident)
    return tuple(still_open), steps, rule_incidents


class Cause(NamedTuple):  # a tuple: made for every finding at every assessment, an incident only when one opens
    """What keeps an incident open (any finding of its factor, any match of its rule), and whether it
    would open one (a finding at the factor's alerting severity or above)."""

    severity: Severity
    reason: str
    rule_id: str
    since_ms: int  # where an incident it opens begins
    opens: bool


def _alerting_causes(health: Health, decisions: Decisions, policy: HealthPolicy, now_ms: int) -> dict[str, Cause]:
    causes = {}
    for finding in health.findings:
        alert_from = policy.factors[finding.factor].alert_from
        opens = alert_from is not None and finding.severity >= alert_from
        causes[finding.factor] = Cause(finding.severity, finding.reason, f"health.{finding.factor}",
                                       finding.since_ms, opens)  # fmt: skip
    for decision in decisions.made:
        if decision.alert is not None:
            causes[f"{RULE_ALERT}{decision.rule_id}"] = Cause(decision.alert, decision.description, decision.ref,
                                                              now_ms, True)  # fmt: skip
    return causes
