"""Rendering mail templates.

Owns jinja2 (the only module that imports it). `TemplateRenderer.render` finds a template
along the fallback chain, renders text (and HTML) in an immutable sandbox with
StrictUndefined, and never lets a broken site template reach the caller: its error is
recorded with file and line, and the built-in template is used instead.

Template layout (built-in under `maildesk/templates/`, site under `desk.templates_dir`):

    <locale>/<name>.txt.j2          required; its FIRST LINE is `Subject: …` (rendered too),
                                    the rest (after blank lines) is the plain-text body
    <locale>/<name>.html.j2         optional HTML body, used only from the same folder as
                                    the text; usually `{% extends "_layout.html.j2" %}`
    <locale>/_signature.txt.j2      partials start with `_` and are never rendered alone
    _layout.html.j2                 without `<name>.html.j2` the HTML part is this layout
                                    around the text body (`body_text`), so text and HTML
                                    never say different things
    <queue>/<locale>/<name>.txt.j2  site only: per-queue overrides

Lookup for (name, locale=de_AT, queue=billing, default locale en): site billing/de_AT,
billing/de, de_AT, de, en, then built-in de_AT, de, en. Includes and extends follow the
same chain. HTML autoescaping is on for `.html.j2` only; context values are plain strings
and are never marked safe, so customer text is always escaped in HTML.

It must not: build the context (that is `context.py`), touch headers (that is `compose.py`),
read the clock, or evaluate anything a customer wrote as a template.
"""

from __future__ import annotations

import re
import time as _time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from babel.dates import format_date as babel_format_date
from babel.dates import format_datetime as babel_format_datetime
from babel.dates import format_time as babel_format_time
from babel.dates import format_timedelta as babel_format_timedelta
from babel.numbers import format_decimal, format_percent
from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateSyntaxError,
    pass_context,
    pass_eval_context,
    select_autoescape,
)
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup, escape

from maildesk.errors import MaildeskError
from maildesk.outbound.context import normalize_locale, sample_context, zone
from maildesk.sanitize import escape_header_text

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "templates"
LAYOUT = "_layout.html.j2"
TEXT_SUFFIX = ".txt.j2"
HTML_SUFFIX = ".html.j2"

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_QUEUE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SUBJECT_RE = re.compile(r"^\s*subject:[ \t]*(.*)$", re.IGNORECASE)
_URL_RE = re.compile(r"(https?://[^\s<>\"']+[^\s<>\"'.,;:!?)\]])")


class UnknownTemplate(MaildeskError, KeyError):
    """No template of that name exists, not even built in."""


class RenderError(MaildeskError):
    """A built-in template failed: a bug or a context missing a section, never site input."""


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str | None
    template_path: str
    fell_back: bool = False  # a site template was broken and the built-in one was used
    errors: tuple[str, ...] = ()  # "file:line: message" for each broken site template
    locale: str = ""  # the locale folder the template came from


@dataclass(frozen=True)
class TemplateProblem:
    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line or 0}: {self.message}"


# ---------------------------------------------------------------------------------------
# Filters: locale-aware formatting reads `locale` and `timezone` from the template context.


def _ctx_locale(ctx: Context, locale: str | None) -> str:
    return normalize_locale(locale or str(ctx.get("locale") or "en"))


def _ctx_tz(ctx: Context, tz: str | None) -> Any:
    return zone(tz or str(ctx.get("timezone") or "UTC"))


def _as_datetime(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise TypeError(f"expected a datetime, got {type(value).__name__}")


@pass_context
def f_format_datetime(
    ctx: Context, value: Any, format: str = "medium", locale: str | None = None, tz: str | None = None
) -> str:
    moment = _as_datetime(value)
    if moment is None:
        return ""
    return babel_format_datetime(moment, format, tzinfo=_ctx_tz(ctx, tz), locale=_ctx_locale(ctx, locale))


@pass_context
def f_format_date(
    ctx: Context, value: Any, format: str = "medium", locale: str | None = None, tz: str | None = None
) -> str:
    if isinstance(value, date) and not isinstance(value, datetime):
        return babel_format_date(value, format, locale=_ctx_locale(ctx, locale))
    moment = _as_datetime(value)
    if moment is None:
        return ""
    return babel_format_date(moment.astimezone(_ctx_tz(ctx, tz)).date(), format, locale=_ctx_locale(ctx, locale))


@pass_context
def f_format_time(
    ctx: Context, value: Any, format: str = "short", locale: str | None = None, tz: str | None = None
) -> str:
    if isinstance(value, time):
        return babel_format_time(value, format, locale=_ctx_locale(ctx, locale))
    moment = _as_datetime(value)
    if moment is None:
        return ""
    return babel_format_time(moment, format, tzinfo=_ctx_tz(ctx, tz), locale=_ctx_locale(ctx, locale))


@pass_context
def f_format_timedelta(ctx: Context, value: Any, locale: str | None = None, add_direction: bool = False) -> str:
    delta = value if isinstance(value, timedelta) else timedelta(seconds=float(value))
    return babel_format_timedelta(delta, add_direction=add_direction, locale=_ctx_locale(ctx, locale))


@pass_context
def f_format_number(ctx: Context, value: Any, locale: str | None = None) -> str:
    return format_decimal(value, locale=_ctx_locale(ctx, locale))


@pass_context
def f_format_percent(ctx: Context, value: Any, locale: str | None = None) -> str:
    return format_percent(value, locale=_ctx_locale(ctx, locale))


@pass_eval_context
def f_paragraphs(eval_ctx: EvalContext, value: Any) -> str:
    """Plain text as HTML paragraphs: escaped first, then `<p>`, `<br>` and http(s) links.

    Outside autoescaping (text templates) the value is returned unchanged.
    """
    text = str(value or "").replace("\r\n", "\n").strip()
    if not eval_ctx.autoescape:
        return text
    out = []
    for block in re.split(r"\n\s*\n", text):
        pieces, last = [], 0
        for match in _URL_RE.finditer(block):
            url = str(escape(match.group(1)))
            pieces += [str(escape(block[last : match.start()])), f'<a href="{url}" rel="noopener noreferrer">{url}</a>']
            last = match.end()
        pieces.append(str(escape(block[last:])))
        out.append("<p>" + "".join(pieces).replace("\n", "<br>\n") + "</p>")
    return Markup("\n".join(out))


def f_quote(value: Any, prefix: str = "> ") -> str:
    """Each line prefixed for quoting in a plain-text mail."""
    return "\n".join((prefix + line).rstrip() for line in str(value or "").replace("\r\n", "\n").split("\n"))


def f_indent_text(value: Any, width: int = 4) -> str:
    return "\n".join((" " * width + line).rstrip() for line in str(value or "").split("\n"))


FILTERS: dict[str, Callable[..., Any]] = {
    "format_datetime": f_format_datetime,
    "format_date": f_format_date,
    "format_time": f_format_time,
    "format_timedelta": f_format_timedelta,
    "format_number": f_format_number,
    "format_percent": f_format_percent,
    "paragraphs": f_paragraphs,
    "quote": f_quote,
    "indent_text": f_indent_text,
}


def _finalize(value: Any) -> Any:
    return "" if value is None else value


# ---------------------------------------------------------------------------------------


def locale_chain(locale: str) -> list[str]:
    """`de_AT` → [`de_AT`, `de`]; `zh_Hant_TW` → [`zh_Hant_TW`, `zh_Hant`, `zh`]."""
    parts = locale.split("_")
    return ["_".join(parts[:i]) for i in range(len(parts), 0, -1)]


def describe_error(exc: BaseException, default_file: str) -> TemplateProblem:
    """File, line and message of a template failure (syntax, undefined, sandbox, …)."""
    if isinstance(exc, TemplateSyntaxError):
        return TemplateProblem(exc.filename or default_file, exc.lineno, f"syntax error: {exc.message}")
    file, line = default_file, None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.endswith(".j2"):
            file, line = frame.filename, frame.lineno
    message = str(exc) or type(exc).__name__
    return TemplateProblem(file, line, f"{type(exc).__name__}: {escape_header_text(message)[:500]}")


SITE_RECHECK_SECONDS = 2.0  # how long a site template look-up (and its freshness) is remembered
MACROS = "macros"  # the folder of canned replies, in the site's and the built-in templates


class _SiteLoader(FileSystemLoader):
    """A FileSystemLoader whose templates count as fresh for SITE_RECHECK_SECONDS after a
    check found them unchanged: a changed site template is reloaded on the first render
    after that (jinja2 otherwise stats every file, include and layout on every render)."""

    def get_source(self, environment: Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        source, filename, uptodate = super().get_source(environment, template)
        checked = _time.monotonic()

        def fresh() -> bool:
            nonlocal checked
            moment = _time.monotonic()
            if moment - checked < SITE_RECHECK_SECONDS:
                return True
            if uptodate():
                checked = moment
                return True
            return False

        return source, filename, fresh


class TemplateRenderer:
    """Renders named templates from a site folder with built-in fallbacks.

    Holds one sandboxed environment per lookup chain (compiled templates are cached there
    and reloaded when a site file changes); no other state.
    """

    def __init__(
        self,
        site_dir: Path | None,
        *,
        default_locale: str = "en",
        builtin_dir: Path = BUILTIN_DIR,
        locales: tuple[str, ...] = (),
    ) -> None:
        self.site_dir = Path(site_dir).resolve() if site_dir else None
        self.builtin_dir = Path(builtin_dir).resolve()
        self.default_locale = normalize_locale(default_locale)
        # The desk's languages (`desk.locales`): `check` wants every template in each of them.
        self.locales = tuple(dict.fromkeys((self.default_locale, *(normalize_locale(x) for x in locales))))
        # Pure functions of the fixed folders, remembered: the environment of a chain (by its
        # paths), the chains of a (locale, queue), a template file's path as text.
        self._envs: dict[tuple[Path, ...], ImmutableSandboxedEnvironment] = {}
        self._chain_memo: dict[tuple[str, str | None], tuple[tuple[Path, ...], tuple[Path, ...], tuple[Path, ...]]] = {}
        self._paths: dict[tuple[Path, str], str] = {}
        self._found: dict[tuple[tuple[Path, ...], str], tuple[float, Path | None]] = {}

    # -- lookup ----------------------------------------------------------------------

    def _env(self, dirs: tuple[Path, ...]) -> ImmutableSandboxedEnvironment:
        env = self._envs.get(dirs)
        if env is None:
            in_site = self._in_site(dirs)
            env = ImmutableSandboxedEnvironment(
                loader=(_SiteLoader if in_site else FileSystemLoader)([str(d) for d in dirs]),
                undefined=StrictUndefined,
                autoescape=select_autoescape(
                    enabled_extensions=("html.j2", "html"), default_for_string=False, default=False
                ),
                trim_blocks=True,
                lstrip_blocks=True,
                keep_trailing_newline=False,
                # Built-in templates never change while we run: compiled once. A chain with
                # the site's folder checks its files (a changed site template is reloaded,
                # at most SITE_RECHECK_SECONDS after it changed).
                auto_reload=in_site,
                finalize=_finalize,
            )
            env.filters.update(FILTERS)
            self._envs[dirs] = env
        return env

    def _chains(self, locale: str, queue: str | None) -> tuple[list[Path], list[Path]]:
        site, builtin, _ = self._chain_tuples(locale, queue)
        return list(site), list(builtin)

    def _chain_tuples(
        self, locale: str, queue: str | None
    ) -> tuple[tuple[Path, ...], tuple[Path, ...], tuple[Path, ...]]:
        """`_chains` and the two joined, remembered (the folders never move while we run)."""
        key = (locale, queue)
        chains = self._chain_memo.get(key)
        if chains is None:
            site, builtin = self._make_chains(locale, queue)
            chains = self._chain_memo[key] = (tuple(site), tuple(builtin), tuple(site + builtin))
        return chains

    def _make_chains(self, locale: str, queue: str | None) -> tuple[list[Path], list[Path]]:
        wanted = locale_chain(normalize_locale(locale, self.default_locale))
        defaults = locale_chain(self.default_locale)
        site: list[Path] = []
        if self.site_dir is not None:
            if queue and _QUEUE_RE.match(queue) and ".." not in queue:
                site += [self.site_dir / queue / loc for loc in wanted]
            site += [self.site_dir / loc for loc in wanted + defaults]
            site.append(self.site_dir)
        builtin = [self.builtin_dir / loc for loc in wanted + defaults] + [self.builtin_dir]
        return list(dict.fromkeys(site)), list(dict.fromkeys(builtin))

    def _first_with(self, dirs: Sequence[Path], filename: str) -> Path | None:
        """The first of `dirs` holding `filename`; remembered (built-in folders for good,
        site folders for SITE_RECHECK_SECONDS, so a template added there is found)."""
        key = (tuple(dirs), filename)
        known = self._found.get(key)
        moment = _time.monotonic()
        if known is not None and (known[0] < 0 or moment - known[0] < SITE_RECHECK_SECONDS):
            return known[1]
        found = self._scan(dirs, filename)
        self._found[key] = (moment if self._in_site(dirs) else -1.0, found)
        return found

    def _in_site(self, dirs: Sequence[Path]) -> bool:
        site = self.site_dir
        return site is not None and any(d == site or site in d.parents for d in dirs)

    @staticmethod
    def _scan(dirs: Sequence[Path], filename: str) -> Path | None:
        for folder in dirs:
            if (folder / filename).is_file():
                return folder
        return None

    # -- rendering -------------------------------------------------------------------

    def _render_in(self, dirs: Sequence[Path], folder: Path, name: str, ctx: Mapping[str, Any]) -> Rendered:
        """Render `name` from `folder` (the first of `dirs` that has it). Raises on any error."""
        env = self._env(tuple(dirs))
        text_template = env.get_template(name + TEXT_SUFFIX)
        raw = text_template.render(ctx)  # jinja2 copies it into its own context
        lines = raw.lstrip("\r\n").split("\n", 1)
        match = _SUBJECT_RE.match(lines[0])
        if not match:
            raise TemplateSyntaxError(
                "the first line must be 'Subject: …'", 1, name + TEXT_SUFFIX, str(folder / (name + TEXT_SUFFIX))
            )
        subject = escape_header_text(match.group(1))
        if not subject:
            raise TemplateSyntaxError("the subject is empty", 1, name + TEXT_SUFFIX, str(folder / (name + TEXT_SUFFIX)))
        text = (lines[1] if len(lines) > 1 else "").strip("\n").rstrip() + "\n"
        html: str | None = None
        html_name = name + HTML_SUFFIX
        if self._first_with(dirs, html_name) == folder:
            html = env.get_template(html_name).render({**ctx, "subject": subject})
        elif self._first_with(dirs, LAYOUT) is not None:
            html = env.get_template(LAYOUT).render({**ctx, "subject": subject, "body_text": text})
        return Rendered(
            subject=subject,
            text=text,
            html=html,
            template_path=self._path_text(folder, name + TEXT_SUFFIX),
            locale=folder.name if folder not in (self.site_dir, self.builtin_dir) else "",
        )

    def _path_text(self, folder: Path, filename: str) -> str:
        key = (folder, filename)
        text = self._paths.get(key)
        if text is None:
            text = self._paths[key] = str(folder / filename)
        return text

    def render(self, name: str, ctx: Mapping[str, Any], *, locale: str, queue: str | None = None) -> Rendered:
        """Render `name` for a reader in `locale` (and ticket `queue`).

        Raises UnknownTemplate when no such template exists at all and RenderError when a
        built-in template fails (a bug, or a context without a section it needs). A broken
        site template never raises: see `Rendered.errors` and `Rendered.fell_back`.
        """
        if not _NAME_RE.match(name):
            raise UnknownTemplate(f"not a template name: {name!r}")
        filename = name + TEXT_SUFFIX
        site, builtin, both = self._chain_tuples(locale, queue)
        errors: list[str] = []
        folder = self._first_with(site, filename)
        if folder is not None:
            try:
                return self._render_in(both, folder, name, ctx)
            except Exception as exc:  # noqa: BLE001 - any site template failure falls back
                errors.append(str(describe_error(exc, str(folder / filename))))
        folder = self._first_with(builtin, filename)
        if folder is None:
            raise UnknownTemplate(f"no template {name!r} (site or built-in)")
        if site and not errors:
            # No site template of this name: the built-in one, with the site's partials
            # (signature, layout) when it has them.
            try:
                return self._render_in(both, folder, name, ctx)
            except Exception as exc:  # noqa: BLE001 - a broken site partial falls back
                errors.append(str(describe_error(exc, str(folder / filename))))
        try:
            result = self._render_in(builtin, folder, name, ctx)
        except Exception as exc:
            raise RenderError(f"built-in template failed: {describe_error(exc, str(folder / filename))}") from exc
        return replace(result, fell_back=bool(errors), errors=tuple(errors))

    # -- inventory -------------------------------------------------------------------

    def _template_files(self) -> list[tuple[Path, list[Path], str]]:
        """(file, lookup chain, locale) for every template file, built-in and site."""
        out: list[tuple[Path, list[Path], str]] = []
        roots = [(self.builtin_dir, False)] + ([(self.site_dir, True)] if self.site_dir else [])
        for root, is_site in roots:
            if not root.is_dir():
                continue
            for path in sorted(root.rglob("*.j2")):
                parts = path.relative_to(root).parts
                if parts[0] == MACROS:
                    continue  # canned replies: `macro_names`, `render_macro`, checked in `check`
                if len(parts) == 1:
                    queue, loc = None, self.default_locale
                elif len(parts) == 2:
                    queue, loc = None, parts[0]
                elif len(parts) == 3 and is_site:
                    queue, loc = parts[0], parts[1]
                else:
                    out.append((path, [], ""))
                    continue
                site, builtin = self._chains(loc, queue)
                out.append((path, (site + builtin) if is_site else builtin, loc))
        return out

    def names(self) -> set[str]:
        """Names of all renderable templates (built-in and site), partials excluded."""
        found = set()
        for path, _, _ in self._template_files():
            if path.name.endswith(TEXT_SUFFIX) and not path.name.startswith("_"):
                found.add(path.name[: -len(TEXT_SUFFIX)])
        return found

    # -- macros (canned replies) -----------------------------------------------------

    def _macro_dirs(self) -> list[Path]:
        roots = ([self.site_dir] if self.site_dir else []) + [self.builtin_dir]
        return [root / MACROS for root in roots if (root / MACROS).is_dir()]

    def macro_names(self) -> dict[str, Path]:
        """Macro name -> its file (a site macro hides a built-in one of the same name)."""
        found: dict[str, Path] = {}
        for folder in self._macro_dirs():
            for path in sorted(folder.glob("*" + TEXT_SUFFIX)):
                name = path.name[: -len(TEXT_SUFFIX)]
                if _NAME_RE.match(name) and not name.startswith("_"):
                    found.setdefault(name.lower(), path)
        return found

    def render_macro(self, name: str, ctx: Mapping[str, Any]) -> str:
        """The text of macro `name` (`macros/<name>.txt.j2`, site first) rendered with `ctx`.

        A macro is reply text, not a whole mail: no subject line. Raises UnknownTemplate
        when there is no such macro and RenderError when it fails to render.
        """
        path = self.macro_names().get(name.strip().lower())
        if path is None:
            raise UnknownTemplate(f"no macro {name!r}; macros are: {', '.join(sorted(self.macro_names())) or 'none'}")
        try:
            return self._env((path.parent,)).get_template(path.name).render(dict(ctx)).strip("\n").rstrip() + "\n"
        except Exception as exc:
            raise RenderError(f"macro {name!r} failed: {describe_error(exc, str(path))}") from exc

    @staticmethod
    def _text_names(folder: Path) -> set[str]:
        """Names of the text templates (partials too: `_signature`) right in `folder`."""
        if not folder.is_dir():
            return set()
        return {p.name[: -len(TEXT_SUFFIX)] for p in folder.glob("*" + TEXT_SUFFIX) if p.is_file()}

    def missing_translations(self) -> list[TemplateProblem]:
        """One problem per desk locale that lacks a template some other locale has.

        A locale "has" a template when its own folder holds it, built in or in the site
        folder (or the site folder's top level, which every locale reads); without it the
        reader would get the default locale's text. Per-queue folders are overrides and
        are not counted. Checked for `self.locales` (`desk.locales`).
        """
        roots = [self.builtin_dir] + ([self.site_dir] if self.site_dir else [])
        every: set[str] = set()
        for root in roots:
            if root.is_dir():
                for folder in root.iterdir():
                    if folder.is_dir() and folder.name != MACROS and normalize_locale(folder.name, "") == folder.name:
                        every |= self._text_names(folder)
        problems = []
        for loc in self.locales:
            have: set[str] = set()
            for root in roots:
                have |= self._text_names(root)
                have |= self._text_names(root / loc)
                if "_" in loc:  # a regional locale may take its language's folder: de_AT from de/
                    have |= self._text_names(root / loc.split("_")[0])
            missing = sorted(every - have)
            if missing:
                where = self.site_dir or self.builtin_dir
                files = ", ".join(f"{loc}/{name}{TEXT_SUFFIX}" for name in missing)
                problems.append(
                    TemplateProblem(
                        str(where / loc),
                        None,
                        f"locale {loc!r} (desk.locales) lacks {len(missing)} template(s): {', '.join(missing)}; "
                        f"add {files}",
                    )
                )
        return problems

    def check(self) -> list[TemplateProblem]:
        """Compile every template and macro and render each with sample data, and check that
        every desk locale has every template (`missing_translations`).

        Returns the problems (empty when everything renders); never raises for a template.
        """
        problems: list[TemplateProblem] = self.missing_translations()
        for name, path in self.macro_names().items():
            try:
                self.render_macro(name, sample_context(self.default_locale, template="agent_reply"))
            except RenderError as exc:
                problems.append(describe_error(exc.__cause__ or exc, str(path)))
        for path, dirs, loc in self._template_files():
            if not dirs:
                problems.append(
                    TemplateProblem(str(path), None, "unexpected location (use <locale>/ or <queue>/<locale>/)")
                )
                continue
            if normalize_locale(loc, "") != loc:
                problems.append(TemplateProblem(str(path), None, f"unknown locale folder {loc!r}"))
                continue
            filename = path.name
            folder = path.parent
            if not filename.endswith((TEXT_SUFFIX, HTML_SUFFIX)):
                problems.append(TemplateProblem(str(path), None, "template names end in .txt.j2 or .html.j2"))
                continue
            env = self._env(tuple(dirs))
            try:
                env.parse(path.read_text("utf-8"), filename, str(path))
            except Exception as exc:  # noqa: BLE001 - report, do not stop
                problems.append(describe_error(exc, str(path)))
                continue
            if filename.startswith("_"):
                continue
            name = filename[: -len(TEXT_SUFFIX)] if filename.endswith(TEXT_SUFFIX) else filename[: -len(HTML_SUFFIX)]
            if filename.endswith(HTML_SUFFIX):
                if not (folder / (name + TEXT_SUFFIX)).is_file():
                    problems.append(
                        TemplateProblem(str(path), None, f"no {name}{TEXT_SUFFIX} next to it; it is never used")
                    )
                continue
            if not _NAME_RE.match(name):
                problems.append(TemplateProblem(str(path), None, f"not a valid template name: {name!r}"))
                continue
            ctx = sample_context(loc, template=name)
            # Render this very file: its own folder first, then the rest of its chain.
            chain = [folder] + [d for d in dirs if d != folder]
            try:
                self._render_in(chain, folder, name, ctx)
            except Exception as exc:  # noqa: BLE001 - report, do not stop
                problems.append(describe_error(exc, str(path)))
        return problems
