"""Ordering rules (G4, G5, SPEC section 6) as properties over real installations and folders.

Acme produces one fixed stream of `.bac` messages (creates, field updates, comments, an
attachment, sub-tasks, a link, status transitions). Each example restores Globex's home to
the state before any of them arrived and delivers a permutation of the stream, with copies,
in several rounds, through the real exchange folder. Whatever the order, Globex must end in
the state an in-order delivery gives, with every duplicate answered as `OUTDATED/DUPLICATE`
and every message file in the folder its row names.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.runtime.engine import Engine
from engine.service.installation import Installation
from engine.vocab import Folder

from . import ledger
from .ledger import Stream, build_stream, one_message_per_file  # noqa: F401  (autouse)

PROPERTY = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> Stream:
    return build_stream(tmp_path_factory.mktemp("ordering"))


def _judge_final(globex: Installation, s: Stream, delivered: Counter[int]) -> None:
    """The ledger check after everything was delivered at least once."""
    key = s.key
    assert ledger.shared_state(globex, key, "GLOBEX") == s.reference
    assert ledger.folder_problems(globex, key) == []
    assert ledger.order_problems(globex, key, "in") == []
    incoming = [r for r in ledger.rows(globex, key) if r.direction == "in" and r.type == "ISSUE"]
    assert len(incoming) == sum(delivered.values())
    by_uuid: dict[str, list[ledger.Row]] = defaultdict(list)
    for row in incoming:
        by_uuid[row.uuid].append(row)
    assert set(by_uuid) == {m.uuid for m in s.messages}
    for uuid, copies in by_uuid.items():
        folders = Counter(row.folder for row in copies)
        assert folders[Folder.PROCESSED] == 1, (uuid, folders)
        for row in copies:
            if row.folder != Folder.PROCESSED:
                assert (row.folder, row.reason_code) == (Folder.OUTDATED, "DUPLICATE"), row
    assert ledger.pending(globex, key) == Counter()


@st.composite
def deliveries(draw: st.DrawFn, n: int) -> list[list[int]]:
    """A permutation of range(n) with some copies inserted anywhere, cut into rounds."""
    items = list(draw(st.permutations(range(n))))
    for index in draw(st.lists(st.integers(0, n - 1), max_size=n)):
        items.insert(draw(st.integers(0, len(items))), index)
    cuts = sorted(draw(st.lists(st.integers(0, len(items)), max_size=4)))
    bounds = [0, *cuts, len(items)]
    return [items[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


@PROPERTY
@given(data=st.data())
def test_any_permutation_with_copies_applies_to_the_in_order_state(
    stream: Stream, data: st.DataObject
) -> None:
    """G4/G5: any permutation and duplication of the stream, in any number of rounds, ends in
    the in-order state; each copy is answered as a duplicate; the folders match the rows."""
    rounds = data.draw(deliveries(len(stream.messages)))
    globex = stream.restore()
    try:
        delivered: Counter[int] = Counter()
        for number, batch in enumerate(rounds):
            stream.deliver(batch, f"{number:02d}")
            delivered.update(batch)
            Engine(globex).run_once()
        _judge_final(globex, stream, delivered)
    finally:
        globex.close()


def _model(s: Stream, delivered: set[int]) -> tuple[set[int], dict[int, str]]:
    """What must be applied after these deliveries (as early as possible, never early), and
    where each delivered but unapplied message must wait (WAITING or MISSING)."""
    in_seq: dict[str, int] = defaultdict(int)
    applied: set[int] = set()
    progress = True
    while progress:
        progress = False
        for i in sorted(delivered - applied):
            m = s.messages[i]
            if m.seq == in_seq[m.pair] + 1 and (m.needs is None or in_seq[m.needs] >= 1):
                in_seq[m.pair] = m.seq
                applied.add(i)
                progress = True
    waits: dict[int, str] = {}
    for i in delivered - applied:
        m = s.messages[i]
        waits[i] = Folder.MISSING if m.seq == in_seq[m.pair] + 1 else Folder.WAITING
    return applied, waits


@settings(PROPERTY, max_examples=15)
@given(data=st.data())
def test_each_issue_applies_in_sequence_order_and_gaps_wait(stream: Stream, data: st.DataObject) -> None:
    """G5, checked after every single delivery against a model: a message is applied exactly
    when its predecessor (and the issue it needs) has been; until then it waits in WAITING (a
    gap) or MISSING (a parent or link target); once the gaps close, nothing waits."""
    n = len(stream.messages)
    order = list(data.draw(st.permutations(range(n))))
    for index in data.draw(st.lists(st.integers(0, n - 1), max_size=4)):
        order.insert(data.draw(st.integers(0, len(order))), index)
    index_of = {m.uuid: i for i, m in enumerate(stream.messages)}
    globex = stream.restore()
    try:
        delivered: Counter[int] = Counter()
        for number, index in enumerate(order):
            stream.deliver([index], f"{number:03d}")
            delivered[index] += 1
            Engine(globex).run_once()
            applied, waits = _model(stream, set(delivered))
            copies: dict[int, Counter[tuple[str, str]]] = defaultdict(Counter)
            for row in ledger.rows(globex, stream.key):
                if row.direction == "in" and row.type == "ISSUE":
                    copies[index_of[row.uuid]][(row.folder, row.reason_code)] += 1
            assert set(copies) == set(delivered)
            for i, found in copies.items():
                m = stream.messages[i]
                where = f"after delivery {number}: seq {m.seq} of {m.pair[:8]}: {dict(found)}"
                assert sum(found.values()) == delivered[i], where
                folders = Counter({folder: n for (folder, _), n in found.items()})
                allowed = {(Folder.OUTDATED, "DUPLICATE")}  # what a copy may be answered with
                if i in applied:
                    assert found[(Folder.PROCESSED, "")] == 1, where
                    assert set(found) - {(Folder.PROCESSED, "")} <= allowed, where
                elif waits[i] == Folder.WAITING:  # a gap: an earlier seq of its issue is missing
                    assert found[(Folder.WAITING, "SEQ_GAP")] >= 1, where
                    assert set(found) <= allowed | {(Folder.WAITING, "SEQ_GAP")}, where
                else:  # next in line, but the issue it needs (parent, link target) is not there
                    assert folders[Folder.MISSING] >= 1, where
                    assert set(found) <= allowed | {(Folder.MISSING, "PARENT_MISSING")}, where
        assert set(delivered) == set(range(n))
        _judge_final(globex, stream, delivered)
    finally:
        globex.close()


# -- minimal reproductions ----------------------------------------------------------------------


def _incoming(globex: Installation, stream: Stream) -> list[ledger.Row]:
    return [r for r in ledger.rows(globex, stream.key) if r.direction == "in" and r.type == "ISSUE"]


def _deliver_and_run(stream: Stream, globex: Installation, batches: list[list[int]]) -> None:
    for number, batch in enumerate(batches):
        stream.deliver(batch, f"{number:02d}")
        Engine(globex).run_once()


def _pair_stream(stream: Stream, length: int) -> list[int]:
    """Indexes of the first `length` messages of one issue that needs no other issue."""
    by_pair: dict[str, list[int]] = defaultdict(list)
    for i, m in enumerate(stream.messages):
        by_pair[m.pair].append(i)
    for indexes in by_pair.values():
        if len(indexes) >= length and all(stream.messages[i].needs is None for i in indexes):
            return indexes[:length]
    raise AssertionError("no issue with enough messages in the stream")


def test_copy_of_an_applied_message_is_outdated(stream: Stream) -> None:
    """A copy that arrives after its message was applied is answered as a duplicate."""
    first, second = _pair_stream(stream, 2)
    globex = stream.restore()
    try:
        _deliver_and_run(stream, globex, [[first, second], [second, first, second]])
        rows = _incoming(globex, stream)
        assert [(r.seq, r.folder, r.reason_code) for r in rows] == [
            (1, Folder.PROCESSED, ""),
            (2, Folder.PROCESSED, ""),
            (2, Folder.OUTDATED, "DUPLICATE"),
            (1, Folder.OUTDATED, "DUPLICATE"),
            (2, Folder.OUTDATED, "DUPLICATE"),
        ]
        assert ledger.folder_problems(globex, stream.key) == []
    finally:
        globex.close()


def test_sub_task_before_its_parent_waits_in_missing(stream: Stream) -> None:
    child = next(i for i, m in enumerate(stream.messages) if m.needs and m.seq == 1)
    parent = next(
        i for i, m in enumerate(stream.messages) if m.pair == stream.messages[child].needs and m.seq == 1
    )
    globex = stream.restore()
    try:
        _deliver_and_run(stream, globex, [[child, child]])
        rows = _incoming(globex, stream)
        assert [(r.folder, r.hold, r.reason_code) for r in rows] == [
            (Folder.MISSING, stream.messages[parent].pair, "PARENT_MISSING")
        ] * 2
        assert ledger.folder_problems(globex, stream.key) == []
        _deliver_and_run(stream, globex, [[parent]])
        rows = _incoming(globex, stream)
        assert sorted((r.seq, r.folder, r.reason_code) for r in rows) == [
            (1, Folder.OUTDATED, "DUPLICATE"),
            (1, Folder.PROCESSED, ""),
            (1, Folder.PROCESSED, ""),
        ]
        assert ledger.folder_problems(globex, stream.key) == []
    finally:
        globex.close()


def test_copy_of_a_waiting_message_does_not_stay_in_waiting(stream: Stream) -> None:
    """Seq 2 arrives twice before seq 1: both copies wait; once seq 1 arrives, one copy is
    applied and the other must be answered as a duplicate (G5: after the gap closes, WAITING
    is empty; RELIABILITY rule 4)."""
    first, second = _pair_stream(stream, 2)
    globex = stream.restore()
    try:
        _deliver_and_run(stream, globex, [[second, second], [first]])
        rows = _incoming(globex, stream)
        assert sorted((r.seq, r.folder, r.reason_code) for r in rows) == [
            (1, Folder.PROCESSED, ""),
            (2, Folder.OUTDATED, "DUPLICATE"),
            (2, Folder.PROCESSED, ""),
        ]
    finally:
        globex.close()
