"""Each source's payload, written exactly as its contract (shared/contracts/README.md) says.

The inverse of the mappings in schemas/sources/: one function per source turns
a simulated fact into the raw text that source would send.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

CHINA = timezone(timedelta(hours=8))


def china_time(at_ms: int) -> str:
    return datetime.fromtimestamp(at_ms / 1000, CHINA).strftime("%Y-%m-%d %H:%M:%S")


def iso_china(at_ms: int) -> str:
    return datetime.fromtimestamp(at_ms / 1000, CHINA).isoformat(timespec="seconds")


def iso_utc(at_ms: int) -> str:
    return datetime.fromtimestamp(at_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def yuan(fen: int) -> str:
    return str((Decimal(fen) / 100).quantize(Decimal("0.01")))


def dumps(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False)


TMALL_EVENTS = {
    "created": ("taobao_trade_TradeCreate", "WAIT_BUYER_PAY"),
    "paid": ("taobao_trade_TradeBuyerPay", "WAIT_SELLER_SEND_GOODS"),
    "shipped": ("taobao_trade_TradeSellerShip", "WAIT_BUYER_CONFIRM_GOODS"),
    "completed": ("taobao_trade_TradeSuccess", "TRADE_FINISHED"),
    "cancelled": ("taobao_trade_TradeClose", "TRADE_CLOSED"),
    "address_changed": ("taobao_trade_TradeLogisticsAddressChanged", None),
}
DOUYIN_TAGS = {"created": "100", "paid": "101", "shipped": "102", "completed": "103", "address_changed": "105",
               "cancelled": "106"}  # fmt: skip
XHS_STATUS = {"created": 1, "paid": 2, "customs": 3, "shipped": 6, "completed": 7, "cancelled": 9, "returning": 10}
WECHAT_EVENTS = {
    "created": ("channels_ec_order_new", 10),
    "paid": ("channels_ec_order_pay", 20),
    "shipped": ("channels_ec_order_deliver", 30),
    "completed": ("channels_ec_order_confirm", 100),
    "cancelled": ("channels_ec_order_cancel", 250),
    "address_changed": ("channels_ec_order_ext_info_update", None),
}

APP_EVENTS = ("created", "paid", "address_changed", "cancelled", "completed")

# What each channel tells (the app sends no ship event; only Xiaohongshu reports customs).
CHANNEL_EVENTS = {
    "tmall": frozenset(TMALL_EVENTS), "douyin": frozenset(DOUYIN_TAGS), "xiaohongshu": frozenset(XHS_STATUS),
    "wechat": frozenset(WECHAT_EVENTS), "app": frozenset(APP_EVENTS), "pos": frozenset({"completed"}),
}  # fmt: skip


def channel_payload(fact: dict[str, Any]) -> str:
    """A channel's order event; fact holds kind, at_ms, order and buyer fields (see simulation.py)."""
    return {
        "tmall": _tmall, "douyin": _douyin, "xiaohongshu": _xiaohongshu, "wechat": _wechat, "app": _app, "pos": _pos,
    }[fact["channel"]](fact)  # fmt: skip


def _tmall(f: dict[str, Any]) -> str:
    topic, word = TMALL_EVENTS[f["kind"]]
    content: dict[str, Any] = {"tid": int(f["order_id"]), "oid": int(f["order_id"])}
    if word:
        content["status"] = word
    if f["kind"] == "created":
        content |= {"payment": yuan(f["amount_fen"]), "buyer_open_uid": f["tmall_uid"], "region_code": f["region_code"]}
    if f["kind"] == "shipped":
        content |= {"out_sid": f["waybill"], "company_code": f["carrier"].upper()}
    if f["kind"] == "address_changed":
        content["region_code"] = f["region_code"]
    envelope = {"topic": topic, "pub_time": china_time(f["at_ms"]), "user_id": 2201538871, "pub_app_key": "12497914",
                "content": dumps(content)}  # fmt: skip
    return dumps(envelope)


def _douyin(f: dict[str, Any]) -> str:
    seconds = f["at_ms"] // 1000
    data: dict[str, Any] = {"p_id": int(f["order_id"]), "shop_id": 88120391}
    if f["kind"] == "created":
        data |= {"create_time": seconds, "open_id": f["douyin_open_id"], "phone_token": f["phone_token"],
                 "encrypt_post_tel": "#138****0000#", "pay_amount": f["amount_fen"],
                 "post_receiver": {"city": f["city"], "region_code": f["region_code"]}}  # fmt: skip
    elif f["kind"] == "paid":
        data |= {"pay_time": seconds, "pay_amount": f["amount_fen"]}
    else:
        data["update_time"] = seconds
    if f["kind"] == "shipped":
        data["logistics_msg"] = [{"express_company_id": f["carrier"], "logistics_code": f["waybill"]}]
    if f["kind"] == "address_changed":
        data["receiver_msg"] = {"city": f["city"], "region_code": f["region_code"]}
    return dumps({"tag": DOUYIN_TAGS[f["kind"]], "msg_id": str(f["message_id"]), "data": dumps(data)})


def _xiaohongshu(f: dict[str, Any]) -> str:
    data: dict[str, Any] = {"orderId": f["order_id"], "orderStatus": XHS_STATUS[f["kind"]], "updateTime": f["at_ms"]}
    if f["kind"] in ("created", "paid"):
        data |= {"userId": f["xhs_user"], "phone_token": f["phone_token"], "totalPayAmount": f["amount_fen"],
                 "receiverRegionCode": f["region_code"]}  # fmt: skip
    if f["kind"] == "shipped":
        data |= {"expressCompanyCode": f["carrier"], "expressNo": f["waybill"]}
    return dumps({"msgTag": "msg_fulfillment_status_change", "sellerId": "5f1c2a9e0000000001003b21", "data": data})


def _wechat(f: dict[str, Any]) -> str:
    event, status = WECHAT_EVENTS[f["kind"]]
    info: dict[str, Any] = {"order_id": int(f["order_id"])}
    if status is not None:
        info["status"] = status
    if f["kind"] == "created":
        info |= {"openid": f["openid"], "unionid": f["unionid"], "order_price": f["amount_fen"],
                 "region_code": f["region_code"]}  # fmt: skip
    if f["kind"] == "shipped":
        info["delivery_list"] = [{"delivery_id": f["carrier"], "waybill_id": f["waybill"]}]
    if f["kind"] == "address_changed":
        info["region_code"] = f["region_code"]
    return dumps({"ToUserName": "gh_2b9d1f0a7c31", "FromUserName": f["openid"], "CreateTime": f["at_ms"] // 1000,
                  "MsgType": "event", "Event": event, "order_info": info})  # fmt: skip


def _app(f: dict[str, Any]) -> str:
    payload: dict[str, Any] = {"event": f["kind"], "order_id": f["order_id"], "ts": iso_china(f["at_ms"])}
    if f["kind"] == "created":
        payload |= {"member_id": f["member_id"], "phone": f"+86{f['phone']}", "device_id": f["device_id"],
                    "amount": float(Decimal(f["amount_fen"]) / 100), "currency": "CNY",
                    "promised_delivery_at": iso_china(f["promised_at_ms"]),
                    "ship_to": {"region_code": f["region_code"], "lat": f["lat"], "lon": f["lon"]}}  # fmt: skip
    return dumps(payload)


def _pos(f: dict[str, Any]) -> str:
    event = "PICKUP" if f["pickup"] else "SALE"
    amount = "0.00" if f["pickup"] else yuan(f["amount_fen"])
    return ",".join([f["store_id"], f["order_id"], event, iso_china(f["at_ms"]), f["member_phone"], amount, f["skus"]])


def wms_payload(order_ref: tuple[str, str], warehouse: str, event: str, at_ms: int, waybill: str, carrier: str) -> str:
    payload: dict[str, Any] = {"warehouse": warehouse, "order_ref": {"channel": order_ref[0], "order_id": order_ref[1]},
                               "event": event, "ts": iso_utc(at_ms)}  # fmt: skip
    if event not in ("ALLOCATED", "PICKED"):
        payload |= {"waybill": waybill, "carrier": carrier}
    return dumps(payload)


def carrier_payload(waybill: str, carrier: str, state: str, scans: list[dict[str, str]]) -> str:
    """A tracking push: the whole history so far, newest first."""
    result = {"nu": waybill, "com": carrier, "state": state, "ischeck": "1" if state == "3" else "0",
              "data": list(reversed(scans))}  # fmt: skip
    return dumps({"status": "polling", "billstatus": "check" if state == "3" else "got", "message": "",
                  "lastResult": result})  # fmt: skip


def scan(
    at_ms: int, status_word: str, city: str, province: str, location: str, lat: float, lon: float
) -> dict[str, str]:
    return {"time": china_time(at_ms), "ftime": china_time(at_ms), "context": f"[{city}] {status_word} {location}",
            "areaName": f"{province},{city}", "status": status_word, "location": location,
            "areaCenter": f"{lon:.6f},{lat:.6f}"}  # fmt: skip
