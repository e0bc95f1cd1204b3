"""maildesk side by side with django-helpdesk 2.6.1's `get_email`, on the same generated mails.

Usage: python -m bench.django_helpdesk_bench [--messages 2000] [--rounds 3] [--venv PATH]

django-helpdesk is installed (once) in the bench's own virtual environment, by default
~/.cache/maildesk-bench/dh-2.6.1 (never in the project's, never committed). Each round:
- django-helpdesk: a Django project written to a temporary folder (settings module, URLs,
  SQLite database migrated once and copied per round), one queue reading a local mail
  folder (`email_box_type = "local"`), the mails written there as files, and
  `helpdesk.email.process_email()` (what `manage.py get_email` runs) timed in the
  helpdesk's own interpreter; outgoing mail goes to Django's in-memory backend (it is
  composed, as maildesk composes and queues its acknowledgements).
- maildesk: the same mails spooled into a fresh SQLite desk with the example rules and
  templates of `maildesk init`, processed by the real worker
  (full pipeline: screening, threading, rules, the acknowledgement queued), spooled ->
  committed.
Both count tickets and threaded replies; the ratio is maildesk's rate over
django-helpdesk's. Goal >= 8x (issue 17); figures are what they are.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import replace
from pathlib import Path

from bench.intake_bench import corpus
from bench.rounds import summary
from maildesk.app import App, settle_collector
from maildesk.config import parse_settings

VERSION = "2.6.1"
DEFAULT_VENV = Path.home() / ".cache" / "maildesk-bench" / f"dh-{VERSION}"

SETTINGS = """
SECRET_KEY = "bench-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
SITE_ID = 1
INSTALLED_APPS = [
    "django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes",
    "django.contrib.sessions", "django.contrib.messages", "django.contrib.staticfiles",
    "django.contrib.sites", "django.contrib.humanize", "rest_framework", "helpdesk",
]
MIDDLEWARE = []
ROOT_URLCONF = "dhbench_urls"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates", "DIRS": [], "APP_DIRS": True,
    "OPTIONS": {"context_processors": ["django.template.context_processors.request",
                                        "django.contrib.auth.context_processors.auth",
                                        "django.contrib.messages.context_processors.messages"]},
}]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": DB_PATH}}
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
DEFAULT_FROM_EMAIL = "support@example.com"
STATIC_URL = "/static/"
HELPDESK_TEAMS_MODE_ENABLED = False
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "ERROR"}}
"""

URLS = """
from django.urls import include, path
urlpatterns = [path("helpdesk/", include("helpdesk.urls", namespace="helpdesk"))]
"""

RUNNER = """
import json, os, sys, time
import django
django.setup()
from django.core import mail
from django.core.management import call_command
if sys.argv[1] == "migrate":
    call_command("migrate", verbosity=0)
    from helpdesk.models import Queue
    Queue.objects.create(title="Support", slug="support", email_address="support@example.com",
                         allow_email_submission=True, email_box_type="local",
                         email_box_local_dir=sys.argv[2], email_box_interval=0, logging_type="none")
    sys.exit(0)
from helpdesk.email import process_email
from helpdesk.models import FollowUp, Ticket
n = len(os.listdir(sys.argv[2]))
start = time.perf_counter()
process_email(quiet=True)
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed, "messages": n, "tickets": Ticket.objects.count(),
                  "followups": FollowUp.objects.count(), "left": len(os.listdir(sys.argv[2])),
                  "mails_sent": len(getattr(mail, "outbox", []))}))
"""


def ensure_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    check = [str(python), "-c", f"import importlib.metadata as m; assert m.version('django-helpdesk') == '{VERSION}'"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f"installing django-helpdesk=={VERSION} into {venv} (once)")
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", f"django-helpdesk=={VERSION}"], check=True)
    return python


class Helpdesk:
    """The Django project in `folder`, driven with the venv's interpreter."""

    def __init__(self, python: Path, folder: Path) -> None:
        self.python = python
        self.folder = folder
        self.mail_dir = folder / "mail"
        self.mail_dir.mkdir(parents=True)
        self.template_db = folder / "template.sqlite3"
        self.db = folder / "db.sqlite3"
        (folder / "dhbench_urls.py").write_text(textwrap.dedent(URLS))
        (folder / "dhbench_run.py").write_text(textwrap.dedent(RUNNER))
        self._settings(self.template_db)
        self._run("migrate")

    def _settings(self, db: Path) -> None:
        (self.folder / "dhbench_settings.py").write_text(f"DB_PATH = {str(db)!r}\n" + textwrap.dedent(SETTINGS))

    def _run(self, what: str) -> str:
        env = {"DJANGO_SETTINGS_MODULE": "dhbench_settings", "PYTHONPATH": str(self.folder), "PATH": "/usr/bin:/bin"}
        done = subprocess.run(
            [str(self.python), str(self.folder / "dhbench_run.py"), what, str(self.mail_dir)],
            env=env,
            capture_output=True,
            text=True,
            cwd=self.folder,
        )
        if done.returncode != 0:
            raise SystemExit(f"django-helpdesk {what} failed:\n{done.stderr[-3000:]}")
        return done.stdout

    def round(self, msgs: list[bytes]) -> dict[str, float]:
        shutil.copyfile(self.template_db, self.db)
        self._settings(self.db)
        for old in self.mail_dir.iterdir():
            old.unlink()
        for i, raw in enumerate(msgs):
            (self.mail_dir / f"{i:06d}.eml").write_bytes(raw)
        result: dict[str, float] = json.loads(self._run("process").strip().splitlines()[-1])
        return result


def maildesk_round(work: Path, msgs: list[bytes]) -> dict[str, float]:
    from maildesk.services.init import init_directory

    init_directory(work)  # the example rules and the site templates they use, as `maildesk init` writes them
    settings = replace(
        parse_settings(
            {
                "desk": {
                    "data_dir": str(work / "data"),
                    "support_addresses": ["support@example.com"],
                    "secret_env": "",
                    "rules_file": str(work / "rules.yaml"),
                    "templates_dir": str(work / "templates"),
                },
                "database": {"url": f"sqlite:///{work / 'desk.db'}", "url_env": ""},
                "limits": {"new_tickets_per_sender_hour": 0, "new_tickets_per_domain_hour": 0},
            },
            base_dir=str(work),
        ),
        secret="bench",
    )
    app = App(settings)
    app.migrate()
    if app.deps.rules.errors:
        raise SystemExit(f"the example rules did not load: {app.deps.rules.errors}")
    for raw in msgs:
        app.spool.put(raw, "bench")
    app.warm_up()  # as the daemon does before it claims mail (also starts the parser processes)
    settle_collector()  # as `maildesk run` does then
    start = time.perf_counter()
    result = app.process()
    elapsed = time.perf_counter() - start
    app.worker.close()
    app.store.dispose()
    return {
        "seconds": elapsed,
        "messages": len(msgs),
        "tickets": result["tickets_created"],
        "followups": result["appended"],
        "failed": result["failed"],
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    args = parser.parse_args()
    python = ensure_venv(args.venv)
    work = Path(tempfile.mkdtemp(prefix="maildesk-vs-helpdesk-"))
    msgs = corpus(args.messages)
    print(f"corpus: {len(msgs)} generated mails (a third are replies), work folder {work}")
    helpdesk = Helpdesk(python, work / "helpdesk")
    dh_times, md_times, ratios = [], [], []
    for k in range(args.rounds):
        dh = helpdesk.round(msgs)
        md = maildesk_round(work / f"maildesk{k}", msgs)
        dh_rate, md_rate = dh["messages"] / dh["seconds"], md["messages"] / md["seconds"]
        dh_times.append(dh["seconds"] / dh["messages"])
        md_times.append(md["seconds"] / md["messages"])
        ratios.append(md_rate / dh_rate)
        print(
            f"  round {k + 1}: django-helpdesk get_email {dh_rate:,.0f} msg/s ({dh['tickets']:.0f} tickets, "
            f"{dh['followups']:.0f} follow-ups, {dh['mails_sent']:.0f} mails sent, {dh['left']:.0f} left); "
            f"maildesk {md_rate:,.0f} msg/s ({md['tickets']:.0f} tickets, {md['followups']:.0f} replies threaded, "
            f"{md['failed']:.0f} failed); ratio {ratios[-1]:.2f}"
        )
    print(f"django-helpdesk {VERSION} get_email, per message: {summary(dh_times, 1000, 'ms', 2)}")
    print(f"maildesk full pipeline, per message:        {summary(md_times, 1000, 'ms', 2)}")
    ratios.sort()
    print(
        f"ratio maildesk / django-helpdesk: min {ratios[0]:.2f} / median {ratios[len(ratios) // 2]:.2f} / "
        f"max {ratios[-1]:.2f} (goal >= 8)"
    )
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
