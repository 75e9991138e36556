"""Every channel's payloads, read through its mapping file in schemas/sources/."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from schemas.adapters import load_adapters
from schemas.events import DeadLetter, OrderEvent, OrderRef, WaybillLink
from schemas.lifecycle import Status
from schemas.mapping import SOURCES_DIR, MappingError
from schemas.normalize import Normalizer
from schemas.privacy import Pseudonymizer
from tests.support import example


def normalize(ids: Pseudonymizer, topic: str, payload: Any) -> list[Any] | DeadLetter:
    raw = payload.encode() if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False).encode()
    return Normalizer(ids).normalize(topic, 0, 0, raw, 0)


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def events(ids: Pseudonymizer, topic: str, payload: Any) -> list[Any]:
    outcome = normalize(ids, topic, payload)
    assert isinstance(outcome, list), outcome
    return outcome


def test_douyin_json_string_inside_json_epoch_seconds_and_exact_big_id(ids: Pseudonymizer) -> None:
    [event] = events(ids, "raw.orders.douyin", example("douyin.json")[0])
    assert event.order == OrderRef("douyin", "6921847710293847112")
    assert (event.status, event.at_ms, event.amount_fen) == (Status.CREATED, 1763690410_000, 12900)
    assert event.identities == (
        ids.pseudonym("phone_token", "pt_5c1f0e9a77"),
        ids.pseudonym("douyin_open_id", "dyx_8Hq2ZkQm1v"),
    )


def test_douyin_address_change_is_no_lifecycle_step_but_updates_region(ids: Pseudonymizer) -> None:
    [event] = events(ids, "raw.orders.douyin", example("douyin.json")[2])
    assert (event.status, event.region_code) == (None, "440304")


def test_douyin_seller_ship_links_its_waybill(ids: Pseudonymizer) -> None:
    event, link = events(ids, "raw.orders.douyin", example("douyin.json")[3])
    assert (event.status, event.waybills) == (Status.SHIPPED, ("SF1462093817220",))
    assert link == WaybillLink("SF1462093817220", OrderRef("douyin", "6921847710293847112"), link.at_ms)


def test_xiaohongshu_epoch_milliseconds_and_customs_code(ids: Pseudonymizer) -> None:
    [event] = events(ids, "raw.orders.xiaohongshu", example("xiaohongshu.json")[1])
    assert (event.order.order_id, event.status, event.at_ms) == ("P781190344110291", Status.CUSTOMS, 1763700555123)


def test_wechat_order_id_beyond_2_53_and_unionid_before_openid(ids: Pseudonymizer) -> None:
    [event] = events(ids, "raw.orders.wechat", example("wechat.json")[0])
    assert event.order == OrderRef("wechat", "3720948812004412817")
    assert event.identities[0] == ids.pseudonym("wechat_unionid", "o6_bmasdasdsad6_2sgVt7hMZOPfL")
    assert event.amount_fen == 8800


def test_wechat_delivery_links_the_waybill(ids: Pseudonymizer) -> None:
    event, link = events(ids, "raw.orders.wechat", example("wechat.json")[2])
    assert (event.status, link.waybill) == (Status.SHIPPED, "JDVA01988273341")


def test_pos_csv_sale_is_completed_with_exact_yuan(ids: Pseudonymizer) -> None:
    [event] = events(ids, "raw.orders.pos", example("pos.json")["lines"][0])
    assert event == OrderEvent(
        OrderRef("pos", "R2026112100031"),
        at_ms=ms("2026-11-21T10:03:00+08:00"),
        source="raw.orders.pos",
        status=Status.COMPLETED,
        identities=(ids.phone("13812345678"),),
        amount_fen=8950,
    )


def test_same_phone_in_any_format_is_the_same_pseudonym(ids: Pseudonymizer) -> None:
    app = events(ids, "raw.orders.app", {**example("app.json")[0], "member_id": None})[0]
    pos = events(ids, "raw.orders.pos", example("pos.json")["lines"][0])[0]
    assert ids.phone("+86 138-1234-5678") in app.identities
    assert pos.identities == (ids.phone("+86 138-1234-5678"),)


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("raw.orders.xiaohongshu", {"data": {**example("xiaohongshu.json")[0]["data"], "updateTime": 1763690555}},
         "bad_time"),
        ("raw.orders.wechat", {**example("wechat.json")[0], "CreateTime": 1763690700000}, "bad_time"),
        ("raw.orders.wechat", {**example("wechat.json")[0], "CreateTime": "1763690700"}, "wrong_type"),
        ("raw.orders.douyin", {**example("douyin.json")[0], "tag": "199"}, "unknown_code"),
        ("raw.orders.xiaohongshu", {"data": {**example("xiaohongshu.json")[0]["data"], "totalPayAmount": 399.0}},
         "wrong_type"),
        ("raw.orders.pos", "SZ-NS-014,R1,SALE,2026-11-21T10:03:00+08:00,138", "wrong_shape"),
        ("raw.orders.pos", "SZ,R1,SWAP,2026-11-21T10:03:00+08:00,,1.00,A:1", "unknown_code"),
    ],
    ids=["ms-read-as-seconds", "seconds-as-ms", "time-as-string", "unknown-tag", "float-fen", "short-csv", "pos-event"],
)  # fmt: skip
def test_channel_traps_become_dead_letters(ids: Pseudonymizer, topic: str, payload: Any, reason: str) -> None:
    outcome = normalize(ids, topic, payload)
    assert isinstance(outcome, DeadLetter)
    assert outcome.reason == reason, outcome.detail


def write_mapping(folder: Path, text: str) -> Path:
    (folder / "shop.yaml").write_text(text)
    return folder


VALID_MAPPING = (SOURCES_DIR / "app.yaml").read_text().replace("raw.orders.app", "raw.orders.shop")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("paid: paid", "paid: payed"), r"shop.yaml: status\[0\].codes.paid: 'payed' is not a canonical status"),
        (("time: iso8601", "time: rfc822"), r"shop.yaml: time: 'rfc822' is not one of"),
        (("  order_id: order_id\n", ""), r"shop.yaml: fields.order_id: required"),
        (("fields:", "feilds:"), r"shop.yaml: feilds: unknown key"),
        (("  at: ts", "  at: ts..x"), r"shop.yaml: fields.at: 'ts..x' is not a dotted field path"),
    ],
    ids=["bad-status", "bad-time-format", "no-order-id", "typo-key", "bad-path"],
)
def test_bad_mapping_fails_at_start_naming_file_and_key(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    write_mapping(tmp_path, VALID_MAPPING.replace(*change))
    with pytest.raises(MappingError, match=message):
        load_adapters(tmp_path)


def test_new_channel_is_one_mapping_file(tmp_path: Path, ids: Pseudonymizer) -> None:
    adapters = load_adapters(write_mapping(tmp_path, VALID_MAPPING.replace("channel: app", "channel: shop")))
    outcome = Normalizer(ids, adapters).normalize(
        "raw.orders.shop", 0, 0, json.dumps(example("app.json")[1]).encode(), 0
    )
    assert isinstance(outcome, list)
    assert (outcome[0].order, outcome[0].status) == (OrderRef("shop", "APP-20261121-000193"), Status.PAID)
