"""Crash tests (RELIABILITY rule 12; G2, G3, G4, G8): kill the engine anywhere, start it again,
and judge the result with the ledger check: 0 lost, 0 duplicated, per-issue order kept, every
message's row naming the folder its file is in.

- Random SIGKILLs of a real `backbone run` subprocess, on the receiving side (Globex) and on the
  sending side (Acme, while a user keeps editing). The seed is fixed; set
  `BACKBONE_CRASH_SEED` to try others.
- Named crash points enumerated in a loop, in process: the n-th durable step (a file rename or
  write, a commit: just before or just after it) raises; after each crash a fresh installation
  runs to the end. `CRASH_POINTS` of the n are tried, spread evenly from a seeded offset
  (`BACKBONE_CRASH_POINTS=0` tries every one).
"""

from __future__ import annotations

import json
import os
import random
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from engine.pipeline import core as P
from engine.runtime.demo import pair_installations
from engine.runtime.engine import Engine
from engine.service.installation import Installation
from engine.store import fsutil
from engine.store.database import Database
from engine.store.models import Message
from engine.trackers.embedded import EmbeddedTracker
from engine.vocab import Folder

from . import ledger
from .conftest import sync_all
from .ledger import Stream, build_stream, one_message_per_file  # noqa: F401  (autouse)

SEED = int(os.environ.get("BACKBONE_CRASH_SEED", "20261123"))
KILLS = 12
# named crash points tried per scenario, spread over all of them; 0 tries every one (slow)
CRASH_POINTS = int(os.environ.get("BACKBONE_CRASH_POINTS", "20"))
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


# -- a real `backbone run`, killed -----------------------------------------------------------------


def _cmd(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "backbone_tui.cli", "--home", str(home), *args]


@dataclass
class Killer:
    """Starts `backbone run` on one home and SIGKILLs it; remembers what it saw."""

    home: Path
    log: Path
    kills: int = 0
    early_exits: list[str] = field(default_factory=list)

    @contextmanager
    def running(self) -> Iterator[subprocess.Popen[str]]:
        """`backbone run` for the duration of the block, SIGKILLed at its end (whatever happens)."""
        with self.log.open("a") as err:
            proc = subprocess.Popen(
                _cmd(self.home, "run"), stdout=subprocess.PIPE, stderr=err, text=True, env=ENV
            )
        try:
            yield proc
        finally:
            self.kill(proc)

    def wait_ready(self, proc: subprocess.Popen[str], timeout: float = 60.0) -> None:
        """Until the engine has taken the lock, reconciled and started its workers."""
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline() if ready else ""
        assert "engine running" in line, f"{line!r} {self.log.read_text()[-2000:]}"

    def kill(self, proc: subprocess.Popen[str]) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            self.kills += 1
        else:
            self.early_exits.append(f"exit {proc.returncode}: {self.log.read_text()[-2000:]}")
        proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()


def _run_once(home: Path) -> int:
    done = subprocess.run(_cmd(home, "run", "--once"), capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    found = re.search(r"done: (\d+) step", done.stdout)
    assert found, done.stdout
    return int(found.group(1))


def _drain(*homes: Path) -> None:
    """`run --once` on every home in turn until none of them finds work."""
    for _ in range(10):
        if sum(_run_once(home) for home in homes) == 0:
            return
    raise AssertionError("the engines still find work after 10 passes")


class Changes:
    """Random user edits on Acme: issues (some sub-tasks), field updates, transitions, comments,
    attachments and links, every comment and attachment distinct so that a copy would show."""

    STATUSES = ("To Do", "In Progress", "In Review", "Done")
    FIELDS: dict[str, Callable[[random.Random, int], Any]] = {
        "summary": lambda r, n: f"summary {n}",
        "description": lambda r, n: f"description {n}\n" * r.randint(1, 3),
        "priority": lambda r, n: r.choice(("Highest", "High", "Medium", "Low", "Lowest")),
        "labels": lambda r, n: sorted(r.sample(("ui", "api", "db", "ops", "docs"), r.randint(0, 3))),
        "Customer": lambda r, n: r.choice(("Initech", "Initrode", "Umbrella", None)),
        "Severity": lambda r, n: r.choice(("Critical", "Major", "Minor")),
        "due_date": lambda r, n: f"2027-0{r.randint(1, 9)}-1{r.randint(0, 9)}",
    }

    def __init__(self, tracker: EmbeddedTracker, rng: random.Random) -> None:
        self.t = tracker
        self.rng = rng
        self.issues: list[str] = []
        self.parents: list[str] = []
        self.made = 0

    def create(self) -> None:
        r, n = self.rng, self.made
        if self.parents and r.random() < 0.2:
            issue = self.t.create_issue(
                "ACME",
                "Sub-task",
                {"summary": f"sub-task {n}"},
                as_user="alice",
                parent_id=r.choice(self.parents),
            )
        else:
            fields = {name: make(r, n) for name, make in self.FIELDS.items() if r.random() < 0.5}
            fields["summary"] = f"issue {n}"
            issue = self.t.create_issue(
                "ACME", r.choice(("Bug", "Task", "Story")), fields, as_user=r.choice(("alice", "bob"))
            )
            self.parents.append(issue)
        self.issues.append(issue)
        self.made += 1

    def step(self) -> None:
        """One random change (a create while there are few issues)."""
        r, n = self.rng, self.made
        if len(self.issues) < 3 or r.random() < 0.2:
            self.create()
            return
        issue = r.choice(self.issues)
        pick = r.random()
        if pick < 0.35:
            self.t.add_comment(issue, f"comment {n} " + "x" * r.randint(0, 200), as_user="bob")
        elif pick < 0.6:
            names = r.sample(sorted(self.FIELDS), r.randint(1, 3))
            self.t.update_issue(issue, {name: self.FIELDS[name](r, n) for name in names}, as_user="carol")
        elif pick < 0.75:
            self.t.transition(issue, r.choice(self.STATUSES), as_user="alice")
        elif pick < 0.92:
            content = r.randbytes(r.randint(1, 4000))
            self.t.add_attachment(issue, f"file-{n}.bin", content, as_user="alice")
        else:
            other = r.choice(self.issues)
            if other != issue:
                self.t.add_link(issue, other, r.choice(("relates", "blocks")), as_user="bob")
        self.made += 1


def _receiving_problems(
    globex: Installation, key: str, expected: dict[str, dict[str, Any]], sent: dict[str, str]
) -> list[str]:
    """The ledger check of the receiving side once everything was delivered and ran to the end:
    its tracker equals `expected` (state by pair), every message of `sent` (uuid -> pair) was
    PROCESSED exactly once and in seq order, every other copy is an OUTDATED duplicate, nothing
    waits, and every file is where its row says."""
    problems: list[str] = []
    state = ledger.shared_state(globex, key, "GLOBEX")
    for pair_id in sorted(set(state) | set(expected)):
        if state.get(pair_id) != expected.get(pair_id):
            problems.append(
                f"issue pair {pair_id[:8]}: {state.get(pair_id)} instead of {expected.get(pair_id)}"
            )
    problems += ledger.folder_problems(globex, key)
    problems += ledger.order_problems(globex, key, "in")
    left = ledger.pending(globex, key)
    if left:
        problems.append(f"left in {dict(left)}")
    incoming = [r for r in ledger.rows(globex, key) if r.direction == "in" and r.type == "ISSUE"]
    processed = Counter(r.uuid for r in incoming if r.folder == Folder.PROCESSED)
    wanted = Counter(list(sent))
    if processed != wanted:
        problems.append(f"lost {len(wanted - processed)}, applied twice or unknown {len(processed - wanted)}")
    problems += [
        f"seq {r.seq} of {r.pair_id}: {r.folder}/{r.reason_code}"
        for r in incoming
        if r.folder == Folder.OUTDATED and r.reason_code != "DUPLICATE"
    ]
    return problems


def _judge(acme_home: Path, globex_home: Path, key: str, why: str) -> int:
    """The ledger check on both homes after everything ran to the end; returns how many issue
    messages Acme sent."""
    acme, globex = Installation(acme_home), Installation(globex_home)
    try:
        acme_state = ledger.shared_state(acme, key, "ACME")
        assert not [name for name in acme_state if name.startswith("local:")], why
        assert ledger.folder_problems(acme, key) == [], why
        assert ledger.pending(acme, key) == Counter(), why
        assert ledger.order_problems(acme, key, "out") == [], why
        sent = {
            r.uuid: r.pair_id or ""
            for r in ledger.rows(acme, key)
            if r.direction == "out" and r.type == "ISSUE"
        }
        assert _receiving_problems(globex, key, acme_state, sent) == [], why
        assert not [r for r in ledger.rows(globex, key) if r.direction == "out" and r.type == "ISSUE"]
        return len(sent)
    finally:
        acme.close()
        globex.close()


def _acked(inst: Installation, message_id: int) -> bool:
    with inst.db.session() as s:
        row = s.get(Message, message_id)
    return row is not None and row.acked


def _exchange_files(root: Path) -> list[str]:
    """What is left in the exchange folder (Acme's SEND, Globex's RECEIVE)."""
    return sorted(os.listdir(root / "exchange" / "acme" / "SEND"))


def test_receiver_killed_at_random_points_converges(tmp_path: Path) -> None:
    """SIGKILL Globex's `backbone run` at random points while ~150 changes arrive; then run to
    the end: every Acme issue exists once on Globex with the same fields, comments and
    attachments, each message applied exactly once and in order (G4, G5, G8)."""
    rng = random.Random(SEED)
    demo = pair_installations(tmp_path / "d", encryption=False)
    sync_all(demo)
    key, root = demo.key, demo.root
    demo.globex.change_settings(key, {"ack_interval": "0"})  # acknowledgements go out while it is killed
    acme_home, globex_home = demo.acme.paths.root, demo.globex.paths.root
    changes = Changes(demo.acme.tracker, rng)
    for _ in range(30):
        changes.create()
    for n in range(140):
        changes.step()
        if n % 10 == 9:  # separate detections, so that updates travel as their own messages
            Engine(demo.acme).run_once()
    Engine(demo.acme).run_once()
    demo.close()
    exchange = root / "exchange" / "acme" / "SEND"
    stash = tmp_path / "stash"
    stash.mkdir()
    names = sorted(os.listdir(exchange))
    total = len(names)
    assert total >= 140
    for name in names:
        os.replace(exchange / name, stash / name)

    def deliver(count: int) -> None:
        for _ in range(count):
            if names:
                name = names.pop(0)
                os.replace(stash / name, exchange / name)

    killer = Killer(globex_home, tmp_path / "globex-run.log")
    for _ in range(KILLS):
        deliver(rng.randint(5, 20))
        with killer.running() as proc:
            if rng.random() < 0.25:
                time.sleep(rng.uniform(0.2, 1.0))  # perhaps while it starts and reconciles
            else:
                killer.wait_ready(proc)
                deliver(rng.randint(5, 20))  # arriving while it runs
                time.sleep(rng.uniform(0.0, 0.3))
    assert killer.early_exits == []
    assert killer.kills == KILLS
    deliver(len(names))
    _drain(globex_home, acme_home)
    sent = _judge(acme_home, globex_home, key, f"seed {SEED}")
    assert sent == total  # plain messages: one file each
    assert _exchange_files(root) == []
    acme = Installation(acme_home)
    try:  # every message Globex applied was acknowledged once, despite the kills
        sent_rows = [r for r in ledger.rows(acme, key) if r.direction == "out" and r.type == "ISSUE"]
        unacked = [r for r in sent_rows if not _acked(acme, r.id)]
        assert unacked == [], f"seed {SEED}: {len(unacked)} sent message(s) never acknowledged"
    finally:
        acme.close()


def test_sender_killed_at_random_points_sends_each_change_once(tmp_path: Path) -> None:
    """SIGKILL Acme's `backbone run` at random points while a user keeps editing (G2, G3):
    every committed change travels; each comment, attachment and issue exactly once; and
    Globex, run afterwards, converges to Acme's state."""
    rng = random.Random(SEED + 1)
    demo = pair_installations(tmp_path / "d", encryption=False)
    sync_all(demo)
    key, root = demo.key, demo.root
    acme_home, globex_home = demo.acme.paths.root, demo.globex.paths.root
    demo.close()
    user = Installation(acme_home)  # a second process would do the same; it takes no lock
    changes = Changes(user.tracker, rng)
    killer = Killer(acme_home, tmp_path / "acme-run.log")
    try:
        for _ in range(KILLS):
            with killer.running() as proc:
                if rng.random() < 0.75:
                    killer.wait_ready(proc)
                for _ in range(rng.randint(6, 16)):  # a user edits while the engine runs
                    changes.step()
                    time.sleep(rng.uniform(0.0, 0.03))
                time.sleep(rng.uniform(0.0, 0.3))
    finally:
        user.close()
    assert killer.early_exits == []
    assert killer.kills == KILLS
    assert changes.made >= 100
    _drain(acme_home)
    _drain(globex_home, acme_home)
    _judge(acme_home, globex_home, key, f"seed {SEED + 1}")
    assert _exchange_files(root) == []
    # G2 in detail: each issue announced once, each comment and attachment sent once
    acme = Installation(acme_home)
    try:
        pairs = {
            issue_id: pair_id
            for pair_id, sides in acme.issue_pairs(key).items()
            for issue_id in sides.values()
            if issue_id
        }
        expected: Counter[tuple[str, ...]] = Counter()
        for brief in acme.tracker.list_issues("ACME"):
            issue = acme.tracker.read_issue(brief.id)
            assert issue is not None
            pair_id = pairs[issue.id]
            expected[(pair_id, "create")] += 1
            for c in issue.comments:
                expected[(pair_id, "comment", c.author, c.body)] += 1
            for a in issue.attachments:
                expected[(pair_id, "attachment", a.filename, str(a.size))] += 1
        sent: Counter[tuple[str, ...]] = Counter()
        for row in ledger.rows(acme, key):
            if row.direction != "out" or row.type != "ISSUE":
                continue
            op = row.body["op"]
            if op == "create":
                sent[(row.pair_id or "", "create")] += 1
            elif op == "comment":
                c = row.body["comment"]
                sent[(row.pair_id or "", "comment", c["author"], c["body"])] += 1
            elif op == "attachment":
                a = row.body["attachment"]
                sent[(row.pair_id or "", "attachment", a["name"], str(a["size"]))] += 1
        assert sent == expected
    finally:
        acme.close()


# -- named crash points, in process -----------------------------------------------------------------


class Crash(BaseException):
    """What a SIGKILL at this point would do: nothing after it runs (not even `except Exception`)."""


class CrashPoints:
    """Counts durable steps: file renames and writes (before each), commits (just before and
    just after each); raises `Crash` at step number `at` and at every step after it (a killed
    process runs no `finally` either)."""

    def __init__(self, at: int | None) -> None:
        self.at = at
        self.count = 0
        self.where = ""

    def tick(self, what: str) -> None:
        self.count += 1
        if self.at is not None and self.count >= self.at:
            self.where = self.where or what
            raise Crash(what)

    @contextmanager
    def installed(self) -> Iterator[CrashPoints]:
        move, write_atomic, db_write = fsutil.move, fsutil.write_atomic, Database.write

        def crashing_move(source: Path, target: Path) -> None:
            self.tick(f"rename {source.parent.name}/ -> {target.parent.name}/")
            move(source, target)

        def crashing_write(target: Path, data: bytes, **options: Any) -> None:
            self.tick(f"write into {target.parent.name}/")
            write_atomic(target, data, **options)

        @contextmanager
        def crashing_commit(db: Database, **options: Any) -> Iterator[Any]:
            with db_write(db, **options) as session:
                yield session
                self.tick("before a commit")
            self.tick("after a commit")

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(fsutil, "move", crashing_move)
            mp.setattr(fsutil, "write_atomic", crashing_write)
            mp.setattr(Database, "write", crashing_commit)
            yield self


def _run_crashing(inst: Installation, at: int | None) -> tuple[bool, str]:
    points = CrashPoints(at)
    with points.installed():
        try:
            Engine(inst).run_once()
        except Crash:
            return True, points.where
    return False, f"no crash: {points.count} steps"  # (the count is read by the callers)


@pytest.fixture(scope="module")
def crash_stream(tmp_path_factory: pytest.TempPathFactory) -> Stream:
    return build_stream(tmp_path_factory.mktemp("crashpoints"))


def _steps_to_crash(total: int, rng: random.Random) -> list[int]:
    """Every step, or `CRASH_POINTS` of them evenly spread from a seeded offset."""
    if CRASH_POINTS <= 0 or total <= CRASH_POINTS:
        return list(range(1, total + 1))
    stride = total / CRASH_POINTS
    offset = rng.uniform(0, stride)
    return sorted({1 + int(offset + i * stride) for i in range(CRASH_POINTS)})


def _crash_every_step(stream: Stream, order: list[int]) -> tuple[int, list[str]]:
    """Crash Globex at step 1, 2, ... of taking in and applying the stream; after each crash a
    fresh installation runs to the end and is judged. Returns (steps, failures)."""
    sent = {m.uuid: m.pair for m in stream.messages}
    globex = stream.restore()
    stream.deliver(order, "00")
    crashed, where = _run_crashing(globex, None)
    total = int(where.split()[2])
    globex.close()
    failures: list[str] = []
    for at in _steps_to_crash(total, random.Random(SEED + total)):
        globex = stream.restore()
        stream.deliver(order, "00")
        crashed, where = _run_crashing(globex, at)
        globex.close()
        assert crashed, where
        globex = Installation(stream.root / "globex")
        try:
            Engine(globex).run_once()
            problems = _receiving_problems(globex, stream.key, stream.reference, sent)
        finally:
            globex.close()
        if problems:
            failures.append(f"crash at step {at} of {total} ({where}): {'; '.join(problems)}")
    return total, failures


@pytest.mark.parametrize("order", ["in_order", "reversed"])
def test_receiver_crash_at_every_step_then_restart(crash_stream: Stream, order: str) -> None:
    """G4/G5/G8: a crash at each durable step of ingesting and applying the stream, delivered
    in order or reversed (then releases from WAITING and MISSING are on the path too)."""
    indexes = list(range(len(crash_stream.messages)))
    if order == "reversed":
        indexes.reverse()
    steps, failures = _crash_every_step(crash_stream, indexes)
    assert steps > 100
    assert failures == []


def test_crash_after_the_gap_closes_still_applies_the_waiting_message(
    crash_stream: Stream,
) -> None:
    """Minimal: seq 2 waits; seq 1 arrives and commits; the engine dies before it applies the
    released seq 2. After a restart seq 2 must still be applied (G5, G8)."""
    by_pair: dict[str, list[int]] = defaultdict(list)
    for i, m in enumerate(crash_stream.messages):
        by_pair[m.pair].append(i)
    first, second = next(
        ix for ix in by_pair.values() if len(ix) >= 2 and crash_stream.messages[ix[0]].needs is None
    )[:2]
    target = crash_stream.messages[second]
    globex = crash_stream.restore()
    try:
        crash_stream.deliver([second], "00")
        Engine(globex).run_once()
        crash_stream.deliver([first], "01")
        apply = P._Applier.apply

        def dies_before_seq_2(self: Any) -> None:
            if self.env.id == target.uuid:
                raise Crash("killed before applying the released message")
            apply(self)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(P._Applier, "apply", dies_before_seq_2)
            with pytest.raises(Crash):
                Engine(globex).run_once()
    finally:
        globex.close()
    globex = Installation(crash_stream.root / "globex")
    try:
        Engine(globex).run_once()
        rows = [
            r
            for r in ledger.rows(globex, crash_stream.key)
            if r.direction == "in" and r.pair_id == target.pair
        ]
        assert [(r.seq, r.folder) for r in rows] == [(2, Folder.PROCESSED), (1, Folder.PROCESSED)]
    finally:
        globex.close()


def test_orphans_of_a_killed_ingest_are_refiled_in_arrival_order(crash_stream: Stream) -> None:
    """Ingest renames a scan's files first and commits their rows once at the end; killed in
    between, every file of the scan is an orphan that reconcile files again at the next start.
    They must keep their arrival order (else later seqs overtake earlier ones: they detour
    through WAITING, and a copy's original name is lost anyway)."""
    n = len(crash_stream.messages)
    globex = crash_stream.restore()
    try:
        crash_stream.deliver(list(range(n)), "00")
        crashed, where = _run_crashing(globex, n + 1)  # all n renamed, the rows' commit not done
        assert (crashed, where) == (True, "before a commit")
    finally:
        globex.close()
    globex = Installation(crash_stream.root / "globex")
    try:
        Engine(globex).reconcile()
        index_of = {m.uuid: i for i, m in enumerate(crash_stream.messages)}
        refiled = [
            index_of[r.uuid]
            for r in ledger.rows(globex, crash_stream.key)
            if r.direction == "in" and r.type == "ISSUE"
        ]
        assert sorted(refiled) == list(range(n))
        assert refiled == list(range(n))
    finally:
        globex.close()


def test_restart_removes_the_senders_unfinished_exchange_file(paired: Any) -> None:
    """Killed between writing the staging file in the exchange and renaming it: the message is
    sent again at the next start (G3), and the unfinished file must not stay there for good
    (RELIABILITY rule 1; the partner skips it, nobody else removes it)."""
    demo = paired
    demo.acme.tracker.create_issue("ACME", "Task", {"summary": "staged"}, as_user="alice")
    exchange = demo.root / "exchange" / "acme" / "SEND"
    write_atomic = fsutil.write_atomic

    def killed_mid_write(target: Path, data: bytes, **options: Any) -> None:
        if target.parent == exchange:
            (target.parent / fsutil.stage_name(target.name)).write_bytes(data[: len(data) // 2])
            raise Crash("killed before the rename")
        write_atomic(target, data, **options)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fsutil, "write_atomic", killed_mid_write)
        with pytest.raises(Crash):
            Engine(demo.acme).run_once()
    Engine(demo.acme).run_once()
    left = sorted(os.listdir(exchange))
    assert len([n for n in left if n.endswith(".bac")]) == 1  # sent again after the restart
    assert [n for n in left if n.endswith(".part")] == []


def test_sender_crash_at_every_step_then_restart(tmp_path: Path) -> None:
    """G2/G3: Acme detects and sends a backlog of changes; a crash at each durable step, then a
    restart: the same messages (ids aside) as without a crash, each once, all handed to the
    exchange, every file where its row says."""
    demo = pair_installations(tmp_path / "d", encryption=False)
    sync_all(demo)
    key, root = demo.key, demo.root
    exchange = root / "exchange" / "acme" / "SEND"
    runs = iter([True, True])  # the first phases are sent; the rest is the backlog
    ledger.make_changes(demo.acme, lambda: next(runs, False) and Engine(demo.acme).run_once())
    earlier = {r.uuid for r in ledger.rows(demo.acme, key)}
    home = demo.acme.paths.root
    demo.close()
    template = tmp_path / "acme-template"
    shutil.copytree(home, template, symlinks=True)

    def restore() -> Installation:
        shutil.rmtree(home)
        shutil.copytree(template, home, symlinks=True)
        for name in os.listdir(exchange):
            os.unlink(exchange / name)
        return Installation(home)

    def outcome(acme: Installation) -> tuple[list[tuple[Any, ...]], list[str]]:
        rows = [r for r in ledger.rows(acme, key) if r.uuid not in earlier]
        problems = ledger.folder_problems(acme, key) + ledger.order_problems(acme, key, "out")
        problems += [f"seq {r.seq} of {r.pair_id} in {r.folder}" for r in rows if r.folder != Folder.SENT]
        handed = sorted(os.listdir(exchange))
        if handed != sorted(r.file_name for r in rows):
            problems.append(f"the exchange holds {len(handed)} files for {len(rows)} messages")
        for r in rows:
            path = exchange / r.file_name
            if path.exists() and json.loads(path.read_bytes())["id"] != r.uuid:
                problems.append(f"{r.file_name} holds another message")
        messages = sorted((r.pair_id, r.seq, json.dumps(r.body, sort_keys=True)) for r in rows)
        return messages, problems

    acme = restore()
    crashed, where = _run_crashing(acme, None)
    baseline, problems = outcome(acme)
    acme.close()
    assert problems == [] and len(baseline) >= 10
    total = int(where.split()[2])
    failures = []
    for at in _steps_to_crash(total, random.Random(SEED + total)):
        acme = restore()
        crashed, where = _run_crashing(acme, at)
        acme.close()
        assert crashed, where
        acme = Installation(home)
        try:
            Engine(acme).run_once()
            messages, problems = outcome(acme)
        finally:
            acme.close()
        if messages != baseline:
            problems.append(f"{len(messages)} messages instead of the {len(baseline)} expected")
        if problems:
            failures.append(f"crash at step {at} of {total} ({where}): {'; '.join(problems)}")
    assert total > 30
    assert failures == []


# -- a configuration published, bound and acknowledged while both engines are killed -------------


def _bind_through_the_cli(home: Path, key: str, work: Path) -> bool:
    """What Globex's admin does beside its running engine: bind the owner and publish (--start).
    False while nothing is pending yet."""
    from .test_config_authority import BOUND_OWNER, UNBOUND_OWNER

    shown = subprocess.run(
        _cmd(home, "config", "incoming", key, "--json"), capture_output=True, text=True, env=ENV, timeout=120
    )
    assert shown.returncode == 0, shown.stderr
    if json.loads(shown.stdout) is None:
        return False
    template = subprocess.run(
        _cmd(home, "config", "export", key), capture_output=True, text=True, env=ENV, timeout=120
    ).stdout
    binding = work / "bind.toml"
    binding.write_text(template.replace(UNBOUND_OWNER, BOUND_OWNER))
    for args in (("config", "import", key, str(binding)), ("config", "publish", key, "--start")):
        done = subprocess.run(_cmd(home, *args), capture_output=True, text=True, env=ENV, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
    return True


def test_a_publish_and_its_ack_survive_sigkills_of_both_engines(tmp_path: Path) -> None:
    """SIGKILL both sides' `backbone run` at random points while version 2 travels, is bound
    through the CLI beside the running engine and acknowledged, and a user keeps editing: both
    sides end with version 2 in force and running, nothing rejected, every change applied once
    and in order (the ledger check)."""
    from .test_config_authority import OWNER

    rng = random.Random(SEED + 2)
    demo = pair_installations(tmp_path / "d", encryption=False)
    sync_all(demo)
    key = demo.key
    acme_home, globex_home = demo.acme.paths.root, demo.globex.paths.root
    demo.close()
    user = Installation(acme_home)
    changes = Changes(user.tracker, rng)
    for _ in range(5):
        changes.create()
    user.config_import_text(key, user.config_export(key) + OWNER, "v2.toml")
    user.publish_config(key, "Owners are shared too", start=True)
    acme_killer = Killer(acme_home, tmp_path / "acme-run.log")
    globex_killer = Killer(globex_home, tmp_path / "globex-run.log")
    bound = False
    try:
        for _ in range(6):
            with acme_killer.running() as acme_run, globex_killer.running() as globex_run:
                if rng.random() < 0.7:
                    acme_killer.wait_ready(acme_run)
                    globex_killer.wait_ready(globex_run)
                for _ in range(rng.randint(3, 8)):  # edits made while the version is pending
                    changes.step()
                    time.sleep(rng.uniform(0.0, 0.05))
                if not bound and rng.random() < 0.5:
                    bound = _bind_through_the_cli(globex_home, key, tmp_path)
                time.sleep(rng.uniform(0.0, 0.6))
    finally:
        user.close()
    assert acme_killer.early_exits == globex_killer.early_exits == []
    assert acme_killer.kills == globex_killer.kills == 6
    for _ in range(4):
        _drain(acme_home, globex_home)
        if bound:
            break
        bound = _bind_through_the_cli(globex_home, key, tmp_path)
    _drain(acme_home, globex_home)
    _judge(acme_home, globex_home, key, f"seed {SEED + 2}")
    for home in (acme_home, globex_home):
        inst = Installation(home)
        try:
            info = inst.sync_info(key)
            assert (info.config_version, info.pending_version, info.status) == (2, 0, "RUNNING"), info
            assert [m for m in inst.messages(key) if m.folder in (Folder.REJECTED, Folder.ERROR)] == []
        finally:
            inst.close()
