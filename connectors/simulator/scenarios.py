"""Named incidents injected into a simulated day, and the signals that announce them."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from connectors.simulator import payloads
from connectors.simulator.world import CITIES, PING_EVERY_MS, WAREHOUSES, Carrier, City, Warehouse, on_the_way_to_hub
from schemas import topics

if TYPE_CHECKING:
    from connectors.simulator.simulation import Message, OrderTruth

HOUR = 3_600_000
DELAYING = ("rainstorm", "hub_backlog", "port_congestion", "road_closure")  # incidents that slow deliveries
# The road closure: the expressway from a warehouse to its carriers' hubs closes at this ping of their drive, this
# long after the day began, for this long (and says so).
CLOSED_ROAD, CLOSURE_AT_PING, CLOSES_AFTER_MS, CLOSED_FOR_MS = "G4", 9, 10 * HOUR, 8 * HOUR


@dataclass(frozen=True)
class Scenario:
    """What goes wrong on the day; the baseline has only everyday trouble."""

    name: str
    rain_city: City | None = None  # a rainstorm over this city delays its deliveries
    backlog_carrier: str | None = None  # a hub backlog at this carrier delays its parcels
    port_congestion: bool = False  # cross-border (Xiaohongshu) parcels wait at the port
    failing_channel: str | None = None  # this channel's order modifications mostly fail
    unpicked_share: float = 0.0  # parcels shipped but never picked up by the carrier
    silent_tracker_share: float = 0.0  # vehicles whose GPS goes silent after departure
    closed_road_from: Warehouse | None = None  # the road from this warehouse to the hubs closes for hours

    @property
    def incidents(self) -> list[str]:
        switches = {
            "rainstorm": self.rain_city,
            "hub_backlog": self.backlog_carrier,
            "port_congestion": self.port_congestion,
            "modification_failures": self.failing_channel,
            "never_picked_up": self.unpicked_share,
            "silent_trackers": self.silent_tracker_share,
            "road_closure": self.closed_road_from,
        }
        return [name for name, on in switches.items() if on]

    def delay_hours(self, rng: random.Random, order: OrderTruth, carrier: Carrier, city: City) -> float:
        delay = 0.0
        if self.rain_city is not None and city.region_code == self.rain_city.region_code:
            delay += rng.uniform(12, 36)
            order.incidents.append("rainstorm")
        if carrier.code == self.backlog_carrier:
            delay += rng.uniform(24, 48)
            order.incidents.append("hub_backlog")
        if self.port_congestion and order.channel == "xiaohongshu":
            delay += rng.uniform(24, 72)
            order.incidents.append("port_congestion")
        return delay

    def road_hold_ms(self, warehouse: Warehouse, departed_ms: int, start_ms: int) -> int:
        """How long a vehicle leaving the warehouse for the hub at departed_ms waits at the closed road: one that
        reaches the closure while it is closed goes on when it opens."""
        if warehouse != self.closed_road_from:
            return 0
        closes = start_ms + CLOSES_AFTER_MS
        reaches = departed_ms + CLOSURE_AT_PING * PING_EVERY_MS
        return closes + CLOSED_FOR_MS - reaches if closes <= reaches < closes + CLOSED_FOR_MS else 0

    def never_picked_up(self, rng: random.Random, order: OrderTruth, carrier: Carrier) -> bool:
        if rng.random() < self.unpicked_share:
            order.incidents.append("never_picked_up")
            return True
        return False

    def modification_fails(self, rng: random.Random, order: OrderTruth) -> bool:
        """Whether an order's modification fails: mostly on the failing channel, seldom elsewhere. Every failure
        is the incident an alert must find (an order whose change succeeded has nothing to be told about)."""
        if rng.random() < (0.4 if order.channel == self.failing_channel else 0.02):
            if self.failing_channel is not None:
                order.incidents.append("modification_failures")
            return True
        return False

    def tracker_goes_silent(self, rng: random.Random) -> bool:
        return rng.random() < self.silent_tracker_share

    def signals(self, rng: random.Random, start_ms: int) -> Iterator[Message]:
        from connectors.simulator.simulation import Message

        for payload, at in self._signal_payloads(rng, start_ms):
            yield Message(topics.RAW_SIGNALS, None, payloads.dumps(payload), at)

    def _signal_payloads(self, rng: random.Random, start_ms: int) -> Iterator[tuple[dict[str, Any], int]]:
        everyday = rng.choice(CITIES)
        yield _weather(everyday, "fog", "blue", start_ms + 6 * HOUR), start_ms + 6 * HOUR
        yield {"type": "port_congestion", "port": "CNSHA", "index": 62 if not self.port_congestion else 91,
               "ts": payloads.iso_utc(start_ms + 8 * HOUR)}, start_ms + 8 * HOUR  # fmt: skip
        yield {"type": "traffic_incident", "road": "G15", "lat": 30.91, "lon": 121.12, "severity": 2,
               "expected_delay_min": 30, "ts": payloads.iso_utc(start_ms + 9 * HOUR)}, start_ms + 9 * HOUR  # fmt: skip
        if self.rain_city is not None:
            yield _weather(self.rain_city, "rainstorm", "orange", start_ms + 10 * HOUR), start_ms + 10 * HOUR
        if self.closed_road_from is not None:
            lat, lon = on_the_way_to_hub(self.closed_road_from, CLOSURE_AT_PING)
            closes = start_ms + CLOSES_AFTER_MS
            yield {"type": "traffic_incident", "road": CLOSED_ROAD, "lat": lat, "lon": lon, "severity": 4,
                   "expected_delay_min": CLOSED_FOR_MS // 60_000, "ts": payloads.iso_utc(closes)}, closes  # fmt: skip


def _weather(city: City, phenomenon: str, level: str, issued: int) -> dict[str, Any]:
    return {"type": "weather_warning", "region_code": city.region_code, "phenomenon": phenomenon, "level": level,
            "issued_at": payloads.iso_china(issued), "expires_at": payloads.iso_china(issued + 12 * HOUR)}  # fmt: skip


SCENARIOS = {
    "baseline": Scenario("baseline"),
    "rainstorm": Scenario("rainstorm", rain_city=CITIES[2]),
    "hub_backlog": Scenario("hub_backlog", backlog_carrier="zhongtong"),
    "port_congestion": Scenario("port_congestion", port_congestion=True),
    "modification_failures": Scenario("modification_failures", failing_channel="douyin"),
    "never_picked_up": Scenario("never_picked_up", unpicked_share=0.05),
    "silent_trackers": Scenario("silent_trackers", silent_tracker_share=0.2),
    "road_closure": Scenario("road_closure", closed_road_from=WAREHOUSES[2]),
    # Every way an order goes quiet, on one day: what `make test` scores silence detection on.
    "silences": Scenario("silences", unpicked_share=0.05, silent_tracker_share=0.2),
}
