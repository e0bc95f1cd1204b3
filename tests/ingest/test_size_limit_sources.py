"""`inject` and `import` apply the SMTP size limit (issue 16): a mail SMTP would refuse
is refused (inject: exit 65, the MTA bounces it) or skipped and reported (import)."""

from __future__ import annotations

import mailbox
import os
import subprocess
import sys
from pathlib import Path

from maildesk.ingest.bulk import import_mailbox
from maildesk.spool.files import Spool
from tests.support.mailgen import eml


def _config(tmp_path: Path, limit: int) -> Path:
    cfg = tmp_path / "maildesk.toml"
    cfg.write_text(
        f'[desk]\ndata_dir = "{tmp_path / "data"}"\nsupport_addresses = ["support@example.com"]\nsecret_env = ""\n'
        f'[database]\nurl = "sqlite:///{tmp_path / "data" / "maildesk.db"}"\nurl_env = ""\n'
        f"[smtp]\nmax_message_size = {limit}\n"
    )
    return cfg


def _inject(cfg: Path, *args: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "maildesk", "inject", *args, "--config", str(cfg)],
        input=data,
        capture_output=True,
        env=dict(os.environ),
        timeout=120,
    )


def test_inject_refuses_a_message_over_the_limit_with_ex_dataerr(tmp_path: Path) -> None:
    cfg = _config(tmp_path, 20_000)
    small = eml(body="fine")
    big = eml(body="x" * 30_000)
    assert _inject(cfg, "-", data=small).returncode == 0
    over = _inject(cfg, "-", data=big)
    assert over.returncode == 65, over.stderr
    assert b"max_message_size" in over.stderr and b"Traceback" not in over.stderr
    (tmp_path / "big.eml").write_bytes(big)
    assert _inject(cfg, str(tmp_path / "big.eml")).returncode == 65
    spooled = list((tmp_path / "data" / "spool").rglob("*.msg"))
    assert len(spooled) == 1  # only the small one


def test_import_skips_and_names_a_message_over_the_limit(tmp_path: Path) -> None:
    box = mailbox.mbox(tmp_path / "history.mbox")
    box.add(eml(message_id="<a@x.example>"))
    box.add(eml(message_id="<big@x.example>", body="y" * 50_000))
    box.add(eml(message_id="<b@x.example>"))
    box.close()
    spool = Spool(tmp_path / "spool").ensure()
    skipped: list[str] = []
    count = import_mailbox(tmp_path / "history.mbox", spool, max_size=20_000, skipped=skipped)
    assert count == 2
    assert len(skipped) == 1 and "over the limit of 20000" in skipped[0]
