import pytest

from maildesk.threading import find_tag, format_tag, normalize_subject, reply_subject

TAG = "[#{number}]"


@pytest.mark.parametrize(
    "subject",
    [
        "Printer on fire",
        "Re: Printer on fire",
        "RE: Printer on fire",
        "Re:Re: Printer on fire",
        "RE[2]: Printer on fire",
        "Re(3): Printer on fire",
        "Re^2: Printer on fire",
        "Fwd: Re: Printer on fire",
        "FW: Printer on fire",
        "Fw: RE: Printer   on\tfire",
        "AW: WG: Printer on fire",
        "Antw: Antwort: Printer on fire",
        "SV: VS: Printer on fire",
        "Rif: R: I: Printer on fire",
        "TR: RE : Printer on fire",
        "Réf : Printer on fire",
        "RV: Printer on fire",
        "Odp: PD: Printer on fire",
        "YNT: Printer on fire",
        "Vá: Printer on fire",
        "回复：Printer on fire",
        "答复: 转发: Printer on fire",
        "回覆: 轉寄: Printer on fire",
        "返信: 転送: Printer on fire",
        "Ответ: НА: Printer on fire",
        "[users] Re: Printer on fire",
        "Re: [users] Printer on fire",
        "[users] [Announce] Re: [users] PRINTER ON FIRE",
    ],
)
def test_prefixes_and_list_tags_are_removed(subject):
    assert normalize_subject(subject) == "printer on fire"


def test_words_that_only_look_like_prefixes_stay():
    assert normalize_subject("Rental request") == "rental request"
    assert normalize_subject("Sverige office") == "sverige office"
    assert normalize_subject("Re-install failed") == "re-install failed"


def test_our_ticket_tag_is_not_a_list_tag():
    assert normalize_subject("Re: [#42] Printer") == "[#42] printer"
    assert normalize_subject("Re: [Ticket #42] Printer") == "[ticket #42] printer"
    assert normalize_subject("Re: <<T42>> Printer", tag_format="<<T{number}>>") == "<<t42>> printer"
    assert normalize_subject("Re: [HD-42] Printer", tag_format="[HD-{number}]") == "[hd-42] printer"


def test_format_and_find_tag():
    assert format_tag(TAG, 42) == "[#42]"
    assert find_tag(TAG, "Re: [#42] printer") == 42
    assert find_tag(TAG, "[#42]printer fire") == 42
    assert find_tag(TAG, "Printer fire [#42]") == 42
    assert find_tag(TAG, "Fwd: AW: [list] [#7] x [#9]") == 7
    assert find_tag(TAG, "[#42x] printer") is None
    assert find_tag(TAG, "#42 printer") is None
    assert find_tag(TAG, "") is None


def test_configurable_tag_formats_are_escaped():
    fmt = "(Case {number})"
    assert format_tag(fmt, 5) == "(Case 5)"
    assert find_tag(fmt, "Re: (Case 5) thing") == 5
    assert find_tag(fmt, "Re: (Case 55 thing") is None
    assert find_tag("[.*{number}]", "[.*12] x") == 12
    assert find_tag("[.*{number}]", "[ab12] x") is None
    assert find_tag("T{number}", "see T12 and T123") == 12
    assert find_tag("T{number}", "TT12") is None  # a word-like tag must start a word
    with pytest.raises(ValueError):
        format_tag("no placeholder", 1)


@pytest.mark.parametrize(
    "original",
    [
        "Printer on fire",
        "Re: Printer on fire",
        "RE: RE: Re: Printer on fire",
        "Re: [#42] Printer on fire",
        "[#42] Printer on fire",
        "[#42] Re: Printer on fire",
        "AW: [#42] Printer   on fire",
        "Printer on fire [#42]",
    ],
)
def test_reply_subject_is_stable(original):
    assert reply_subject(original, TAG, 42) == "Re: [#42] Printer on fire"


def test_reply_subject_of_reply_subject_is_fixed_point():
    once = reply_subject("Fwd: Help", TAG, 7)
    assert once == "Re: [#7] Help"
    assert reply_subject(once, TAG, 7) == once
    assert reply_subject("", TAG, 7) == "Re: [#7]"
