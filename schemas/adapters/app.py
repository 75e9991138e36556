"""The brand's own app (raw.orders.app): closest to canonical, ISO-8601 times with offset."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from schemas.adapters.fields import code, identifier, iso_time_ms, optional, required, yuan_to_fen
from schemas.events import CanonicalEvent, OrderEvent, OrderRef
from schemas.lifecycle import Status
from schemas.privacy import Pseudonymizer

CHANNEL = "app"

EVENTS: dict[str, Status | None] = {
    "created": Status.CREATED,
    "paid": Status.PAID,
    "address_changed": None,  # no lifecycle step
    "cancelled": Status.CANCELLED,
    "completed": Status.COMPLETED,
}


def adapt(payload: dict[str, Any], ids: Pseudonymizer, source: str) -> list[CanonicalEvent]:
    status = code(EVENTS, required(payload, "event", str), "event")
    amount = optional(payload, "amount", (Decimal, int, str))
    promised = optional(payload, "promised_delivery_at", str)
    ship_to = optional(payload, "ship_to", dict) or {}
    return [
        OrderEvent(
            order=OrderRef(CHANNEL, identifier(payload, "order_id")),
            at_ms=iso_time_ms(required(payload, "ts", str), "ts"),
            source=source,
            status=status,
            customer_id=_customer(payload, ids),
            amount_fen=yuan_to_fen(amount, "amount") if amount is not None else None,
            region_code=optional(ship_to, "region_code", str),
            promised_at_ms=iso_time_ms(promised, "promised_delivery_at") if promised else None,
        )
    ]


def _customer(payload: dict[str, Any], ids: Pseudonymizer) -> str | None:
    member = optional(payload, "member_id", str)
    if member:
        return ids.pseudonym("member", member)
    phone = optional(payload, "phone", str)
    return ids.phone(phone) if phone else None
