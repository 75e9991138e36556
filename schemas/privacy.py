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

# Mainland mobile numbers, with or without +86 / 86 and common separators.
_PHONE = re.compile(r"(?<![0-9])(?:\+?86[ -]?)?(1[3-9][0-9])[ -]?([0-9]{4})[ -]?([0-9]{4})(?![0-9])")
_MOBILE = re.compile(r"1[3-9][0-9]{9}")
_SEPARATORS = re.compile(r"[\s().-]")
_COUNTRY_CODE = ("+86", "0086", "86")
PLACEHOLDERS = frozenset({"n/a", "na", "null", "none", "nil", "undefined", "unknown", "anonymous", "匿名", "无"})


def mobile_number(text: str) -> str | None:
    """The 11 digits of a valid mainland mobile number written in any common way (country code,
    separators, full-width digits), or None: junk, masked digits and placeholder numbers such as
    13800000000 identify no one."""
    compact = _SEPARATORS.sub("", unicodedata.normalize("NFKC", text))
    for code in _COUNTRY_CODE:
        if compact.startswith(code) and len(compact) == len(code) + 11:
            compact = compact.removeprefix(code)
    if not _MOBILE.fullmatch(compact) or len(set(compact[3:])) == 1:
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
        "N/A" or "-", one character repeated ("0000"), masked values ("o6_****")."""
        text = value.strip()
        if not text or text.casefold() in PLACEHOLDERS or len(set(text)) == 1 or "*" in text:
            return None
        return self.pseudonym(kind, text)

    def phone(self, text: str) -> str | None:
        """A mobile number in any common format as its pseudonym, None if it is no valid number."""
        number = mobile_number(text)
        return None if number is None else self.pseudonym("phone", number)

    def redact_phones(self, raw: bytes) -> bytes:
        """The payload with every phone number replaced by its pseudonym, all other bytes kept."""
        text = raw.decode("latin-1")  # lossless for any bytes; phone digits are ASCII
        return _PHONE.sub(lambda m: self.pseudonym("phone", "".join(m.groups())), text).encode("latin-1")
