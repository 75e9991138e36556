"""One customer behind many identifiers: an incremental union-find over pseudonyms.

Every order is a node, and so is every identifier seen with it (already a keyed
pseudonym such as `phone_…` or `tmall_buyer_…`). A strong identifier joins its
order's component; components that come to share a strong identifier merge,
and every order and identifier of the merged component follows the surviving
customer id. A weak identifier (a shared family tablet's device id) is linked
to the customer it was seen with but never merges two customers.

The customer id is the smallest hash of the component's strong identifiers:
the same whatever order the events arrived in, and a merge only ever moves a
member to a smaller id. `customer_rank` turns that order into the integer that
row versions need, so the final customer's rows win over those of any
interleaving, after restores and replays too. One exception: a weak
identifier's link names the customer it was first seen with, which depends on
arrival order when it is seen with several.

An identifier seen with more distinct strong identifiers of one kind than the
configured limit (a phone typed in for every walk-in member, a shared store
card) is degenerate: from then on it joins no one, and it is reported with its
count. Merges it made before stay (which ones depends on arrival order).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

IDENTITY_CONFIG = Path(__file__).parent / "identity.yaml"


@dataclass(frozen=True, slots=True)
class Membership:
    """A member (an order key, or an identifier pseudonym) now belongs to customer_id."""

    member: str
    customer_id: str
    is_order: bool


CUSTOMER_PREFIX = "cust_"
RANK_HEX_DIGITS = 12
RANK_LIMIT = 1 << (4 * RANK_HEX_DIGITS)  # ranks are 0 (no customer) to RANK_LIMIT


def customer_rank(customer_id: str) -> int:
    """Precedence of a customer id: a merge moves a member only to a customer of higher rank."""
    if not customer_id:
        return 0
    return RANK_LIMIT - int(customer_id[len(CUSTOMER_PREFIX) : len(CUSTOMER_PREFIX) + RANK_HEX_DIGITS], 16)


def identifier_kind(pseudonym: str) -> str:
    return pseudonym.rsplit("_", 1)[0]


@dataclass(frozen=True)
class IdentityRules:
    strong: frozenset[str]  # identifier kinds that join customers
    limit_per_kind: int  # distinct strong identifiers of one kind an identifier may be seen with


def load_identity_rules(path: Path = IDENTITY_CONFIG) -> IdentityRules:
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(spec, dict) or not isinstance(spec.get("strong"), list):
        raise ValueError(f"{path}: strong: required, the list of identifier kinds that join customers")
    limit = spec.get("limit_per_kind")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(f"{path}: limit_per_kind: required, a whole number of at least 1")
    return IdentityRules(frozenset(map(str, spec["strong"])), limit)


@dataclass(frozen=True, slots=True)
class Degenerate:
    """An identifier seen with more distinct strong identifiers of one kind than the limit."""

    identity: str
    crowded_kind: str
    distinct: int  # how many of that kind it was seen with (counted up to PARTNERS_KEPT)
    customer_id: str  # the customer it had joined before: its merges stay, analysts may want to look
    at_ms: int


@dataclass(frozen=True)
class IdentityState:
    """The graph's mappings: plain dicts in tests and the baseline, Flink MapState in the job."""

    parents: MutableMapping[str, str]
    components: MutableMapping[str, list[str]]
    partners: MutableMapping[str, tuple[str, ...]]
    degenerate: MutableMapping[str, int]

    @classmethod
    def of(cls, mapping: Callable[[str], MutableMapping[str, Any]]) -> IdentityState:
        """Each mapping made by name (its field's name)."""
        return cls(*(mapping(spec.name) for spec in fields(cls)))

    @classmethod
    def in_memory(cls) -> IdentityState:
        return cls.of(lambda _: {})


@dataclass
class Observation:
    memberships: list[Membership] = field(default_factory=list)
    degenerate: list[Degenerate] = field(default_factory=list)


class IdentityGraph:
    """Union-find whose state lives in the given mappings (plain dicts in tests, Flink state in the job).

    parents: member -> parent member (roots are absent); components: root -> its members;
    partners: strong identifier -> the distinct strong identifiers seen with it (a bounded list);
    degenerate: identifier -> how many of its crowded kind it was seen with.
    """

    ORDER_PREFIX = "order:"
    PARTNERS_KEPT = 1000  # beyond the limit, partners are only kept to count them (up to this many)

    def __init__(self, state: IdentityState, rules: IdentityRules) -> None:
        self._parents = state.parents
        self._components = state.components
        self._partners = state.partners
        self._degenerate = state.degenerate
        self._strong = rules.strong
        self._limit = rules.limit_per_kind

    def observe(self, order_key: str, identifiers: Sequence[str], at_ms: int) -> Observation:
        """Record that these identifiers were seen with this order (at event time at_ms).

        Reports the membership of every member whose customer changed (merges
        included) and of every member seen for the first time, and the identifiers
        that turned (or stay, seen with yet more) degenerate.
        """
        observation = Observation()
        order = self.ORDER_PREFIX + order_key
        nodes = [order, *identifiers]
        first_seen = [node for node in nodes if node not in self._parents and node not in self._components]
        before = {root: (self.customer_of(root), self._members(root)) for root in {self._find(n) for n in nodes}}
        strong = [identifier for identifier in identifiers if self._is_strong(identifier)]
        joining = [i for i in strong if not self._seen_with(i, strong, at_ms, observation.degenerate)]
        root = self._find(order)
        for identifier in joining:
            root = self._union(root, self._find(identifier))
        for identifier in identifiers:
            if identifier_kind(identifier) not in self._strong and self._find(identifier) == identifier:
                self._attach_weak(root, identifier)
        customer = self.customer_of(root)
        if not customer:
            return observation
        moved = {
            member
            for old_root, (old_customer, members) in before.items()
            if old_customer != customer and self._find(old_root) == root  # merged here, not merely touched
            for member in members
        }
        blocked = set(strong).difference(joining)  # degenerate: reported only where it had joined before
        reported = [m for m in sorted(moved.union(first_seen)) if m not in blocked or self._find(m) == root]
        observation.memberships = [self._membership(member, customer) for member in reported]
        return observation

    def _seen_with(self, identifier: str, strong: list[str], at_ms: int, flagged: list[Degenerate]) -> bool:
        """Count the strong identifiers seen with this one; whether it is degenerate (joins no one)."""
        known = self._partners.get(identifier, ())
        new = [other for other in strong if other != identifier and other not in known]
        if not new or len(known) >= self.PARTNERS_KEPT:
            return identifier in self._degenerate
        known = (*known, *new)[: self.PARTNERS_KEPT]
        self._partners[identifier] = known
        kind, distinct = max(Counter(map(identifier_kind, known)).items(), key=lambda count: count[1])
        if distinct <= self._limit:
            return False
        if distinct > self._degenerate.get(identifier, 0):
            self._degenerate[identifier] = distinct
            flagged.append(Degenerate(identifier, kind, distinct, self.customer_of(identifier), at_ms))
        return True

    def customer_of(self, member: str) -> str:
        members = self._components.get(self._find(member), [member])
        hashes = [hashlib.blake2b(m.encode(), digest_size=10).hexdigest() for m in members if self._is_strong(m)]
        return CUSTOMER_PREFIX + min(hashes) if hashes else ""

    def _members(self, root: str) -> list[str]:
        return list(self._components.get(root, [root]))

    def _membership(self, member: str, customer_id: str) -> Membership:
        is_order = member.startswith(self.ORDER_PREFIX)
        return Membership(member.removeprefix(self.ORDER_PREFIX), customer_id, is_order)

    def _is_strong(self, member: str) -> bool:
        return not member.startswith(self.ORDER_PREFIX) and identifier_kind(member) in self._strong

    def _find(self, member: str) -> str:
        path = []
        while (parent := self._parents.get(member)) is not None:
            path.append(member)
            member = parent
        for visited in path[:-1]:  # path compression
            self._parents[visited] = member
        return member

    def _union(self, a: str, b: str) -> str:
        if a == b:
            return a
        members_a, members_b = self._components.get(a, [a]), self._components.get(b, [b])
        big, small = (a, b) if len(members_a) >= len(members_b) else (b, a)
        self._parents[small] = big
        self._components[big] = (members_a + members_b) if big == a else (members_b + members_a)
        self._components.pop(small, None)
        return big

    def _attach_weak(self, root: str, identifier: str) -> None:
        """A weak identifier is remembered with the component it was first seen in, without joining it."""
        self._parents[identifier] = root
        self._components[root] = [*self._components.get(root, [root]), identifier]
