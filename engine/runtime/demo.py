"""The embedded demo: two paired installations sharing one exchange folder, with sample issues."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from engine.channels.email import MailSettings
from engine.errors import BackboneError
from engine.runtime.engine import Engine
from engine.service.installation import Installation
from engine.store.models import Message
from engine.vocab import Direction, Folder, Protocol, SyncStatus

PRIMARY_PROJECT = "ACME"
SECONDARY_PROJECT = "GLOBEX"
SYNC_USER = "sync-bot"


@dataclass
class Demo:
    root: Path
    acme: Installation
    globex: Installation
    key: str

    def close(self) -> None:
        self.acme.close()
        self.globex.close()


def default_config(name: str) -> str:
    return resources.files("engine").joinpath(f"defaults/demo-{name}.toml").read_text()


def build_demo(
    root: Path, *, encryption: bool = True, mail: tuple[MailSettings, MailSettings] | None = None
) -> Demo:
    """Create (or reopen) the demo under `root`: paired, configured, running, with issues."""
    root = root.absolute()
    fresh = not (root / "acme" / "backbone.db").exists()
    if fresh and root.exists() and any(root.iterdir()):
        raise BackboneError(f"{root} is not empty and holds no demo; choose an empty or new folder")
    if not fresh:
        acme, globex = Installation(root / "acme"), Installation(root / "globex")
        syncs = acme.list_syncs()
        if not syncs:
            raise BackboneError(f"{root} holds an unfinished demo; delete it and run again")
        return Demo(root, acme, globex, syncs[0].key)
    demo = pair_installations(root, encryption=encryption, mail=mail)
    add_sample_issues(demo.acme, demo.globex, root)
    return demo


def pair_installations(
    root: Path,
    *,
    start: bool = True,
    encryption: bool = True,
    mail: tuple[MailSettings, MailSettings] | None = None,
    review: bool = False,
) -> Demo:
    """Two installations under `root` paired over `root/exchange`, configured (and running)."""
    demo = request_pair(root, encryption=encryption, mail=mail, review=review)
    acme, globex, key = demo.acme, demo.globex, demo.key
    globex.accept(key)
    engines = (Engine(acme), Engine(globex))
    settle(
        engines,
        until=lambda: all(inst.sync_info(key).status == SyncStatus.STOPPED for inst in (acme, globex)),
    )
    # the primary publishes its mappings; the secondary binds them to its own names
    acme.config_import_text(key, default_config("acme"), "demo-acme.toml")
    acme.publish_config(key, "Defects, tasks and stories with their sub-tasks; customer and impact.")
    settle(engines, until=lambda: globex.sync_info(key).status == SyncStatus.UPDATE_REQUIRED)
    globex.config_import_text(key, default_config("globex"), "demo-globex.toml")
    globex.publish_config(key)
    settle(engines, until=lambda: acme.sync_info(key).status == SyncStatus.STOPPED)
    if start:
        acme.start([key])
        globex.start([key])
    return demo


def request_pair(
    root: Path,
    *,
    encryption: bool = True,
    mail: tuple[MailSettings, MailSettings] | None = None,
    review: bool = False,
) -> Demo:
    """Two installations under `root`: Acme's request, and Globex's side of it (INCOMING REQUEST)."""
    acme = Installation(root / "acme")
    globex = Installation(root / "globex")
    exchange = root / "exchange"
    (exchange / "acme" / Folder.SEND).mkdir(parents=True)
    (exchange / "acme" / Folder.RECEIVE).mkdir()
    (exchange / "globex").mkdir()
    os.symlink(f"../acme/{Folder.RECEIVE}", exchange / "globex" / Folder.SEND)
    os.symlink(f"../acme/{Folder.SEND}", exchange / "globex" / Folder.RECEIVE)

    acme.tracker.create_project(PRIMARY_PROJECT, "Acme Corporation")
    acme.tracker.add_custom_field(PRIMARY_PROJECT, "Customer", "text")
    acme.tracker.add_custom_field(PRIMARY_PROJECT, "Severity", "select", ["Critical", "Major", "Minor"])
    globex.tracker.create_project(SECONDARY_PROJECT, "Globex Support")
    globex.tracker.add_custom_field(SECONDARY_PROJECT, "Requested by", "text")
    globex.tracker.add_custom_field(
        SECONDARY_PROJECT, "Impact", "select", ["Blocker", "Significant", "Cosmetic"]
    )

    info, handshake = acme.create_primary(
        project=PRIMARY_PROJECT,
        user=SYNC_USER,
        protocol=Protocol.EMAIL if mail else Protocol.FILE,
        name="ACME <-> Globex",
        description="Customer defects shared with Globex support",
        exchange=None if mail else exchange / "acme",
        mail=mail[0] if mail else None,
        partner_project=SECONDARY_PROJECT,
        handshake_out=root / "handshake.json",
        encryption=encryption,
        review=review,
    )
    globex.create_secondary(
        handshake=handshake,
        project=SECONDARY_PROJECT,
        user=SYNC_USER,
        exchange=None if mail else exchange / "globex",
        mail=mail[1] if mail else None,
    )
    return Demo(root, acme, globex, info.key)


def add_sample_issues(acme: Installation, globex: Installation, root: Path) -> None:
    t = acme.tracker
    bug = t.create_issue(
        PRIMARY_PROJECT,
        "Bug",
        {
            "summary": "Checkout fails with HTTP 500 for carts over 100 items",
            "description": "Reported by three customers since the 4.2 release.",
            "priority": "High",
            "labels": ["checkout", "regression"],
            "Customer": "Initech",
            "Severity": "Major",
            "due_date": "2026-12-15",
        },
        as_user="alice",
    )
    t.create_issue(
        PRIMARY_PROJECT,
        "Sub-task",
        {"summary": "Add a regression test for large carts"},
        as_user="alice",
        parent_id=bug,
    )
    t.add_comment(bug, "Reproduced on staging with 120 items.", as_user="alice")
    t.add_comment(bug, "The limit comes from the pricing service's batch size.", as_user="bob")
    log_file = root / "checkout-error.log"
    log_file.write_text("2026-11-20T09:14:02Z ERROR pricing: batch size 100 exceeded (120)\n")
    t.add_attachment(bug, log_file.name, log_file.read_bytes(), as_user="alice", media_type="text/plain")
    t.transition(bug, "In Progress", as_user="alice")
    t.create_issue(
        PRIMARY_PROJECT,
        "Task",
        {"summary": "Rotate the partner API credentials", "priority": "Medium"},
        as_user="bob",
    )
    g = globex.tracker
    story = g.create_issue(
        SECONDARY_PROJECT,
        "Story",
        {"summary": "Dark mode for the customer portal", "priority": "Low", "Impact": "Cosmetic"},
        as_user="carol",
    )
    g.add_comment(story, "Design mock-ups are attached to the portal epic.", as_user="carol")


def settle(engines: tuple[Engine, ...], until: object = None, timeout: float = 60.0) -> float:
    """Run the engines' passes in turn until nothing is left to do (and `until` holds)."""
    started = time.monotonic()
    for engine in engines:
        engine.inst.lock.require()
    try:
        for engine in engines:
            engine.reconcile()
        idle_rounds = 0
        while time.monotonic() - started < timeout:
            work = sum(engine.step(1) for engine in engines)
            done = until() if callable(until) else True
            idle_rounds = idle_rounds + 1 if not work else 0
            if done and idle_rounds >= 2:
                break
            if not work:
                time.sleep(0.05)
    finally:
        for engine in engines:
            engine.close_channels()
            engine.inst.lock.release()
    return time.monotonic() - started


def summary(demo: Demo, seconds: float, program: str = "backbone") -> list[str]:
    from sqlmodel import func, select

    lines = [f"Demo in {demo.root} (synchronization {demo.key}), settled in {seconds:.1f} s"]
    for name, inst in (("acme", demo.acme), ("globex", demo.globex)):
        with inst.db.session() as s:
            sent = s.exec(
                select(func.count())
                .select_from(Message)
                .where(Message.direction == Direction.OUT, Message.folder == Folder.SENT)
            ).one()
            applied = s.exec(
                select(func.count())
                .select_from(Message)
                .where(Message.direction == Direction.IN, Message.folder == Folder.PROCESSED)
            ).one()
        info = inst.sync_info(demo.key)
        issues = inst.tracker.list_issues()
        lines.append(
            f"  {name:7} {info.status:8} issues {len(issues):3}  messages sent {sent:4}  "
            f"applied {applied:4}  errors {info.errors}  pending {info.pending}"
        )
    pairs = demo.acme.issue_pairs(demo.key)
    lines.append(f"  issues synced: {sum(1 for p in pairs.values() if all(p.values()))}")
    lines.append(f"  try: {program} --home {demo.root / 'globex'} issue list")
    return lines
