"""Helpers for the TUI tests: real homes with real synchronizations, and a way to drive the app."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select
from textual.pilot import Pilot
from textual.worker import WorkerFailed

from backbone_tui.app import BackboneApp
from engine.service.installation import Installation
from engine.store.models import Message, Synchronization, SyncSide
from engine.vocab import Folder

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def fixed_clock() -> datetime:
    return NOW


def make_app(
    inst: Installation, project: str | None = None, *, run_engine: bool = False, poll_interval: float = 3600.0
) -> BackboneApp:
    """The app as `backbone` builds it, with a fixed clock and no background polling."""
    return BackboneApp(
        inst, project, run_engine=run_engine, clock=fixed_clock, poll_interval=poll_interval, reload_gap=0.01
    )


async def settle(pilot: Pilot[Any], timeout: float = 10.0) -> None:
    """Wait until no worker runs and no reload is pending, and the messages are processed."""
    app = pilot.app
    assert isinstance(app, BackboneApp)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        with contextlib.suppress(WorkerFailed):  # failures are the app's to report (notices)
            await app.workers.wait_for_complete()
        await pilot.pause()
        busy = app.reload_pending or any(not w.is_finished for w in app.workers)
        if not busy:
            await pilot.pause()
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the app did not settle")
        await pilot.pause(0.02)


async def wait_for(pilot: Pilot[Any], predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    """Let the app run until `predicate` holds (for work done by the engine's own threads)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await pilot.pause(0.05)


def run(
    app: BackboneApp, scenario: Callable[[Pilot[Any]], Awaitable[None]], size: tuple[int, int] = (100, 30)
) -> None:
    """Run the app headless with notifications on, settle it, then play `scenario`."""

    async def main() -> None:
        async with app.run_test(size=size, notifications=True) as pilot:
            await settle(pilot)
            await scenario(pilot)

    asyncio.run(main())


def table_lines(app: BackboneApp) -> list[str]:
    """The table's visible lines as plain text (header first)."""
    table = app.overview.table
    return [table.render_line(y).text for y in range(table.size.height)]


def set_activity(inst: Installation, key: str, moment: datetime | None) -> None:
    with inst.db.write() as s:
        sync = s.get(Synchronization, key)
        assert sync is not None
        sync.last_activity = moment
        s.add(sync)


def add_messages(
    inst: Installation, key: str, folder: str, count: int, *, reason: str = "", text: str = ""
) -> None:
    """Message rows in one folder of the synchronization's first side (for counts and reasons)."""
    with inst.db.write() as s:
        side = s.exec(select(SyncSide).where(SyncSide.sync_key == key)).first()
        assert side is not None
        for n in range(count):
            s.add(
                Message(
                    side_id=side.id or 0,
                    direction="in",
                    uuid=f"{key}-{folder}-{n}",
                    type="ISSUE_UPDATE",
                    pair_id=f"pair-{n}",
                    epoch=1,
                    seq=n + 1,
                    folder=folder,
                    file_name=f"{folder.lower()}-{n}.bac",
                    reason_code=reason,
                    reason_text=text,
                    size=100,
                    created=NOW,
                    updated=NOW,
                )
            )


def build_mixed(root: Path) -> Installation:
    """A home with every common status, made through the engine's service API.

    ACME-BETA-1 RUNNING, ACME-GAMMA-1 STOPPED, BETA-GAMMA-1 STOPPED, DELTA-ACME-1 RUNNING,
    GAMMA-OMEGA-1 REQUEST SENT, PARTNER-DELTA-1 INCOMING REQUEST, PARTNER-GAMMA-1 DECLINED.
    """
    inst = Installation(root / "home")
    for key in ("ACME", "BETA", "GAMMA", "DELTA"):
        inst.tracker.create_project(key, key.title())
    running = inst.create_local(
        project="ACME",
        partner_project="BETA",
        user="sync-bot",
        name="Acme <-> Beta",
        description="Defects shared with Beta",
    )
    inst.create_local(project="ACME", partner_project="GAMMA", user="sync-bot", name="[red]Acme to Gamma")
    inst.create_local(project="BETA", partner_project="GAMMA", user="sync-bot", name="Beta <-> Gamma")
    other = inst.create_local(project="DELTA", partner_project="ACME", user="sync-bot", name="Delta ops")
    inst.start([running.key, other.key])
    inst.create_primary(
        project="GAMMA",
        user="sync-bot",
        protocol="file",
        name="Gamma outbound",
        partner_project="OMEGA",
        handshake_out=root / "gamma-hs.json",
    )
    partner = Installation(root / "partner")
    partner.tracker.create_project("PARTNER", "Partner Inc")
    for project in ("DELTA", "GAMMA"):
        _, handshake = partner.create_primary(
            project="PARTNER",
            user="sync-bot",
            protocol="file",
            name=f"Partner -> {project.title()}",
            partner_project=project,
            handshake_out=root / f"partner-{project}.json",
        )
        inst.create_secondary(
            handshake=handshake, project=project, user="sync-bot", exchange=root / f"exchange-{project}"
        )
    inst.decline("PARTNER-GAMMA-1")
    partner.close()
    add_messages(
        inst,
        "ACME-BETA-1",
        Folder.ERROR,
        2,
        reason="VALUE_NOT_MAPPED",
        text="field mapping 'urgency': partner value 'u9' has no local value",
    )
    add_messages(inst, "ACME-BETA-1", Folder.WAITING, 3, reason="SEQ_GAP", text="waiting for seq 1")
    add_messages(inst, "DELTA-ACME-1", Folder.SEND, 1)
    set_activity(inst, "ACME-BETA-1", NOW - timedelta(minutes=12))
    set_activity(inst, "DELTA-ACME-1", NOW - timedelta(hours=3))
    set_activity(inst, "ACME-GAMMA-1", NOW - timedelta(days=30))
    return inst


@pytest.fixture(scope="session")
def mixed_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`build_mixed` once per session; tests get a copy of its home."""
    root = tmp_path_factory.mktemp("mixed")
    build_mixed(root).close()
    return root / "home"


@pytest.fixture
def mixed(mixed_template: Path, tmp_path: Path) -> Iterator[Installation]:
    shutil.copytree(mixed_template, tmp_path / "home")
    inst = Installation(tmp_path / "home")
    yield inst
    inst.close()
