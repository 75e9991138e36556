"""Only valid identifiers identify: junk, placeholders and masked values never join anyone."""

from __future__ import annotations

import pytest

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
     "010-12345678", "+1 415 555 0100", "138123456789"],
)  # fmt: skip
def test_junk_masked_placeholder_and_non_mobile_numbers_are_no_phone(ids: Pseudonymizer, junk: str) -> None:
    assert mobile_number(junk) is None
    assert ids.phone(junk) is None


@pytest.mark.parametrize("junk", ["N/A", "n/a", "-", "--", "0", "0000", "null", "Unknown", "  ", "o6_****Vt7", "匿名"])
def test_placeholder_buyer_ids_are_no_identifier(ids: Pseudonymizer, junk: str) -> None:
    assert ids.identifier("tmall_buyer", junk) is None


def test_a_real_buyer_id_is_kept_without_its_surrounding_blanks(ids: Pseudonymizer) -> None:
    assert ids.identifier("tmall_buyer", " AAHq3xYzZ0bH8k2P1m ") == ids.pseudonym("tmall_buyer", "AAHq3xYzZ0bH8k2P1m")


def test_a_placeholder_phone_in_a_kept_payload_is_still_redacted(ids: Pseudonymizer) -> None:
    redacted = ids.redact_phones(b'{"phone": "13800000000", "note": "+86 138-1234-5678"}')
    assert b"13800000000" not in redacted and b"1234-5678" not in redacted
    assert ids.pseudonym("phone", "13812345678").encode() in redacted
