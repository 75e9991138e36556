"""Every Kafka topic of the project, declared once.

The raw topics are the sources' fixed contracts (shared/contracts/README.md);
the others are the pipeline's own. `orderscope stack up` creates them all.
"""

from __future__ import annotations

RAW_ORDER_TOPICS = {
    "douyin": "raw.orders.douyin",
    "tmall": "raw.orders.tmall",
    "xiaohongshu": "raw.orders.xiaohongshu",
    "wechat": "raw.orders.wechat",
    "app": "raw.orders.app",
    "pos": "raw.orders.pos",
}
RAW_WMS = "raw.wms"
RAW_CARRIER = "raw.logistics.carrier"
RAW_GPS = "raw.logistics.gps"
RAW_MANIFEST = "raw.logistics.manifest"
RAW_SIGNALS = "raw.signals"
RAW_MODIFICATIONS = "raw.oms.modifications"
RAW_CS_MESSAGES = "raw.cs.messages"

RAW_TOPICS: tuple[str, ...] = (
    *RAW_ORDER_TOPICS.values(),
    RAW_WMS,
    RAW_CARRIER,
    RAW_GPS,
    RAW_MANIFEST,
    RAW_SIGNALS,
    RAW_MODIFICATIONS,
    RAW_CS_MESSAGES,
)

# The pipeline's own: payloads it could not understand, kept with their reason.
DEAD_LETTERS = "orderscope.dead_letters"
# Every step (opened, updated, resolved) of every alert incident, as JSON (schemas/alerts.py).
ALERTS = "orderscope.alerts"

# Every delivered order's leg (schemas/eta.py), read back by the job: each lane learns arrivals from all.
ETA_LEGS = "orderscope.eta_legs"

# Business rule sets (schemas/rules.py), published by `orderscope rules publish`: the last one is in force.
RULES = "orderscope.rules"

# Every opening and closing of a channel's breaker (schemas/kpi.py), read back by the job: every lane's orders of
# that channel carry it in their health.
BREAKERS = "orderscope.breakers"

ALL_TOPICS: tuple[str, ...] = (*RAW_TOPICS, DEAD_LETTERS, ALERTS, ETA_LEGS, RULES, BREAKERS)
