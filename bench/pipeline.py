"""End-to-end pipeline benchmark: issue changes on Acme until they are applied on Globex.

Two paired installations (`engine.demo.pair_installations`) exchange plain messages (file
protocol, encryption off) through a folder on the same disk. Each engine runs as its own process
(`backbone --home DIR run`), so the two sides use both cores; this process only makes the tracker
changes (as a user of Acme's tracker would) and reads the databases afterwards.

    python bench/pipeline.py                 # 2,000 changes: messages/s, latency, floor, ratio
    python bench/pipeline.py --backlog       # 20,000 messages queued for Globex: cost per chunk
    python bench/pipeline.py --quick         # both, small (300 changes, 2,000 backlog), ~45 s
    add --check to exit 1 when a target is missed (>= 300 messages/s, <= 3x the floor, flat backlog)

Figures:
- throughput: N changes / (last apply on Globex - first change on Acme).
- latency per message: apply time on Globex (its incoming row's `updated`, committed with the
  PROCESSED move) minus the tracker change time on Acme (the change-log time, which the message
  carries as each field's `at`); rows matched by message uuid.
- floor: in the same run and the same file system, N x (write + fsync + rename of a file of the
  mean message size) plus N separate SQLite commits (WAL, synchronous=NORMAL): the cost of the same
  durable work done once per message with nothing else.
- backlog: the cost per message of each consecutive chunk of applied messages; flat means no work
  grows with the queue or with what was processed before.

Other processes on the machine share the 2 cores: figures are noisy, run twice when in doubt.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine.demo import PRIMARY_PROJECT, Demo, pair_installations  # noqa: E402
from engine.tracker import EmbeddedTracker  # noqa: E402

TARGET_RATE = 300.0
TARGET_FLOOR_RATIO = 3.0
USER = "alice"


# -- helpers --------------------------------------------------------------------------------


def ts(value: str | datetime) -> float:
    """Seconds since the epoch for a stored timestamp (naive values are UTC)."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f} ms"


def read_db(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def count(db: Path, where: str) -> int:
    conn = read_db(db)
    try:
        return int(conn.execute(f"SELECT count(*) FROM message WHERE {where}").fetchone()[0])
    finally:
        conn.close()


def folder_counts(db: Path, direction: str) -> dict[str, int]:
    conn = read_db(db)
    try:
        rows = conn.execute(
            "SELECT folder, count(*) FROM message WHERE direction=? AND type='ISSUE' GROUP BY folder",
            (direction,),
        ).fetchall()
    finally:
        conn.close()
    return dict(rows)


class EngineProcess:
    """`backbone --home HOME run` in a child process (its own interpreter, its own core)."""

    def __init__(self, home: Path, log: Path) -> None:
        cmd = [sys.executable, "-m", "backbone_tui.cli", "--home", str(home), "run"]
        self.log = log
        self._out = log.open("w")
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "engine running" in self.log.read_text():
                return
            if self.proc.poll() is not None:
                raise SystemExit(f"engine exited early: {self.log.read_text()}")
            time.sleep(0.02)
        raise SystemExit(f"engine not ready after {timeout} s: {self.log.read_text()}")

    def cpu(self) -> float:
        """CPU seconds (user + system) the engine process used so far."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise SystemExit(
                f"engine {self.log.stem} exited ({self.proc.returncode}): {self.log.read_text()[-2000:]}"
            )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


@dataclass
class Setup:
    root: Path
    key: str
    acme_home: Path
    globex_home: Path
    acme_db: Path
    globex_db: Path
    engines: list[EngineProcess] = field(default_factory=list)

    def stop(self) -> None:
        for engine in self.engines:
            engine.stop()
        self.engines.clear()


def make_pair(root: Path) -> tuple[Demo, Setup]:
    demo = pair_installations(root, encryption=False)
    demo.globex.close()  # its engine runs in another process; we only read its database file
    return demo, Setup(
        root,
        demo.key,
        demo.acme.paths.root,
        demo.globex.paths.root,
        demo.acme.paths.database,
        demo.globex.paths.database,
    )


def create_issues(tracker: EmbeddedTracker, issues: int) -> list[str]:
    return [
        tracker.create_issue(PRIMARY_PROJECT, "Task", {"summary": f"bench issue {k}"}, as_user=USER)
        for k in range(issues)
    ]


def make_changes(tracker: EmbeddedTracker, ids: list[str], n: int, rate: float = 0.0) -> tuple[float, float]:
    """N summary updates spread round-robin over the issues: each becomes one message.

    The issues are created and synced before (a create detected together with later updates
    would carry their values and the updates would rightly send nothing)."""
    started = time.time()
    for i in range(n):
        if rate:
            delay = started + i / rate - time.time()
            if delay > 0:
                time.sleep(delay)
        k = i % len(ids)
        tracker.update_issue(ids[k], {"summary": f"bench issue {k} rev {i}"}, as_user=USER)
    return started, time.time()


# -- what the databases say -----------------------------------------------------------------


@dataclass
class Timeline:
    """Per message uuid: change on Acme, queued, sent, ingested and applied on Globex."""

    change: dict[str, float]
    queued: dict[str, float]
    sent: dict[str, float]
    ingested: dict[str, float]
    applied: dict[str, float]
    size: dict[str, int]


def change_time(payload: str) -> float | None:
    body = json.loads(payload).get("body", {})
    for item in list(body.get("fields", {}).values()) + [body.get("status")]:
        if isinstance(item, dict) and isinstance(item.get("at"), str):
            return ts(item["at"])
    return None


def timeline(setup: Setup) -> Timeline:
    t = Timeline({}, {}, {}, {}, {}, {})
    conn = read_db(setup.acme_db)
    try:
        for uuid, payload, created, updated, folder in conn.execute(
            "SELECT uuid, payload, created, updated, folder FROM message "
            "WHERE direction='out' AND type='ISSUE'"
        ):
            if json.loads(payload).get("body", {}).get("op") != "update":
                continue  # the warm-up creates are not measured
            t.queued[uuid] = ts(created)
            at = change_time(payload)
            t.change[uuid] = at if at is not None else ts(created)
            t.size[uuid] = len(payload.encode())
            if folder == "SENT":
                t.sent[uuid] = ts(updated)
    finally:
        conn.close()
    conn = read_db(setup.globex_db)
    try:
        for uuid, created, updated, folder in conn.execute(
            "SELECT uuid, created, updated, folder FROM message WHERE direction='in' AND type='ISSUE'"
        ):
            if uuid not in t.queued:
                continue
            t.ingested[uuid] = ts(created)
            if folder == "PROCESSED":
                t.applied[uuid] = ts(updated)
    finally:
        conn.close()
    return t


def check_result(setup: Setup, issues: int) -> str:
    """Globex holds the same issues with the same last summaries as Acme."""
    a, g = read_db(setup.acme_db), read_db(setup.globex_db)
    try:
        acme = dict(a.execute("SELECT id, summary FROM issue WHERE project='ACME'").fetchall())
        globex = sorted(row[0] for row in g.execute("SELECT summary FROM issue WHERE project='GLOBEX'"))
    finally:
        a.close()
        g.close()
    ok = sorted(acme.values()) == globex and len(globex) == issues
    return (
        f"{'OK' if ok else 'MISMATCH'} ({len(globex)} issues on Globex, last summaries "
        f"{'equal' if ok else 'differ'})"
    )


# -- the floor ------------------------------------------------------------------------------


def measure_floor(folder: Path, n: int, size: int) -> tuple[float, float]:
    """Seconds per message: file write+fsync+rename, and one SQLite commit (WAL, NORMAL)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = os.urandom(size // 2).hex().encode()[:size]
    started = time.perf_counter()
    for i in range(n):
        staging = folder / f".{i:08d}.part"
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        os.replace(staging, folder / f"{i:08d}.bac")
    dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(dfd)
    os.close(dfd)
    files = (time.perf_counter() - started) / n

    conn = sqlite3.connect(folder / "floor.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE message (id INTEGER PRIMARY KEY, uuid TEXT, folder TEXT, payload TEXT)")
    text = data.decode()
    started = time.perf_counter()
    for i in range(n):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO message (uuid, folder, payload) VALUES (?, ?, ?)", (str(i), "RECEIVE", text)
        )
        conn.execute("COMMIT")
    commits = (time.perf_counter() - started) / n
    conn.close()
    shutil.rmtree(folder, ignore_errors=True)
    return files, commits


# -- the two modes --------------------------------------------------------------------------


def wait_for(
    predicate: Callable[[], bool],
    timeout: float,
    engines: list[EngineProcess],
    what: str,
    progress: Callable[[], str] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        for engine in engines:
            engine.check()
        if time.monotonic() > deadline:
            detail = progress() if progress else ""
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what} {detail}")
        time.sleep(0.1)


APPLIED = "direction='in' AND type='ISSUE' AND folder='PROCESSED'"


def wait_applied(setup: Setup, total: int, timeout: float) -> None:
    wait_for(
        lambda: count(setup.globex_db, APPLIED) >= total,
        timeout,
        setup.engines,
        f"{total} applied issue messages on Globex",
        lambda: (
            f"(Globex in: {folder_counts(setup.globex_db, 'in')}, "
            f"Acme out: {folder_counts(setup.acme_db, 'out')})"
        ),
    )


def throughput(args: argparse.Namespace, root: Path) -> bool:
    n, issues = int(args.changes), max(1, min(int(args.issues), int(args.changes)))
    demo, setup = make_pair(root / "throughput")
    try:
        acme_engine = EngineProcess(setup.acme_home, root / "acme-run.log")
        globex_engine = EngineProcess(setup.globex_home, root / "globex-run.log")
        setup.engines += [acme_engine, globex_engine]
        acme_engine.wait_ready()
        globex_engine.wait_ready()
        ids = create_issues(demo.acme.tracker, issues)
        wait_applied(setup, issues, args.timeout)  # warm-up, not measured

        paced = f"paced at {args.rate:.0f}/s" if args.rate else "as fast as the tracker takes them"
        print(
            f"throughput: {n} summary updates on Acme over {issues} synced issues, {paced}; "
            "both engines running (`backbone run`, one process each)"
        )
        cpu0 = (acme_engine.cpu(), globex_engine.cpu(), time.process_time())
        first, last_change = make_changes(demo.acme.tracker, ids, n, args.rate)
        cpu_changes = time.process_time() - cpu0[2]
        wait_applied(setup, issues + n, args.timeout)
        cpu_acme, cpu_globex = acme_engine.cpu() - cpu0[0], globex_engine.cpu() - cpu0[1]
        setup.stop()
        demo.acme.close()

        t = timeline(setup)
        uuids = [u for u in t.applied if u in t.change]
        end = max(t.applied.values())
        elapsed = end - first
        rate = n / elapsed
        mean_size = round(statistics.mean(t.size.values()))
        files, commits = measure_floor(root / "floor", n, mean_size)
        floor = files + commits
        per_message = elapsed / n
        ratio = per_message / floor

        def since_change(times: dict[str, float]) -> str:
            gaps = [times[u] - t.change[u] for u in uuids if u in times]
            return (
                f"p50 {ms(pct(gaps, 50))}  p95 {ms(pct(gaps, 95))}   last at "
                f"{max(times.values()) - first:6.2f} s"
            )

        making = last_change - first
        print(f"  messages              {len(uuids)} applied of {n}; {check_result(setup, issues)}")
        print(
            f"  changes made in       {making:8.2f} s  ({n / making:.0f}/s; this process, "
            f"{cpu_changes / n * 1000:.2f} ms CPU each)"
        )
        print(f"  last applied after    {elapsed:8.2f} s  (from the first change)")
        print(f"  throughput            {rate:8.0f} messages/s   (target >= {TARGET_RATE:.0f})")
        print(
            f"  latency change->apply p50 {ms(pct([t.applied[u] - t.change[u] for u in uuids], 50))}"
            f"  p95 {ms(pct([t.applied[u] - t.change[u] for u in uuids], 95))}"
            "   (from the change-log time on Acme to PROCESSED on Globex)"
        )
        print("  since the change      (a burst queues: these are mostly waiting times)")
        print(f"    queued on Acme      {since_change(t.queued)}")
        print(f"    recorded SENT       {since_change(t.sent)}")
        print(f"    ingested by Globex  {since_change(t.ingested)}")
        print(f"    applied on Globex   {since_change(t.applied)}")
        print(
            f"  engine CPU            Acme {cpu_acme / n * 1000:.2f} ms/message, Globex "
            f"{cpu_globex / n * 1000:.2f} ms/message"
        )
        print(
            f"  floor                 {ms(floor)} per message = write+fsync+rename {ms(files).strip()}"
            f" + SQLite commit {ms(commits).strip()} ({n} of each, {mean_size} B) -> {1 / floor:.0f}/s"
        )
        print(f"  end to end            {ms(per_message)} per message")
        print(f"  ratio to floor        {ratio:8.2f} x   (target <= {TARGET_FLOOR_RATIO:.0f})")
        if end - last_change < 0.1 * elapsed:
            print("  note                  the pipeline kept up with the changes: making them was the limit")
        ok = bool(rate >= TARGET_RATE and ratio <= TARGET_FLOOR_RATIO)
        print(f"  result                {'PASS' if ok else 'BELOW TARGET'}")
        return ok
    finally:
        setup.stop()
        demo.acme.close()


def backlog(args: argparse.Namespace, root: Path) -> bool:
    n, issues = int(args.backlog_size), max(1, min(int(args.issues), int(args.backlog_size)))
    chunk = min(args.chunk, max(1, n // 4))
    demo, setup = make_pair(root / "backlog")
    try:
        acme_engine = EngineProcess(setup.acme_home, root / "acme-run.log")
        globex_engine = EngineProcess(setup.globex_home, root / "globex-run-0.log")
        setup.engines += [acme_engine, globex_engine]
        acme_engine.wait_ready()
        globex_engine.wait_ready()
        ids = create_issues(demo.acme.tracker, issues)
        wait_applied(setup, issues, args.timeout)  # warm-up, not measured
        globex_engine.stop()
        setup.engines.remove(globex_engine)

        print(
            f"backlog: {n} summary updates over {issues} synced issues, detected and sent by Acme "
            "while Globex's engine is stopped; then `backbone run` for Globex"
        )
        started = time.monotonic()
        make_changes(demo.acme.tracker, ids, n)
        made = time.monotonic() - started
        sent = "direction='out' AND type='ISSUE' AND folder='SENT'"
        wait_for(
            lambda: count(setup.acme_db, sent) >= issues + n,
            args.timeout,
            setup.engines,
            f"{n} messages sent by Acme",
            lambda: f"(Acme out: {folder_counts(setup.acme_db, 'out')})",
        )
        sent_in = time.monotonic() - started
        setup.stop()
        demo.acme.close()
        exchange = setup.root / "exchange" / "globex" / "RECEIVE"
        queued = sum(1 for name in os.listdir(exchange) if not name.startswith("."))
        print(
            f"  queued                {n} messages in {queued} files in Globex's exchange RECEIVE "
            f"(changes made in {made:.1f} s, all sent after {sent_in:.1f} s)"
        )

        t0 = time.time()
        globex_engine = EngineProcess(setup.globex_home, root / "globex-run.log")
        setup.engines.append(globex_engine)
        globex_engine.wait_ready()
        cpu0 = globex_engine.cpu()
        samples: list[tuple[int, float]] = []  # (applied so far, engine CPU seconds)

        def drained() -> bool:
            samples.append((count(setup.globex_db, APPLIED) - issues, globex_engine.cpu() - cpu0))
            return samples[-1][0] >= n

        wait_for(drained, args.timeout, setup.engines, f"{n} applied messages on Globex")
        cpu = samples[-1][1]
        setup.stop()

        t = timeline(setup)
        applied = sorted(t.applied.values())
        ingested = sorted(t.ingested.values())
        total = applied[-1] - t0
        print(
            f"  drained in            {total:8.2f} s from the engine start ({n / total:.0f} messages/s, "
            f"{cpu / n * 1000:.2f} ms CPU each); {check_result(setup, issues)}"
        )
        print(f"  all ingested after    {ingested[-1] - t0:8.2f} s")
        print(
            f"  per-message cost of each chunk of {chunk}: wall time since the previous chunk's last "
            "message / chunk size;\n  CPU = Globex engine CPU / messages applied in the chunk "
            "(ingest included while it runs)"
        )
        print(f"    {'chunk':>5}  {'messages':>13}  {'ingest':>11}  {'apply':>11}  {'CPU':>11}")
        costs: dict[str, list[float]] = {"ingest": [], "apply": [], "cpu": []}
        previous = samples[0]
        for index, start in enumerate(range(0, n, chunk)):
            stop = min(n, start + chunk) - 1
            row = []
            for name, times in (("ingest", ingested), ("apply", applied)):
                begin = times[start - 1] if start else times[0]
                cost = (times[stop] - begin) / max(1, stop - start + (1 if start else 0))
                costs[name].append(cost)
                row.append(ms(cost).rjust(11))
            sample = next(x for x in samples if x[0] >= stop + 1)
            cost = (sample[1] - previous[1]) / max(1, sample[0] - previous[0])
            previous = sample
            costs["cpu"].append(cost)
            row.append(ms(cost).rjust(11))
            print(f"    {index + 1:>5}  {start + 1:>6}-{stop + 1:<6}  {'  '.join(row)}")
        c, i, u = costs["apply"], costs["ingest"], costs["cpu"]
        ratio = c[-1] / c[0]
        print(f"  apply  last/first chunk {ratio:5.2f}   max/min {max(c) / min(c):5.2f}")
        print(f"  ingest last/first chunk {i[-1] / i[0]:5.2f}   max/min {max(i) / min(i):5.2f}")
        print(f"  CPU    last/first chunk {u[-1] / u[0]:5.2f}   max/min {max(u) / min(u):5.2f}")
        ok = ratio <= 1.5
        print(f"  result                {'FLAT' if ok else 'GROWS'} (apply last/first <= 1.5)")
        return ok
    finally:
        setup.stop()
        demo.acme.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--changes", type=int, default=2000, help="changes for the throughput run")
    parser.add_argument("--issues", type=int, default=200, help="issues created first (the rest updates)")
    parser.add_argument("--rate", type=float, default=0.0, help="pace changes at this many per second")
    parser.add_argument("--backlog", action="store_true", help="run the backlog mode (only)")
    parser.add_argument("--backlog-size", type=int, default=20000)
    parser.add_argument("--chunk", type=int, default=2000, help="backlog chunk size")
    parser.add_argument(
        "--quick", action="store_true", help="small run of both modes: 300 changes, 2,000 backlog"
    )
    parser.add_argument("--dir", type=Path, help="work folder (default: a temporary one, deleted)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for each phase")
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1 when a target is missed (else 0 whenever the run completes)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.changes, args.backlog_size, args.chunk = 300, 2000, 250

    root = args.dir.absolute() if args.dir else Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    root.mkdir(parents=True, exist_ok=True)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"bench/pipeline.py: file protocol, encryption off, {os.cpu_count()} cores, load average "
        f"{load} before the run (other work on the machine makes figures noisy); work folder {root}"
    )
    ok = True
    try:
        if args.quick or not args.backlog:
            ok = throughput(args, root) and ok
        if args.quick or args.backlog:
            ok = backlog(args, root) and ok
    finally:
        if not args.keep and not args.dir:
            shutil.rmtree(root, ignore_errors=True)
        elif args.keep or args.dir:
            print(f"kept {root}")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    with suppress(KeyboardInterrupt):
        sys.exit(main())
