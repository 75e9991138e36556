"""Personal data never leaves the normalizer in clear.

Identifiers that name a person (phone numbers, buyer ids) become keyed
pseudonyms: HMAC-SHA256 under a secret from configuration, so the same person
gets the same pseudonym everywhere while nobody without the key can reverse
or even test a guess. Phone numbers inside payloads kept as dead letters are
replaced the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata

# A mainland mobile number as people write it, anywhere in a text: an optional country code
# (+86, 0086, 86), separators between any digits, ASCII or full-width digits.
_DIGIT = "[0-9\uff10-\uff19]"
_SEP = r"[\s().\-\uff08\uff09\uff0d]*"
_PHONE = re.compile(
    rf"(?<!{_DIGIT})(?:(?:[+\uff0b]|[0\uff10]{{2}})?[8\uff18][6\uff16]{_SEP})?"
    rf"[1\uff11]{_SEP}[3-9\uff13-\uff19](?:{_SEP}{_DIGIT}){{9}}(?!{_DIGIT})"
)
_MOBILE = re.compile(r"1[3-9][0-9]{9}")
_NOT_DIGITS = re.compile(r"[^0-9]")
_SEPARATORS = re.compile(r"[\s().-]")
_COUNTRY_CODE = ("+86", "0086", "86")
PLACEHOLDER_PHONES = frozenset({"13800138000"})  # a carrier's service number, typed in for "no phone"
PLACEHOLDERS = frozenset({"n/a", "na", "null", "none", "nil", "undefined", "unknown", "anonymous", "-1", "匿名", "无"})
JUNK_CHARACTERS = frozenset("0-*._?xX ")  # an id made of these only ("0000", "----", a zero UUID) is none


def mobile_number(text: str) -> str | None:
    """The 11 digits of a valid mainland mobile number written in any common way (country code,
    separators, full-width digits), or None: junk, masked digits and placeholder numbers such as
    13800000000 identify no one."""
    compact = _SEPARATORS.sub("", unicodedata.normalize("NFKC", text))
    for code in _COUNTRY_CODE:
        if compact.startswith(code) and len(compact) == len(code) + 11:
            compact = compact.removeprefix(code)
    if not _MOBILE.fullmatch(compact) or len(set(compact[3:])) == 1 or compact in PLACEHOLDER_PHONES:
        return None
    return compact


class Pseudonymizer:
    def __init__(self, key: str) -> None:
        if not key:
            raise ValueError("the pseudonymization key is empty: set ORDERSCOPE_PII_KEY")
        self._key = key.encode()

    def pseudonym(self, kind: str, value: str) -> str:
        digest = hmac.new(self._key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()
        return f"{kind}_{digest[:24]}"

    def identifier(self, kind: str, value: str) -> str | None:
        """The pseudonym of a buyer id, or None for what identifies no one: blanks, placeholders such as
        "N/A" or "-1", zeros and dashes only ("0000", a zero UUID), masked values ("o6_****")."""
        text = value.strip()
        if not text or text.casefold() in PLACEHOLDERS or set(text) <= JUNK_CHARACTERS or "*" in text:
            return None
        return self.pseudonym(kind, text)

    def phone(self, text: str) -> str | None:
        """A mobile number in any common format as its pseudonym, None if it is no valid number."""
        number = mobile_number(text)
        return None if number is None else self.pseudonym("phone", number)

    def redact_phones(self, raw: bytes) -> bytes:
        """The payload with every mobile number (valid or a placeholder) replaced by its pseudonym, all
        other bytes kept: bytes that are no UTF-8 pass through as they are (surrogateescape)."""
        text = raw.decode("utf-8", errors="surrogateescape")
        redacted = _PHONE.sub(lambda m: self.pseudonym("phone", _last_11_digits(m.group(0))), text)
        return redacted.encode("utf-8", errors="surrogateescape")


def _last_11_digits(written: str) -> str:
    return _NOT_DIGITS.sub("", unicodedata.normalize("NFKC", written))[-11:]
