"""The customer's language, from their mail: headers first, then the text itself.

Owns `guess_language` (pure: strings in, a `LanguageGuess` out) and the text detector
(py3langid, restricted to the desk's languages, loaded once per process on first use).
Order: `Content-Language`, then `Accept-Language` (highest q first), then the visible text
when it has at least `MIN_LETTERS` letters and the detector is at least `MIN_CONFIDENCE`
sure. Only the desk's supported locales (`desk.locales`) come out; anything else is no
guess, and the desk default applies.

Runs in the preparation children (`pipeline/prepare.py`): it needs no database. Must not:
touch the store, decide whether the guess is stored (that is the persist stage and
`store.queries.customer_for_mail` with `language.replaces`), or read the clock.

Why py3langid (bench/language_detect.py, 24 support sentences in en/de/fr/es): all three
candidates were right on all 24; py3langid loads in ~1 s (lingua-language-detector ~3 s and
a 96 MB wheel, langdetect ~0.8 s but 8 ms a sentence and sure of itself on one word), takes
~0.03 ms a sentence, and its probabilities stay low on short text, which the threshold needs.
"""

from __future__ import annotations

import contextlib
import re
import threading
from dataclasses import dataclass
from typing import Any

MIN_LETTERS = 20  # fewer letters than this: no text guess ("Merci", "ok", "Danke!")
MIN_CONFIDENCE = 0.95  # the detector's probability among the desk's languages
MAX_CHARS = 400  # the head of the text: a few sentences decide, and the cost is linear (~0.5 ms here)

HEADER = "header"  # stored customers.locale_source for either header
TEXT = "text"
OPERATOR = "operator"

_TAG = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")
_NOISE = re.compile(r"https?://\S+|\S+@\S+|[\d_]+")


@dataclass(frozen=True)
class LanguageGuess:
    locale: str  # one of the supported locales
    source: str  # content-language | accept-language | text
    confidence: float = 1.0

    @property
    def stored_source(self) -> str:
        """The `customers.locale_source` value: "header" for either header, else "text"."""
        return TEXT if self.source == TEXT else HEADER


def replaces(current_locale: str, current_source: str, guess: LanguageGuess) -> bool:
    """Whether `guess` from a mail replaces the customer's stored locale.

    Never an operator's; a header replaces a detected locale or another header's; a
    detected one only fills an empty locale (the first detection sticks)."""
    if current_source == OPERATOR:
        return False
    if guess.stored_source == HEADER:
        return (current_locale, current_source) != (guess.locale, HEADER)
    return not current_locale and not current_source


def match_locale(tag: str, supported: tuple[str, ...]) -> str:
    """`de-AT` → `de_AT` when supported, else `de` when supported, else "". Case-insensitive."""
    tag = tag.strip()
    if not tag or not _TAG.match(tag):
        return ""
    parts = tag.replace("-", "_").split("_")
    wanted = [parts[0].lower()] + [p.upper() if len(p) == 2 else p.title() for p in parts[1:]]
    by_lower = {s.lower(): s for s in supported}
    for size in range(len(wanted), 0, -1):
        found = by_lower.get("_".join(wanted[:size]).lower())
        if found:
            return found
    return ""


def from_content_language(value: str, supported: tuple[str, ...]) -> str:
    """The first supported language of a `Content-Language` list (RFC 3282), or ""."""
    for tag in value.split(","):
        found = match_locale(tag, supported)
        if found:
            return found
    return ""


def from_accept_language(value: str, supported: tuple[str, ...]) -> str:
    """The supported language with the highest q in an `Accept-Language` list, or ""."""
    ranked: list[tuple[float, int, str]] = []
    for index, item in enumerate(value.split(",")):
        tag, _, params = item.partition(";")
        q = 1.0
        match = re.search(r"(?:^|;)\s*q\s*=\s*([^;]*)", params)
        if match:
            try:
                q = float(match.group(1).strip())
            except ValueError:
                continue  # a broken weight: this item is skipped
        found = match_locale(tag, supported)
        if found and q > 0:
            ranked.append((-q, index, found))
    return min(ranked)[2] if ranked else ""


class _Detector:
    """py3langid cut down to the desk's languages; loaded on first use (or `warm`).

    The full model (142 languages, ~28 MB of weights) is read once and only the columns of
    the desk's languages are kept (~1 MB), so a process holds numpy and a small model.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._identifier: Any = None
        self._languages: tuple[str, ...] = ()

    def _load(self, languages: tuple[str, ...]) -> tuple[str, ...]:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        full = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        usable = tuple(sorted(lang for lang in set(languages) if lang in set(full.nb_classes)))
        if len(usable) >= 2:
            full.set_languages(list(usable))
            self._identifier = LanguageIdentifier(
                full.nb_ptc.copy(),
                full.nb_pc.copy(),
                list(full.nb_classes),
                full.tk_nextmove,
                full.tk_output,
                norm_probs=True,
                tk_row=full.tk_row,
            )
        else:
            self._identifier = None
        self._languages = tuple(sorted(set(languages)))
        return usable

    def classify(self, text: str, languages: tuple[str, ...]) -> tuple[str, float]:
        with self._lock:
            if tuple(sorted(set(languages))) != self._languages:
                self._load(languages)
            if self._identifier is None:  # fewer than two languages the model knows: nothing to choose
                return "", 0.0
            lang, confidence = self._identifier.classify(text)
            return str(lang), float(confidence)

    def warm(self, languages: tuple[str, ...]) -> None:
        with self._lock:
            if tuple(sorted(set(languages))) != self._languages:
                self._load(languages)


_DETECTOR = _Detector()


def _languages(supported: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(s.split("_")[0].lower() for s in supported))


def warm(supported: tuple[str, ...]) -> threading.Thread | None:
    """Start loading the text detector (about a second) in a background thread, so neither
    start-up waits for it nor, usually, the first customer's mail (which would wait on the
    detector's lock if it came first). Returns the thread (None: nothing to load)."""
    if len(supported) < 2:
        return None
    languages = _languages(supported)

    def load() -> None:
        with contextlib.suppress(Exception):  # a failure shows when a mail needs it, under its stage
            _DETECTOR.warm(languages)

    thread = threading.Thread(target=load, name="language-detector-load", daemon=True)
    thread.start()
    return thread


def detect_text(
    text: str,
    supported: tuple[str, ...],
    *,
    min_letters: int = MIN_LETTERS,
    min_confidence: float = MIN_CONFIDENCE,
) -> LanguageGuess | None:
    """The language of `text` among `supported`, or None when too short or not sure enough."""
    head = _NOISE.sub(" ", (text or "")[:MAX_CHARS])
    if sum(ch.isalpha() for ch in head) < min_letters or len(supported) < 2:
        return None
    lang, confidence = _DETECTOR.classify(head, _languages(supported))
    if not lang or confidence < min_confidence:
        return None
    locale = match_locale(lang, supported)
    return LanguageGuess(locale, TEXT, round(confidence, 4)) if locale else None


def guess_language(
    *, content_language: str, accept_language: str, text: str, supported: tuple[str, ...]
) -> LanguageGuess | None:
    """The customer's language from their mail (headers, then text), or None: use the default."""
    found = from_content_language(content_language, supported)
    if found:
        return LanguageGuess(found, "content-language")
    found = from_accept_language(accept_language, supported)
    if found:
        return LanguageGuess(found, "accept-language")
    return detect_text(text, supported)
