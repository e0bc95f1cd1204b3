"""Debian's `mutt`, driven in a private tmux server, answers a mail like an agent would.

`reply_with_mutt` puts the delivered notification into a Maildir, opens it in mutt (inside
`tmux new-session`, own socket), presses `r` (reply: mutt builds To from the Reply-To,
In-Reply-To, References, the attribution and the "> " quote), lets the `$editor` script put
the agent's words above the quote, sends with `y` through a `$sendmail` script that
delivers over SMTP (smtplib) to the daemon, and quits. Every step waits for a file with a
deadline (`wait_for`); on failure the screen (`capture-pane`) is in the error. Only the
tmux server started here is killed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.wait import wait_for

SENDMAIL = """#!{python}
import pathlib, smtplib, sys
data = sys.stdin.buffer.read()
rcpts = [a for a in sys.argv[1:] if not a.startswith("-")]
pathlib.Path({copy!r}).write_bytes(data)
with smtplib.SMTP("127.0.0.1", {port}, timeout=30) as smtp:
    smtp.sendmail({sender!r}, rcpts, data)
pathlib.Path({done!r}).write_text("sent")
"""

EDITOR = """#!{python}
import pathlib, sys
path = pathlib.Path(sys.argv[1])
path.write_text({text!r} + "\\n\\n" + path.read_text())
pathlib.Path({done!r}).write_text("edited")
"""

MUTTRC = """set mbox_type=Maildir
set folder="{box}"
set spoolfile="{box}"
set from="{sender}"
set realname="{name}"
set use_from=yes
set hostname=example.com
set charset=utf-8
set send_charset="us-ascii:utf-8"
set sendmail="{sendmail}"
set sendmail_wait=0
set editor="{editor}"
set edit_headers=no
set include=yes
set fast_reply=yes
set reply_to=yes
set autoedit=no
set copy=no
set record=""
set postpone=no
set abort_unmodified=no
set move=no
set quit=yes
set wait_key=no
set mark_old=no
set beep=no
set help=no
set signature=""
set crypt_autosign=no
set crypt_autoencrypt=no
set attribution="On %d, %n wrote:"
"""


def need_tools() -> None:
    """Never a silent skip: ./dev test installs mutt and tmux."""
    missing = [tool for tool in ("mutt", "tmux") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{' and '.join(missing)} needed for the mail-client test; run the tests with ./dev test")


def reply_with_mutt(
    notification: bytes,
    work: Path,
    *,
    text: str,
    smtp_port: int,
    sender: str,
    name: str,
    timeout: float = 60,
) -> bytes:
    """Answer `notification` with mutt as `name <sender>`; returns the bytes mutt sent."""
    need_tools()
    box = work / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (box / sub).mkdir(parents=True, exist_ok=True)
    (box / "new" / "1.notification.eml").write_bytes(notification.replace(b"\r\n", b"\n"))
    sent, copy, edited = work / "sent.done", work / "sent.eml", work / "edited.done"
    sendmail, editor = work / "sendmail.py", work / "editor.py"
    sendmail.write_text(
        SENDMAIL.format(python=sys.executable, copy=str(copy), port=smtp_port, sender=sender, done=str(sent))
    )
    editor.write_text(EDITOR.format(python=sys.executable, text=text, done=str(edited)))
    sendmail.chmod(0o755)
    editor.chmod(0o755)
    muttrc = work / "muttrc"
    muttrc.write_text(MUTTRC.format(box=box, sender=sender, name=name, sendmail=sendmail, editor=editor))
    sock = str(work / "tmux.sock")
    env_cmd = f"env TERM=xterm-256color LANG=C.UTF-8 HOME={work} mutt -n -F {muttrc} -f {box}"
    tmux = ["tmux", "-S", sock]
    subprocess.run([*tmux, "new-session", "-d", "-s", "agent", "-x", "200", "-y", "50", env_cmd], check=True)

    def screen() -> str:
        got = subprocess.run([*tmux, "capture-pane", "-p", "-t", "agent"], capture_output=True, text=True)
        return got.stdout

    def step(check: object, what: str) -> None:
        try:
            wait_for(check, timeout=timeout, interval=0.1, message=what)  # type: ignore[arg-type]
        except Exception as exc:
            raise AssertionError(f"mutt: {what}; screen:\n{screen()}") from exc

    try:
        step(lambda: "Msgs:1" in screen() or None, "the index shows the notification")
        subprocess.run([*tmux, "send-keys", "-t", "agent", "r"], check=True)
        step(lambda: edited.exists() or None, "the editor ran")
        step(lambda: "Compose" in screen() or None, "the compose menu is shown")
        subprocess.run([*tmux, "send-keys", "-t", "agent", "y"], check=True)
        step(lambda: sent.exists() or None, "the sendmail script delivered the reply over SMTP")
        subprocess.run([*tmux, "send-keys", "-t", "agent", "q"], check=True)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
    return copy.read_bytes()


__all__ = ["need_tools", "reply_with_mutt"]
