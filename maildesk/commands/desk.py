"""The operator's desk commands: `tickets list`, `ticket show|note|assign|…`, `search`,
`customer show|set|export|erase`, `agents list`, `retention apply`.

Thin: parse arguments, open the desk (`common.open_desk`), call one function of
`maildesk.services.tickets` in one transaction, print (a Rich table, `--json`, or `--csv`).
`maildesk/cli.py` adds the sub-apps and `search_cmd` to the main app. Everything printed that came from
mail is shown as plain text with control characters removed (never as Rich markup or
terminal escapes); CSV cells that a spreadsheet would run as a formula are defused.

Must not: build queries or decide anything (that is `maildesk.services.tickets`).
"""

from __future__ import annotations

import contextlib
import csv
import getpass
import json
import re
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import click
import typer
from rich.table import Table
from rich.text import Text

from maildesk.commands.common import ConfigOpt, JsonOpt, clean, console, err, load_settings_or_exit, open_desk, plain
from maildesk.errors import MaildeskError
from maildesk.services import customers, views
from maildesk.services import tickets as ops

if TYPE_CHECKING:
    from maildesk.app import App

ByOpt = Annotated[
    str | None,
    typer.Option("--by", envvar="MAILDESK_AGENT", help="Who acts, recorded on the event (default: cli:<login>)."),
]
NumberArg = Annotated[int, typer.Argument(help="Ticket number.", min=1)]
TextOpt = Annotated[str | None, typer.Option("--text", "-t", help="The text itself.")]
FileOpt = Annotated[
    str | None, typer.Option("--file", "-f", help="Read the text from a file, or - for standard input.")
]


def _by(by: str | None) -> str:
    if by:
        return by.strip()
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no login name in some containers
        return "cli"


@contextlib.contextmanager
def _failing() -> Iterator[None]:
    try:
        yield
    except ops.OperationError as exc:
        err.print(plain(f"error: {exc}", "red"))
        raise typer.Exit(1) from exc
    except MaildeskError as exc:
        err.print(plain(f"error: {exc}", "red"))
        raise typer.Exit(1) from exc


def _write(desk: App, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run one operation in one transaction (committed on success)."""
    with _failing(), desk.store.session() as session:
        return fn(session, *args, **kwargs)


def _read(desk: App, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    with _failing(), desk.store.reader() as session:
        return fn(session, *args, **kwargs)


def _dump(data: Any) -> None:
    print(json.dumps(data, default=str, ensure_ascii=False, indent=None))


def _text_from(text: str | None, file: str | None, what: str) -> str:
    if text is not None and file is not None:
        err.print("give --text or --file, not both")
        raise typer.Exit(2)
    if text is not None:
        return text
    if file == "-":
        return sys.stdin.read()
    if file is not None:
        try:
            return Path(file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            err.print(plain(f"cannot read {file}: {exc}", "red"))
            raise typer.Exit(66) from exc
    edited = click.edit(f"\n# Write the {what} above. Lines starting with # are dropped.\n")
    if edited is None:
        err.print(f"no {what} written; nothing done")
        raise typer.Exit(1)
    return "\n".join(line for line in edited.splitlines() if not line.startswith("#"))


def _when(value: str | None) -> str:
    if not value:
        return ""
    return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M")


def _split(values: list[str] | None) -> tuple[str, ...]:
    return tuple(v.strip() for item in values or [] for v in item.split(",") if v.strip())


_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> str:
    if isinstance(value, list):
        value = " ".join(str(v) for v in value)
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA) else text


# Sub-apps ----------------------------------------------------------------------------------
tickets_app = typer.Typer(
    help="Lists of tickets. Example: `maildesk tickets list --status open --breaching`", no_args_is_help=True
)
ticket_app = typer.Typer(
    help="One ticket: show it, or act on it like an email command would.\n\n"
    "Example: `maildesk ticket show 42`, `maildesk ticket assign 42 eva@example.com`",
    no_args_is_help=True,
)
customer_app = typer.Typer(
    help="Customers: what is held about them, export (access) and erase (right to be forgotten).\n\n"
    "Example: `maildesk customer show anna@example.org`",
    no_args_is_help=True,
)
agents_app = typer.Typer(help="Agents and their open load. Example: `maildesk agents list`", no_args_is_help=True)
retention_app = typer.Typer(help="Data retention. Example: `maildesk retention apply --days 365`", no_args_is_help=True)


@tickets_app.command("list")
def tickets_list(
    status: Annotated[
        list[str] | None,
        typer.Option("--status", "-s", help="new, open, pending, resolved, closed; repeat or comma-separate."),
    ] = None,
    queue: Annotated[
        list[str] | None, typer.Option("--queue", "-q", help="Queue name; repeat or comma-separate.")
    ] = None,
    tier: Annotated[list[str] | None, typer.Option("--tier", help="L1, L2 or L3; repeat or comma-separate.")] = None,
    priority: Annotated[list[str] | None, typer.Option("--priority", "-p", help="low, normal, high, urgent.")] = None,
    assignee: Annotated[
        str | None, typer.Option("--assignee", "-a", help="Agent address, or none for unassigned.")
    ] = None,
    customer: Annotated[
        str | None, typer.Option("--customer", help="Part of the customer's address, e.g. @example.org.")
    ] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="Only tickets with this tag.")] = None,
    breaching: Annotated[
        bool, typer.Option("--breaching", help="Only tickets with an SLA clock breached or overdue.")
    ] = False,
    older_than: Annotated[
        str | None, typer.Option("--older-than", help="Created longer ago than this: 3d, 12h, 2w.")
    ] = None,
    text: Annotated[str | None, typer.Option("--text", help="Full-text match on any message (search syntax).")] = None,
    sort: Annotated[str, typer.Option("--sort", help="created, updated, priority or number.")] = "number",
    desc: Annotated[bool, typer.Option("--desc", help="Reverse order (newest / highest first).")] = False,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many rows (0: all).", min=0)] = 500,
    as_json: JsonOpt = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV (for spreadsheets).")] = False,
    config: ConfigOpt = None,
) -> None:
    """List tickets with filters, sorted.

    Example: `maildesk tickets list --status open,pending --tier L2 --older-than 3d --sort priority --desc`
    """
    with open_desk(config) as desk:
        now = desk.clock()
        with _failing():
            created_before = now - views.parse_age(older_than) if older_than else None
        f = views.TicketFilter(
            statuses=tuple(s.lower() for s in _split(status)),
            queues=_split(queue),
            tiers=_split(tier),
            priorities=tuple(p.lower() for p in _split(priority)),
            assignee=assignee,
            customer=customer,
            tag=tag,
            breaching=breaching,
            created_before=created_before,
            text=text,
            sort=sort.lower(),
            desc=desc,
            limit=limit or None,
        )
        rows = _read(desk, views.list_tickets, f, now)
    if as_json:
        _dump([r.to_dict() for r in rows])
        return
    if as_csv:
        columns = list(views.TicketSummary.__dataclass_fields__)
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        for r in rows:
            d = r.to_dict()
            d["clocks"] = [views.clock_line(c) for c in d["clocks"]]
            writer.writerow([_csv_cell(d[c]) if c != "clocks" else "; ".join(d[c]) for c in columns])
        return
    table = Table(title=f"tickets ({len(rows)})")
    for col in ("#", "status", "prio", "tier", "queue", "assignee", "customer", "subject", "updated", "SLA clocks"):
        table.add_column(col, overflow="fold" if col in ("subject", "SLA clocks") else "ellipsis")
    for r in rows:
        shown = [views.clock_line(c) for c in r.clocks if c["state"] != "stopped"]  # the ones still owed
        due = plain("\n".join(shown), "bold red" if r.breaching else "")
        table.add_row(
            str(r.number),
            r.status,
            r.priority,
            r.tier,
            plain(r.queue),
            plain(r.assignee or "-"),
            plain(r.customer),
            plain(r.subject[:120]),
            _when(r.updated_at),
            due,
        )
    console.print(table)


@ticket_app.command("show")
def ticket_show(number: NumberArg, as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Show a ticket: fields, SLA clocks, the conversation as a person reads it, and its history.

    Example: `maildesk ticket show 42` or `maildesk ticket show 42 --json | jq .events`
    """
    with open_desk(config) as desk:
        view = _read(desk, views.ticket_view, number, desk.clock())
    if as_json:
        _dump(view)
        return
    head = Table(show_header=False, title=plain(f"#{view['number']} {view['subject']}", "bold"))
    head.add_column(style="bold")
    head.add_column()
    rows = [
        ("status", view["status"]),
        ("queue", view["queue"]),
        ("tier", view["tier"]),
        ("priority", view["priority"]),
        ("assignee", view["assignee"] or "-"),
        ("customer", f"{view['customer_name']} <{view['customer']}>"),
        ("participants", ", ".join(view["participants"])),
        ("tags", " ".join(view["tags"]) or "-"),
        ("created", _when(view["created_at"])),
        ("updated", _when(view["updated_at"])),
        ("first response", _when(view["first_response_at"]) or "-"),
    ]
    if view["fields"]:
        rows.append(("fields", json.dumps(view["fields"], ensure_ascii=False)))
    asked = view.get("asked") or {}
    if asked:
        missing = ", ".join(asked.get("missing") or []) or "-"
        rows.append(
            ("asked", f"{', '.join((asked.get('fields') or {}).keys())}: {asked.get('state')} (missing: {missing})")
        )
    if view["merged_into"]:
        rows.append(("merged into", f"#{view['merged_into']}"))
    if view["merged_from"]:
        rows.append(("merged from", ", ".join(f"#{n}" for n in view["merged_from"])))
    for key, value in rows:
        head.add_row(key, plain(value))
    console.print(head)
    if view["sla"]:
        sla = Table(title="SLA clocks")
        for col in ("clock", "policy", "target", "due", "state", "paused", "warned", "breached"):
            sla.add_column(col)
        for c in view["sla"]:
            state = c["state"] + (f" ({c['stop_reason']})" if c.get("stop_reason") else "")
            paused = c.get("paused_seconds", 0)
            sla.add_row(
                c["kind"],
                c.get("policy") or "-",
                c.get("target") or "-",
                _when(c["due_at"]) or "-",
                plain(state, "bold red" if c["state"] in ("breached", "overdue") else ""),
                f"{paused // 3600}h{paused % 3600 // 60:02d}m" if paused else "-",
                _when(c.get("warned_at")) or "-",
                _when(c.get("breached_at")) or "-",
            )
        console.print(sla)
    console.rule("conversation")
    for m in view["messages"]:
        who = f"{m['from_name']} <{m['from']}>" if m["from_name"] else m["from"]
        label = "INTERNAL NOTE" if m["internal"] else ("from customer" if m["direction"] == "in" else m["kind"])
        if m["direction"] == "in" and str(m["kind"]).startswith("agent"):
            label = f"agent mail ({m['kind']}{', internal' if m['internal'] else ''})"
        if m.get("from_ticket"):
            label += f", from #{m['from_ticket']}"
        style = "bold yellow" if m["internal"] else ("bold cyan" if m["direction"] == "in" else "bold green")
        console.print(plain(f"{_when(m['at'])}  {who}  [{label}]", style))
        if m.get("agent_mail"):
            console.print(plain(f"recognised: {m['agent_mail']}", "bold magenta"))
        console.print(plain(m["text"].strip() or "(no text)"))
        if m["quoted_lines"]:
            console.print(plain(f"({m['quoted_lines']} quoted lines hidden)", "dim"))
        for a in m["attachments"]:
            kept = "" if a["data_kept"] else ", data removed"
            console.print(
                plain(f"  attachment: {a['filename']} ({a['content_type']}, {_size(a['size'])}{kept})", "dim")
            )
        console.print()
    console.rule("history")
    events = Table()
    for col in ("when", "event", "details"):
        events.add_column(col, overflow="fold")
    for e in view["events"]:
        kind = e["type"] + (f" (#{e['from_ticket']})" if e.get("from_ticket") else "")
        events.add_row(_when(e["at"]), kind, plain(json.dumps(e["data"], ensure_ascii=False, default=str)[:400]))
    console.print(events)


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _report(result: ops.ActionResult, as_json: bool) -> None:
    if as_json:
        _dump(result.to_dict())
        return
    detail = ", ".join(f"{k}: {v}" for k, v in result.detail.items())
    state = "done" if result.changed else "nothing to change"
    console.print(plain(f"#{result.number} {result.action}: {state}" + (f" ({detail})" if detail else "")))


@ticket_app.command("note")
def ticket_note(
    number: NumberArg,
    text: TextOpt = None,
    file: FileOpt = None,
    by: ByOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Add an internal note (never mailed). Without --text or --file, opens $EDITOR.

    Example: `maildesk ticket note 42 --text "Called the customer, waiting for logs"` or
    `journalctl -u cups | maildesk ticket note 42 --file -`
    """
    body = _text_from(text, file, "note")
    with open_desk(config) as desk:
        _report(_write(desk, ops.add_note, number, body, _by(by), desk.clock()), as_json)


@ticket_app.command("reply")
def ticket_reply(
    number: NumberArg,
    text: TextOpt = None,
    file: FileOpt = None,
    by: ByOpt = None,
    status: Annotated[
        str, typer.Option("--status", help="Status afterwards (pending waits on the customer).")
    ] = "pending",
    macro: Annotated[
        str | None, typer.Option("--macro", help="Send this macro (see `maildesk macros list`), after any text.")
    ] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Reply to the customer (through the outbox; the running daemon sends it).

    --by must be the agent's address. Without --text, --file or --macro, opens $EDITOR.
    Example: `maildesk ticket reply 42 --by eva@example.com --text "Fixed, please try again."`,
    `maildesk ticket reply 42 --by eva@example.com --macro thanks`
    """
    body = _text_from(text, file, "reply") if (text is not None or file is not None or not macro) else ""
    agent = _by(by)
    if "@" not in agent:
        err.print("a reply needs the agent's address: --by eva@example.com or $MAILDESK_AGENT")
        raise typer.Exit(2)
    with open_desk(config) as desk:
        if macro:
            from maildesk.services.agent_mail import reply_with_macro

            result = _write(desk, reply_with_macro, desk.deps, number, body, macro, agent, desk.clock(), status.lower())
        else:
            result = _write(desk, ops.reply, desk.deps, number, body, agent, desk.clock(), status=status.lower())
        _report(result, as_json)


@ticket_app.command("assign")
def ticket_assign(
    number: NumberArg,
    agent: Annotated[str, typer.Argument(help="Agent address, or none to unassign.")],
    by: ByOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Assign a ticket to an agent. Example: `maildesk ticket assign 42 eva@example.com`"""
    with open_desk(config) as desk:
        _report(_write(desk, ops.assign, number, agent, _by(by), desk.clock()), as_json)


@ticket_app.command("tier")
def ticket_tier(
    number: NumberArg,
    tier: Annotated[str, typer.Argument(help="L1, L2 or L3.")],
    by: ByOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Set the support tier. Example: `maildesk ticket tier 42 L2`"""
    with open_desk(config) as desk:
        _report(_write(desk, ops.set_tier, number, tier, _by(by), desk.clock()), as_json)


@ticket_app.command("escalate")
def ticket_escalate(
    number: NumberArg,
    note: Annotated[str, typer.Option("--note", help="Hand-off note, kept on the ticket.")] = "",
    by: ByOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Escalate to the next tier (L1 -> L2 -> L3) with a hand-off note.

    Example: `maildesk ticket escalate 42 --note "Firmware bug, needs engineering"`
    """
    with open_desk(config) as desk:
        _report(_write(desk, ops.escalate, number, note, _by(by), desk.clock()), as_json)


@ticket_app.command("priority")
def ticket_priority(
    number: NumberArg,
    priority: Annotated[str, typer.Argument(help="low, normal, high or urgent.")],
    by: ByOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Set the priority. Example: `maildesk ticket priority 42 high`"""
    with open_desk(config) as desk:
        _report(_write(desk, ops.set_priority, number, priority, _by(by), desk.clock()), as_json)


@ticket_app.command("tag", context_settings={"ignore_unknown_options": True})
def ticket_tag(
    number: NumberArg,
    changes: Annotated[list[str], typer.Argument(help="+tag adds, -tag removes, a bare tag adds.")],
    by: ByOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Add and remove tags. Example: `maildesk ticket tag 42 +vip +hardware -billing`"""
    with open_desk(config) as desk:
        _report(_write(desk, ops.change_tags, number, changes, _by(by), desk.clock()), as_json)


@ticket_app.command("resolve")
def ticket_resolve(number: NumberArg, by: ByOpt = None, as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Mark resolved (SLA clocks stop). Example: `maildesk ticket resolve 42`"""
    with open_desk(config) as desk:
        _report(_write(desk, ops.resolve, number, _by(by), desk.clock()), as_json)


@ticket_app.command("close")
def ticket_close(number: NumberArg, by: ByOpt = None, as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Close (SLA clocks stop; retention counts from now). Example: `maildesk ticket close 42`"""
    with open_desk(config) as desk:
        _report(_write(desk, ops.close, number, _by(by), desk.clock()), as_json)


@ticket_app.command("reopen")
def ticket_reopen(number: NumberArg, by: ByOpt = None, as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Reopen a resolved or closed ticket. Example: `maildesk ticket reopen 42`"""
    with open_desk(config) as desk:
        _report(_write(desk, ops.reopen, number, _by(by), desk.clock()), as_json)


@ticket_app.command("merge")
def ticket_merge(
    target: Annotated[int, typer.Argument(help="The ticket that stays.", min=1)],
    source: Annotated[int, typer.Argument(help="The ticket merged into it (closed; its mail goes to TARGET).", min=1)],
    by: ByOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Merge ticket SOURCE into TARGET; later mail for SOURCE lands on TARGET.

    TARGET then shows SOURCE's conversation and history, and the customer of SOURCE gets the
    `merged` notice (automatic mail, threaded to their conversation).
    Example: `maildesk ticket merge 42 57` (57 is closed and points at 42)
    """
    with open_desk(config) as desk:
        _report(_write(desk, ops.merge, target, source, _by(by), desk.clock(), desk.deps), as_json)


def search_cmd(
    query: Annotated[str, typer.Argument(help='Words (all must match), "a phrase", -excluded, a or b.')],
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many tickets.", min=1)] = 20,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Full-text search over subjects and message texts, best match first.

    Example: `maildesk search "printer fire" --limit 5` or `maildesk search '"paper jam" -toner'`
    """
    with open_desk(config) as desk:
        hits = _read(desk, views.search, query, limit)
    if as_json:
        _dump(
            [
                {
                    "ticket": h.ticket_number,
                    "subject": h.subject,
                    "snippet": h.text,
                    "rank": h.rank,
                    "message": h.message_pk,
                }
                for h in hits
            ]
        )
        return
    table = Table(title=plain(f"search: {query} ({len(hits)})"))
    for col in ("#", "subject", "snippet", "rank"):
        table.add_column(col, overflow="fold")
    for h in hits:
        table.add_row(str(h.ticket_number), plain(h.subject[:100]), _highlight(h.marked), f"{h.rank:.3g}")
    console.print(table)


def _highlight(marked: str) -> Text:
    from maildesk.store.desk_queries import SNIPPET_CLOSE, SNIPPET_OPEN

    text = Text()
    pattern = re.escape(SNIPPET_OPEN) + "(.*?)" + re.escape(SNIPPET_CLOSE)
    for i, part in enumerate(re.split(pattern, clean(marked))):
        text.append(part.replace(SNIPPET_OPEN, "").replace(SNIPPET_CLOSE, ""), style="bold yellow" if i % 2 else "")
    return text


@customer_app.command("show")
def customer_show(
    address: Annotated[str, typer.Argument(help="The customer's address.")],
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """A customer: their tickets, the tickets they are copied on, suppressions.

    Example: `maildesk customer show anna@example.org`
    """
    with open_desk(config) as desk:
        view = _read(desk, customers.customer_view, address, desk.clock())
    if as_json:
        _dump(view)
        return
    title = f"{view['name']} <{view['email']}>" if view["name"] else view["email"]
    console.print(
        plain(
            title + ("  (VIP)" if view["vip"] else "") + (f"  erased {view['erased_at']}" if view["erased_at"] else ""),
            "bold",
        )
    )
    table = Table(title=f"tickets ({len(view['tickets'])})")
    for col in ("#", "status", "prio", "assignee", "subject", "created"):
        table.add_column(col)
    for t in view["tickets"]:
        table.add_row(
            str(t["number"]),
            t["status"],
            t["priority"],
            plain(t["assignee"] or "-"),
            plain(t["subject"][:100]),
            _when(t["created_at"]),
        )
    console.print(table)
    if view["also_on"]:
        console.print("copied on: " + ", ".join(f"#{n}" for n in view["also_on"]))
    for s in view["suppressions"]:
        until = f" until {_when(s['until'])}" if s["until"] else ""
        console.print(plain(f"suppressed since {_when(s['created_at'])}{until}: {s['reason']}", "red"))
    if not view["suppressions"]:
        console.print("not suppressed")
    console.print(plain(_customer_facts(view)))


@customer_app.command("set")
def customer_set(
    address: Annotated[str, typer.Argument(help="The customer's address (created when new).")],
    locale: Annotated[
        str | None,
        typer.Option("--locale", help="Their language, one of desk.locales (fr, de_AT, …); 'default' forgets it."),
    ] = None,
    vip: Annotated[
        bool | None, typer.Option("--vip/--no-vip", help="VIP: what rules (customer.vip) and SLA policies read.")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Their name (greetings use the first name).")] = None,
    timezone: Annotated[
        str | None, typer.Option("--timezone", help="IANA time zone for dates in their mail; '' forgets it.")
    ] = None,
    by: ByOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Set a customer's language, VIP flag, name or time zone. A locale set here wins: their
    mail (headers or text) never changes it again.

    Example: `maildesk customer set anna@example.org --locale fr --vip --name "Anna Schmidt"`
    """
    if locale is None and vip is None and name is None and timezone is None:
        err.print("nothing to set: give --locale, --vip/--no-vip, --name or --timezone")
        raise typer.Exit(2)
    with open_desk(config) as desk:
        view = _write(
            desk,
            customers.set_customer,
            address,
            desk.clock(),
            supported=desk.settings.desk.locales,
            locale=locale,
            vip=vip,
            name=name,
            timezone=timezone,
            by=_by(by),
        )
    if as_json:
        _dump(view)
        return
    what = ", ".join(view["changed"]) or "nothing"
    console.print(plain(f"{'created' if view['created'] else 'updated'} {view['email']}: {what}"))
    console.print(plain(_customer_facts(view)))


def _customer_facts(view: dict[str, Any]) -> str:
    locale = view["locale"] or "desk default"
    source = {"operator": "set by an operator", "header": "from their mail's headers", "text": "detected"}.get(
        view.get("locale_source", ""), ""
    )
    parts = [f"locale {locale}" + (f" ({source})" if source and view["locale"] else "")]
    parts.append(f"time zone {view['tz'] or 'desk default'}")
    parts.append("VIP" if view["vip"] else "not VIP")
    return "; ".join(parts)


@customer_app.command("export")
def customer_export(
    address: Annotated[str, typer.Argument(help="The customer's address.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="New (or empty) folder to write into.")],
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Export everything held about a customer: each message as .eml plus customer.json.

    Example: `maildesk customer export anna@example.org --out ./export-anna`
    """
    with open_desk(config) as desk:
        result = _read(desk, customers.export_customer, address, out, desk.clock())
    if as_json:
        _dump(result)
        return
    console.print(
        plain(
            f"wrote {result['eml_files']} .eml files and customer.json "
            f"({result['tickets']} tickets, {result['messages']} messages) to {result['folder']}"
        )
    )


@customer_app.command("erase")
def customer_erase(
    address: Annotated[str, typer.Argument(help="The customer's address.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Erase a customer's personal data (right to be forgotten). Ticket rows stay, anonymous,
    so counts and KPIs stay right. This cannot be undone: export first if needed.

    Example: `maildesk customer export anna@example.org --out ./anna && maildesk customer erase anna@example.org`
    """
    with open_desk(config) as desk:
        view = _read(desk, customers.customer_view, address, desk.clock())
        if not yes and not typer.confirm(
            f"Erase all personal data of {clean(view['email'])} ({len(view['tickets'])} tickets)? "
            "This cannot be undone",
            err=True,
        ):
            err.print("nothing erased")
            raise typer.Exit(1)
        result = _write(desk, customers.erase_customer, address, desk.clock())
    if as_json:
        _dump(result)
        return
    console.print(
        plain(f"erased: now {result['token']}; " + ", ".join(f"{k} {v}" for k, v in result.items() if k != "token"))
    )
    if desk.store.backend == "postgresql":
        console.print(
            "PostgreSQL keeps old row versions until VACUUM: run `VACUUM messages, attachments, events` soon."
        )


@agents_app.command("list")
def agents_list(as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Agents (from the agents table and ticket assignees) with their open tickets per tier.

    Example: `maildesk agents list --json | jq '.[] | select(.open > 10)'`
    """
    with open_desk(config) as desk:
        rows = _read(desk, customers.agents_load)
    if as_json:
        _dump(rows)
        return
    table = Table(title=f"agents ({len(rows)})")
    for col in ("agent", "name", "tiers", "queues", "open", "L1", "L2", "L3", "note"):
        table.add_column(col)
    for r in rows:
        note = ("inactive" if not r["active"] else "") + ("" if r["known"] else "not in agents table")
        by_tier = r["open_by_tier"]
        table.add_row(
            plain(r["email"]),
            plain(r["name"]),
            plain(",".join(r["tiers"])),
            plain(",".join(r["queues"])),
            str(r["open"]),
            str(by_tier.get("L1", 0)),
            str(by_tier.get("L2", 0)),
            str(by_tier.get("L3", 0)),
            note,
        )
    console.print(table)


@retention_app.command("apply")
def retention_apply(
    days: Annotated[
        int | None,
        typer.Option(
            "--days", help="Tickets closed longer ago than this many days (default: desk.retention_days).", min=1
        ),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask (for cron).")] = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Remove raw mail and attachment data of tickets closed more than N days ago.

    Texts, fields and history stay, so tickets still read and count.
    Example (cron): `maildesk retention apply --days 365 --yes`
    """
    if days is None:
        days = load_settings_or_exit(config).desk.retention_days
        if days < 1:
            err.print("no --days given and desk.retention_days is 0 (keep forever): nothing to do")
            raise typer.Exit(2)
    if not yes and not typer.confirm(
        f"Remove raw mail and attachments of tickets closed over {days} days ago?", err=True
    ):
        err.print("nothing removed")
        raise typer.Exit(1)
    with open_desk(config) as desk:
        result = _write(desk, customers.apply_retention, days, desk.clock())
    if as_json:
        _dump(result)
        return
    console.print(
        f"{result['tickets']} tickets: removed {result['messages']} raw messages ({_size(result['raw_bytes'])}) "
        f"and {result['attachments']} attachments ({_size(result['attachment_bytes'])})"
    )
