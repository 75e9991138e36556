"""Order modifications (OMS) and customer-service messages."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.events import CanonicalEvent, OrderEvent, OrderModification, OrderRef, ServiceMessage
from schemas.fields import Rejected, code, epoch_ms, iso_time_ms, json_object, required
from schemas.mapping import FieldPath, SpecChecker, identities_in
from schemas.privacy import Pseudonymizer
from schemas.recent import RecentScans


@dataclass(frozen=True)
class Modifications:
    topic: str
    kinds: frozenset[str]
    results: Mapping[str, bool]

    def adapt(self, raw: str, ids: Pseudonymizer, source: str, recent: RecentScans) -> list[CanonicalEvent]:
        payload = json_object(raw)
        kind = required(payload, "kind", str)
        if kind not in self.kinds:
            raise Rejected("unknown_code", f"field 'kind' has unknown code {kind!r}")
        succeeded = code(self.results, required(payload, "result", str), "result")
        error = payload.get("error") if isinstance(payload.get("error"), str) else ""
        modification = OrderModification(
            order=OrderRef(required(payload, "channel", str), str(required(payload, "order_id", (str, int)))),
            at_ms=iso_time_ms(required(payload, "ts", str), "ts"),
            kind=kind,
            succeeded=succeeded,
            error="" if succeeded else error or "unspecified",
            source=source,
        )
        outcome = "succeeded" if succeeded else f"failed: {modification.error}"
        note = OrderEvent(modification.order, modification.at_ms, source, detail=f"{kind} {outcome}")
        return [modification, note]


@dataclass(frozen=True)
class ServiceMessages:
    """Intents are found by keywords (configuration); identities as each channel names its buyer."""

    topic: str
    intents: Mapping[str, tuple[str, ...]]
    identities: Mapping[str, tuple[tuple[str, tuple[FieldPath, ...]], ...]]

    def adapt(self, raw: str, ids: Pseudonymizer, source: str, recent: RecentScans) -> list[CanonicalEvent]:
        payload = json_object(raw)
        channel = required(payload, "channel", str)
        text = required(payload, "text", str).casefold()
        order_id = payload.get("order_id")
        message = ServiceMessage(
            channel=channel,
            order_id=str(order_id).strip()
            if isinstance(order_id, str | int) and not isinstance(order_id, bool)
            else "",
            identity=next(iter(identities_in(payload, self.identities.get(channel, ()), ids)), ""),
            at_ms=epoch_ms(required(payload, "ts", int), "ts", unit_ms=1000),
            intents=tuple(name for name, words in self.intents.items() if any(w in text for w in words)),
        )
        if not message.order_id:
            return [message]
        detail = f"service message: {', '.join(message.intents) or 'no intent found'}"
        return [message, OrderEvent(OrderRef(channel, message.order_id), message.at_ms, source, detail=detail)]


def modifications_from_spec(path: Path, spec: dict[str, Any]) -> Modifications:
    check = SpecChecker(path)
    kinds, results = spec.get("kinds"), spec.get("results")
    if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
        raise check.fail("kinds", "required, the list of modification kinds")
    if not isinstance(results, dict) or not all(isinstance(v, bool) for v in results.values()):
        raise check.fail("results", "required, result word -> true (succeeded) or false (failed)")
    return Modifications(check.text(spec, "topic"), frozenset(kinds), {str(k): v for k, v in results.items()})


def service_messages_from_spec(path: Path, spec: dict[str, Any]) -> ServiceMessages:
    check = SpecChecker(path)
    intents, identities = spec.get("intents"), spec.get("identities")
    if not isinstance(intents, dict) or not all(isinstance(words, list) for words in intents.values()):
        raise check.fail("intents", "required, intent name -> list of keywords")
    if not isinstance(identities, dict):
        raise check.fail("identities", "required, channel -> {identity kind: field path}")
    return ServiceMessages(
        check.text(spec, "topic"),
        {str(name): tuple(str(w).casefold() for w in words) for name, words in intents.items()},
        {
            str(channel): tuple(
                (str(kind), check.candidates(paths, f"identities.{channel}.{kind}")) for kind, paths in kinds.items()
            )
            for channel, kinds in identities.items()
        },
    )
