"""clean_html and escape_header_text: hostile HTML and header values."""

from __future__ import annotations

from maildesk.sanitize import clean_html, escape_header_text


def test_scripts_styles_handlers_frames_forms_go() -> None:
    out = clean_html(
        '<p onclick="steal()" style="x">Hi<script>alert(1)</script><style>p{}</style>'
        '<iframe src="https://evil"></iframe><form action="https://evil"><input name=pw></form></p>'
    )
    assert out.startswith("<p>Hi</p>")
    for bad in ("script", "alert", "style", "iframe", "form", "input", "onclick", "evil"):
        assert bad not in out


def test_links_get_rel_and_lose_javascript() -> None:
    out = clean_html(
        '<a href="https://example.com/x">ok</a><a href="javascript:alert(1)">bad</a>'
        '<a href="data:text/html,<script>x</script>">data</a>'
    )
    assert '<a href="https://example.com/x" rel="noopener noreferrer">ok</a>' in out
    assert "javascript" not in out and "data:" not in out
    assert out.count('rel="noopener noreferrer"') == 3


def test_remote_images_removed_inline_images_kept() -> None:
    out = clean_html(
        '<img src="http://evil/track.gif"><img src="cid:logo@x"><img src="data:image/png;base64,iVBORw0=">'
        '<img src="data:image/svg+xml;base64,PHN2Zz4=">'
    )
    assert "evil" not in out and "svg" not in out
    assert 'src="cid:logo@x"' in out and 'src="data:image/png;base64,iVBORw0="' in out


def test_remote_images_only_when_allowed() -> None:
    assert 'src="https://cdn.example.com/a.png"' in clean_html(
        '<img src="https://cdn.example.com/a.png">', allow_remote_images=True
    )
    assert "cdn" not in clean_html('<img src="https://cdn.example.com/a.png">')


def test_escape_header_text_unfolds_and_drops_controls() -> None:
    assert escape_header_text("Anna\r\nBcc: victim@example.com") == "Anna Bcc: victim@example.com"
    assert escape_header_text("a\nb\rc\u2028d\x85e") == "a b c d e"
    assert escape_header_text("x\x00y\x1b[31m \u202eevil\t tab") == "xy[31m evil tab"
    assert escape_header_text(None) == ""
    assert escape_header_text(42) == "42"
