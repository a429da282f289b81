"""Which characters a printed report may use: ones every text font draws, no emoji font needed."""

from __future__ import annotations

# Latin, Greek, Cyrillic, general punctuation (— … ·), arrows, mathematical operators (∞ ≤), box drawing
# and block elements. Emoji live elsewhere (U+2600–U+27BF dingbats and symbols, U+1F000 and above),
# and U+FE0F / U+200D turn a plain character into an emoji.
_ALLOWED = ((0x0009, 0x000A), (0x0020, 0x007E), (0x00A0, 0x200C), (0x200E, 0x22FF), (0x2500, 0x259F))


def emoji_free(ch: str) -> bool:
    o = ord(ch)
    return any(lo <= o <= hi for lo, hi in _ALLOWED)


def not_plain(text: str) -> list[str]:
    """The characters of ``text`` that need an emoji (or symbol) font, as ``U+XXXX x`` strings."""
    return sorted({f"U+{ord(c):04X} {c}" for c in text if not emoji_free(c)})
