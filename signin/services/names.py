"""A sign-in name as typed → the one spelling the portal routes, looks up, sends to the agent and counts guesses on.

Active Directory resolves many spellings to one account, and every spelling that reaches AD counts against that
account's badPwdCount, so cloud lockout must count them as one. What AD treats as equal in a UPN bind name
(docs/SECURITY.md, second review, finding 1):

- Measured on the test bed's Samba AD DC (simple binds over LDAPS; badPwdCount read as Administrator):
  case is ignored (``BOB@CORP.EXAMPLE.TEST``); ASCII spaces around the name, before and after the ``@`` are
  ignored (``bob   @corp…``, ``bob@ corp…``, `` bob@corp… ``: they bind, and a wrong password counts on bob)
  apparently because Samba falls back to the implicit UPN sAMAccountName@domain and compares each part
  with its ends stripped: ``tsam  @corp…`` binds a user whose sAMAccountName is tsam, whatever its UPN.
  Not folded by Samba: spaces inside the name (``b ob``), tabs, no-break, ideographic, em and zero-width
  spaces, the soft hyphen, full-width letters and ``＠``, combining marks, a dot at the end of either part.
- Windows AD (not measurable here): names are compared with CompareString(en-US, NORM_IGNORECASE |
  NORM_IGNOREKANATYPE | NORM_IGNORENONSPACE | NORM_IGNOREWIDTH | SORT_STRINGSORT) (the DS default flags): case,
  width (``ｂｏｂ＠…`` is bob), hiragana/katakana and diacritics (``böb`` is bob, ``ß`` is ``ss``) are ignored;
  characters without a sort weight (zero-width and format characters, unassigned code points) are ignored too.
  Samba's bug 14847 measured the same on Windows (``björn`` = ``bjǫrṅ`` = ``bjorn``; ``＠`` = ``@``).

So: whitespace or an invisible character anywhere in the name is refused (no real UPN has one: Microsoft
Entra ID allows none); what is left is NFKC-normalised (width) and lower-cased for routing, lookup and the bind,
and folded further for lockout (case, width, kana, marks) by ``username_folded``.
"""

from __future__ import annotations

import unicodedata

MAX_USERNAME_LENGTH = 320
# Whitespace, control, format (zero-width, soft hyphen, bidi), surrogate, private-use and unassigned code points:
# none is part of a real UPN, and AD ignores several of them (no sort weight), so a name with one is refused.
_REFUSED_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co", "Cn"})
# Letters Windows compares as a base letter (or two) that Unicode does not decompose; ß → ss is casefold's.
_LETTERS = str.maketrans({"ø": "o", "đ": "d", "ł": "l", "ħ": "h", "ŧ": "t", "ı": "i", "æ": "ae", "œ": "oe"})
# Katakana → hiragana (NORM_IGNOREKANATYPE); half-width katakana are full-width after NFKD.
_KANA = str.maketrans({chr(c): chr(c - 0x60) for c in [*range(0x30A1, 0x30F7), 0x30FD, 0x30FE]})


class UsernameRefused(ValueError):
    """A sign-in name no account can have; ``reason``: format, spaces, characters or too_long."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def username_canonical(*, typed: str) -> str:
    """The name as the portal uses it everywhere (routing, the user's lookup, the agent's bind, lockout): NFKC
    (full-width forms and odd spaces to ASCII), the ends' whitespace stripped, lower case. Raises UsernameRefused
    for whitespace or an invisible character inside, for no ``name@domain``, and past MAX_USERNAME_LENGTH."""
    name = unicodedata.normalize("NFKC", typed).strip()
    if len(name) > MAX_USERNAME_LENGTH:
        raise UsernameRefused("too_long")
    if any(ch.isspace() for ch in name):
        raise UsernameRefused("spaces")
    if any(unicodedata.category(ch) in _REFUSED_CATEGORIES for ch in name):
        raise UsernameRefused("characters")
    local, at, domain = name.rpartition("@")
    if not at or not local or not domain:
        raise UsernameRefused("format")
    return name.lower()


def username_folded(*, upn: str) -> str:
    """The key of the account a name reaches, for lockout: the name with everything AD may ignore folded away
    (case, width, kana type, diacritics; whitespace and invisible characters dropped, though the canonical name
    has none), a little more than Samba folds and at least what Windows does. Folding more only merges
    buckets, which never lets one more guess through."""
    name = unicodedata.normalize("NFKD", upn.casefold())
    name = "".join(ch for ch in name if not _ignored(ch)).translate(_LETTERS)
    return unicodedata.normalize("NFKC", name.translate(_KANA)).casefold()


def _ignored(ch: str) -> bool:
    category = unicodedata.category(ch)
    return category.startswith("M") or category in _REFUSED_CATEGORIES or ch.isspace()
