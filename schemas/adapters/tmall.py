"""Tmall/Taobao open-platform trade messages (raw.orders.tmall).

The envelope's `content` is a JSON object encoded as a string; times are China
time without offset; money is a decimal string in yuan.
"""

from __future__ import annotations

from typing import Any

from schemas.adapters.fields import (
    china_time_ms,
    code,
    identifier,
    json_object,
    optional,
    required,
    yuan_to_fen,
)
from schemas.events import CanonicalEvent, OrderEvent, OrderRef, WaybillLink
from schemas.lifecycle import Status
from schemas.privacy import Pseudonymizer

CHANNEL = "tmall"

# The trade status word is authoritative; the message topic is the fallback.
STATUS_WORDS = {
    "WAIT_BUYER_PAY": Status.CREATED,
    "WAIT_SELLER_SEND_GOODS": Status.PAID,
    "SELLER_CONSIGNED_PART": Status.SHIPPED,
    "WAIT_BUYER_CONFIRM_GOODS": Status.SHIPPED,
    "TRADE_FINISHED": Status.COMPLETED,
    "TRADE_CLOSED": Status.CANCELLED,
    "TRADE_CLOSED_BY_TAOBAO": Status.CANCELLED,
}
TOPICS: dict[str, Status | None] = {
    "taobao_trade_TradeCreate": Status.CREATED,
    "taobao_trade_TradeBuyerPay": Status.PAID,
    "taobao_trade_TradeSellerShip": Status.SHIPPED,
    "taobao_trade_TradeSuccess": Status.COMPLETED,
    "taobao_trade_TradeClose": Status.CANCELLED,
    "taobao_trade_TradeLogisticsAddressChanged": None,  # no lifecycle step
}


def adapt(envelope: dict[str, Any], ids: Pseudonymizer, source: str) -> list[CanonicalEvent]:
    topic_status = code(TOPICS, required(envelope, "topic", str), "topic")
    at_ms = china_time_ms(required(envelope, "pub_time", str), "pub_time")
    content = json_object(required(envelope, "content", str), "content")
    order = OrderRef(CHANNEL, identifier(content, "tid"))
    word = optional(content, "status", str)
    status = code(STATUS_WORDS, word, "status") if word is not None else topic_status
    buyer = optional(content, "buyer_open_uid", str)
    payment = optional(content, "payment", str)
    waybill = optional(content, "out_sid", str)
    event = OrderEvent(
        order=order,
        at_ms=at_ms,
        source=source,
        status=status,
        customer_id=ids.pseudonym("tmall_buyer", buyer) if buyer else None,
        waybills=(waybill,) if waybill else (),
        amount_fen=yuan_to_fen(payment, "payment") if payment is not None else None,
        region_code=optional(content, "region_code", str),
    )
    links = [WaybillLink(waybill, order)] if waybill else []
    return [event, *links]
