"""What the person wrote, apart from quoted history and signature.

Owns `split_reply`: it cuts a decoded plain-text body (or text derived from HTML) into
`visible`, `quoted` and `signature`. It recognises reply headers of many clients and
languages ("On … wrote:", "Am … schrieb …:", "Le … a écrit :", "… 写道：", wrapped over
up to three lines), Outlook blocks ("-----Original Message-----", "From: … Sent: …", lines
of underscores), `>` quotes (inline answers between quotes stay visible), `-- ` signatures,
mobile footers ("Sent from my iPhone" and translations), sign-offs ("Best regards,",
"Mit freundlichen Grüßen", "Mvh", …) and mailing-list footers.

Nothing is dropped: every non-blank line lands in exactly one of the three parts, and the
full text is stored separately anyway. It measured better than `email-reply-parser` and
`mail-parser-reply` on their own corpora (see `bench/reply_accuracy.py`), so it uses
neither. Pure text work: no I/O, no state; it must not decode transfer encodings (the
caller decodes first) nor decide anything about tickets.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass

from maildesk.message import html_to_text


@dataclass(frozen=True)
class Reply:
    visible: str  # what the person wrote (inline answers keep the quotes they answer)
    quoted: str  # earlier messages: reply headers, quoted lines, forwarded/original blocks
    signature: str  # signature, sign-off, mobile and mailing-list footers
    capped: int = 0  # text length when it was over MAX_SPLIT_CHARS: only its head was split


# Only this much of a text is split (at a line break); the rest is quoted history. The
# pass is linear, but its per-line constant is that of ~20 attribution patterns: a 25 MB
# body must not hold the worker (issue 16). The caller records the cap as an event.
MAX_SPLIT_CHARS = 200_000


_I = re.IGNORECASE

# Reply attribution lines, matched on up to three lines joined by spaces.
_WROTE = re.compile(
    "|".join(
        [
            r"^on\b.{3,300}\bwrote\s*:$",
            r"^am\b.{3,300}\b(?:schrieb\b.{0,200}|geschrieben\s*):$",
            r"^le\b.{3,300}\ba\s+[ée]crit\b.{0,200}:$",
            r"^el\b.{3,300}\bescribi[óo]\s*:$",
            r"^(?:em|no\s+dia|a)\b.{3,300}\bescreveu\s*:$",
            r"^il\b.{3,300}\bha\s+scritto\s*:$",
            r"^op\b.{3,300}\bschreef\b.{0,200}:$",
            r"^.{3,300}\bskrev\b.{0,200}:$",
            r"^(?:w\s+dniu|dnia)\b.{3,300}\b(?:napisa[łl]\(a\)|napisa[łl]a|napisa[łl]|nades[łl]a[łl]|pisze)\b.{0,200}:$",
            r"^dne\b.{3,300}\bnapsal(?:\(a\)|a)?\s*:$",
            r"^.{3,300}\b(?:написал(?:\(а\)|а)?|пишет)\s*:$",
            r"^.{0,300}(?:写道|寫道)\s*[:：]?$",
            r"^\d{4}\s*年\s*\d{1,2}\s*月\s*\d{1,2}\s*日.{0,300}[:：]$",
            r"^.{3,300}(?:님이\s*작성|작성)\s*[:：]?$",
            r"^.{3,300}\bkirjoitti\s*:$",
            r"^.{3,300}\b[íi]rta\s*:$",
            r"^.{3,300}\byazd[ıi]\s*:$",
            r"^.{3,300}\bέγραψε\s*:$",
            # uk, ar, fa, he, th, hi, ja (Apple Mail, Thunderbird), and a few more verbs
            r"^.{3,300}\b(?:пише|написав(?:\(ла\)|ла)?|написа)\s*:$",
            r"^.{3,300}(?:كتب|كتبت|نوشت|כתב(?:/ה|ה)?|เขียนว่า|लिखा|のメール|書きました)\s*[:：]$",
            r"^.{3,300}\b(?:menulis|a\s+scris|napisao|napisala|napísal(?:\(a\)|a)?|rašė|rakstīja|kirjutas|đã\s+viết)\s*:$",
        ]
    ),
    _I,
)

# Attribution without a verb (Gmail in ru, uk, ja…): a date and an address, then a colon.
# Trusted only when quoted lines follow.
# Means `^.{0,200}\d.{0,200}<[^<>\s]+@[^<>\s]+>\s*[:：]$`, checked in two linear steps (the
# single pattern backtracked 200 x 200 times on a long line of digits: issue 16).
_ADDRESS_COLON_END = re.compile(r"<[^<>\s]+@[^<>\s]+>\s*[:：]$")
_DIGIT = re.compile(r"\d")
_DIGIT_OR_AT = re.compile(r"[\d@]")  # every attribution holds a date or an address


# Bidirectional-text controls (Gmail wraps RTL attributions in them: "…‪name‬‏ <‪addr‬‏>:‬").
# Invisible, they only hide line ends and addresses from the patterns: decisions read lines
# without them; the parts keep the lines as they came.
_BIDI = re.compile("[\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# A client that wraps an attribution inside "<address>" leaves "<" or ">" at a line edge.
_ANGLE_GAP = re.compile(r"<\s+|\s+>")


def _generic_attribution(text: str) -> bool:
    end = _ADDRESS_COLON_END.search(text)
    if end is None:
        return False
    at = end.start()  # the digit must lie within 200 characters of both the start and the `<`
    return _DIGIT.search(text, max(0, at - 201), min(201, at)) is not None


# Separators that start earlier messages (Outlook, BlackBerry, Gmail/Apple forwards).
_SEPARATOR = re.compile(
    r"^\s*(?:-{2,}|_{2,}|=+)\s*(?:original\s+message|ursprüngliche\s+nachricht|original\s*nachricht|"
    r"oprindelig\s+meddelelse|opprinnelig\s+melding|originalmeddelande|ursprungligt\s+meddelande|"
    r"message\s+d'origine|mensaje\s+original|messaggio\s+originale|mensagem\s+original|"
    r"oorspronkelijk\s+bericht|origineel\s+bericht|wiadomość\s+oryginalna|původní\s+zpráva|"
    r"alkuperäinen\s+viesti|eredeti\s+üzenet|исходное\s+сообщение|原始邮件|原始郵件|元のメッセージ|"
    r"forwarded\s+message|weitergeleitete\s+nachricht|message\s+transféré|mensaje\s+reenviado|"
    r"messaggio\s+inoltrato|doorgestuurd\s+bericht|videresendt\s+meddelelse|vidarebefordrat\s+meddelande|"
    r"mensagem\s+encaminhada|przekazana\s+wiadomość|пересылаемое\s+сообщение|转发的邮件|転送されたメッセージ)"
    r"\s*(?:-{2,}|_{2,}|=+)?\s*$"
    r"|^\s*(?:begin\s+forwarded\s+message|anfang\s+der\s+weitergeleiteten\s+nachricht|"
    r"début\s+du\s+message\s+réexpédié|inicio\s+del\s+mensaje\s+reenviado)\s*:\s*$",
    _I,
)

_LABEL = r"^[\s*>]*(?:{})\s*\**\s*[:：]"
_FROM = re.compile(
    _LABEL.format(
        r"from|von|de|da|van|fra|från|od|lähettäjä|от|发件人|寄件者|差出人|feladó|kimden|afzender|remetente|"
        r"αποστολέας|보낸\s*사람|من|المرسل|מאת|از|จาก|від|από"
    ),
    _I,
)
_OTHER = re.compile(
    _LABEL.format(
        r"sent|date|to|subject|cc|gesendet|datum|an|betreff|envoyé|date\s+d'envoi|à|objet|enviado|fecha|para|asunto|"
        r"inviato|data|a|oggetto|verzonden|aan|onderwerp|sendt|dato|til|emne|skickat|till|ämne|wysłano|do|temat|"
        r"assunto|отправлено|дата|кому|тема|发送时间|收件人|主题|抄送|日付|送信日時|宛先|件名|받는\s*사람|제목|"
        r"lähetetty|vastaanottaja|aihe|elküldve|címzett|tárgy|tarih|kime|konu|"
        r"تم\s+الإرسال|أرسل|التاريخ|إلى|الموضوع|نسخة|נשלח|אל|נושא|תאריך|עותק|ارسال\s+شده|به|موضوع|ส่ง|ถึง|เรื่อง|"
        r"надіслано|στάλθηκε|προς|θέμα"
    ),
    _I,
)
_RULE = re.compile(r"^\s*(?:_{8,}|-{8,}|={8,}|\*{8,})\s*$")
_SIG_DELIM = re.compile(r"^(?:-- ?|--|—|__)\s*$")
_DASH_NAME = re.compile(r"^-\w[\w.'’ -]{0,40}$")
_SLASH_NAME = re.compile(r"^/\w[\w.'’ -]{0,30}$")
_MOBILE = re.compile(
    r"^\s*(?:sent\s+from\s+(?:my\s+)?|sent\s+via\s+|sent\s+with\s+|get\s+outlook\s+for\s+|"
    r"gesendet\s+(?:von|mit)\s+(?:meinem\s+)?|von\s+meinem\s+\w+\s+gesendet|envoyé\s+(?:de|depuis)\s+(?:mon\s+)?|"
    r"enviado\s+(?:desde|do|de)\s+(?:mi|meu)\s+|inviato\s+da(?:l)?\s+(?:mio\s+)?|verzonden\s+(?:vanaf|met)\s+(?:mijn\s+)?|"
    r"sendt\s+fra\s+(?:min\s+)?|skickat\s+från\s+(?:min\s+)?|wysłane\s+z\s+|wysłano\s+z\s+|odesláno\s+z\s+|"
    r"отправлено\s+(?:с|из)\s+|lähetetty\s+|"
    r"(?:从我的|发自我的|來自我的|寄自我的)|iphoneから送信|ipadから送信|androidから送信)"
    r"[\w .\-'’®™<>:/()@]{0,60}$",
    _I,
)
_SIGN_OFFS = (
    r"(?:best|kind|warm|warmest)(?:\s+regards)?|regards|many\s+thanks|thanks(?:\s+(?:a\s+lot|again|in\s+advance))?|"
    r"thank\s+you(?:\s+(?:very\s+much|in\s+advance))?|cheers|all\s+the\s+best|best\s+wishes|sincerely|yours(?:\s+sincerely|\s+truly)?|"
    r"br|thx|ty|"
    r"mit\s+freundlichen\s+grü(?:ß|ss)en|freundliche\s+grü(?:ß|ss)e|(?:viele|beste|liebe|herzliche)\s+grü(?:ß|ss)e|"
    r"grü(?:ß|ss)e|gru(?:ß|ss)|lg|vg|mfg|danke|"
    r"cordialement|bien\s+(?:à\s+vous|cordialement)|salutations|bonne\s+(?:journée|réception)|merci|"
    r"saludos(?:\s+cordiales)?|un\s+saludo|atentamente|cordialmente|gracias|muchas\s+gracias|"
    r"cordiali\s+saluti|distinti\s+saluti|saluti|grazie|"
    r"met\s+vriendelijke\s+groet(?:en)?|vriendelijke\s+groet(?:en)?|groeten|groet|bedankt|"
    r"med\s+venlig(?:e)?\s+hilsen?|venlig\s+hilsen|mvh|hilsen|kh|bedste\s+hilsner|dbh|"
    r"med\s+vänliga\s+hälsningar|vänliga\s+hälsningar|vänlig\s+hälsning|hälsningar|med\s+vennlig\s+hilsen|"
    r"pozdrawiam(?:\s+serdecznie)?|z\s+powa[żz]aniem|pozdrowienia|"
    r"atenciosamente|abraços|cumprimentos|obrigad[oa]|"
    r"s\s+pozdravem|с\s+уважением|спасибо|"
    r"よろしくお願い(?:いた)?します|以上、?よろしくお願い(?:いた)?します|敬具|此致|祝好|谢谢|謝謝|"
    r"tack(?:\s+så\s+mycket)?|дякую|감사합니다|ありがとうございます|شكرا|شكراً|תודה|teşekkürler|saygılarımla"
)
_SIGN_OFF = re.compile(r"^\s*(?:" + _SIGN_OFFS + r")\s*[,.!:;。、！]*\s*$", _I)
_BLANK_OR_QUOTE = re.compile(r"^\s*(?:>.*)?$")


# What every pattern in _WROTE and _generic_attribution ends with (after trailing spaces).
_ATTRIBUTION_ENDS = (":", "：", "写道", "寫道", "작성")


class _Lines:
    """Where the non-blank lines are: counting or listing those in a range costs O(log n)
    plus what is listed, so no pass over the body turns quadratic (issue 16: 40,000 blank
    or `--` lines took seconds)."""

    def __init__(self, lines: list[str]) -> None:
        self.filled = [i for i, line in enumerate(lines) if line.strip()]
        # Every attribution pattern ends a line so, and an attribution spans at most three
        # lines: only lines up to two above such an end can start one. Found in one cheap
        # pass, so the costly patterns run on those lines alone.
        ends = [i for i, line in enumerate(lines) if line.rstrip().endswith(_ATTRIBUTION_ENDS)]
        self.may_attribute = sorted({k for end in ends for k in range(max(0, end - 2), end + 1)})
        self._may_attribute = frozenset(self.may_attribute)

    def attribution_possible(self, i: int) -> bool:
        return i in self._may_attribute

    def between(self, start: int, end: int, limit: int) -> list[int] | None:
        """Indexes of non-blank lines in [start, end), or None when there are more than `limit`."""
        lo = bisect_left(self.filled, start)
        hi = bisect_left(self.filled, end)
        return None if hi - lo > limit else self.filled[lo:hi]

    def next_filled(self, start: int) -> int | None:
        k = bisect_left(self.filled, start)
        return self.filled[k] if k < len(self.filled) else None


# Sign-offs, mobile footers and name lines are short; longer lines are not tried against them.
_SHORT_LINE = 200


def _blank(line: str) -> bool:
    return not line.strip()


def _quoted(line: str) -> bool:
    return line.lstrip().startswith(">")


def _header_span(lines: list[str], where: _Lines, i: int, generic: bool = False) -> int:
    """How many lines (1-3) form a reply attribution starting at line i; 0 if none.

    `generic` also accepts a verb-less "<date> <name> <address>:" line.
    """
    if not where.attribution_possible(i) or _quoted(lines[i]) or _blank(lines[i]):
        return 0
    joined = ""
    for k in range(3):
        if i + k >= len(lines) or (k and (_blank(lines[i + k]) or _quoted(lines[i + k]))):
            return 0
        part = lines[i + k].strip()
        if joined.endswith("="):  # a quoted-printable soft break that survived decoding
            joined = joined[:-1] + part
        else:
            joined = f"{joined} {part}" if joined else part
        if len(joined) > 400:
            return 0
        if k:
            joined = _ANGLE_GAP.sub(lambda m: m.group(0).strip(), joined)
        if _DIGIT_OR_AT.search(joined) and (_WROTE.match(joined) or generic and _generic_attribution(joined)):
            return k + 1
    return 0


def _tight(lines: list[str], where: _Lines, i: int, span: int, generic: bool = False) -> tuple[int, int]:
    """The attribution at i spanning `span` lines, without leading lines that are not part of
    it: a sign-off or name ("Thanks," / "Anna") written right above a verb-less attribution
    matches with it, since those patterns may start anywhere. A line is left out only when it
    has neither digit nor `@` and is short: the first line of a wrapped attribution holds its
    date or address and runs to the client's wrap width."""
    while span > 1:
        line = lines[i].strip()
        if len(line) > 60 or _DIGIT_OR_AT.search(line) or _header_span(lines, where, i + 1, generic) != span - 1:
            break
        i, span = i + 1, span - 1
    return i, span


def _loose_attribution(line: str) -> bool:
    """A loose attribution, trusted only as the first line of a bottom-posted reply (mutt's
    "* Name <addr> [2024-01-15 10:02]:", Horde's "Quoting Name <addr>:"): a line of at most
    400 characters with a date or an address, ending with a colon."""
    line = line.strip()
    return len(line) <= 400 and line.endswith((":", "：")) and _DIGIT_OR_AT.search(line) is not None


def _leading_quote_end(lines: list[str], where: _Lines, first: int, end: int) -> int:
    """Bottom-posting: where the written text starts after a leading attribution and quote
    block, or `first` when the message does not start so. Only when nothing below is quoted
    any more (quote, answer, quote, answer is an inline reply: it stays visible whole).
    Without an attribution the block must hold two quoted lines (a newsletter's teaser line
    may start with `>`)."""
    span = 0
    if not _quoted(lines[first]):
        span = _header_span(lines, where, first, generic=True)
        if not span and _loose_attribution(lines[first]):
            span = 1
        if not span:
            return first
    k = where.next_filled(first + span)
    if k is None or k >= end or not _quoted(lines[k]):
        return first
    quoted = 0
    while k < end and (_blank(lines[k]) or _quoted(lines[k])):
        quoted += not _blank(lines[k])
        k += 1
    if k >= end or (not span and quoted < 2) or any(_quoted(lines[j]) for j in range(k, end)):
        return first
    return k


def _outlook_block(lines: list[str], i: int) -> bool:
    """A `From:` line followed by a Sent/Date/To/Subject line within a few lines."""
    if not _FROM.match(lines[i]) or _quoted(lines[i]):
        return False
    for j in range(i + 1, min(len(lines), i + 7)):
        if _OTHER.match(lines[j]) and not _FROM.match(lines[j]):
            return True
    return False


def _extend_up(lines: list[str], i: int, floor: int) -> int:
    """Include a rule or separator line (and blank lines) just above a boundary."""
    j = i
    while j - 1 > floor and _blank(lines[j - 1]):
        j -= 1
    if j - 1 > floor and (_RULE.match(lines[j - 1]) or _SEPARATOR.match(lines[j - 1])):
        return j - 1
    return i


def _hard_boundary(lines: list[str], first: int, where: _Lines) -> int:
    """First line of an unquoted earlier message (Outlook style), or len(lines)."""
    for i in range(first + 1, len(lines)):
        line = lines[i]
        if _blank(line) or _quoted(line):
            continue
        if _SEPARATOR.match(line):
            return i
        if _outlook_block(lines, i):
            while i - 1 > first and _OTHER.match(lines[i - 1]) and not _quoted(lines[i - 1]):
                i -= 1  # GMX / web.de put "Gesendet:" above "Von:"
            return _extend_up(lines, i, first)
        span = _header_span(lines, where, i)
        if span:
            nxt = where.next_filled(i + span)
            if nxt is not None and not _quoted(lines[nxt]):
                return _tight(lines, where, i, span)[0]
    return len(lines)


def _short_tail(lines: list[str], where: _Lines, start: int, end: int, max_lines: int, max_len: int = 80) -> bool:
    rest = where.between(start, end, max_lines)
    return rest is not None and all(len(lines[k].strip()) <= max_len and not _quoted(lines[k]) for k in rest)


def _footer_start(lines: list[str], where: _Lines, first: int, end: int) -> int:
    """Start of a trailing `-- ` signature or list footer after everything else, or end."""
    for i in range(end - 1, first, -1):
        if _quoted(lines[i]):
            return end
        if (_SIG_DELIM.match(lines[i]) or _RULE.match(lines[i])) and _short_tail(lines, where, i + 1, end, 10, 120):
            if where.between(i + 1, end, 10):
                return i
    return end


def _quote_start(lines: list[str], where: _Lines, end: int) -> int:
    """First line of the trailing run of quotes and attributions before `end`, or end."""
    header_lines: set[int] = set()
    for i in where.may_attribute[: bisect_left(where.may_attribute, end)]:
        span = _header_span(lines, where, i, generic=True)
        if span:
            start, span = _tight(lines, where, i, span, generic=True)
            header_lines.update(range(start, min(end, start + span)))

    def quote_like(k: int) -> bool:
        if _blank(lines[k]) or _quoted(lines[k]) or k in header_lines:
            return True
        # the tail of a quoted line cut by an undecoded quoted-printable soft break ("=")
        return k > 0 and _quoted(lines[k - 1]) and lines[k - 1].rstrip().endswith("=")

    j = end
    seen_quote = False
    while j > 0 and quote_like(j - 1):
        seen_quote |= not _blank(lines[j - 1])
        j -= 1
    if not seen_quote:
        return end
    while j < end and _blank(lines[j]):
        j += 1
    return j


def _signature_start(lines: list[str], where: _Lines, first: int, end: int) -> int:
    """Start of the signature or sign-off at the end of the written text, or end."""
    previous_at = first
    for i in range(first + 1, end):
        line = lines[i].strip()
        if not line:
            continue
        if len(line) > _SHORT_LINE:  # no signature line is this long (and a long one must not cost)
            previous_at = i
            continue
        if _SIG_DELIM.match(line) and _short_tail(lines, where, i + 1, end, 12, 120):
            return i
        if _MOBILE.match(line) and _short_tail(lines, where, i + 1, end, 3):
            return i
        if _SIGN_OFF.match(line) and _short_tail(lines, where, i + 1, end, 6, 60):
            return i
        previous = lines[previous_at].strip()
        previous_at = i
        if (
            (_DASH_NAME.match(line) or _SLASH_NAME.match(line))
            and not previous.startswith(("-", "/"))
            and len(line.split()) <= 4
            and _short_tail(lines, where, i + 1, end, 3, 60)
        ):
            if not any(_DASH_NAME.match(lines[k].strip()) for k in where.between(i + 1, end, 3) or ()):
                return i
    return end


def _join(lines: list[str]) -> str:
    return "\n".join(lines).strip("\n").rstrip()


def split_reply(text: str, html: str = "") -> Reply:
    """Split a reply into what was written, the quoted history and the signature."""
    if not (text or "").strip() and html:
        text = html_to_text(html)
    text = (text or "").replace("\r\n", "\n").replace("\r", "\n").replace("\xa0", " ")
    if len(text) > MAX_SPLIT_CHARS:
        cut = text.rfind("\n", 0, MAX_SPLIT_CHARS) + 1 or MAX_SPLIT_CHARS
        head = _split(text[:cut])
        rest = text[cut:].strip("\n").rstrip()
        quoted = "\n".join(part for part in (head.quoted, rest) if part)
        return Reply(head.visible, quoted, head.signature, capped=len(text))
    return _split(text)


def _split(text: str) -> Reply:
    lines = text.split("\n")
    first = next((i for i, line in enumerate(lines) if line.strip()), len(lines))
    if first == len(lines):
        return Reply("", "", "")
    seen = [_BIDI.sub("", line) for line in lines] if _BIDI.search(text) else lines  # what decisions read
    where = _Lines(seen)
    hard = _hard_boundary(seen, first, where)
    footer = _footer_start(seen, where, first, hard)
    quote = _quote_start(seen, where, footer)
    if quote <= first:  # the whole message is a quote: keep it visible rather than show nothing
        quote = footer
    start = _leading_quote_end(seen, where, first, quote)  # bottom-posting: the text is below
    sig = _signature_start(seen, where, start, quote)
    visible = _join(lines[start if start > first else 0 : sig])
    signature = "\n".join(part for part in (_join(lines[sig:quote]), _join(lines[footer:hard])) if part)
    quoted = "\n".join(
        part for part in (_join(lines[first:start]), _join(lines[quote:footer]), _join(lines[hard:])) if part
    )
    return Reply(visible, quoted, signature)
