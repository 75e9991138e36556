"""One customer behind many identifiers, merges included, whatever the arrival order."""

from __future__ import annotations

from itertools import permutations

from schemas.identity import IdentityGraph, IdentityRules, IdentityState, Membership, load_identity_rules

RULES = load_identity_rules()


def graph(rules: IdentityRules = RULES) -> IdentityGraph:
    return IdentityGraph(IdentityState.in_memory(), rules)


def customers(memberships: list[Membership]) -> dict[str, str]:
    return {m.member: m.customer_id for m in memberships if m.is_order}


def test_orders_sharing_a_strong_identifier_are_one_customer() -> None:
    g = graph()
    first = customers(g.observe("app|A1", ["phone_p1", "member_id_m1"], 0).memberships)
    second = customers(g.observe("pos|R1", ["phone_p1"], 0).memberships)
    assert first["app|A1"] == second["pos|R1"] != ""


def test_two_customers_found_to_be_one_merge_and_their_orders_follow() -> None:
    g = graph()
    g.observe("app|A1", ["member_id_m1"], 0)
    g.observe("douyin|D1", ["phone_token_t1"], 0)
    before = {key: g.customer_of(f"order:{key}") for key in ("app|A1", "douyin|D1")}
    assert before["app|A1"] != before["douyin|D1"]
    reported = customers(g.observe("app|A2", ["member_id_m1", "phone_token_t1"], 0).memberships)
    merged = g.customer_of("order:app|A2")
    assert all(g.customer_of(f"order:{key}") == merged for key in before)
    moved = {key for key, customer in before.items() if customer != merged}
    assert moved and moved <= set(reported), "every order whose customer changed is reported"


def test_weak_identifier_never_merges_customers() -> None:
    g = graph()
    g.observe("app|A1", ["member_id_m1", "device_id_tablet"], 0)
    g.observe("app|A2", ["member_id_m2", "device_id_tablet"], 0)
    assert g.customer_of("order:app|A1") != g.customer_of("order:app|A2")


def test_a_shared_weak_identifier_moves_nobody() -> None:
    g = graph()
    g.observe("app|A1", ["member_id_m1", "device_id_tablet"], 0)
    second = g.observe("app|A2", ["member_id_m2", "device_id_tablet"], 0).memberships
    assert {m.member for m in second} == {"app|A2", "member_id_m2"}
    assert all(m.customer_id == g.customer_of("order:app|A2") for m in second)


def test_final_customers_do_not_depend_on_arrival_order() -> None:
    sightings = [
        ("app|A1", ["member_id_m1", "phone_p1"]),
        ("pos|R1", ["phone_p1"]),
        ("douyin|D1", ["phone_token_t1", "douyin_open_id_o1"]),
        ("app|A2", ["member_id_m1", "phone_token_t1"]),
        ("tmall|T1", ["tmall_buyer_b1"]),
    ]
    outcomes = set()
    for order in permutations(sightings):
        g = graph()
        for key, ids in order:
            g.observe(key, ids, 0)
        outcomes.add(tuple(g.customer_of(f"order:{key}") for key, _ in sightings))
    assert len(outcomes) == 1
    [final] = outcomes
    assert len(set(final[:4])) == 1 and final[4] != final[0]


def test_every_identifier_is_reported_once_when_first_seen() -> None:
    g = graph()
    first = g.observe("app|A1", ["member_id_m1", "device_id_d1"], 0).memberships
    assert {m.member for m in first} == {"app|A1", "member_id_m1", "device_id_d1"}
    assert g.observe("app|A1", ["member_id_m1"], 0).memberships == []


def test_a_phone_seen_with_more_members_than_the_limit_stops_joining_and_is_reported() -> None:
    g = graph()
    for n in range(1, RULES.limit_per_kind + 1):
        assert g.observe(f"app|A{n}", [f"member_id_m{n}", "phone_shared"], n).degenerate == []
    joined = g.customer_of("order:app|A1")
    over = g.observe("app|A6", ["member_id_m6", "phone_shared"], 6)
    assert [(d.identity, d.crowded_kind, d.distinct, d.customer_id, d.at_ms) for d in over.degenerate] == [
        ("phone_shared", "member_id", 6, joined, 6)
    ]
    assert g.customer_of("order:app|A6") not in ("", joined)
    assert {m.member for m in over.memberships} == {"app|A6", "member_id_m6"}  # the phone stays where it was
    more = g.observe("app|A7", ["member_id_m7", "phone_shared"], 7)
    assert [d.distinct for d in more.degenerate] == [7]
    assert g.customer_of("order:app|A7") not in (joined, g.customer_of("order:app|A6"))
    assert g.observe("app|A7", ["member_id_m7", "phone_shared"], 8).degenerate == []  # nothing new: no new row


def test_a_real_shared_phone_still_joins_a_member_with_their_store_receipts() -> None:
    g = graph()
    g.observe("app|A1", ["member_id_m1", "phone_family"], 0)
    for n in range(20):
        assert g.observe(f"pos|R{n}", ["phone_family"], n).degenerate == []
    assert len({g.customer_of(f"order:pos|R{n}") for n in range(20)} | {g.customer_of("order:app|A1")}) == 1


def test_the_limit_is_configuration() -> None:
    g = graph(IdentityRules(RULES.strong, limit_per_kind=1))
    g.observe("app|A1", ["member_id_m1", "phone_p"], 0)
    assert [d.identity for d in g.observe("app|A2", ["member_id_m2", "phone_p"], 1).degenerate] == ["phone_p"]
    assert g.customer_of("order:app|A1") != g.customer_of("order:app|A2")
