"""Each source's payloads become the right canonical events; the traps are handled."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from schemas import topics
from schemas.events import DeadLetter, OrderEvent, OrderRef, WaybillLink
from schemas.lifecycle import Status
from schemas.normalize import Normalizer
from schemas.privacy import Pseudonymizer
from tests.support import example

TMALL, APP = topics.RAW_ORDER_TOPICS["tmall"], topics.RAW_ORDER_TOPICS["app"]
CARRIER_RESULT = example("carrier.json")[0]["lastResult"]


def normalize(ids: Pseudonymizer, topic: str, payload: Any) -> list[Any] | DeadLetter:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False).encode()
    return Normalizer(ids).normalize(topic, 0, 7, raw, 0)


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def test_tmall_order_id_beyond_2_53_is_kept_exactly(ids: Pseudonymizer) -> None:
    events = normalize(ids, TMALL, example("tmall.json")[0])
    assert isinstance(events, list)
    assert events[0].order == OrderRef("tmall", "3910028811452201538")


def test_tmall_china_time_without_offset_is_utc_plus_8(ids: Pseudonymizer) -> None:
    events = normalize(ids, TMALL, example("tmall.json")[0])
    assert isinstance(events, list)
    assert events[0].at_ms == ms("2026-11-21T02:00:02+00:00")


def test_tmall_yuan_string_becomes_exact_fen(ids: Pseudonymizer) -> None:
    events = normalize(ids, TMALL, example("tmall.json")[0])
    assert isinstance(events, list)
    assert events[0].amount_fen == 25900


@pytest.mark.parametrize(
    ("index", "status"), [(0, Status.CREATED), (1, Status.PAID), (2, Status.SHIPPED)], ids=["create", "pay", "ship"]
)
def test_tmall_trade_messages_map_to_lifecycle(ids: Pseudonymizer, index: int, status: Status) -> None:
    events = normalize(ids, TMALL, example("tmall.json")[index])
    assert isinstance(events, list)
    assert events[0].status == status


def test_tmall_ship_links_the_waybill_to_the_order(ids: Pseudonymizer) -> None:
    events = normalize(ids, TMALL, example("tmall.json")[2])
    assert events == [
        OrderEvent(
            OrderRef("tmall", "3910028811452201538"),
            at_ms=ms("2026-11-21T15:12:09+08:00"),
            source=TMALL,
            status=Status.SHIPPED,
            waybills=("YT7781234455661",),
            carrier="YTO",  # the channel's own code: orders take their carrier from scans only
        ),
        WaybillLink("YT7781234455661", OrderRef("tmall", "3910028811452201538"), events[0].at_ms),
    ]


def test_app_keeps_offset_times_and_promise(ids: Pseudonymizer) -> None:
    events = normalize(ids, APP, example("app.json")[0])
    assert isinstance(events, list)
    event = events[0]
    assert (event.at_ms, event.promised_at_ms) == (ms("2026-11-21T10:01:11+08:00"), ms("2026-11-23T18:00:00+08:00"))
    assert (event.amount_fen, event.region_code) == (12900, "440305")


def test_app_customer_is_a_pseudonym_never_the_phone(ids: Pseudonymizer) -> None:
    payload = example("app.json")[0]
    events = normalize(ids, APP, payload)
    assert isinstance(events, list)
    assert events[0].identities == (
        ids.pseudonym("member_id", "M00912233"),
        ids.phone("13812345678"),
        ids.pseudonym("device_id", "a8f3c2d1-77e0-4c5b-9d1e-0c2f4b6a8e11"),
    )
    assert "13812345678" not in repr(events)


def test_wms_outbound_scan_means_shipped(ids: Pseudonymizer) -> None:
    events = normalize(ids, topics.RAW_WMS, example("wms.json")[2])
    assert isinstance(events, list)
    assert events[0].status == Status.SHIPPED
    assert events[1] == WaybillLink("YT7781234455661", OrderRef("tmall", "3910028811452201538"), events[0].at_ms)


def test_carrier_push_gives_every_scan_newest_with_the_push_state(ids: Pseudonymizer) -> None:
    scans = normalize(ids, topics.RAW_CARRIER, example("carrier.json")[1])
    assert isinstance(scans, list)
    assert [(s.status, s.at_ms, s.location) for s in scans] == [
        (Status.DELIVERED, ms("2026-11-22T16:02:40+08:00"), "浙江,杭州市,西湖区"),
        (Status.OUT_FOR_DELIVERY, ms("2026-11-22T09:12:33+08:00"), "西湖区文三路营业部"),
        (Status.IN_TRANSIT, ms("2026-11-21T21:40:12+08:00"), "杭州转运中心"),
        (Status.IN_TRANSIT, ms("2026-11-21T15:30:02+08:00"), "西湖区文三路营业部"),
    ]


def test_carrier_area_center_is_longitude_first(ids: Pseudonymizer) -> None:
    scans = normalize(ids, topics.RAW_CARRIER, example("carrier.json")[0])
    assert isinstance(scans, list)
    assert scans[0].position == (30.274084, 120.155070)


def test_a_scan_without_area_center_has_no_position(ids: Pseudonymizer) -> None:
    scans = normalize(ids, topics.RAW_CARRIER, example("carrier.json")[1])
    assert isinstance(scans, list)
    assert scans[1].position is None  # the out-for-delivery scan gives no areaCenter


def test_a_scan_repeated_in_a_later_push_keeps_its_scan_id(ids: Pseudonymizer) -> None:
    first, later = (normalize(ids, topics.RAW_CARRIER, push) for push in example("carrier.json"))
    assert isinstance(first, list) and isinstance(later, list)
    assert {s.scan_id for s in first} < {s.scan_id for s in later}
    assert len({s.scan_id for s in later}) == 4


def test_scans_of_a_push_rejected_half_way_are_still_read_from_the_next_push(ids: Pseudonymizer) -> None:
    normalizer, push = Normalizer(ids), example("carrier.json")[1]
    scans = push["lastResult"]["data"]
    broken = {**push, "lastResult": {**push["lastResult"], "data": [*scans[:-1], {**scans[-1], "time": "soon"}]}}
    outcomes = [
        normalizer.normalize(topics.RAW_CARRIER, 0, offset, json.dumps(p, ensure_ascii=False).encode(), 0)
        for offset, p in enumerate((broken, push, push))
    ]
    assert isinstance(outcomes[0], DeadLetter) and outcomes[0].reason == "bad_time"
    assert isinstance(outcomes[1], list) and len(outcomes[1]) == len(scans) == 4
    assert isinstance(outcomes[2], list) and len(outcomes[2]) == 1  # repeated: only the newest is read again


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (topics.RAW_CARRIER, b'{"status": "polling", "lastResult": {"nu": "YT77812', "malformed_json"),
        (TMALL, b"\xff\xfe not utf-8", "not_utf8"),
        (TMALL, b"[1, 2]", "not_an_object"),
        (APP, json.dumps({**example("app.json")[0], "member_id": "M\ud800"}).encode(), "bad_text"),
        (TMALL, {**example("tmall.json")[0], "content": '{"tid": 1, "status": "WAIT_SOMETHING"}'}, "unknown_code"),
        (TMALL, {**example("tmall.json")[0], "topic": "taobao_trade_Unknown", "content": '{"tid": 1}'}, "unknown_code"),
        (TMALL, {**example("tmall.json")[0], "pub_time": "21/11/2026"}, "bad_time"),
        (TMALL, {**example("tmall.json")[0], "content": "{not json"}, "malformed_json"),
        (APP, {**example("app.json")[0], "ts": "2026-11-21T10:01:11"}, "bad_time"),
        (APP, {**example("app.json")[0], "order_id": True}, "wrong_type"),
        (APP, {**example("app.json")[0], "amount": "12.345"}, "wrong_type"),
        (APP, {**example("app.json")[0], "amount": 1e25}, "out_of_range"),
        (APP, {**example("app.json")[0], "ts": "2999-11-21T10:01:11+08:00"}, "bad_time"),
        (TMALL, {**example("tmall.json")[0], "pub_time": "1900-11-21 10:01:11"}, "bad_time"),
        (topics.RAW_WMS, {"event": "PACKED", "ts": "2026-11-21T06:40:00Z"}, "missing_field"),
        (topics.RAW_CARRIER, {"lastResult": {**CARRIER_RESULT, "state": "99"}}, "unknown_code"),
        (topics.RAW_CARRIER, {"lastResult": {**CARRIER_RESULT, "data": [{**CARRIER_RESULT["data"][0],
                                                                         "areaCenter": "30.27,195.1"}]}},
         "bad_coordinates"),
        ("raw.orders.kuaishou", example("app.json")[0], "unknown_source"),
    ],
    ids=[
        "truncated", "not-utf8", "array", "lone-surrogate", "unknown-status-word", "unknown-topic-without-status",
        "bad-china-time",
        "content-not-json", "time-without-offset", "bool-id", "sub-fen-amount", "amount-beyond-any-table",
        "year-2999", "year-1900", "no-order-ref",
        "unknown-carrier-state", "area-center-out-of-range", "unread-topic",
    ],
)  # fmt: skip
def test_bad_payload_becomes_a_dead_letter_with_its_reason(
    ids: Pseudonymizer, topic: str, payload: Any, reason: str
) -> None:
    outcome = normalize(ids, topic, payload)
    assert isinstance(outcome, DeadLetter)
    assert (outcome.reason, outcome.source_topic, outcome.offset) == (reason, topic, 7)
    assert outcome.detail


def test_dead_letter_keeps_the_payload_but_not_the_phone_number(ids: Pseudonymizer) -> None:
    raw = b'{"event": "created", "phone": "+86 138-1234-5678", "ts": "bad"'
    outcome = normalize(ids, APP, raw)
    assert isinstance(outcome, DeadLetter)
    assert b"5678" not in outcome.raw
    assert outcome.raw == raw.replace(b"+86 138-1234-5678", ids.phone("13812345678").encode())
