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

# Mainland mobile numbers, with or without +86 / 86 and common separators.
_PHONE = re.compile(r"(?<![0-9])(?:\+?86[ -]?)?(1[3-9][0-9])[ -]?([0-9]{4})[ -]?([0-9]{4})(?![0-9])")


class Pseudonymizer:
    def __init__(self, key: str) -> None:
        if not key:
            raise ValueError("the pseudonymization key is empty: set ORDERSCOPE_PII_KEY")
        self._key = key.encode()

    def pseudonym(self, kind: str, value: str) -> str:
        digest = hmac.new(self._key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()
        return f"{kind}_{digest[:24]}"

    def phone(self, text: str) -> str:
        """A phone number in any common format, as its pseudonym (normalized to 11 digits first)."""
        digits = re.sub(r"[^0-9]", "", text)
        return self.pseudonym("phone", digits[-11:])

    def redact_phones(self, raw: bytes) -> bytes:
        """The payload with every phone number replaced by its pseudonym, all other bytes kept."""
        text = raw.decode("latin-1")  # lossless for any bytes; phone digits are ASCII
        return _PHONE.sub(lambda m: self.phone(m.group(0)), text).encode("latin-1")
