"""TemplateRenderer: built-ins, fallback chain, sandbox, escaping, broken site templates."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

from maildesk.outbound.context import (
    CompanyInput,
    CustomerInput,
    MessageInput,
    TicketInput,
    build_context,
    sample_context,
)
from maildesk.outbound.render import RenderError, TemplateRenderer, UnknownTemplate

BUILTINS = {
    "ack",
    "agent_reply",
    "resolved",
    "sla_warning",
    "sla_breach",
    "followup",
    "survey",
    "agent_notification",
    "bounce_notice",
    "refused_reply",
    "ask_again",
    "ask_order_number",
    "merged",
    "survey_low",
}


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def renderer() -> TemplateRenderer:
    return TemplateRenderer(None)


def test_builtin_names(renderer: TemplateRenderer) -> None:
    assert BUILTINS <= renderer.names()
    assert not any(name.startswith("_") for name in renderer.names())


GREETING = {"en": "Hi {},", "de": "Hallo {},", "fr": "Bonjour {},", "es": "Hola, {}:"}


@pytest.mark.parametrize("locale", ["en", "de", "fr", "es"])
@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_every_builtin_renders(renderer: TemplateRenderer, name: str, locale: str) -> None:
    out = renderer.render(name, sample_context(locale, template=name), locale=locale)
    assert out.template_path.endswith(f"/{locale}/{name}.txt.j2")
    assert out.errors == () and not out.fell_back
    assert out.subject and "\n" not in out.subject
    assert "[#42]" in out.subject or name == "refused_reply" and "#42" in out.subject
    assert out.text.strip() and "{%" not in out.text and "None" not in out.text
    assert out.html is not None and out.html.startswith("<!DOCTYPE html>")
    if name in {"ack", "resolved", "followup", "survey"}:
        assert GREETING[locale].format("Anna") in out.text
    if name in {"sla_warning", "sla_breach", "agent_notification", "bounce_notice", "refused_reply"}:
        assert GREETING[locale].format("Jonas") in out.text


def test_german_text_is_german(renderer: TemplateRenderer) -> None:
    out = renderer.render("resolved", sample_context("de"), locale="de")
    assert "als gelöst markiert" in out.text and "Viele Grüße" in out.text
    assert "14 Tage" in out.text


def test_french_and_spanish_text_and_dates(renderer: TemplateRenderer) -> None:
    fr = renderer.render("ack", sample_context("fr"), locale="fr")
    assert "votre message nous est bien parvenu" in fr.text and "Bien cordialement" in fr.text
    assert "mer. 5 mars 2025" in fr.text  # Babel's French date, in the customer's zone
    es = renderer.render("resolved", sample_context("es"), locale="es")
    assert "como resuelta" in es.text and "14 días" in es.text and "Un saludo cordial" in es.text
    ack_es = renderer.render("ack", sample_context("es"), locale="es")
    assert "5 mar 2025" in ack_es.text


# Words each fr/es translation of the templates that were added or changed after the first
# fr/es set must contain: the new wording, a translated survey label, a translated field label.
TRANSLATED: dict[tuple[str, str], tuple[str, ...]] = {
    ("ask_again", "fr"): ("il nous manque encore", "- numéro de commande", "transmettre cette information"),
    ("ask_again", "es"): ("aún nos falta", "- número de pedido", "este dato"),
    ("ask_order_number", "fr"): ("numéro de commande", "confirmation de commande"),
    ("ask_order_number", "es"): ("número de pedido", "confirmación de su pedido"),
    ("merged", "fr"): ("[#41] « Printer smoking »", "arrivent directement dans [#41]"),
    ("merged", "es"): ("[#41] «Printer smoking»", "llegarán directamente a [#41]"),
    ("survey_low", "fr"): ("Nous sommes désolés", "ce qui n’a pas fonctionné"),
    ("survey_low", "es"): ("Lamentamos no haberlo hecho mejor", "qué salió mal"),
    ("resolved", "fr"): ("comme résolue", "Votre réponse ne rouvre pas la demande", "2 – pas terrible"),
    ("resolved", "es"): ("como resuelta", "no vuelve a abrir la solicitud", "2 – no muy bien"),
    ("survey", "fr"): ("Répondez simplement", "– pas terrible"),
    ("survey", "es"): ("Responda a este correo", "– no muy bien"),
    ("agent_notification", "fr"): (
        "Demandé, pas encore fourni : order_number",
        "mauvaise note",
        "Réponse à l’enquête :",
    ),
    ("agent_notification", "es"): (
        "Solicitado, aún no recibido: order_number",
        "ha valorado mal",
        "Respuesta a la encuesta:",
    ),
}


def _sentences(text: str) -> set[str]:
    """Sentence-sized pieces (three words or more) of a rendered mail, HTML tags dropped."""
    text = re.sub(r"<[^>]+>", "\n", text)
    pieces = re.split(r"[\n.!?:;–]| - ", text)
    return {" ".join(p.split()) for p in pieces if len(re.findall(r"[A-Za-z]{2,}", p)) >= 3}


def _updated_context(locale: str, name: str) -> dict:
    ctx = sample_context(locale, template=name)
    if name == "agent_notification":  # the branch added after the first fr/es set
        ctx["notice"] = {**ctx["notice"], "event": "low-rating"}
    return ctx


@pytest.mark.parametrize("locale", ["fr", "es"])
@pytest.mark.parametrize("name", sorted({n for n, _ in TRANSLATED}))
def test_updated_templates_are_translated(renderer: TemplateRenderer, name: str, locale: str) -> None:
    out = renderer.render(name, _updated_context(locale, name), locale=locale)
    assert out.template_path.endswith(f"/{locale}/{name}.txt.j2")
    assert out.errors == () and not out.fell_back
    assert out.html is not None
    for words in TRANSLATED[name, locale]:
        assert words in out.text, words
    # An English sentence of the English mail that German does not share (those come from
    # the sample data, e.g. the customer's message) must not be left in fr/es.
    en = renderer.render(name, _updated_context("en", name), locale="en")
    de = renderer.render(name, _updated_context("de", name), locale="de")
    english = (_sentences(en.text) | _sentences(en.html or "")) - _sentences(de.text) - _sentences(de.html or "")
    assert english, "the English version has sentences of its own"
    translated = _sentences(out.text) | _sentences(out.html)
    assert not english & translated, sorted(english & translated)
    if name in {"resolved", "survey"}:  # the signed per-rating links, in text and HTML
        for s in _updated_context(locale, name)["survey"]["scores"]:
            assert s["mailto"] in out.text
            assert html.escape(s["mailto"]) in out.html


@pytest.mark.parametrize("locale", ["fr", "es"])
def test_survey_html_without_signed_links_falls_back_to_a_plain_mailto(renderer: TemplateRenderer, locale: str) -> None:
    ctx = sample_context(locale, template="survey")
    ctx["survey"] = {
        **ctx["survey"],
        "has_links": False,
        "scores": [{**s, "mailto": ""} for s in ctx["survey"]["scores"]],
    }
    out = renderer.render("survey", ctx, locale=locale)
    assert out.html is not None and "mailto:support@example.com?subject=Re%3A" in out.html
    assert "&amp;body=RATING%205" in out.html and "<mailto:" not in out.text
    notice = renderer.render("agent_notification", {**sample_context(locale), "notice": None}, locale=locale)
    assert ("Commandes : #note" if locale == "fr" else "Comandos: #note") in notice.text


def test_check_finds_no_problem_in_builtins(renderer: TemplateRenderer) -> None:
    assert renderer.check() == []
    every = TemplateRenderer(None, locales=("en", "de", "fr", "es"))
    assert every.check() == []


def test_check_lists_the_templates_a_desk_locale_lacks(tmp_path: Path) -> None:
    builtin = tmp_path / "builtin"
    for loc in ("en", "de"):
        write(builtin, f"{loc}/ack.txt.j2", "Subject: ack\n\nhi\n")
    write(builtin, "en/resolved.txt.j2", "Subject: done\n\nbye\n")
    write(builtin, "en/_signature.txt.j2", "-- us\n")
    site = tmp_path / "site"
    write(site, "en/custom.txt.j2", "Subject: custom\n\nx\n")
    write(site, "de/resolved.txt.j2", "Subject: erledigt\n\ntschüss\n")
    renderer = TemplateRenderer(site, builtin_dir=builtin, locales=("en", "de", "it"))
    problems = [str(p) for p in renderer.missing_translations()]
    assert len(problems) == 2, problems
    de = next(p for p in problems if "'de'" in p)
    assert "lacks 2 template(s): _signature, custom" in de and "de/custom.txt.j2" in de
    assert de.startswith(str(site.resolve() / "de"))
    it = next(p for p in problems if "'it'" in p)
    assert "_signature, ack, custom, resolved" in it
    assert [str(p) for p in renderer.check() if "lacks" in str(p)] == problems
    # A regional locale may take its language's folder; the site's top level counts for all.
    write(site, "custom.txt.j2", "Subject: custom\n\nx\n")
    write(site, "_signature.txt.j2", "-- us\n")
    assert TemplateRenderer(site, builtin_dir=builtin, locales=("en", "de_AT")).missing_translations() == []


def test_unknown_template(renderer: TemplateRenderer) -> None:
    with pytest.raises(UnknownTemplate):
        renderer.render("nope", sample_context("en"), locale="en")
    with pytest.raises(UnknownTemplate):
        renderer.render("../en/ack", sample_context("en"), locale="en")


def test_builtin_failure_is_a_render_error(renderer: TemplateRenderer) -> None:
    ctx = sample_context("en")
    ctx["ticket"] = None  # the caller forgot the ticket: a bug, not site input
    with pytest.raises(RenderError, match="ack.txt.j2"):
        renderer.render("ack", ctx, locale="en")


def test_no_greeting_guess_without_a_name(renderer: TemplateRenderer) -> None:
    ctx = build_context(
        now=sample_context("en")["now"],
        company=CompanyInput("Example", "support@example.com"),
        customer=CustomerInput(email="jsmith@example.org"),
        ticket=TicketInput(number=5, subject="Hello"),
    )
    out = renderer.render("ack", ctx, locale="en")
    assert out.text.startswith("Hello,\n")


def hostile_context(text: str) -> dict:
    return build_context(
        now=sample_context("en")["now"],
        company=CompanyInput("Example", "support@example.com"),
        customer=CustomerInput(email="eve@example.org", name='Eve <script>alert("n")</script>'),
        ticket=TicketInput(number=9, subject="<img src=x onerror=alert(1)> {{ 7*7 }}"),
        message=MessageInput(text=text, sender_name="Eve"),
    )


HOSTILE = (
    "<script>alert('x')</script>\n<img src=http://evil/t.gif>\n"
    "{{ 7*7 }} {% if true %}yes{% endif %}\n{{ ''.__class__ }}"
)


def test_hostile_customer_text_escaped_in_html_and_not_evaluated(tmp_path: Path, renderer: TemplateRenderer) -> None:
    out = renderer.render("agent_notification", hostile_context(HOSTILE), locale="en")
    assert out.html is not None
    assert "<script" not in out.html and "<img" not in out.html
    assert "&lt;script&gt;" in out.html and "&lt;img src=" in out.html
    assert '<a href="http://evil/t.gif" rel="noopener noreferrer">' in out.html  # linked, never loaded
    assert "49" not in out.html and "49" not in out.text
    assert "{{ 7*7 }}" in out.text and "{% if true %}yes{% endif %}" in out.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in out.html  # ticket subject too


def test_site_html_template_autoescapes_and_text_does_not(tmp_path: Path) -> None:
    write(tmp_path, "en/agent_notification.txt.j2", "Subject: {{ ticket.tag }} note\n\n{{ message.text }}\n")
    write(
        tmp_path, "en/agent_notification.html.j2", "<div>{{ message.text }}</div><p>{{ message.text|paragraphs }}</p>"
    )
    out = TemplateRenderer(tmp_path).render("agent_notification", hostile_context(HOSTILE), locale="en")
    assert out.errors == () and "<script>alert('x')</script>" in out.text
    assert out.html is not None and "<script" not in out.html and out.html.count("&lt;script&gt;") == 2


def test_site_cannot_mark_customer_text_safe(tmp_path: Path) -> None:
    write(tmp_path, "en/ack.txt.j2", "Subject: hi\n\nbody\n")
    write(tmp_path, "en/ack.html.j2", "{{ message.text|safe }}")
    out = TemplateRenderer(tmp_path).render("ack", hostile_context(HOSTILE), locale="en")
    # |safe is Jinja's explicit opt-out; the context never does it on its own.
    assert out.html is not None and "<script>" in out.html
    out2 = TemplateRenderer(tmp_path).render("ack", {**hostile_context(HOSTILE)}, locale="en")
    assert out2.text == "body\n"


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("Subject: x\n\n{{ ''.__class__.__mro__ }}\n", "unsafe"),
        ("Subject: x\n\n{{ cycler.__init__.__globals__ }}\n", "unsafe"),
        ("Subject: x\n\n{% import 'os' as os %}{{ os.system('id') }}\n", "os"),
        ("Subject: x\n\n{{ ticket.__class__.__subclasses__() }}\n", "unsafe"),
        ("Subject: x\n\n{% set _ = customer.update({'email': 'x'}) %}\n", "unsafe"),
        ("Subject: x\n\n{{ range(10**9)|list|length }}\n", "range"),
    ],
)
def test_sandbox_escapes_refused_and_fall_back(tmp_path: Path, source: str, fragment: str) -> None:
    path = write(tmp_path, "en/ack.txt.j2", source)
    out = TemplateRenderer(tmp_path).render("ack", sample_context("en"), locale="en")
    assert out.fell_back and len(out.errors) == 1
    assert out.errors[0].startswith(f"{path}:3:")
    assert fragment in out.errors[0].lower()
    assert "/maildesk/templates/en/ack.txt.j2" in out.template_path
    assert "Hi Anna," in out.text


def test_strict_undefined_catches_a_typo(tmp_path: Path) -> None:
    path = write(tmp_path, "en/resolved.txt.j2", "Subject: done\n\nHello\n{{ custmer.first_name }}\n")
    out = TemplateRenderer(tmp_path).render("resolved", sample_context("en"), locale="en")
    assert out.fell_back
    assert out.errors[0].startswith(f"{path}:4:") and "custmer" in out.errors[0]


def test_syntax_error_reports_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "de/ack.txt.j2", "Subject: x\n\nline\n{% if %}\n")
    out = TemplateRenderer(tmp_path).render("ack", sample_context("de"), locale="de")
    assert out.fell_back and out.errors[0].startswith(f"{path}:4: syntax error")
    assert out.template_path.endswith("/maildesk/templates/de/ack.txt.j2")


def test_broken_site_partial_falls_back_to_builtin(tmp_path: Path) -> None:
    path = write(tmp_path, "en/_signature.txt.j2", "Cheers\n{{ agent.nickname }}\n")
    write(tmp_path, "en/resolved.txt.j2", "Subject: ok\n\nHi\n{% include '_signature.txt.j2' %}\n")
    renderer = TemplateRenderer(tmp_path)
    out = renderer.render("resolved", sample_context("en"), locale="en")
    assert out.fell_back and out.errors[0].startswith(f"{path}:2:")
    # the built-in fallback does not pick up the broken site partial
    assert "Best wishes," in out.text
    problems = renderer.check()
    assert [(p.file, p.line) for p in problems] == [(str(path), 2)]


def test_missing_subject_line_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "en/ack.txt.j2", "Hello {{ customer.first_name }}\n")
    out = TemplateRenderer(tmp_path).render("ack", sample_context("en"), locale="en")
    assert out.fell_back and out.errors[0].startswith(f"{path}:1:") and "Subject" in out.errors[0]


def test_subject_is_unfolded(tmp_path: Path) -> None:
    write(tmp_path, "en/ack.txt.j2", "Subject: {{ message.text }}\n\nbody\n")
    ctx = build_context(
        now=sample_context("en")["now"],
        company=CompanyInput("Example", "support@example.com"),
        customer=CustomerInput(email="eve@example.org"),
        message=MessageInput(text="x"),
    )
    ctx["message"] = {"text": "evil\r\nBcc: all@example.com"}
    out = TemplateRenderer(tmp_path).render("ack", ctx, locale="en")
    assert out.subject == "evil"  # the text line ends at the newline; nothing reaches a header folded


def test_fallback_chain_queue_locale_default(tmp_path: Path) -> None:
    write(tmp_path, "billing/de_AT/ack.txt.j2", "Subject: billing de_AT\n\nq-de_AT\n")
    write(tmp_path, "billing/de/ack.txt.j2", "Subject: billing de\n\nq-de\n")
    write(tmp_path, "de/ack.txt.j2", "Subject: site de\n\nsite-de\n")
    write(tmp_path, "en/ack.txt.j2", "Subject: site en\n\nsite-en\n")
    write(tmp_path, "fr/resolved.txt.j2", "Subject: site fr\n\nsite-fr\n")
    r = TemplateRenderer(tmp_path, default_locale="en")
    ctx = sample_context("en")
    assert r.render("ack", ctx, locale="de_AT", queue="billing").subject == "billing de_AT"
    assert r.render("ack", ctx, locale="de", queue="billing").subject == "billing de"
    assert r.render("ack", ctx, locale="de_CH", queue="billing").subject == "billing de"
    assert r.render("ack", ctx, locale="de_AT", queue="sales").subject == "site de"
    assert r.render("ack", ctx, locale="de_AT").subject == "site de"
    assert r.render("ack", ctx, locale="it").subject == "site en"  # site default before built-in
    assert r.render("ack", ctx, locale="it", queue="../de").subject == "site en"  # not a queue name
    # no site template at all: built-in in the wanted locale, then the default locale
    out = r.render("resolved", sample_context("de"), locale="de_AT")
    assert out.template_path.endswith("/maildesk/templates/de/resolved.txt.j2") and out.locale == "de"
    assert not out.fell_back and out.errors == ()
    out = r.render("resolved", sample_context("it"), locale="it")
    assert out.template_path.endswith("/maildesk/templates/en/resolved.txt.j2")
    assert r.render("resolved", ctx, locale="fr").subject == "site fr"


def test_site_layout_wraps_builtin_text(tmp_path: Path) -> None:
    write(tmp_path, "_layout.html.j2", "<main lang='{{ locale }}'>{{ body_text|paragraphs }}</main>")
    out = TemplateRenderer(tmp_path).render("ack", sample_context("en"), locale="en")
    assert out.html is not None and out.html.startswith("<main lang='en'><p>Hi Anna,</p>")


def test_html_only_from_the_text_templates_folder(tmp_path: Path) -> None:
    write(tmp_path, "billing/en/ack.html.j2", "<b>queue html</b>")
    write(tmp_path, "en/ack.txt.j2", "Subject: s\n\nbody\n")
    out = TemplateRenderer(tmp_path).render("ack", sample_context("en"), locale="en", queue="billing")
    assert out.html is not None and "queue html" not in out.html and "<p>body</p>" in out.html


def test_locale_filters(tmp_path: Path) -> None:
    write(
        tmp_path,
        "de/ack.txt.j2",
        "Subject: s\n\n{{ ticket.first_response_due_at|format_datetime('short') }}|{{ 1234.5|format_number }}|"
        "{{ ticket.created_at|format_date('long', locale='en') }}|{{ 3600|format_timedelta }}|"
        "{{ ticket.created_at|format_time(tz='UTC') }}\n",
    )
    out = TemplateRenderer(tmp_path).render("ack", sample_context("de"), locale="de")
    assert out.errors == ()
    assert out.text == "05.03.25, 12:30|1.234,5|March 5, 2025|1 Stunde|07:30\n"


def test_check_reports_site_problems_with_file_and_line(tmp_path: Path) -> None:
    good = write(tmp_path, "en/ack.txt.j2", "Subject: ok {{ ticket.tag }}\n\nfine\n")
    bad = write(tmp_path, "support/de/resolved.txt.j2", "Subject: x\n\n\n{{ ticket.nope }}\n")
    syntax = write(tmp_path, "de/survey.html.j2", "{% for %}")
    write(tmp_path, "xx_Bogus1/ack.txt.j2", "Subject: x\n")
    write(tmp_path, "en/custom.txt.j2", "Subject: custom for {{ customer.first_name }}\n\nHello\n")
    r = TemplateRenderer(tmp_path)
    problems = {(p.file, p.line) for p in r.check()}
    assert (str(bad), 4) in problems and (str(syntax), 1) in problems
    assert any(file.endswith("xx_Bogus1/ack.txt.j2") for file, _ in problems)
    assert not any(file == str(good) for file, _ in problems)
    assert "custom" in r.names()
    assert r.render("custom", sample_context("en"), locale="en").subject == "custom for Anna"
