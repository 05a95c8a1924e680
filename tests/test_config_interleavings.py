"""Any interleaving of publishing, binding, deliveries and restarts ends with both sides agreeing
on the version in force, with nothing rejected on the way (SPEC section 4)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import select

from engine.config.mapping import parse_config
from engine.config.terms import Terms
from engine.errors import BackboneError
from engine.runtime.demo import Demo, pair_installations
from engine.runtime.engine import Engine
from engine.service.installation import Installation
from engine.store.models import Message, SyncSide
from engine.vocab import DraftState, Folder, SyncStatus

from .test_config_authority import BOUND_OWNER, OWNER, UNBOUND_OWNER
from .test_crash import Crash, CrashPoints

STEPS = ["publish", "acme", "globex", "bind", "restart acme", "restart globex"]


def publish(demo: Demo, n: int) -> None:
    """The primary adds or removes the `owner` mapping and publishes (a new version each time)."""
    draft = demo.acme.config_export(demo.key)
    draft = draft.replace(OWNER, "") if OWNER in draft else draft + OWNER
    demo.acme.config_import_text(demo.key, draft, f"v{n}.toml")
    demo.acme.publish_config(demo.key, f"change {n}")


def bind(demo: Demo) -> None:
    """The secondary binds what is pending (the owner to its assignee) and publishes."""
    if not demo.globex.sync_info(demo.key).pending_version:
        return
    template = demo.globex.config_export(demo.key).replace(UNBOUND_OWNER, BOUND_OWNER)
    demo.globex.config_import_text(demo.key, template, "bind.toml")
    demo.globex.publish_config(demo.key)


def deliver(demo: Demo, rounds: int = 1, *, binding: bool = True) -> None:
    """Rounds of: Acme's engine, Globex's engine, Globex binds what is pending; then Acme once more."""
    for _ in range(rounds):
        Engine(demo.acme).run_once()
        Engine(demo.globex).run_once()
        if binding:
            bind(demo)
    Engine(demo.acme).run_once()


def restart(demo: Demo, name: str) -> None:
    inst: Installation = getattr(demo, name)
    root = inst.paths.root
    inst.close()
    setattr(demo, name, Installation(root))


def side_row(inst: Installation) -> SyncSide:
    with inst.db.session() as s:
        row = s.get(SyncSide, inst.pipeline.sides()[0].id)
    assert row is not None
    return row


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.sampled_from(STEPS), min_size=1, max_size=14))
def test_any_interleaving_ends_with_both_sides_agreeing(
    tmp_path_factory: pytest.TempPathFactory, steps: list[str]
) -> None:
    demo = pair_installations(tmp_path_factory.mktemp("interleaving") / "demo", encryption=False, start=False)
    try:
        for n, step in enumerate(steps, start=2):
            if step == "publish":
                publish(demo, n)
            elif step == "bind":
                bind(demo)
            elif step.startswith("restart"):
                restart(demo, step.split()[1])
            else:
                Engine(getattr(demo, step)).run_once()
        deliver(demo, 6)  # then let it settle: deliver, bind what is pending, deliver
        acme, globex = side_row(demo.acme), side_row(demo.globex)
        assert (acme.config_version, acme.pending_version) == (globex.config_version, 0)
        assert globex.pending_version == 0
        assert Terms.from_body(json.loads(acme.terms_json)) == Terms.from_body(json.loads(globex.terms_json))
        for inst in (demo.acme, demo.globex):
            assert inst.sync_info(demo.key).status == SyncStatus.STOPPED
            with inst.db.session() as s:
                rejected = s.exec(select(Message.id).where(Message.folder == Folder.REJECTED)).all()
            assert rejected == []
    finally:
        demo.close()


def test_an_acknowledgement_of_a_superseded_version_is_not_an_error(tmp_path: Path) -> None:
    demo = pair_installations(tmp_path / "demo", encryption=False, start=False)
    try:
        publish(demo, 2)
        Engine(demo.acme).run_once()
        Engine(demo.globex).run_once()
        bind(demo)  # acknowledges version 2 ...
        publish(demo, 3)  # ... while the primary has published version 3 already
        deliver(demo, 3)
        assert side_row(demo.acme).config_version == side_row(demo.globex).config_version == 3
    finally:
        demo.close()


def test_review_mode_a_declined_draft_is_sent_again(tmp_path: Path) -> None:
    demo = pair_installations(tmp_path / "demo", encryption=False, start=False, review=True)
    try:
        acme, globex, key = demo.acme, demo.globex, demo.key
        assert acme.sync_info(key).draft_state == globex.sync_info(key).draft_state == DraftState.PUBLISHED
        publish(demo, 2)
        assert acme.sync_info(key).draft_state == DraftState.SENT
        Engine(acme).run_once()
        Engine(globex).run_once()
        assert globex.sync_info(key).draft_state == DraftState.RECEIVED
        with pytest.raises(BackboneError, match="say why"):
            globex.decline_config(key, "")
        info = globex.decline_config(key, "We keep owners to ourselves")
        assert (info.status, info.draft_state, info.config_version) == (
            SyncStatus.STOPPED,
            DraftState.PUBLISHED,
            1,
        )
        Engine(globex).run_once()
        Engine(acme).run_once()
        info = acme.sync_info(key)
        assert (info.status, info.draft_state, info.pending_version) == (
            SyncStatus.STOPPED,
            DraftState.DECLINED,
            0,
        )
        assert "We keep owners to ourselves" in info.status_detail
        assert OWNER in acme.config_export(key)  # the draft stays, editable
        acme.publish_config(key, "Owners, read-only for you")
        deliver(demo, 2)
        for inst in (acme, globex):
            info = inst.sync_info(key)
            assert (info.draft_state, info.config_version, info.pending_version) == (
                DraftState.PUBLISHED,
                3,
                0,
            )
    finally:
        demo.close()


def test_decline_is_for_review_mode(tmp_path: Path) -> None:
    demo = pair_installations(tmp_path / "demo", encryption=False, start=False)
    try:
        publish(demo, 2)
        Engine(demo.acme).run_once()
        Engine(demo.globex).run_once()
        with pytest.raises(BackboneError, match="not in review mode"):
            demo.globex.decline_config(demo.key, "no")
        assert demo.globex.sync_info(demo.key).draft_state == DraftState.NONE
    finally:
        demo.close()


# -- a crash at each durable step of publishing and acknowledging ----------------------------------

PHASES: list[tuple[str, Callable[[Demo], object]]] = [
    ("acme", lambda demo: publish(demo, 2)),
    ("acme", lambda demo: Engine(demo.acme).run_once()),  # sends the CONFIG
    ("globex", lambda demo: Engine(demo.globex).run_once()),  # takes it in: UPDATE REQUIRED
    ("globex", bind),  # puts version 2 in force, queues the CONFIG_ACK
    ("globex", lambda demo: Engine(demo.globex).run_once()),  # sends it
    ("acme", lambda demo: Engine(demo.acme).run_once()),  # takes it in: version 2 in force
]
POINTS_PER_PHASE = 5


def _fresh_pair(root: Path) -> Demo:
    return pair_installations(root, encryption=False, start=False)


def _finish(demo: Demo) -> None:
    """What an admin does after a restart: publish again if the publish was lost, bind what is
    pending, and let both engines run."""
    for _ in range(4):
        acme = side_row(demo.acme)
        if acme.config_version < 2 and not acme.pending_version:
            publish(demo, 2)
        Engine(demo.acme).run_once()
        Engine(demo.globex).run_once()
        bind(demo)
    Engine(demo.acme).run_once()


def test_a_crash_at_any_step_of_publish_and_ack_ends_in_agreement(tmp_path: Path) -> None:
    failures: list[str] = []
    for index, (who, phase) in enumerate(PHASES):
        reference = _fresh_pair(tmp_path / f"ref{index}")
        for _, earlier in PHASES[:index]:
            earlier(reference)
        with CrashPoints(None).installed() as counted:
            phase(reference)
        reference.close()
        total = counted.count
        stride = max(1, total // POINTS_PER_PHASE)
        for at in range(1, total + 1, stride):
            demo = _fresh_pair(tmp_path / f"p{index}-{at}")
            try:
                for _, earlier in PHASES[:index]:
                    earlier(demo)
                with CrashPoints(at).installed() as points, contextlib.suppress(Crash):
                    phase(demo)
                assert points.where, f"phase {index} did not reach step {at} of {total}"
                restart(demo, who)  # the killed process's home, opened again
                _finish(demo)
                acme, globex = side_row(demo.acme), side_row(demo.globex)
                state = (
                    acme.config_version,
                    acme.pending_version,
                    globex.config_version,
                    globex.pending_version,
                )
                if state != (2, 0, 2, 0):
                    failures.append(f"phase {index} step {at}/{total} ({points.where}): {state}")
            finally:
                demo.close()
    assert failures == []


# -- review mode: the secondary's own narrowing is a proposal the primary reviews ----------------

DUE_BOTH = 'id = "due"\nlocal = "due_date"\nkind = "date"\ndirection = "both"'
DUE_OFF = DUE_BOTH.replace('"both"', '"off"')


def due_in_force(inst: Installation) -> str:
    return next(
        m.direction for m in parse_config(side_row(inst).config_text, "in force").fields if m.id == "due"
    )


def narrow_due(demo: Demo, message: str = "We keep due dates to ourselves") -> None:
    draft = demo.globex.config_export(demo.key)
    assert DUE_BOTH in draft
    demo.globex.config_import_text(demo.key, draft.replace(DUE_BOTH, DUE_OFF), "narrow.toml")
    demo.globex.publish_config(demo.key, message)


def test_review_mode_the_secondary_proposes_and_the_primary_declines_then_accepts(tmp_path: Path) -> None:
    demo = pair_installations(tmp_path / "demo", encryption=False, start=False, review=True)
    try:
        acme, globex, key = demo.acme, demo.globex, demo.key
        draft = globex.config_export(key)
        globex.config_import_text(key, draft.replace(DUE_BOTH, DUE_OFF), "narrow.toml")
        with pytest.raises(BackboneError, match="is a proposal; say why"):
            globex.publish_config(key)
        globex.publish_config(key, "We keep due dates to ourselves")
        info = globex.sync_info(key)
        assert (info.draft_state, info.config_version) == (DraftState.SENT, 1)
        assert due_in_force(globex) == "both"  # in force only once accepted
        with pytest.raises(BackboneError, match="waits for the partner's review"):
            globex.publish_config(key, "again")
        deliver(demo, binding=False)
        assert acme.sync_info(key).draft_state == DraftState.RECEIVED
        incoming = acme.config_incoming(key)
        assert incoming is not None and incoming.proposal
        assert [(c.id, c.how, c.detail) for c in incoming.changes] == [("due", "narrowed", "off")]
        acme.decline_config(key, "We need the due dates")
        deliver(demo, binding=False)
        info = globex.sync_info(key)
        assert (info.draft_state, info.config_version) == (DraftState.DECLINED, 1)
        assert "We need the due dates" in info.status_detail
        assert DUE_OFF in globex.config_export(key)  # the draft stays, to propose again
        globex.publish_config(key, "Due dates stay with us, please")
        deliver(demo, binding=False)
        acme.accept_config(key)
        deliver(demo, binding=False)
        for inst in (acme, globex):
            info = inst.sync_info(key)
            assert (info.draft_state, info.config_version, info.pending_version) == (
                DraftState.PUBLISHED,
                2,
                0,
            )
            last = inst.config_history(key)[-1]
            assert (last.version, last.author, last.narrowed) == (2, "secondary", {"due": "off"})
        assert due_in_force(globex) == "off"
        assert acme.config_incoming(key) is None
        acme.start([key])
        globex.start([key])
        assert acme.sync_info(key).status == globex.sync_info(key).status == SyncStatus.RUNNING
        for inst in (acme, globex):
            with inst.db.session() as s:
                assert s.exec(select(Message.id).where(Message.folder == Folder.REJECTED)).all() == []
    finally:
        demo.close()


def test_a_new_version_from_the_primary_supersedes_a_proposal(tmp_path: Path) -> None:
    demo = pair_installations(tmp_path / "demo", encryption=False, start=False, review=True)
    try:
        narrow_due(demo)
        Engine(demo.globex).run_once()
        publish(demo, 2)  # crosses the proposal
        deliver(demo, 3)
        acme, globex = side_row(demo.acme), side_row(demo.globex)
        assert (acme.config_version, globex.config_version) == (2, 2)
        assert acme.proposal == globex.proposal == ""
        with pytest.raises(BackboneError, match="no proposal"):
            demo.acme.accept_config(demo.key)
    finally:
        demo.close()


def test_outside_review_mode_a_narrowing_goes_in_force_at_once(tmp_path: Path) -> None:
    demo = pair_installations(tmp_path / "demo", encryption=False, start=False)
    try:
        narrow_due(demo)
        assert due_in_force(demo.globex) == "off"
        assert demo.globex.sync_info(demo.key).config_version == 1
    finally:
        demo.close()
