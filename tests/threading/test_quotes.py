import pytest

from maildesk.threading.quotes import Reply, split_reply


def lines_of(text: str) -> list[str]:
    return sorted(line.strip() for line in text.replace("\r\n", "\n").split("\n") if line.strip())


def assert_full_coverage(text: str, reply: Reply) -> None:
    parts = "\n".join((reply.visible, reply.quoted, reply.signature))
    assert lines_of(parts) == lines_of(text)


def check(text: str, visible: str, quoted_has: str = "", signature: str = "") -> Reply:
    reply = split_reply(text)
    assert reply.visible == visible
    if quoted_has:
        assert quoted_has in reply.quoted
        assert quoted_has not in reply.visible
    else:
        assert reply.quoted == ""
    assert reply.signature == signature
    assert_full_coverage(text, reply)
    return reply


def test_plain_message_is_all_visible():
    text = "Hello,\n\nthe printer on floor 3 is on fire.\nPlease send help.\n"
    check(text, text.strip())


def test_empty():
    assert split_reply("") == Reply("", "", "")
    assert split_reply("\n \n") == Reply("", "", "")


GMAIL = """Thanks, that fixed it.

On Sat, Nov 22, 2026 at 2:00 PM Support Team <support@example.com> wrote:

> Hello Alice,
>
> please restart the printer.
"""

GMAIL_WRAPPED = """Thanks, that fixed it.

On Sat, Nov 22, 2026 at 2:00 PM Support Team of Example Corporation <
support@example.com> wrote:

> please restart the printer.
"""

APPLE = """It works now.

Sent from my iPhone

> On 22 Nov 2026, at 14:00, Support <support@example.com> wrote:
>
> Please restart the printer.
"""

THUNDERBIRD = """Done.

On 22/11/2026 14:00, Support Team wrote:
> Please restart the printer.
>
> --\x20
> Support
"""

MUTT = """Restarted, still broken.

On Sat, Nov 22, 2026 at 02:00:00PM +0100, Support wrote:
> Please restart the printer.
"""

OUTLOOK_DESKTOP = """Still broken after the restart.

Regards,
Bob Smith
ACME Ltd.

-----Original Message-----
From: Support <support@example.com>
Sent: Saturday, November 22, 2026 2:00 PM
To: Bob Smith <bob@acme.com>
Subject: RE: [#42] Printer on fire

Please restart the printer.
"""

OUTLOOK_WEB = """Will try tomorrow.

________________________________
From: Support <support@example.com>
Sent: Saturday, November 22, 2026 14:00
To: Bob <bob@acme.com>
Subject: [#42] Printer on fire

Please restart the printer.
"""

OUTLOOK_BOLD_DIRECTLY_ABOVE = """Answer right above the line
________________________________
*From:* Support [mailto:support@example.com]
*Sent:* Saturday, November 22, 2026 14:00
*To:* Bob
*Subject:* Printer

Please restart the printer.
"""

BLACKBERRY = """Ok.

Sent from my BlackBerry® wireless device

-----Original Message-----
From: Support <support@example.com>
Date: Sat, 22 Nov 2026 14:00:00
To: <bob@acme.com>
Subject: Printer

Please restart the printer.
"""


def test_gmail():
    check(GMAIL, "Thanks, that fixed it.", "On Sat, Nov 22, 2026 at 2:00 PM")


def test_gmail_header_wrapped_over_two_lines():
    r = check(GMAIL_WRAPPED, "Thanks, that fixed it.", "support@example.com> wrote:")
    assert r.quoted.startswith("On Sat")


def test_apple_mail_iphone():
    check(APPLE, "It works now.", "> On 22 Nov 2026", "Sent from my iPhone")


def test_thunderbird_quoted_signature_stays_quoted():
    check(THUNDERBIRD, "Done.", "> -- ")


def test_mutt():
    check(MUTT, "Restarted, still broken.", "02:00:00PM")


def test_outlook_desktop_with_signoff():
    check(
        OUTLOOK_DESKTOP,
        "Still broken after the restart.",
        "-----Original Message-----",
        "Regards,\nBob Smith\nACME Ltd.",
    )


def test_outlook_web_underscores():
    r = check(OUTLOOK_WEB, "Will try tomorrow.", "From: Support")
    assert r.quoted.startswith("_____")


def test_outlook_reply_directly_above_rule_with_bold_labels():
    check(OUTLOOK_BOLD_DIRECTLY_ABOVE, "Answer right above the line", "*From:* Support")


def test_blackberry():
    check(BLACKBERRY, "Ok.", "-----Original Message-----", "Sent from my BlackBerry® wireless device")


@pytest.mark.parametrize(
    ("header", "answer"),
    [
        ("Am 22.11.2026 um 14:00 schrieb Max Mustermann <max@example.de>:", "Danke, geht wieder."),
        ("Le sam. 22 nov. 2026 à 14:00, Jean Dupont <jean@example.fr> a écrit :", "Merci, ça marche."),
        ("El sáb, 22 nov 2026 a las 14:00, Juan Pérez (<juan@example.es>) escribió:", "Gracias, funciona."),
        ("Il giorno sab 22 nov 2026 alle ore 14:00 Mario Rossi <mario@example.it> ha scritto:", "Grazie, funziona."),
        ("Op za 22 nov. 2026 om 14:00 schreef Jan Jansen <jan@example.nl>:", "Bedankt, het werkt."),
        ("Den lør. 22. nov. 2026 kl. 14.00 skrev Peter Hansen <peter@example.dk>:", "Tak, det virker."),
        ("lör 22 nov. 2026 kl. 14:00 skrev Anna Svensson <anna@example.se>:", "Tack, det fungerar."),
        ("lør. 22. nov. 2026 kl. 14:00 skrev Ola Nordmann <ola@example.no>:", "Takk, det virker."),
        ("W dniu sob., 22 lis 2026 o 14:00 Jan Kowalski <jan@example.pl> napisał(a):", "Dzięki, działa."),
        ("Em sáb., 22 de nov. de 2026 às 14:00, João Silva <joao@example.pt> escreveu:", "Obrigado, funciona."),
        ("2026年11月22日(土) 14:00 山田太郎 <taro@example.jp>:", "ありがとうございます。直りました。"),
        ("张三 <zhang@example.cn> 于2026年11月22日周六 14:00写道：", "谢谢，已经好了。"),
        ("在 2026年11月22日 14:00，张三 写道：", "谢谢，已经好了。"),
        ("сб, 22 нояб. 2026 г. в 14:00, Иван Петров <ivan@example.ru>:", "Спасибо, всё работает."),
        ("22.11.2026 14:00, Иван Петров пишет:", "Спасибо, всё работает."),
        ("Dne 22. 11. 2026 14:00 Jan Novák <jan@example.cz> napsal(a):", "Díky, funguje to."),
    ],
)
def test_reply_headers_in_many_languages(header, answer):
    text = f"{answer}\n\n{header}\n> Old text.\n> More old text.\n"
    check(text, answer, header)


@pytest.mark.parametrize(
    ("separator", "labels"),
    [
        (
            "-----Ursprüngliche Nachricht-----",
            ("Von: A <a@x.de>", "Gesendet: Samstag, 22. November 2026 14:00", "An: B", "Betreff: AW: Drucker"),
        ),
        ("", ("Von: A <a@x.de>", "Gesendet: Samstag, 22. November 2026 14:00", "An: B", "Betreff: Drucker")),
        (
            "-----Message d'origine-----",
            ("De : A <a@x.fr>", "Envoyé : samedi 22 novembre 2026 14:00", "À : B", "Objet : Imprimante"),
        ),
        (
            "-----Mensaje original-----",
            ("De: A", "Enviado el: sábado, 22 de noviembre de 2026 14:00", "Para: B", "Asunto: Impresora"),
        ),
        ("-----Oprindelig meddelelse-----", ("Fra: A", "Sendt: 22. november 2026 14:00", "Til: B", "Emne: Printer")),
        ("", ("Från: A", "Skickat: den 22 november 2026 14:00", "Till: B", "Ämne: Skrivare")),
        ("", ("Van: A", "Verzonden: zaterdag 22 november 2026 14:00", "Aan: B", "Onderwerp: Printer")),
        ("", ("Od: A", "Wysłano: sobota, 22 listopada 2026 14:00", "Do: B", "Temat: Drukarka")),
        ("", ("Da: A", "Inviato: sabato 22 novembre 2026 14:00", "A: B", "Oggetto: Stampante")),
        ("", ("发件人: A", "发送时间: 2026年11月22日 14:00", "收件人: B", "主题: 打印机")),
        ("", ("差出人: A", "送信日時: 2026年11月22日 14:00", "宛先: B", "件名: プリンター")),
        ("", ("От: A", "Отправлено: 22 ноября 2026 г. 14:00", "Кому: B", "Тема: Принтер")),
    ],
)
def test_outlook_blocks_in_many_languages(separator, labels):
    block = "\n".join(([separator] if separator else []) + list(labels))
    text = f"Answer.\n\n{block}\n\nOld message body.\n"
    check(text, "Answer.", labels[0])


def test_forwarded_message_is_quoted():
    text = "FYI, see below.\n\n---------- Forwarded message ---------\nFrom: A <a@x.com>\nDate: Sat\n\nbody\n"
    check(text, "FYI, see below.", "Forwarded message")


def test_inline_answers_stay_visible():
    text = (
        "On Sat, Nov 22, 2026 at 2:00 PM Support <support@example.com> wrote:\n"
        "> Which model is it?\n\n"
        "An HP 4000.\n\n"
        "> And which floor?\n\n"
        "Floor 3.\n\n"
        "> Thanks,\n> Support\n"
    )
    r = check(text, text[: text.index("\n\n> Thanks")], "> Thanks,")
    assert "> Which model is it?" in r.visible and "Floor 3." in r.visible


def test_bottom_post_keeps_quote_before_answer_visible():
    text = "Hi,\n\n> Is it fixed?\n\nYes, since this morning.\n"
    check(text, text.strip())


@pytest.mark.parametrize(
    "footer",
    [
        "Sent from my iPhone",
        "Sent from my Samsung Galaxy smartphone.",
        "Sent from Mail for Windows",
        "Get Outlook for Android",
        "Gesendet von meinem iPhone",
        "Von meinem iPhone gesendet",
        "Envoyé de mon iPhone",
        "Enviado desde mi iPhone",
        "Inviato da iPhone",
        "Verzonden vanaf mijn iPhone",
        "Sendt fra min iPhone",
        "Skickat från min iPhone",
        "Wysłane z mojego iPhone'a",
        "iPhoneから送信",
        "发自我的iPhone",
        "Отправлено с iPhone",
    ],
)
def test_mobile_signatures(footer):
    text = f"The printer is on fire again.\n\n{footer}\n"
    check(text, "The printer is on fire again.", signature=footer)


def test_sentence_starting_like_mobile_footer_is_kept():
    text = "Here it is\n\nSent from my desk, which is much easier than my phone.\n"
    check(text, text.strip())


def test_dash_dash_signature():
    text = "Please call me back.\n\n-- \nAlice Example\nACME Corp\n+1 555 0100\n"
    check(text, "Please call me back.", signature="-- \nAlice Example\nACME Corp\n+1 555 0100")


def test_dash_in_middle_of_line_is_not_a_signature():
    text = "Use the flag -- verbose when you run it.\nThanks for -- everything.\n"
    check(text, text.strip())


def test_hyphen_lists_are_not_signatures():
    text = "Steps:\n- open the tray\n- remove the paper\n- close the tray\n"
    check(text, text.strip())


@pytest.mark.parametrize(
    "signoff",
    [
        "Best regards,",
        "Kind regards",
        "Thanks,",
        "Cheers",
        "Mit freundlichen Grüßen",
        "Viele Grüße",
        "Cordialement,",
        "Saludos,",
        "Cordiali saluti",
        "Met vriendelijke groet,",
        "Med venlig hilsen",
        "Mvh",
        "Med vänliga hälsningar",
        "Pozdrawiam,",
        "Atenciosamente,",
        "С уважением,",
        "よろしくお願いします。",
    ],
)
def test_signoffs(signoff):
    text = f"The toner is empty.\nPlease send a new one.\n\n{signoff}\nAlice\n"
    check(text, "The toner is empty.\nPlease send a new one.", signature=f"{signoff}\nAlice")


def test_first_line_thanks_is_not_a_signature():
    text = "Thanks,\nthe printer works again after your hint about the fuser.\n"
    check(text, text.strip())


def test_signoff_followed_by_long_text_is_not_a_signature():
    text = "Hi,\n\nThanks,\n" + "\n".join(f"line {i} of a long explanation" for i in range(10))
    check(text, text.strip())


def test_mailing_list_footer_after_quotes():
    text = (
        "Hi,\n> question?\n\nanswer.\n\n> old tail\n\n"
        "_______________________________________________\nusers mailing list\nusers@lists.example.org\n"
    )
    r = check(
        text,
        "Hi,\n> question?\n\nanswer.",
        "> old tail",
        "_______________________________________________\nusers mailing list\nusers@lists.example.org",
    )
    assert r.quoted == "> old tail"


def test_whole_message_quoted_stays_visible():
    text = "> forwarded without comment\n> second line\n"
    check(text, text.strip())


def test_header_block_at_the_top_is_not_history():
    text = "From: A <a@x.com>\nSent: today\nTo: B\n\nHello B,\nthe printer.\n"
    check(text, text.strip())


def test_html_only_is_converted():
    html = (
        "<div dir=ltr>It works now, thanks!</div><br>"
        "<div class=gmail_quote><div>On Sat, Nov 22, 2026 at 2:00 PM Support &lt;support@example.com&gt; wrote:</div>"
        "<blockquote>Please restart the printer.</blockquote></div>"
    )
    r = split_reply("", html)
    assert r.visible == "It works now, thanks!"
    assert "Please restart the printer." in r.quoted and "wrote:" in r.quoted


def test_windows_line_endings():
    r = split_reply(GMAIL.replace("\n", "\r\n"))
    assert r.visible == "Thanks, that fixed it."
    assert "\r" not in r.quoted


def test_pathological_input_is_split():
    # Its speed is a figure of bench/quotes_bench.py (goal: under 1 s).
    text = "a" * 5000 + "\n" + ("On " + "x " * 200 + "\n") * 300 + "> q\n" * 2000
    r = split_reply(text)
    assert r.visible.startswith("a" * 5000)
    assert r.quoted.count("> q") == 2000
