"""Pilot tests of configuring, publishing and reviewing drafts in the TUI, on a real pair of homes
(file channel; the partner's engine runs between the steps as another process would)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import (
    Checkbox,
    DataTable,
    Input,
    OptionList,
    Select,
    Static,
    Tab,
    TabbedContent,
    TextArea,
)

from engine.runtime.demo import Demo, pair_installations
from engine.runtime.engine import Engine
from engine.vocab import DraftState, SyncStatus
from screens.configure import ConfigureScreen
from screens.dialogs import HelpScreen
from screens.mapping import MappingDialog, PickDialog, TextDialog
from screens.review import MessageDialog, PublishDialog, ReviewScreen

from .conftest import make_app, run, settle, wait_for


@pytest.fixture
def review_pair(tmp_path: Path) -> Iterator[Demo]:
    demo = pair_installations(tmp_path / "demo", encryption=False, start=False, review=True)
    yield demo
    demo.close()


def deliver(demo: Demo) -> None:
    for _ in range(2):
        Engine(demo.acme).run_once()
        Engine(demo.globex).run_once()


async def configure(pilot: Pilot[Any]) -> ConfigureScreen:
    pilot.app.overview.table.focus()  # type: ignore[attr-defined]
    await pilot.press("c")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, ConfigureScreen), screen
    return screen


def test_the_primary_adds_a_field_labels_it_and_publishes(review_pair: Demo) -> None:
    acme, key = review_pair.acme, review_pair.key
    app = make_app(acme)

    async def scenario(pilot: Pilot[Any]) -> None:
        screen = await configure(pilot)
        assert screen.query_one("#t-types", DataTable).row_count == 4
        titles = {c.title for c in app.get_system_commands(screen)}
        assert {"configure: Save draft", "configure: Dry run", "configure: Label all"} <= titles
        assert "configure: Bind by labels" not in titles  # the secondary's
        await pilot.press("question_mark")
        help_screen = app.screen
        assert isinstance(help_screen, HelpScreen)
        assert ("B", "Bind ids whose labels are local names") in help_screen.rows()["Configure"]
        await pilot.press("escape")
        await pilot.press("2")  # the fields tab
        table = screen.query_one("#t-fields", DataTable)
        before = table.row_count
        await pilot.press("a")
        pick = app.screen
        assert isinstance(pick, PickDialog) and "assignee" in pick.names and "summary" not in pick.names
        pick.query_one("#pick", Select).value = "assignee"
        await pilot.pause()
        await pilot.click("#pick-ok")
        await pilot.pause()
        assert table.row_count == before + 1 and screen.changed
        table.move_cursor(row=before)
        await pilot.press("enter")
        dialog = app.screen
        assert isinstance(dialog, MappingDialog)
        assert dialog.query_one("#m-match", Select).value == "name"
        dialog.query_one("#m-label", Input).value = "Owner"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert screen.model.fields[-1].label == "Owner"
        await pilot.press("D")  # saves, then the dry run
        await settle(pilot)
        assert isinstance(app.screen, TextDialog)
        assert "synced issue(s) looked at" in str(app.screen.query_one("#text-body", Static).render())
        await pilot.press("escape")
        assert acme.sync_info(key).draft_edited
        await pilot.press("P")
        await settle(pilot)
        publish = app.screen
        assert isinstance(publish, PublishDialog)
        changes = str(publish.query_one("#publish-changes", Static).render())
        assert changes.startswith("+ added    field f-")
        await pilot.press("ctrl+s")  # no message: refused
        assert "the message is required" in str(publish.query_one("#publish-error", Static).render())
        publish.query_one("#publish-message", TextArea).text = "Owners travel too"
        await pilot.press("ctrl+s")
        await settle(pilot)
        info = acme.sync_info(key)
        assert (info.status, info.draft_state, info.pending_version) == (
            SyncStatus.WAITING_FOR_PARTNER,
            DraftState.SENT,
            2,
        )
        await pilot.press("escape")  # back to the overview: the state is there
        await settle(pilot)
        assert app.overview.model.rows[key].status == SyncStatus.WAITING_FOR_PARTNER

    run(app, scenario, size=(120, 40))


def test_an_unsaved_edit_is_kept_and_a_refused_save_says_why(review_pair: Demo) -> None:
    app = make_app(review_pair.acme)

    async def scenario(pilot: Pilot[Any]) -> None:
        screen = await configure(pilot)
        screen.model.fields[0].local = "no such field"
        screen.changed = True
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "Not saved:" in str(screen.query_one("#cf-status", Static).render())
        assert "no such field" in str(screen.query_one("#cf-status", Static).render())
        await pilot.press("escape")
        await settle(pilot)
        assert app.notices[-1][1].startswith("Unsaved changes of ")
        again = await configure(pilot)
        assert again.changed and again.model.fields[0].local == "no such field"

    run(app, scenario, size=(120, 40))


def test_the_secondary_reviews_declines_then_binds_and_publishes(review_pair: Demo) -> None:
    acme, globex, key = review_pair.acme, review_pair.globex, review_pair.key
    draft = acme.config_export(key) + '\n[[fields]]\nid = "owner"\nlocal = "assignee"\nkind = "user"\n'
    acme.config_import_text(key, draft, "v2.toml")
    acme.publish_config(key, "Owners travel too")
    deliver(review_pair)
    app = make_app(globex)

    async def scenario(pilot: Pilot[Any]) -> None:
        assert app.overview.model.rows[key].draft_state == DraftState.RECEIVED
        app.overview.table.focus()
        await pilot.press("i")
        await settle(pilot)
        review = app.screen
        assert isinstance(review, ReviewScreen)
        assert "Owners travel too" in str(review.query_one("#review-message", Static).render())
        assert "Fields (1)" in str(review.query_one("#review-tabs", Static).render())
        await pilot.press("down")
        await pilot.pause()
        assert "field owner" in str(review.query_one("#review-detail", Static).render())
        tabs = review.query_one("#review-tabbed", TabbedContent)
        titles = [str(tab.label) for tab in tabs.query(Tab)]
        assert titles[:3] == ["All (1)", "Issue types", "* Fields (1)"]
        tabs.active = "rv-1"  # the fields tab: the owner there alone
        await pilot.pause()
        assert review.query_one("#review-changes-1", OptionList).option_count == 1
        await pilot.press("N")
        await settle(pilot)
        first = app.screen
        assert isinstance(first, MessageDialog)
        message: MessageDialog = first
        await pilot.press("ctrl+s")  # empty: refused
        assert app.screen is message
        message.query_one("#message-text", TextArea).text = "Not the owners"
        await pilot.press("escape")  # cancel keeps what was typed
        await settle(pilot)
        await pilot.press("i")
        await settle(pilot)
        await pilot.press("N")
        await settle(pilot)
        again = app.screen
        assert isinstance(again, MessageDialog)
        message = again
        assert message.query_one("#message-text", TextArea).text == "Not the owners"
        message.query_one("#message-text", TextArea).text = "Not the owners, please"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert globex.sync_info(key).pending_version == 0
        deliver(review_pair)
        assert acme.sync_info(key).draft_state == DraftState.DECLINED
        acme.publish_config(key, "Owners, read-only for you")
        deliver(review_pair)
        await settle(pilot)
        app.request_reload()
        await settle(pilot)
        await pilot.press("i")
        await settle(pilot)
        assert isinstance(app.screen, ReviewScreen)
        await pilot.press("y")  # accept: binding is configuring
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ConfigureScreen) and not screen.model.can_add
        await pilot.press("2")
        table = screen.query_one("#t-fields", DataTable)
        owner = next(n for n, f in enumerate(screen.model.fields) if f.id == "owner")
        table.move_cursor(row=owner)
        await pilot.press("enter")
        dialog = app.screen
        assert isinstance(dialog, MappingDialog)
        dialog.query_one("#m-local", Select).value = "assignee"
        dialog.query_one("#m-direction", Select).value = "both"
        await pilot.press("ctrl+s")
        await pilot.pause()
        await pilot.press("a")  # adding is not offered on the secondary
        assert not isinstance(app.screen, PickDialog)
        await pilot.press("P")
        await settle(pilot)
        publish = app.screen
        assert isinstance(publish, PublishDialog)
        publish.query_one("#publish-start", Checkbox).value = True
        await pilot.press("ctrl+s")
        await settle(pilot)
        info = globex.sync_info(key)
        assert (info.config_version, info.pending_version, info.status) == (3, 0, SyncStatus.RUNNING)
        deliver(review_pair)
        assert acme.sync_info(key).config_version == 3

    run(app, scenario, size=(120, 40))


def test_the_primary_accepts_a_proposal_in_the_review_screen(review_pair: Demo) -> None:
    acme, globex, key = review_pair.acme, review_pair.globex, review_pair.key
    due = 'id = "due"\nlocal = "due_date"\nkind = "date"\ndirection = "both"'
    globex.config_import_text(
        key, globex.config_export(key).replace(due, due.replace("both", "off")), "n.toml"
    )
    globex.publish_config(key, "We keep due dates")
    deliver(review_pair)
    app = make_app(acme)

    async def scenario(pilot: Pilot[Any]) -> None:
        app.overview.table.focus()
        await pilot.press("i")
        await settle(pilot)
        review = app.screen
        assert isinstance(review, ReviewScreen) and review.incoming.proposal
        first = review.query_one("#review-changes", OptionList).get_option_at_index(0)
        assert str(first.prompt).split() == ["~", "narrowed", "field", "due:", "off"]
        await pilot.press("y")
        await settle(pilot)
        await wait_for(pilot, lambda: acme.sync_info(key).config_version == 2)
        deliver(review_pair)
        assert globex.sync_info(key).config_version == 2

    run(app, scenario, size=(120, 40))


@pytest.mark.parametrize("size", [(80, 24), (160, 50)])
def test_snapshots_of_configure_publish_and_review(
    snap_compare: Any, review_pair: Demo, size: tuple[int, int]
) -> None:
    """The configure tabs and a mapping, the publish dialog, and the review diff (fixed ids)."""
    acme, globex, key = review_pair.acme, review_pair.globex, review_pair.key
    for tab in ("1", "2", "3", "4", "5"):
        assert snap_compare(make_app(acme), press=["c", tab], terminal_size=size), f"tab {tab}"
    assert snap_compare(make_app(acme), press=["c", "2", "down", "down", "enter"], terminal_size=size)
    urgency = 'id = "urgency"\nlocal = "priority"\nkind = "select"\ndirection = "both"'
    draft = acme.config_export(key).replace(urgency, urgency.replace("both", "to_partner"))
    acme.config_import_text(
        key, draft + '\n[[fields]]\nid = "owner"\nlocal = "assignee"\nkind = "user"\n', "v2"
    )
    assert snap_compare(make_app(acme), press=["P"], terminal_size=size)
    acme.publish_config(key, "Owners travel too; priorities only to you")
    deliver(review_pair)

    async def reviewing(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("i")
        await settle(pilot)
        await pilot.press("down")

    assert snap_compare(make_app(globex), run_before=reviewing, terminal_size=size)
