"""One customer behind many identifiers, merges included, whatever the arrival order."""

from __future__ import annotations

from itertools import permutations

from schemas.identity import IdentityGraph, Membership, load_strong_kinds

STRONG = load_strong_kinds()


def graph() -> IdentityGraph:
    return IdentityGraph({}, {}, STRONG)


def customers(memberships: list[Membership]) -> dict[str, str]:
    return {m.member: m.customer_id for m in memberships if m.is_order}


def test_orders_sharing_a_strong_identifier_are_one_customer() -> None:
    g = graph()
    first = customers(g.observe("app|A1", ["phone_p1", "member_id_m1"]))
    second = customers(g.observe("pos|R1", ["phone_p1"]))
    assert first["app|A1"] == second["pos|R1"] != ""


def test_two_customers_found_to_be_one_merge_and_their_orders_follow() -> None:
    g = graph()
    g.observe("app|A1", ["member_id_m1"])
    g.observe("douyin|D1", ["phone_token_t1"])
    before = {key: g.customer_of(f"order:{key}") for key in ("app|A1", "douyin|D1")}
    assert before["app|A1"] != before["douyin|D1"]
    reported = customers(g.observe("app|A2", ["member_id_m1", "phone_token_t1"]))
    merged = g.customer_of("order:app|A2")
    assert all(g.customer_of(f"order:{key}") == merged for key in before)
    moved = {key for key, customer in before.items() if customer != merged}
    assert moved and moved <= set(reported), "every order whose customer changed is reported"


def test_weak_identifier_never_merges_customers() -> None:
    g = graph()
    g.observe("app|A1", ["member_id_m1", "device_id_tablet"])
    g.observe("app|A2", ["member_id_m2", "device_id_tablet"])
    assert g.customer_of("order:app|A1") != g.customer_of("order:app|A2")


def test_a_shared_weak_identifier_moves_nobody() -> None:
    g = graph()
    g.observe("app|A1", ["member_id_m1", "device_id_tablet"])
    second = g.observe("app|A2", ["member_id_m2", "device_id_tablet"])
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
            g.observe(key, ids)
        outcomes.add(tuple(g.customer_of(f"order:{key}") for key, _ in sightings))
    assert len(outcomes) == 1
    [final] = outcomes
    assert len(set(final[:4])) == 1 and final[4] != final[0]


def test_every_identifier_is_reported_once_when_first_seen() -> None:
    g = graph()
    first = g.observe("app|A1", ["member_id_m1", "device_id_d1"])
    assert {m.member for m in first} == {"app|A1", "member_id_m1", "device_id_d1"}
    assert g.observe("app|A1", ["member_id_m1"]) == []
