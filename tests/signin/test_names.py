"""One spelling per account (signin/services/names.py): what the portal refuses, and what it folds into one name
for routing and one lockout bucket. The rules are AD's (measured on Samba: tests/integration/
test_lockout_spellings.py; Windows' from its comparison flags)."""

import pytest

from signin.services.names import UsernameRefused, username_canonical, username_folded

BOB = "bob@corp.example.test"


@pytest.mark.parametrize("typed", [
    BOB, "BOB@CORP.EXAMPLE.TEST", "Bob@Corp.Example.Test",
    "  bob@corp.example.test\t ", "\u3000bob@corp.example.test\u00a0",  # the ends: stripped
    "ｂｏｂ@corp.example.test", "ＢＯＢ＠ＣＯＲＰ.example.test",  # full width, the @ included (NFKC)
])
def test_spellings_that_ad_binds_as_one_account_have_one_canonical_name(typed):
    assert username_canonical(typed=typed) == BOB


@pytest.mark.parametrize(("typed", "reason"), [
    ("bob @corp.example.test", "spaces"),  # Samba binds this as bob: the attack of finding 1
    ("bob   @corp.example.test", "spaces"),
    ("bob@ corp.example.test", "spaces"),
    ("b ob@corp.example.test", "spaces"),
    ("bob\t@corp.example.test", "spaces"),
    ("bob\u00a0@corp.example.test", "spaces"),  # no-break space (NFKC: a space)
    ("bob\u3000@corp.example.test", "spaces"),  # ideographic space
    ("bob\u2003@corp.example.test", "spaces"),  # em space
    ("bob\u2028@corp.example.test", "spaces"),  # line separator
    ("bob\u200b@corp.example.test", "characters"),  # zero-width space: no sort weight in Windows
    ("b\u00adob@corp.example.test", "characters"),  # soft hyphen
    ("bob\u202e@corp.example.test", "characters"),  # right-to-left override
    ("bob\x00@corp.example.test", "characters"),
    ("bob\x7f@corp.example.test", "characters"),
    ("bob\U000e0001@corp.example.test", "characters"),  # language tag (format)
    ("bob\ue000@corp.example.test", "characters"),  # private use
    ("bob\U0010fffe@corp.example.test", "characters"),  # a noncharacter, unassigned
    ("bob", "format"), ("@corp.example.test", "format"), ("bob@", "format"), ("", "format"), ("   ", "format"),
    ("b" * 300 + "@" + "c" * 30 + ".test", "too_long"),
])
def test_names_no_account_can_have_are_refused_with_their_reason(typed, reason):
    with pytest.raises(UsernameRefused) as refused:
        username_canonical(typed=typed)
    assert refused.value.reason == reason


def test_what_samba_does_not_fold_stays_apart():
    # A dot at the end of either part names no account on Samba; the routing then finds no verified domain.
    assert username_canonical(typed="bob@corp.example.test.") == "bob@corp.example.test."
    assert username_canonical(typed="bob.@corp.example.test") == "bob.@corp.example.test"
    assert username_folded(upn="bob.@corp.example.test") != username_folded(upn=BOB)


@pytest.mark.parametrize("typed", [
    "BOB@corp.example.test", "ｂｏｂ@corp.example.test",
    "böb@corp.example.test", "bo\u0301b@corp.example.test", "ḃöḃ@córp.example.test",  # diacritics (Windows)
    "bob@corp.example.test\u200b", "bob @corp.example.test",  # refused by username_canonical; folded anyway
])
def test_names_windows_ad_compares_equal_fold_to_one_key(typed):
    assert username_folded(upn=typed) == username_folded(upn=BOB)


def test_the_fold_follows_windows_expansions_and_kana():
    assert username_folded(upn="meißner@x.test") == username_folded(upn="MEISSNER@x.test")
    assert username_folded(upn="bjørn@x.test") == username_folded(upn="bjorn@x.test")
    assert username_folded(upn="æsa@x.test") == username_folded(upn="aesa@x.test")
    assert username_folded(upn="タロウ@x.test") == username_folded(upn="たろう@x.test") == \
        username_folded(upn="ﾀﾛｳ@x.test")  # katakana, hiragana, half-width katakana
    assert username_folded(upn="bjoern@x.test") != username_folded(upn="bjorn@x.test")  # another person


def test_canonical_names_are_stable():
    for typed in ("Ｂöb@Corp.Example.Test", "ﬁona@x.test", "İlker@x.test"):
        canonical = username_canonical(typed=typed)
        assert username_canonical(typed=canonical) == canonical
        assert username_folded(upn=canonical) == username_folded(upn=typed)
