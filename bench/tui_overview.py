"""Overview benchmark: a home with 10,000 synchronizations in the TUI (headless, 120x40).

Rows are inserted straight through the engine's SQLModel tables in one transaction (half RUNNING,
half STOPPED, one in ten with ERROR and SEND messages), then the app starts without engine
workers (they are not what is measured) and the figures are:

- first paint: from constructing `BackboneApp` to the first paint of the table with its rows
  (the reload worker has run `list_syncs` and the visible lines were rendered);
- filter: setting the status filter to RUNNING until the repaint is done;
- select all in a state: choosing STOPPED in the "check by status" dropdown until repainted;
- memory: the process's resident set (VmRSS) after the first paint, and its peak (VmHWM).

    python bench/tui_overview.py [--count N]

Targets: first paint < 1.5 s, filter < 150 ms, memory < 250 MB. Exit status 1 when one is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlmodel import col, select  # noqa: E402

from engine.service.installation import Installation  # noqa: E402
from engine.store.models import Message, Synchronization, SyncSide  # noqa: E402
from engine.vocab import Folder, SyncStatus  # noqa: E402

TARGET_FIRST_PAINT = 1.5
TARGET_FILTER = 0.150
TARGET_RSS_MB = 250.0
SIZE = (120, 40)


def add_synchronizations(
    s: Any, inst: Installation, count: int, project: str, *, spread: bool = True
) -> None:
    """`count` primary synchronizations of `project` over a shared exchange folder, half RUNNING
    (`spread`: last activities spread over ten hours), added in the caller's transaction."""
    now = datetime.now(UTC)
    inst.tracker.create_project(project, project.title())
    exchange = inst.paths.root / f"{project.lower()}-exchange"
    for name in (Folder.SEND, Folder.RECEIVE):
        (exchange / name).mkdir(parents=True, exist_ok=True)
    for n in range(count):
        key = f"{project}-P{n:05d}-1"
        s.add(
            Synchronization(
                key=key,
                name=f"{project.title()} <-> Partner {n:05d}",
                role="primary",
                protocol="file",
                sync_user="sync-bot",
                status=SyncStatus.RUNNING if n % 2 else SyncStatus.STOPPED,
                created=now,
                status_detail="benchmark row",
                last_activity=now - timedelta(minutes=n % 600) if spread else now,
            )
        )
        s.add(
            SyncSide(
                sync_key=key,
                project=project,
                folder=f"{project}-1",
                role="primary",
                endpoint=inst.id,
                partner_project=f"P{n:05d}",
                exchange=str(exchange),
            )
        )


def populate(inst: Installation, count: int) -> None:
    """`count` synchronizations of ACME; every tenth with messages in ERROR and SEND."""
    now = datetime.now(UTC)
    with inst.db.write() as s:
        add_synchronizations(s, inst, count, "ACME")
        s.flush()
        side_ids = s.exec(select(SyncSide.id).order_by(col(SyncSide.id))).all()
        for n, side_id in enumerate(side_ids):
            if n % 10:
                continue
            for folder, number in ((Folder.ERROR, 2), (Folder.SEND, 3)):
                for m in range(number):
                    s.add(
                        Message(
                            side_id=side_id or 0,
                            direction="out",
                            folder=folder,
                            file_name=f"{n}-{folder}-{m}.bac",
                            created=now,
                            updated=now,
                        )
                    )


def rss_mb(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def measure(inst: Installation, count: int) -> dict[str, float]:
    from backbone_tui.app import BackboneApp
    from screens.sync_table import SyncTable

    painted: list[float] = []
    original = SyncTable.render_line

    def render_line(self: SyncTable, y: int) -> Any:
        strip = original(self, y)
        if self.model.loaded and y == self.size.height - 1 and len(self.model.visible) >= self.size.height:
            painted.append(time.perf_counter())
        return strip

    SyncTable.render_line = render_line  # type: ignore[method-assign]
    figures: dict[str, float] = {}
    started = time.perf_counter()
    app = BackboneApp(inst, run_engine=False, poll_interval=3600)
    async with app.run_test(size=SIZE) as pilot:
        while not painted:
            await pilot.pause(0.01)
        figures["first_paint"] = painted[0] - started
        figures["rss_mb"] = rss_mb()
        assert len(app.overview.model.rows) == count

        painted.clear()
        began = time.perf_counter()
        app.overview.set_filter(SyncStatus.RUNNING)
        await pilot.pause()
        while not painted:
            await pilot.pause(0.001)
        figures["filter"] = painted[0] - began
        assert len(app.overview.model.visible) == count // 2

        app.overview.set_filter(None)
        await pilot.pause()
        painted.clear()
        began = time.perf_counter()
        app.overview.check_status(SyncStatus.STOPPED)
        await pilot.pause()
        while not painted:
            await pilot.pause(0.001)
        figures["select_status"] = painted[0] - began
        assert len(app.overview.model.selected) == count - count // 2

        began = time.perf_counter()
        app.request_reload()
        while app.reload_pending:
            await pilot.pause(0.005)
        figures["reload"] = time.perf_counter() - began
        figures["rss_peak_mb"] = rss_mb("VmHWM")
    SyncTable.render_line = original  # type: ignore[method-assign]
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=10_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-tui-") as folder:
        inst = Installation(Path(folder) / "home")
        began = time.perf_counter()
        populate(inst, args.count)
        print(f"home with {args.count} synchronizations built in {time.perf_counter() - began:.2f} s")
        began = time.perf_counter()
        inst.list_syncs()
        print(f"list_syncs alone: {(time.perf_counter() - began) * 1000:.0f} ms")
        figures = asyncio.run(measure(inst, args.count))
        inst.close()
    checks = [
        ("first full paint", figures["first_paint"], TARGET_FIRST_PAINT, "s"),
        ("status filter", figures["filter"], TARGET_FILTER, "s"),
        ("check all STOPPED", figures["select_status"], TARGET_FILTER, "s"),
        ("memory (RSS)", figures["rss_mb"], TARGET_RSS_MB, "MB"),
    ]
    missed = 0
    for label, value, target, unit in checks:
        ok = value <= target
        missed += not ok
        shown = f"{value * 1000:7.0f} ms" if unit == "s" else f"{value:7.0f} MB"
        limit = f"{target * 1000:.0f} ms" if unit == "s" else f"{target:.0f} MB"
        print(f"{label:20} {shown}   target < {limit}   {'ok' if ok else 'MISSED'}")
    reload_ms = figures["reload"] * 1000
    print(f"{'background reload':20} {reload_ms:7.0f} ms   (list_syncs in a worker, diff, repaint)")
    print(f"{'peak memory':20} {figures['rss_peak_mb']:7.0f} MB")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
