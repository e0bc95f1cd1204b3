"""`maildesk init`: writes a commented config, example rules and a templates folder with the
site templates those rules use.

Owns only file creation for a new installation; never touches the database.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from maildesk.errors import MaildeskError

TEMPLATES_README = """Site templates override maildesk's built-in ones.

Put a file at <locale>/<name>.txt.j2 (and optionally <name>.html.j2), or at
<queue>/<locale>/<name>.txt.j2 for one queue. `maildesk templates check` renders them all;
`maildesk templates preview NAME --sample` shows one. The built-in templates are in the
maildesk package under maildesk/templates/ and are good starting points.
"""


EXAMPLE_TEMPLATES = {
    "after_hours.txt.j2": """{% set hello = "Hi " ~ recipient.first_name ~ "," if recipient.first_name else "Hello," %}
Subject: {{ ticket.reply_subject }}

{{ hello }}

thank you for your message. Our team is away right now; your request {{ ticket.tag }} is
recorded and we will answer it during our business hours{% if ticket.first_response_due %},
by {{ ticket.first_response_due }} at the latest{% endif %}.
{% if company.business_hours %}
Our business hours: {{ company.business_hours }}.
{% endif %}

If there is anything to add, just reply to this email: it stays with your request.

{% include "_signature.txt.j2" %}
""",
    "vip_alert.txt.j2": """Subject: {{ ticket.tag }} VIP request from {{ customer.display_name }}: {{ ticket.subject }}

A VIP customer has written; the request went to the priority queue.

  Ticket:    {{ ticket.tag }} {{ ticket.subject }}
  Customer:  {{ customer.display_name }} <{{ customer.email }}>
  Queue:     {{ ticket.queue }} · tier {{ ticket.tier }} · priority {{ ticket.priority }}
  Assigned:  {{ ticket.assignee_name or "nobody yet" }}

{{ message.text|quote }}
""",
    "outage_alert.txt.j2": """Subject: {{ ticket.tag }} Possible outage reported by \
{{ customer.display_name }}: {{ ticket.subject }}

A customer reports that something is down.

  Ticket:    {{ ticket.tag }} {{ ticket.subject }}
  Customer:  {{ customer.display_name }} <{{ customer.email }}>
  Priority:  {{ ticket.priority }} · tier {{ ticket.tier }}

{{ message.text|quote }}
""",
}


# The same in the desk's other default locales (`desk.locales`) ship as package data under
# defaults/site_templates/<locale>/: `templates check` wants every template in each locale.
TRANSLATED_LOCALES = ("de", "fr", "es")


def _default(name: str) -> str:
    return resources.files("maildesk").joinpath("defaults", *name.split("/")).read_text(encoding="utf-8")


def init_directory(directory: Path, *, force: bool = False) -> list[Path]:
    """Create DIR/maildesk.toml, DIR/rules.yaml and DIR/templates/. Returns written paths."""
    directory.mkdir(parents=True, exist_ok=True)
    config = (
        _default("maildesk.toml")
        .replace('rules_file = ""', 'rules_file = "rules.yaml"')
        .replace('templates_dir = ""', 'templates_dir = "templates"')
    )
    files = {directory / "maildesk.toml": config}
    try:
        files[directory / "rules.yaml"] = _default("rules.yaml")
    except FileNotFoundError:
        files[directory / "rules.yaml"] = "version: 1\nrules: []\n"
    files[directory / "templates" / "README.txt"] = TEMPLATES_README
    for name, text in EXAMPLE_TEMPLATES.items():  # the ones the example rules use
        files[directory / "templates" / "en" / name] = text
    for locale in TRANSLATED_LOCALES:
        for name in EXAMPLE_TEMPLATES:
            files[directory / "templates" / locale / name] = _default(f"site_templates/{locale}/{name}")
    existing = [p for p in files if p.exists()]
    if existing and not force:
        raise MaildeskError(f"{existing[0]} exists; use --force to overwrite")
    written = []
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
