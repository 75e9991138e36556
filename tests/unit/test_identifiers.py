"""Only valid identifiers identify: junk, placeholders and masked values never join anyone."""

from __future__ import annotations

import pytest

from schemas.mapping import identities_in
from schemas.privacy import Pseudonymizer, mobile_number


@pytest.mark.parametrize(
    "written",
    [
        "13812345678",
        "+86 138 1234 5678",
        "0086-138-1234-5678",
        "86 13812345678",
        "(138) 1234-5678",
        "\uff11\uff13\uff18\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18",  # full-width digits
    ],
)
def test_a_mobile_number_written_any_common_way_is_the_same_number(written: str) -> None:
    assert mobile_number(written) == "13812345678"


@pytest.mark.parametrize(
    "junk",
    ["N/A", "-", "", "00000000000", "138****5678", "13800000000", "19999999999", "12345678901", "1381234567",
     "010-12345678", "+1 415 555 0100", "138123456789", "13800138000"],
)  # fmt: skip
def test_junk_masked_placeholder_and_non_mobile_numbers_are_no_phone(ids: Pseudonymizer, junk: str) -> None:
    assert mobile_number(junk) is None
    assert ids.phone(junk) is None


@pytest.mark.parametrize(
    "junk",
    ["N/A", "n/a", "-", "--", "-1", "0", "0000", "00000000-0000-0000-0000-000000000000", "null", "Unknown", "  ",
     "o6_****Vt7", "匿名"],
)  # fmt: skip
def test_placeholder_buyer_ids_are_no_identifier(ids: Pseudonymizer, junk: str) -> None:
    assert ids.identifier("tmall_buyer", junk) is None


@pytest.mark.parametrize("real", ["AAHq3xYzZ0bH8k2P1m", " AAHq3xYzZ0bH8k2P1m ", "7", "111"])
def test_a_real_buyer_id_is_kept_without_its_surrounding_blanks(ids: Pseudonymizer, real: str) -> None:
    assert ids.identifier("member_id", real) == ids.pseudonym("member_id", real.strip())


def test_a_placeholder_at_the_first_path_does_not_hide_a_real_id_at_the_next(ids: Pseudonymizer) -> None:
    paths = [("wechat_openid", (("order_info", "openid"), ("FromUserName",)))]
    payload = {"order_info": {"openid": "N/A"}, "FromUserName": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}
    assert identities_in(payload, paths, ids) == (ids.pseudonym("wechat_openid", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"),)


def test_a_placeholder_phone_in_a_kept_payload_is_still_redacted(ids: Pseudonymizer) -> None:
    redacted = ids.redact_phones(b'{"phone": "13800000000", "note": "+86 138-1234-5678"}')
    assert b"13800000000" not in redacted and b"1234-5678" not in redacted
    assert ids.pseudonym("phone", "13812345678").encode() in redacted


@pytest.mark.parametrize(
    "written",
    ["13812345678", "008613812345678", "(138) 1234-5678", "+86 (138) 1234 5678", "138.1234.5678",
     "\uff11\uff13\uff18\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18"],
)  # fmt: skip
def test_every_way_of_writing_a_mobile_number_is_redacted_in_kept_payloads(ids: Pseudonymizer, written: str) -> None:
    raw = b"\xff not utf-8, call " + written.encode() + b" now"
    redacted = ids.redact_phones(raw)
    assert redacted.startswith(b"\xff not utf-8, call ") and redacted.endswith(b" now")
    assert ids.pseudonym("phone", "13812345678").encode() in redacted
    assert not any(part.encode() in redacted for part in ("1234", "\uff11\uff12\uff13\uff14"))
