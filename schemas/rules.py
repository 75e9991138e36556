"""Business rules (R8): conditions over an order and its context, and the actions they take.

A rule set is YAML (schemas/rules.yaml when the job starts; `orderscope rules publish`
sends a new one to topic orderscope.rules, which every order lane reads and applies
from its next assessment on, without a restart):

    version: "2026-12-03.1"
    rules:
      - id: storm_and_tight_promise
        version: 1
        description: a weather warning at the destination and under 12 h to spare
        when: weather.level >= orange and promise_slack_h < 12
        then: {tag: weather_risk, priority: high, alert: red, recommend: ship by air}

A condition is a small expression language: the fields of FIELDS, numbers, strings,
lists of them, comparisons (< <= > >= == != in, not in), and, or, not, parentheses.
It is parsed with Python's `ast` and compiled from that whitelist into closures,
never evaluated as code: calls, subscripts, attributes outside the catalogue and
anything else are refused when the rule set is read, with the rule and the reason.
A field with no value for an order (no promise, no estimate) makes every comparison
with it false. An ordered field (health.color, weather.level) compares with the words
of its scale: `weather.level >= orange`.

Rules are evaluated at every assessment of an order (each change, each check that
falls due: schemas/stages.py); each decision records the rule's id and version.
"""

from __future__ import annotations

import ast
import json
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import reduce
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from schemas.compact import compact_pickle
from schemas.eta import Estimate
from schemas.fields import Rejected, json_object, required
from schemas.health import RULES, Conditions, Facts, Health, Severity, ports_in_force, weather_in_force
from schemas.lifecycle import Status
from schemas.mapping import SOURCES_DIR, read_spec

RULES_CONFIG = Path(__file__).with_name("rules.yaml")
HOUR_MS = 3_600_000
MAX_CONDITION_CHARS = 1_000
MAX_CONDITION_NODES = 200
MAX_RULES = 200  # every rule is evaluated at every assessment
PRIORITIES = ("low", "normal", "high", "urgent")


class RuleError(ValueError):
    """A rule set that cannot be used; the message names where and why."""


class Subject(NamedTuple):  # a tuple: made at every assessment, and cheaper to make than a dataclass
    """What a rule reads about one order at one assessment."""

    facts: Facts
    carrier: str | None
    health: Health
    eta: Estimate | None
    conditions: Conditions
    now_ms: int


def _hours(ms: int | None) -> float | None:
    return None if ms is None else ms / HOUR_MS


def _since(subject: Subject, status: Status) -> float | None:
    reached = subject.facts.reached_at(status)
    return None if reached is None else _hours(subject.now_ms - reached)


def _eta_h(subject: Subject) -> float | None:
    eta = subject.eta
    return None if eta is None or eta.arrived else _hours(eta.eta_ms - subject.now_ms)


def _promise_slack_h(subject: Subject) -> float | None:
    eta, promised = subject.eta, subject.facts.promised_at_ms
    return None if eta is None or eta.arrived or promised is None else _hours(promised - eta.eta_ms)


def _weather(subject: Subject) -> tuple[str, str] | None:
    """The worst warning in force at the destination: (level, phenomenon)."""
    warnings = weather_in_force(subject.conditions, subject.facts.region_code, subject.now_ms)
    if not warnings:
        return None
    worst = max(warnings, key=lambda warning: (_rank(warning[1]), warning[0]))
    return worst[1], worst[2]


def _rank(level: str) -> int:
    return WEATHER_LEVELS.index(level) if level in WEATHER_LEVELS else 0


def _port_congestion(subject: Subject) -> float | None:
    readings = ports_in_force(subject.conditions, subject.now_ms)
    return max((index for index, _ in readings.values()), default=None)


WEATHER_LEVELS = ("none", "blue", "yellow", "orange", "red")
INTENTS = tuple(read_spec(SOURCES_DIR / "cs_messages.yaml")["intents"])
COLORS = ("green", "yellow", "red")


@dataclass(frozen=True)
class Field:
    """A field conditions can read: its getter, its kind, and for text and ordered fields their words."""

    read: Callable[[Subject], Any]
    kind: str  # number, text, ordered (compares by its scale) or list (of text, for `in`)
    words: tuple[str, ...] = ()  # closed vocabulary: a typo is refused when the rule is read
    doc: str = ""


def _level(subject: Subject) -> int | None:
    """The rank of the worst warning in force at the destination; 0 (none) if none, no value without one."""
    if subject.facts.region_code is None:
        return None
    weather = _weather(subject)
    return 0 if weather is None else _rank(weather[0])


FIELDS: Mapping[str, Field] = {
    "channel": Field(lambda s: s.facts.channel, "text", doc="the sales channel, e.g. douyin"),
    "status": Field(lambda s: s.facts.status.value if s.facts.status else None, "text",
                    tuple(status.value for status in Status), "the lifecycle status, e.g. in_transit"),
    "carrier": Field(lambda s: s.carrier, "text", doc="the carrier as scans name it, e.g. shunfeng"),
    "region": Field(lambda s: s.facts.region_code, "text", doc="the destination's district code"),
    "health.score": Field(lambda s: s.health.score, "number", doc="0-100"),
    "health.color": Field(lambda s: COLORS.index(s.health.color), "ordered", COLORS, "green < yellow < red"),
    "health.factors": Field(lambda s: [finding.factor for finding in s.health.findings], "list", tuple(RULES),
                            doc="the factors finding the order yellow or red, e.g. no_pickup"),
    "eta_h": Field(_eta_h, "number", doc="hours from now to the predicted arrival"),
    "promise_slack_h": Field(_promise_slack_h, "number", doc="hours from the predicted arrival to the promise"),
    "promise_at_risk": Field(lambda s: s.eta.promise_at_risk if s.eta else None, "number",
                             doc="probability of missing the promise, 0-1"),
    "hours_since_payment": Field(lambda s: _since(s, Status.PAID), "number"),
    "hours_in_status": Field(lambda s: _hours(s.now_ms - s.facts.status_at_ms) if s.facts.status else None,
                             "number"),
    "weather.level": Field(_level, "ordered", WEATHER_LEVELS,
                           "the worst warning in force at the destination: none < blue < yellow < orange < red"),
    "weather.phenomenon": Field(lambda s: (w := _weather(s)) and w[1], "text", doc="e.g. rainstorm"),
    "port.congestion": Field(_port_congestion, "number", doc="the worst port's congestion index in force, 0-100"),
    "intents": Field(lambda s: [intent for at, intent in s.facts.intents if at <= s.now_ms], "list", INTENTS,
                     doc="what the buyer said to customer service (schemas/sources/cs_messages.yaml)"),
    "failed_changes": Field(lambda s: sum(at <= s.now_ms for at, _, _ in s.facts.failed_changes), "number",
                            doc="modifications that failed and were not made good"),
}  # fmt: skip


# --- the expression language ----------------------------------------------------------------

Condition = Callable[[Subject], bool]
Operand = Callable[[Subject], Any]
COMPARISONS: Mapping[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.Eq: operator.eq, ast.NotEq: operator.ne,
}  # fmt: skip
SYMBOLS = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=",
           ast.In: "in", ast.NotIn: "not in"}  # fmt: skip


def compile_condition(text: str) -> Condition:
    """The condition as a function of a Subject; RuleError says what is wrong with it."""
    if not isinstance(text, str) or not text.strip():
        raise RuleError("a condition is a non-empty string")
    if len(text) > MAX_CONDITION_CHARS:
        raise RuleError(f"longer than {MAX_CONDITION_CHARS} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as error:
        raise RuleError(f"not a condition ({error.msg}, at column {error.offset})") from None
    except ValueError as error:  # a null byte, a lone surrogate
        raise RuleError(f"not a condition ({error})") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_CONDITION_NODES:
        raise RuleError(f"more than {MAX_CONDITION_NODES} parts")
    return _boolean(tree.body)


def _boolean(node: ast.expr) -> Condition:
    if isinstance(node, ast.BoolOp):  # folded into nested pairs: no generator per evaluation
        parts = [_boolean(value) for value in node.values]
        return reduce(_both if isinstance(node.op, ast.And) else _either, parts)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        inner = _boolean(node.operand)
        return lambda subject: not inner(subject)
    if isinstance(node, ast.Compare):
        pairs = zip((node.left, *node.comparators), node.comparators, strict=False)
        tests = [_comparison(left, op, right) for (left, right), op in zip(pairs, node.ops, strict=True)]
        return reduce(_both, tests)
    raise RuleError(f"{_shown(node)!r} is not a comparison: write e.g. health.score < 50, or join them with and/or")


def _comparison(left_node: ast.expr, op: ast.cmpop, right_node: ast.expr) -> Condition:
    left_field, right_field = _field_of(left_node), _field_of(right_node)
    symbol = SYMBOLS.get(type(op))
    if symbol is None:
        raise RuleError(f"{type(op).__name__} is not a comparison this language has")
    if isinstance(op, ast.In | ast.NotIn):
        return _membership(left_node, left_field, right_node, right_field, isinstance(op, ast.NotIn))
    if left_field is None and right_field is None:
        for node in (left_node, right_node):
            if not isinstance(node, ast.Name):
                _literal(node)  # refuses calls, subscripts and unknown dotted names
        for node in (left_node, right_node):
            if isinstance(node, ast.Name):
                raise RuleError(f"unknown field {node.id!r}; known: {', '.join(FIELDS)}")
        raise RuleError(f"{_shown(left_node)} {symbol} {_shown(right_node)} compares no field")
    compare = COMPARISONS[type(op)]
    left = _operand(left_node, left_field, right_field, symbol)
    right = _operand(right_node, right_field, left_field, symbol)

    def test(subject: Subject) -> bool:
        a, b = left(subject), right(subject)
        return a is not None and b is not None and compare(a, b)

    return test


def _both(first: Condition, second: Condition) -> Condition:
    return lambda subject: first(subject) and second(subject)


def _either(first: Condition, second: Condition) -> Condition:
    return lambda subject: first(subject) or second(subject)


def _membership(
    left_node: ast.expr, left: Field | None, right_node: ast.expr, right: Field | None, negated: bool
) -> Condition:
    """`field in [words]`, or `word in field` for a list field (`not in` likewise). A field without a value
    makes both false, as it makes every comparison."""
    if right is not None and right.kind == "list" and left is None:
        word = _checked(right, _literal(left_node), _shown(left_node))
        read_list = right.read
        if negated:
            return lambda subject: word not in read_list(subject)
        return lambda subject: word in read_list(subject)
    if left is not None and left.kind != "list" and right is None:
        choices = _literal(right_node)
        if not isinstance(choices, tuple):
            raise RuleError(f"after `in` comes a list, e.g. [douyin, tmall]: not {_shown(right_node)}")
        values = frozenset(_checked(left, choice, _shown(left_node)) for choice in choices)
        read = left.read
        if negated:
            return lambda subject: (value := read(subject)) is not None and value not in values
        return lambda subject: (value := read(subject)) is not None and value in values
    raise RuleError(f"{_shown(left_node)} in {_shown(right_node)}: write field in [values], or value in a list field")


def _operand(node: ast.expr, field: Field | None, other: Field | None, symbol: str) -> Operand:
    if field is not None:
        if field.kind == "list":
            raise RuleError(f"{_name_of(node)} is a list: test it with `in`, e.g. complaint in intents")
        if field.kind == "text" and symbol not in ("==", "!="):
            raise RuleError(f"{_name_of(node)} is text: compare it with == or != or in")
        return field.read
    assert other is not None
    value = _checked(other, _literal(node), _shown(node))
    return lambda subject: value


def _checked(field: Field, value: Any, where: str) -> Any:
    """A literal compared with the field, as the field's getter gives it (an ordered word becomes its rank)."""
    if field.kind == "ordered":
        if value not in field.words:
            raise RuleError(f"{where}: expected one of {', '.join(field.words)}")
        return field.words.index(value)
    if field.kind == "number":
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise RuleError(f"{where}: expected a number")
        return value
    if not isinstance(value, str):
        raise RuleError(f"{where}: expected a word or a quoted string")
    if field.words and value not in field.words:
        raise RuleError(f"{where}: {value!r} is not one of {', '.join(field.words)}")
    return value


def _field_of(node: ast.expr) -> Field | None:
    name = _name_of(node)
    return FIELDS.get(name) if name is not None else None


def _name_of(node: ast.expr) -> str | None:
    """The dotted name a Name or attribute chain spells (health.score), or None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        owner = _name_of(node.value)
        return None if owner is None else f"{owner}.{node.attr}"
    return None


def _literal(node: ast.expr) -> Any:
    """A number, string or bare word (a vocabulary word such as orange), or a list of them as a tuple."""
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float | str)
        and not isinstance(node.value, bool)
    ):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        value = _literal(node.operand)
        if isinstance(value, int | float):
            return -value
    if isinstance(node, ast.Name) and "." not in node.id:
        return node.id  # a bare word: not a field (those are looked up first)
    if isinstance(node, ast.List | ast.Tuple):
        return tuple(_literal(element) for element in node.elts)
    name = _name_of(node)
    if name is not None:
        raise RuleError(f"unknown field {name!r}; known: {', '.join(FIELDS)}")
    raise RuleError(f"{_shown(node)!r} is not a field, number, word or list")


def _shown(node: ast.AST) -> str:
    return ast.unparse(node)[:80]


# --- rule sets ---------------------------------------------------------------------------------


@compact_pickle
@dataclass(frozen=True, slots=True)
class Decision:
    """A rule that matched an order at an assessment, and what it decided."""

    rule_id: str
    rule_version: int
    description: str
    tag: str | None
    priority: str | None
    alert: Severity | None
    recommend: str | None

    @property
    def ref(self) -> str:
        """The rule as recorded: id@version."""
        return f"{self.rule_id}@{self.rule_version}"


@compact_pickle
@dataclass(frozen=True, slots=True)
class Decisions:
    """What the rules in force decided at an assessment."""

    rules_version: str
    made: tuple[Decision, ...]

    @property
    def priority(self) -> str:
        """The highest priority a matching rule set; '' if none did."""
        priorities = [decision.priority for decision in self.made if decision.priority is not None]
        return max(priorities, key=PRIORITIES.index, default="")

    def columns(self) -> tuple[str, list[str], list[str], list[str], str]:
        """priority, tags, recommendations, rules (id@version), rules_version."""
        made = self.made
        if not made:
            return NOTHING_DECIDED
        return (
            self.priority,
            sorted({decision.tag for decision in made if decision.tag}),
            [decision.recommend for decision in made if decision.recommend],
            [decision.ref for decision in made],
            self.rules_version,
        )


NO_DECISIONS = Decisions("", ())  # no rule matched: what set was in force is no news to record
NOTHING_DECIDED: tuple[str, list[str], list[str], list[str], str] = ("", [], [], [], "")  # rows never change


@dataclass(frozen=True)
class Rule:
    decision: Decision  # what it decides when its condition holds
    condition: Condition


@dataclass(frozen=True)
class RuleSet:
    version: str
    rules: tuple[Rule, ...]

    def decide(self, subject: Subject) -> Decisions:
        made = [rule.decision for rule in self.rules if rule.condition(subject)]
        return Decisions(self.version, tuple(made)) if made else NO_DECISIONS


@compact_pickle
@dataclass(frozen=True, slots=True)
class PublishedRules:
    """A rule set as published to topic orderscope.rules: what order lanes keep in state."""

    version: str
    spec_json: str
    published_at_ms: int

    def row(self) -> tuple[object, ...]:
        """The rule_sets row (schemas/tables.py RULE_SETS)."""
        return self.version, self.spec_json, self.published_at_ms

    def compiled(self) -> RuleSet:
        return rules_from_spec(json.loads(self.spec_json), "topic orderscope.rules")


def load_rules(path: Path = RULES_CONFIG) -> PublishedRules:
    """The rule set in a YAML file, checked (errors name the file, the rule and the key), as the job starts
    with it: published at 0, so that any set published to the topic takes over."""
    spec = _read_yaml(path)
    return PublishedRules(rules_from_spec(spec, str(path)).version, _canonical_json(spec), 0)


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise RuleError(f"{path}: not YAML: {error}") from None


def _canonical_json(spec: Any) -> str:
    return json.dumps(spec, ensure_ascii=False, sort_keys=True)


NO_RULES = PublishedRules("", _canonical_json({"version": "none", "rules": []}), 0)


def rules_from_spec(spec: Any, origin: str) -> RuleSet:
    if not isinstance(spec, dict) or not isinstance(spec.get("version"), str) or not spec["version"]:
        raise RuleError(f"{origin}: version: required, a non-empty string that changes with every change")
    _known_keys(spec, ("version", "rules"), origin)
    rules = spec.get("rules")
    if not isinstance(rules, list) or len(rules) > MAX_RULES:
        raise RuleError(f"{origin}: rules: required, a list of at most {MAX_RULES} (it may be empty)")
    built = tuple(_rule(rule, f"{origin}: rules[{index}]") for index, rule in enumerate(rules))
    ids = [rule.decision.rule_id for rule in built]
    if duplicated := sorted({rule_id for rule_id in ids if ids.count(rule_id) > 1}):
        raise RuleError(f"{origin}: rules: ids must be unique; repeated: {', '.join(duplicated)}")
    return RuleSet(spec["version"], built)


def _rule(spec: Any, where: str) -> Rule:
    if not isinstance(spec, dict):
        raise RuleError(f"{where}: a mapping with {', '.join(RULE_KEYS)}")
    rule_id = spec.get("id")
    if not isinstance(rule_id, str) or not rule_id.isidentifier():
        raise RuleError(f"{where}.id: required, letters, digits and _ (it names the rule in every decision)")
    where = f"{where} ({rule_id})"
    _known_keys(spec, RULE_KEYS, where)
    version = spec.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise RuleError(f"{where}.version: required, a whole number from 1, raised with every change of the rule")
    description = spec.get("description")
    if not isinstance(description, str) or not description.strip():
        raise RuleError(f"{where}.description: required, in words a support agent understands")
    try:
        condition = compile_condition(spec.get("when"))  # type: ignore[arg-type]
    except RuleError as error:
        raise RuleError(f"{where}.when: {error}") from None
    return Rule(Decision(rule_id, version, description.strip(), *_actions(spec.get("then"), f"{where}.then")),
                condition)  # fmt: skip


RULE_KEYS = ("id", "version", "description", "when", "then")


def _known_keys(spec: dict[Any, Any], known: tuple[str, ...], where: str) -> None:
    """Unknown keys are refused: a key the job would ignore (`enabled: false`) must not look obeyed."""
    if unknown := sorted(str(key) for key in spec if key not in known):
        raise RuleError(f"{where}: unknown {', '.join(unknown)}; known: {', '.join(known)}")


def _actions(spec: Any, where: str) -> tuple[str | None, str | None, Severity | None, str | None]:
    """tag, priority, alert and recommend; at least one."""
    known = ("tag", "priority", "alert", "recommend")
    if not isinstance(spec, dict) or not spec or set(spec) - set(known):
        raise RuleError(f"{where}: a mapping of at least one of {', '.join(known)}")
    texts = {key: spec.get(key) for key in ("tag", "recommend")}
    if not all(value is None or (isinstance(value, str) and value.strip()) for value in texts.values()):
        raise RuleError(f"{where}: tag and recommend are non-empty strings")
    priority, alert = spec.get("priority"), spec.get("alert")
    if priority is not None and priority not in PRIORITIES:
        raise RuleError(f"{where}.priority: one of {', '.join(PRIORITIES)}")
    if alert is not None and str(alert).upper() not in Severity.__members__:
        raise RuleError(f"{where}.alert: yellow or red")
    return texts["tag"], priority, None if alert is None else Severity[str(alert).upper()], texts["recommend"]


def read_published(raw: str, *_: Any) -> list[Any]:
    """The adapter of topic orderscope.rules: a rule set that cannot be used is a dead letter, never applied."""
    message = json_object(raw)
    published_at, spec = required(message, "published_at", int), required(message, "rule_set", dict)
    try:
        rules = rules_from_spec(spec, "topic orderscope.rules")
    except RuleError as error:
        raise Rejected("invalid_rules", str(error)) from None
    return [PublishedRules(rules.version, _canonical_json(spec), published_at)]


def publication(rules_file: Path, now_ms: int, before: list[PublishedRules]) -> tuple[str, str]:
    """The record `orderscope rules publish` sends: (version, JSON). The file is checked, then against the
    sets published before (and the starting set): a version never names two sets, nor an id@version two
    rules. It is stamped after the newest of them, so that it is in force whatever the publishers' clocks."""
    spec = _read_yaml(rules_file)
    rules = rules_from_spec(spec, str(rules_file))
    _check_succession(spec, before, str(rules_file))
    stamp = max([now_ms, *(earlier.published_at_ms + 1 for earlier in before)])
    return rules.version, json.dumps({"published_at": stamp, "rule_set": spec}, ensure_ascii=False)


def _check_succession(spec: dict[str, Any], before: list[PublishedRules], where: str) -> None:
    canonical = _canonical_json(spec)
    named: dict[tuple[str, int], Any] = {}
    for earlier in sorted(before, key=lambda earlier: earlier.published_at_ms):
        if earlier.version == spec["version"] and earlier.spec_json != canonical:
            raise RuleError(f"{where}: version: {earlier.version} was published before with other rules; raise it")
        for rule in json.loads(earlier.spec_json)["rules"]:
            named[(rule["id"], rule["version"])] = rule
    for rule in spec["rules"]:
        earlier_rule = named.get((rule["id"], rule["version"]))
        if earlier_rule is not None and earlier_rule != rule:
            raise RuleError(f"{where}: rule {rule['id']}: version {rule['version']} was published before as "
                            "another rule; raise its version")  # fmt: skip
