"""Source mappings: one readable YAML file per source, turned into an adapter.

A mapping says where a source's fields are (dotted paths, list indexes as
numbers, a list of paths meaning "the first one present"), which time format
and money unit it uses, and which of its codes mean which canonical status.
Files are validated when loaded, with errors that name the file and the key.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from schemas.events import CanonicalEvent, OrderEvent, OrderRef, WaybillLink
from schemas.fields import (
    Rejected,
    china_time_ms,
    epoch_ms,
    iso_time_ms,
    json_object,
    within_money_range,
    yuan_to_fen,
)
from schemas.lifecycle import Status
from schemas.privacy import Pseudonymizer
from schemas.recent import RecentScans

SOURCES_DIR = Path(__file__).parent / "sources"

FieldPath = tuple[str, ...]
TIME_PARSERS: dict[str, Callable[[Any, str], int]] = {
    "china_local": lambda value, name: china_time_ms(_text(value, name), name),
    "iso8601": lambda value, name: iso_time_ms(_text(value, name), name),
    "epoch_seconds": lambda value, name: epoch_ms(value, name, unit_ms=1000),
    "epoch_milliseconds": lambda value, name: epoch_ms(value, name, unit_ms=1),
}
ORDER_FIELDS = {"order_id", "at", "amount", "region_code", "waybill", "carrier", "promised_at", "warehouse"}
MAPPING_KEYS = {
    "topic", "channel", "channel_field", "format", "json_in_string", "columns", "time", "money", "fields",
    "status", "identities",
}  # fmt: skip


class MappingError(ValueError):
    """A mapping file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class StatusRule:
    field: FieldPath
    codes: Mapping[str, Status | None]


@dataclass(frozen=True)
class OrderMapping:
    """How one order source's payloads become canonical order events."""

    topic: str
    channel: str | None
    channel_field: FieldPath | None
    payload_format: str
    json_in_string: tuple[FieldPath, ...]
    columns: tuple[str, ...]
    time_format: str
    money: str
    fields: Mapping[str, tuple[FieldPath, ...]]
    status: tuple[StatusRule, ...]
    identities: tuple[tuple[str, tuple[FieldPath, ...]], ...]

    def adapt(self, raw: str, ids: Pseudonymizer, source: str, recent: RecentScans) -> list[CanonicalEvent]:
        payload = self._payload(raw)
        order = OrderRef(self._channel(payload), self._identifier(payload, "order_id"))
        waybill = self._text_field(payload, "waybill")
        amount = self._value(payload, "amount")
        promised = self._value(payload, "promised_at")
        event = OrderEvent(
            order=order,
            at_ms=self._time(payload, self._required(payload, "at"), "at"),
            source=source,
            status=self._status(payload),
            identities=self._identities(payload, ids),
            waybills=(waybill,) if waybill else (),
            amount_fen=self._fen(amount) if amount is not None else None,
            region_code=self._text_field(payload, "region_code"),
            promised_at_ms=self._time(payload, promised, "promised_at") if promised is not None else None,
            carrier=self._text_field(payload, "carrier") or "",
            warehouse=self._text_field(payload, "warehouse") or "",
        )
        return [event, WaybillLink(waybill, order, event.at_ms)] if waybill else [event]

    def _payload(self, raw: str) -> dict[str, Any]:
        if self.payload_format == "csv":
            return _csv_record(raw, self.columns)
        payload = json_object(raw)
        for path in self.json_in_string:
            holder, key = _parent(payload, path)
            if holder is not None and isinstance(holder.get(key), str):
                holder[key] = json_object(holder[key], ".".join(path))
        return payload

    def _channel(self, payload: dict[str, Any]) -> str:
        if self.channel is not None:
            return self.channel
        assert self.channel_field is not None
        channel = lookup(payload, (self.channel_field,))
        if not isinstance(channel, str) or not channel:
            raise Rejected("missing_field", f"channel field {'.'.join(self.channel_field)!r} is missing")
        return channel

    def _value(self, payload: dict[str, Any], name: str) -> Any:
        return lookup(payload, self.fields[name]) if name in self.fields else None

    def _required(self, payload: dict[str, Any], name: str) -> Any:
        value = self._value(payload, name)
        if value is None or value == "":
            raise Rejected("missing_field", f"required field {name} ({_describe(self.fields[name])}) is missing")
        return value

    def _identifier(self, payload: dict[str, Any], name: str) -> str:
        value = self._required(payload, name)
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise Rejected("wrong_type", f"{name} has type {type(value).__name__}, expected an integer or a string")
        return str(value).strip()  # integers of any size are kept exactly

    def _text_field(self, payload: dict[str, Any], name: str) -> str | None:
        value = self._value(payload, name)
        if value is None or value == "":
            return None
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise Rejected("wrong_type", f"{name} has type {type(value).__name__}, expected a string")
        return str(value)

    def _time(self, payload: dict[str, Any], value: Any, name: str) -> int:
        return TIME_PARSERS[self.time_format](value, name)

    def _fen(self, amount: Any) -> int:
        if self.money == "fen":
            if isinstance(amount, bool) or not isinstance(amount, int):
                raise Rejected("wrong_type", f"amount {amount!r} is not a whole number of fen")
            return within_money_range(amount, "amount", amount)
        if isinstance(amount, bool) or not isinstance(amount, Decimal | int | float | str):
            raise Rejected("wrong_type", f"amount {amount!r} is not an amount in yuan")
        return yuan_to_fen(amount, "amount")

    def _status(self, payload: dict[str, Any]) -> Status | None:
        for rule in self.status:
            value = lookup(payload, (rule.field,))
            if value is None:
                continue
            code = str(value)
            if isinstance(value, bool) or code not in rule.codes:
                raise Rejected("unknown_code", f"{'.'.join(rule.field)} has unknown code {value!r}")
            return rule.codes[code]
        fields = ", ".join(".".join(rule.field) for rule in self.status)
        raise Rejected("missing_field", f"none of the status fields is present ({fields})")

    def _identities(self, payload: dict[str, Any], ids: Pseudonymizer) -> tuple[str, ...]:
        return identities_in(payload, self.identities, ids)


def identities_in(
    payload: dict[str, Any], kinds: Sequence[tuple[str, Sequence[FieldPath]]], ids: Pseudonymizer
) -> tuple[str, ...]:
    """The pseudonyms of every identifier present, in the order the mapping lists them."""
    found = []
    for kind, paths in kinds:
        for path in paths:  # the first valid one: "N/A" at one path does not hide a real id at the next
            value = lookup(payload, (path,))
            if isinstance(value, str | int) and not isinstance(value, bool):
                pseudonym = ids.phone(str(value)) if kind == "phone" else ids.identifier(kind, str(value))
                if pseudonym is not None:
                    found.append(pseudonym)
                    break
    return tuple(found)


def lookup(payload: Any, candidates: Sequence[FieldPath]) -> Any:
    """The value at the first candidate path that is present (not missing, not null)."""
    for path in candidates:
        value = payload
        for segment in path:
            if isinstance(value, dict):
                value = value.get(segment)
            elif isinstance(value, list) and segment.isdigit() and int(segment) < len(value):
                value = value[int(segment)]
            else:
                value = None
            if value is None:
                break
        if value is not None:
            return value
    return None


def _parent(payload: dict[str, Any], path: FieldPath) -> tuple[dict[str, Any] | None, str]:
    holder = lookup(payload, (path[:-1],)) if len(path) > 1 else payload
    return (holder if isinstance(holder, dict) else None), path[-1]


def _csv_record(raw: str, columns: tuple[str, ...]) -> dict[str, Any]:
    rows = list(csv.reader(io.StringIO(raw.strip())))
    if len(rows) != 1 or len(rows[0]) != len(columns):
        found = len(rows[0]) if len(rows) == 1 else f"{len(rows)} lines"
        raise Rejected("wrong_shape", f"expected one CSV line of {len(columns)} columns, got {found}")
    return dict(zip(columns, (cell.strip() for cell in rows[0]), strict=True))


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise Rejected("wrong_type", f"{name} has type {type(value).__name__}, expected a time string")
    return value


def _describe(paths: tuple[FieldPath, ...]) -> str:
    return " or ".join(".".join(path) for path in paths)


# --- loading and validation -------------------------------------------------------------------


def read_spec(path: Path) -> dict[str, Any]:
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise MappingError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(spec, dict):
        raise MappingError(f"{path}: expected a mapping of keys at the top")
    return spec


class SpecChecker:
    """Reads a source file's keys, each checked, failing with the file and key named."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, problem: str) -> MappingError:
        return MappingError(f"{self.path}: {key}: {problem}")

    def order_mapping(self, spec: dict[str, Any]) -> OrderMapping:
        unknown = set(spec) - MAPPING_KEYS
        if unknown:
            raise self.fail(
                ", ".join(sorted(unknown)), f"unknown key(s); known keys are {', '.join(sorted(MAPPING_KEYS))}"
            )
        if ("channel" in spec) == ("channel_field" in spec):
            raise self.fail("channel", "give exactly one of channel (a name) or channel_field (a path)")
        payload_format = self.choice(spec, "format", ("json", "csv"))
        fields = self.fields(spec.get("fields"))
        money = self.choice(spec, "money", ("yuan", "fen")) if "amount" in fields else "yuan"
        return OrderMapping(
            topic=self.text(spec, "topic"),
            channel=self.text(spec, "channel") if "channel" in spec else None,
            channel_field=self.path_of(spec["channel_field"], "channel_field") if "channel_field" in spec else None,
            payload_format=payload_format,
            json_in_string=tuple(self.path_of(p, "json_in_string") for p in spec.get("json_in_string", [])),
            columns=tuple(self.columns(spec)) if payload_format == "csv" else (),
            time_format=self.choice(spec, "time", tuple(TIME_PARSERS)),
            money=money,
            fields=fields,
            status=tuple(self.status_rule(rule, f"status[{i}]") for i, rule in enumerate(self.rules(spec))),
            identities=tuple(
                (str(kind), self.candidates(paths, f"identities.{kind}"))
                for kind, paths in (spec.get("identities") or {}).items()
            ),
        )

    def text(self, spec: dict[str, Any], key: str) -> str:
        value = spec.get(key)
        if not isinstance(value, str) or not value:
            raise self.fail(key, "required, a non-empty string")
        return value

    def choice(self, spec: dict[str, Any], key: str, options: Sequence[str]) -> str:
        value = spec.get(key)
        if value not in options:
            raise self.fail(key, f"{value!r} is not one of {', '.join(options)}")
        return str(value)

    def path_of(self, value: Any, key: str) -> FieldPath:
        if not isinstance(value, str) or not value or any(not part for part in value.split(".")):
            raise self.fail(key, f"{value!r} is not a dotted field path")
        return tuple(value.split("."))

    def candidates(self, value: Any, key: str) -> tuple[FieldPath, ...]:
        paths = value if isinstance(value, list) else [value]
        if not paths:
            raise self.fail(key, "needs at least one field path")
        return tuple(self.path_of(p, key) for p in paths)

    def fields(self, value: Any) -> dict[str, tuple[FieldPath, ...]]:
        if not isinstance(value, dict):
            raise self.fail("fields", "required, a mapping of canonical field to source path")
        unknown = set(value) - ORDER_FIELDS
        if unknown:
            raise self.fail(
                f"fields.{sorted(unknown)[0]}", f"not a canonical field; known: {', '.join(sorted(ORDER_FIELDS))}"
            )
        for required in ("order_id", "at"):
            if required not in value:
                raise self.fail(f"fields.{required}", "required")
        return {name: self.candidates(paths, f"fields.{name}") for name, paths in value.items()}

    def columns(self, spec: dict[str, Any]) -> list[str]:
        columns = spec.get("columns")
        if not isinstance(columns, list) or not columns or not all(isinstance(c, str) for c in columns):
            raise self.fail("columns", "a CSV source needs its column names, in order")
        return columns

    def rules(self, spec: dict[str, Any]) -> list[Any]:
        rules = spec.get("status")
        if not isinstance(rules, list) or not rules:
            raise self.fail("status", "required, a list of {field, codes} rules")
        return rules

    def status_rule(self, rule: Any, key: str) -> StatusRule:
        if not isinstance(rule, dict) or set(rule) != {"field", "codes"} or not isinstance(rule["codes"], dict):
            raise self.fail(key, "expected {field: path, codes: {code: status or null}}")
        return StatusRule(
            self.path_of(rule["field"], f"{key}.field"),
            {str(code): self.status(status, f"{key}.codes.{code}") for code, status in rule["codes"].items()},
        )

    def status(self, value: Any, key: str) -> Status | None:
        if value is None:
            return None
        try:
            return Status(value)
        except ValueError:
            raise self.fail(key, f"{value!r} is not a canonical status ({', '.join(Status)}) or null") from None
