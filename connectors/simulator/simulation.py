"""A day of orders in the sources' own formats, with the ground truth of what really happened.

Every order lives a plausible life (payment, warehouse steps, carrier scans,
line-haul with GPS, delivery, the buyer's confirmation) or ends early
(unpaid, cancelled, never picked up). Sources speak late, twice and out of
order, and a share of payloads is malformed. The ground truth says, for every
valid order, its true final status, arrival time and which customer it belongs
to, and which orders each injected incident affects. Same seed, same output.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connectors.simulator import payloads
from connectors.simulator.scenarios import CLOSURE_AT_PING, DELAYING, SCENARIOS, Scenario
from connectors.simulator.world import (
    CARRIERS,
    CHANNELS,
    CITIES,
    DRIVE_TO_HUB_PINGS,
    HOURLY,
    PING_EVERY_MS,
    WAREHOUSES,
    Carrier,
    Channel,
    City,
    Warehouse,
    distance_km,
    nearest_warehouse,
    on_the_way_to_hub,
)
from schemas import topics

MINUTE, HOUR = 60_000, 3_600_000
MALFORMED_SHARE = 0.01
DUPLICATE_SHARE = 0.02
LATE_SHARE = 0.03


@dataclass(frozen=True)
class Message:
    """One raw record as a source produces it (a recording line)."""

    topic: str
    key: str | None
    value: str
    ts_ms: int

    def line(self) -> dict[str, Any]:
        return {"topic": self.topic, "key": self.key, "value": self.value, "ts_ms": self.ts_ms}


@dataclass
class Person:
    key: str
    city: City
    phone: str
    phone_token: str
    member_id: str
    device_id: str
    unionid: str
    openid: str
    tmall_uid: str
    douyin_open_id: str
    xhs_user: str


@dataclass
class OrderTruth:
    channel: str
    order_id: str
    person: str
    status: str
    promised_at_ms: int | None
    delivered_at_ms: int | None
    identity_family: str  # orders of one person in one family share a strong identifier
    incidents: list[str] = field(default_factory=list)
    breaches: dict[str, int] = field(default_factory=dict)  # incident -> event time it began, where one can tell

    @property
    def key(self) -> str:
        return f"{self.channel}|{self.order_id}"


@dataclass
class Simulation:
    messages: list[Message]
    orders: list[OrderTruth]
    malformed: list[dict[str, str]]
    incidents: dict[str, list[str]]

    def truth(self, seed: int, scenario: str) -> dict[str, Any]:
        return {
            "seed": seed,
            "scenario": scenario,
            "orders": [vars(order) for order in self.orders],
            "malformed": self.malformed,
            "incidents": self.incidents,
        }


# Channels whose buyers share a strong identifier (see schemas/identity.yaml):
# the app and stores know the phone number, Douyin and Xiaohongshu the platforms' phone token.
IDENTITY_FAMILIES = {"app": "phone", "pos": "phone", "douyin": "token", "xiaohongshu": "token",
                     "wechat": "wechat", "tmall": "tmall"}  # fmt: skip


class World:
    def __init__(self, seed: int, orders: int, start: datetime, scenario: Scenario) -> None:
        self.rng = random.Random(seed)
        self.order_count = orders
        self.start_ms = int(start.timestamp() * 1000)
        self.day = start.strftime("%y%m%d")  # in the numbered ids, so that two simulated days never share one
        self.scenario = scenario
        self.people = [self._person(i) for i in range(max(orders // 3, 1))]
        self.messages: list[Message] = []
        self.orders: list[OrderTruth] = []
        self.vehicles: dict[tuple[str, str, int], list[str]] = {}  # (carrier, warehouse, hour) -> waybills
        self.orders_by_waybill: dict[str, OrderTruth] = {}
        self.sequence = 0

    def run(self) -> Simulation:
        for _ in range(self.order_count):
            self._order()
        self._line_haul()
        self._noise()
        messages = sorted(self.messages, key=lambda m: m.ts_ms)
        malformed = self._malformed(messages)
        incidents = {name: [o.key for o in self.orders if name in o.incidents] for name in self.scenario.incidents}
        return Simulation(sorted(messages + [m for m, _ in malformed], key=lambda m: m.ts_ms), self.orders,
                          [{"topic": m.topic, "kind": kind} for m, kind in malformed], incidents)  # fmt: skip

    # --- people and orders ---------------------------------------------------------------

    def _person(self, i: int) -> Person:
        r = self.rng
        city = r.choices(CITIES, weights=[c.weight for c in CITIES])[0]
        phone = f"1{r.choice('3456789')}{r.randrange(10**9):09d}"
        return Person(
            key=f"P{i:05d}", city=city, phone=phone, phone_token=f"pt_{r.getrandbits(40):010x}",
            member_id=f"M{r.randrange(10**8):08d}", device_id=f"dev-{r.getrandbits(64):016x}",
            unionid=f"o6_{r.getrandbits(96):024x}", openid=f"oX{r.getrandbits(96):024x}",
            tmall_uid=f"AAH{r.getrandbits(60):015x}", douyin_open_id=f"dyx_{r.getrandbits(48):012x}",
            xhs_user=f"{r.getrandbits(96):024x}",
        )  # fmt: skip

    def _order(self) -> None:
        r = self.rng
        person = r.choice(self.people)
        if r.random() < 0.05:  # a family: someone else's order on a shared tablet (a weak identifier)
            person = Person(**{**vars(r.choice(self.people)), "device_id": person.device_id})
        channel = r.choices(CHANNELS, weights=[c.weight for c in CHANNELS])[0]
        created = self._creation_time()
        self.sequence += 1
        fact = self._fact(channel, person, created)
        truth = OrderTruth(channel.name, fact["order_id"], person.key, "created", None, None,
                           f"{person.key}:{IDENTITY_FAMILIES[channel.name]}")  # fmt: skip
        self.orders.append(truth)
        if channel.name == "pos":
            self._pos_order(fact, truth)
        else:
            self._online_order(channel, person, fact, truth)

    def _creation_time(self) -> int:
        hour = self.rng.choices(range(24), weights=HOURLY)[0]
        return self.start_ms + hour * HOUR + self.rng.randrange(HOUR)

    def _fact(self, channel: Channel, person: Person, created: int) -> dict[str, Any]:
        r = self.rng
        order_id = {
            "tmall": str(3910000000000000000 + r.randrange(10**15)),
            "douyin": str(6921000000000000000 + r.randrange(10**15)),
            "wechat": str(3720000000000000000 + r.randrange(10**15)),
            "xiaohongshu": f"P{r.randrange(10**15):015d}",
            "app": f"APP-{self.day}{self.sequence:06d}",
            "pos": f"R{self.day}{self.sequence:06d}",
        }[channel.name]
        return {
            **vars(person), "channel": channel.name, "order_id": order_id, "at_ms": created,
            "amount_fen": r.randrange(990, 99900, 10), "city": person.city.name, "region_code": person.city.region_code,
            "lat": person.city.lat, "lon": person.city.lon, "message_id": 7439021754812233000 + self.sequence,
            "promised_at_ms": created + channel.promise_h * HOUR,
        }  # fmt: skip

    def _emit(self, topic: str, key: str | None, value: str, at_ms: int) -> None:
        lag = self.rng.randrange(200, 5000)
        self.messages.append(Message(topic, key, value, at_ms + lag))

    def _channel_event(self, fact: dict[str, Any], kind: str, at_ms: int, **extra: Any) -> None:
        if kind not in payloads.CHANNEL_EVENTS[fact["channel"]]:
            return
        event = {**fact, "kind": kind, "at_ms": at_ms, **extra}
        self._emit(topics.RAW_ORDER_TOPICS[fact["channel"]], fact["order_id"], payloads.channel_payload(event), at_ms)

    def _pos_order(self, fact: dict[str, Any], truth: OrderTruth) -> None:
        member = self.rng.random() < 0.8
        line = {
            **fact,
            "kind": "completed",
            "store_id": f"{fact['city'][:2]}-{self.rng.randrange(1, 40):03d}",
            "member_phone": fact["phone"] if member else "",
            "pickup": self.rng.random() < 0.2,
            "skus": "|".join(f"SKU-{self.rng.randrange(1000, 9999)}:{self.rng.randrange(1, 3)}" for _ in range(2)),
        }
        self._emit(topics.RAW_ORDER_TOPICS["pos"], fact["order_id"], payloads.channel_payload(line), fact["at_ms"])
        truth.status = "completed"
        if not member:
            truth.identity_family = ""  # a sale without a member's phone names no customer

    def _online_order(self, channel: Channel, person: Person, fact: dict[str, Any], truth: OrderTruth) -> None:
        r = self.rng
        created = fact["at_ms"]
        truth.promised_at_ms = fact["promised_at_ms"]
        self._channel_event(fact, "created", created)
        if r.random() < 0.05:  # never paid
            self._channel_event(fact, "cancelled", created + r.randrange(30, 120) * MINUTE)
            truth.status = "cancelled"
            return
        paid = created + r.randrange(1, 30) * MINUTE
        self._channel_event(fact, "paid", paid)
        truth.status = "paid"
        if r.random() < 0.03:  # cancelled before the warehouse started
            self._channel_event(fact, "cancelled", paid + r.randrange(2, 20) * MINUTE)
            truth.status = "cancelled"
            return
        if channel.name != "xiaohongshu" and r.random() < 0.04:
            self._channel_event(fact, "address_changed", paid + r.randrange(1, 10) * MINUTE)
        if r.random() < 0.08:
            self._modification(fact, truth, paid + r.randrange(5, 60) * MINUTE)
        if r.random() < 0.06:
            self._service_message(fact, paid + r.randrange(1, 48) * HOUR)
        self._fulfil(channel, person, fact, truth, paid)

    def _modification(self, fact: dict[str, Any], truth: OrderTruth, at_ms: int) -> None:
        kind = self.rng.choice(("address_change", "expedite", "item_change"))
        change: dict[str, Any] = {"channel": fact["channel"], "order_id": fact["order_id"], "kind": kind,
                                  "result": "succeeded", "ts": payloads.iso_utc(at_ms)}  # fmt: skip
        if self.scenario.modification_fails(self.rng, truth):
            change |= {"result": "failed", "error": self.rng.choice(("SYSTEM_LOCKED", "TIMEOUT", "ALREADY_SHIPPED"))}
        self._emit(topics.RAW_MODIFICATIONS, fact["order_id"], payloads.dumps(change), at_ms)

    def _service_message(self, fact: dict[str, Any], at_ms: int) -> None:
        text = self.rng.choice(
            ("催一下，什么时候到？", "急用！今天能发货吗？", "想换货", "要投诉", "where is my parcel?", "谢谢")
        )
        buyer = {"douyin": {"open_id": fact["douyin_open_id"]}, "tmall": {"buyer_open_uid": fact["tmall_uid"]},
                 "xiaohongshu": {"userId": fact["xhs_user"]}, "wechat": {"openid": fact["openid"]},
                 "app": {"member_id": fact["member_id"]}}[fact["channel"]]  # fmt: skip
        order_id = fact["order_id"] if self.rng.random() < 0.7 else ""
        message = {"channel": fact["channel"], "order_id": order_id, **buyer, "text": text, "ts": at_ms // 1000}
        self._emit(topics.RAW_CS_MESSAGES, None, payloads.dumps(message), at_ms)

    def _fulfil(self, channel: Channel, person: Person, fact: dict[str, Any], truth: OrderTruth, paid: int) -> None:
        r = self.rng
        warehouse = nearest_warehouse(person.city)
        carrier = r.choice(CARRIERS)
        waybill = f"{carrier.prefix}{r.randrange(10**12, 10**13)}"
        ref = (fact["channel"], fact["order_id"])
        steps, at = {}, paid
        for step in ("ALLOCATED", "PICKED", "PACKED", "OUTBOUND_SCANNED"):
            at += r.randrange(5, 90) * MINUTE
            steps[step] = at
            self._emit(
                topics.RAW_WMS, None, payloads.wms_payload(ref, warehouse.code, step, at, waybill, carrier.code), at
            )
        truth.status = "shipped"
        self._channel_event(fact, "shipped", steps["OUTBOUND_SCANNED"] + r.randrange(1, 15) * MINUTE,
                            waybill=waybill, carrier=carrier.code)  # fmt: skip
        if self.scenario.never_picked_up(r, truth, carrier):
            truth.breaches["never_picked_up"] = steps["OUTBOUND_SCANNED"]  # left behind at the outbound scan
            return
        delivered = self._carry(fact, truth, carrier, warehouse, person.city, waybill, steps["OUTBOUND_SCANNED"])
        if r.random() < channel.confirms:
            self._channel_event(fact, "completed", delivered + r.randrange(2, 72) * HOUR)
            truth.status = "completed"

    def _carry(self, fact: dict[str, Any], truth: OrderTruth, carrier: Carrier, warehouse: Warehouse, city: City,
               waybill: str, outbound: int) -> int:  # fmt: skip
        """Carrier scans from pick-up to signature; returns the delivery time."""
        r = self.rng
        picked_up = outbound + r.randrange(30, 180) * MINUTE
        transit_h = distance_km(warehouse.city, city) / carrier.speed_kmh + carrier.handling_h
        delay_h = self.scenario.delay_hours(r, truth, carrier, city)
        delivered = picked_up + int((transit_h + delay_h) * HOUR) + r.randrange(0, 6) * HOUR
        cross_border = fact["channel"] == "xiaohongshu" and r.random() < 0.3
        departed = self._vehicle_trip(carrier, warehouse, picked_up, waybill)
        held = self.scenario.road_hold_ms(warehouse, departed, self.start_ms)
        if held:
            truth.incidents.append("road_closure")
        hub = departed + DRIVE_TO_HUB_PINGS * PING_EVERY_MS + held
        delivered += held
        self.orders_by_waybill[waybill] = truth
        plan = [("揽收", "1", picked_up, warehouse.city, f"{warehouse.city.district}营业部"),
                ("在途", "0", hub, warehouse.city, f"{warehouse.city.name}转运中心")]  # fmt: skip
        if cross_border:
            customs = hub + r.randrange(6, 30) * HOUR
            delivered += customs - hub
            plan.append(("清关", "8", customs, city, "海关监管仓"))
            self._channel_event(fact, "customs", customs)
        if delay_h or held:  # late from the moment it would have arrived without the incident
            on_time = delivered - int(delay_h * HOUR) - held
            truth.breaches |= {incident: on_time for incident in truth.incidents if incident in DELAYING}
        plan += [("在途", "0", delivered - r.randrange(8, 14) * HOUR, city, f"{city.name}转运中心"),
                 ("派件", "5", delivered - r.randrange(1, 5) * HOUR, city, f"{city.district}营业部"),
                 ("签收", "3", delivered, city, f"{city.district}")]  # fmt: skip
        scans: list[dict[str, str]] = []
        for word, state, at, where, location in sorted(plan, key=lambda step: step[2]):
            scans.append(payloads.scan(at, word, where.name, where.province, location, where.lat, where.lon))
            self._emit(
                topics.RAW_CARRIER, waybill, payloads.carrier_payload(waybill, carrier.code, state, list(scans)), at
            )
        truth.status, truth.delivered_at_ms = "delivered", delivered
        return delivered

    def _vehicle_trip(self, carrier: Carrier, warehouse: Warehouse, picked_up: int, waybill: str) -> int:
        """Parcels picked up in the same hour leave on one vehicle for the hub; returns its departure time."""
        departure_hour = picked_up // HOUR + 1
        self.vehicles.setdefault((carrier.code, warehouse.code, departure_hour), []).append(waybill)
        return departure_hour * HOUR

    # --- line-haul, signals and noise ----------------------------------------------------

    def _line_haul(self) -> None:
        for (carrier, warehouse_code, hour), waybills in sorted(self.vehicles.items()):
            warehouse = next(w for w in WAREHOUSES if w.code == warehouse_code)
            # Unique per warehouse, carrier and hour: two vehicles sharing a plate would share their pings.
            prefix = next(c.prefix for c in CARRIERS if c.code == carrier)
            city_letter = chr(ord("A") + WAREHOUSES.index(warehouse))
            vehicle = f"{warehouse.city.province[:1]}{city_letter}·{prefix}{hour % 10000:04d}"
            departed = hour * HOUR
            manifest = {"vehicle_id": vehicle, "waybills": waybills, "origin_hub": warehouse_code,
                        "dest_hub": f"{warehouse_code}-HUB", "departed_at": payloads.iso_utc(departed)}  # fmt: skip
            self._emit(topics.RAW_MANIFEST, vehicle, payloads.dumps(manifest), departed)
            pings = list(self._pings(vehicle, warehouse, departed))
            if self.scenario.tracker_goes_silent(self.rng):
                pings = pings[:2]
                silent_from = pings[-1]["ts"] if pings else departed
                for waybill in waybills:
                    self.orders_by_waybill[waybill].incidents.append("silent_trackers")
                    self.orders_by_waybill[waybill].breaches["silent_trackers"] = silent_from
            for ping in pings:
                self._emit(topics.RAW_GPS, vehicle, payloads.dumps(ping), ping["ts"])

    def _pings(self, vehicle: str, warehouse: Warehouse, departed: int) -> Iterator[dict[str, Any]]:
        """Its drive to the hub, a ping every 10 minutes; held at a closed road, it stands there until it opens."""
        held = self.scenario.road_hold_ms(warehouse, departed, self.start_ms)
        for i in range(1, DRIVE_TO_HUB_PINGS + 1):
            at = departed + i * PING_EVERY_MS + (held if i > CLOSURE_AT_PING else 0)
            yield self._ping(vehicle, at, on_the_way_to_hub(warehouse, i), moving=True)
            if i == CLOSURE_AT_PING:
                for waited in range(PING_EVERY_MS, held, PING_EVERY_MS):
                    yield self._ping(vehicle, at + waited, on_the_way_to_hub(warehouse, i), moving=False)

    def _ping(self, vehicle: str, at: int, where: tuple[float, float], moving: bool) -> dict[str, Any]:
        fix = self.rng.random() > 0.05
        lat, lon = where if fix else (0.0, 0.0)
        speed = round(self.rng.uniform(40, 90), 1) if fix and moving else 0.0
        return {"vehicle_id": vehicle, "ts": at, "lat": lat, "lon": lon, "speed_kmh": speed, "heading": 45}

    def _noise(self) -> None:
        """Duplicates and late arrivals, as real sources send them."""
        noisy = []
        for message in self.messages:
            if self.rng.random() < DUPLICATE_SHARE:
                noisy.append(
                    Message(message.topic, message.key, message.value, message.ts_ms + self.rng.randrange(1, 600_000))
                )
            if self.rng.random() < LATE_SHARE:
                message = Message(
                    message.topic, message.key, message.value, message.ts_ms + self.rng.randrange(10, 120) * MINUTE
                )
            noisy.append(message)
        self.messages = noisy + list(self.scenario.signals(self.rng, self.start_ms))

    def _malformed(self, messages: list[Message]) -> list[tuple[Message, str]]:
        """Broken copies of real payloads, each with the dead-letter reason it must get."""
        broken = []
        for message in self.rng.sample(messages, int(len(messages) * MALFORMED_SHARE)):
            how = self.rng.choice(("truncated", "not_utf8", "empty_object"))
            value = {"truncated": message.value[: max(len(message.value) // 2, 1)],
                     "not_utf8": "\udcff\udcfe" + message.value,
                     "empty_object": "{}" if not message.topic.endswith("pos") else ","}[how]  # fmt: skip
            if how == "truncated" and message.topic == topics.RAW_ORDER_TOPICS["pos"]:
                value = value.split(",")[0]
            broken.append((Message(message.topic, message.key, value, message.ts_ms + 1), how))
        return broken


def simulate(orders: int, seed: int, start: datetime, scenario: str = "baseline") -> Simulation:
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    return World(seed, orders, start, SCENARIOS[scenario]).run()
