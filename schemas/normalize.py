"""Raw Kafka records in, canonical events or one dead letter out; never an exception.

This is the one place where payloads from outside are trusted with nothing:
every way a payload can be wrong ends as a DeadLetter with a short reason
code, and the rest of the stream goes on.
"""

from __future__ import annotations

import json
import logging

from schemas.adapters import ADAPTERS, Adapter
from schemas.events import CanonicalEvent, DeadLetter
from schemas.fields import Rejected
from schemas.privacy import Pseudonymizer
from schemas.recent import RecentScans
from schemas.topics import RAW_CS_MESSAGES

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 1 << 20
# Fields of free text a person wrote (it may hold names, addresses, anything): never kept, not even in
# a dead letter.
FREE_TEXT = {RAW_CS_MESSAGES: "text"}
LEFT_OUT = "[left out: free text is never kept]"


def without_free_text(raw: bytes, field: str) -> bytes:
    """The payload with its free-text field left out; a payload too broken to find the field in is
    left out whole, but for its size."""
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError):
        payload = None
    if not isinstance(payload, dict):
        return f"[left out: {len(raw)} bytes, no JSON object, so no telling their free text apart]".encode()
    if field in payload:
        payload[field] = LEFT_OUT
    return json.dumps(payload, ensure_ascii=False).encode("utf-8", errors="backslashreplace")


class Normalizer:
    def __init__(self, ids: Pseudonymizer, adapters: dict[str, Adapter] = ADAPTERS) -> None:
        self._ids = ids
        self._adapters = adapters
        self._recent = RecentScans()

    @property
    def topics(self) -> list[str]:
        return sorted(self._adapters)

    def normalize(
        self, topic: str, partition: int, offset: int, raw: bytes, received_at_ms: int
    ) -> list[CanonicalEvent] | DeadLetter:
        try:
            return self._adapt(topic, raw)
        except Rejected as rejected:
            reason, detail = rejected.reason, rejected.detail
        except Exception as error:  # a bug of ours must not stop the stream either
            log.exception("unexpected error normalizing %s/%d@%d", topic, partition, offset)
            reason, detail = "internal_error", f"{type(error).__name__}: {error}"
        return DeadLetter(topic, partition, offset, self._kept(topic, raw), reason, detail, received_at_ms)

    def _kept(self, topic: str, raw: bytes) -> bytes:
        """What a dead letter keeps of a payload: phone numbers pseudonymized, free text left out."""
        if topic in FREE_TEXT:
            raw = without_free_text(raw, FREE_TEXT[topic])
        return self._ids.redact_phones(raw)

    def _adapt(self, topic: str, raw: bytes) -> list[CanonicalEvent]:
        adapter = self._adapters.get(topic)
        if adapter is None:
            raise Rejected("unknown_source", f"no adapter reads topic {topic!r}")
        if len(raw) > MAX_PAYLOAD_BYTES:
            raise Rejected("too_large", f"payload of {len(raw)} bytes exceeds {MAX_PAYLOAD_BYTES}")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise Rejected("not_utf8", f"payload is not UTF-8: {error}") from None
        return adapter(text, self._ids, topic, self._recent)
