"""The overview's configuration actions: configure a side's draft, publish it, review what the
partner sent (accept: bind or accept a proposal; decline with a message). A `local`
synchronization asks which of its two sides first."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.screen import Screen

from engine.service import editor
from engine.service.editor import DraftModel
from engine.service.views import SyncInfo
from engine.vocab import Role

from .configure import ConfigureScreen
from .driver import Driver
from .mapping import PickDialog
from .review import MessageDialog, PublishChoice, PublishDialog, ReviewScreen


class DraftActions(Screen[None]):
    """Mixed into the overview: needs its driver, its rows and the two kept-draft tables."""

    driver: Driver
    config_drafts: dict[tuple[str, str], DraftModel]  # unsaved editor models
    publish_messages: dict[str, str]  # a cancelled publish's message
    decline_messages: dict[str, str]  # a cancelled decline's message

    def row_info(self, key: str) -> SyncInfo | None:
        """The synchronization `key` as the table shows it."""
        raise NotImplementedError

    def _row_key(self) -> str | None:
        """The key of the row under the cursor."""
        raise NotImplementedError

    def action_publish(self) -> None:
        if key := self._row_key():
            self.publish(key)

    def action_review(self) -> None:
        if key := self._row_key():
            self.review(key)

    def with_side(self, key: str, then: Callable[[str | None], None]) -> None:
        """Run `then` with the side's project: asked for on a `local` synchronization (two sides)."""
        info = self.row_info(key)
        if info is None:
            return
        if info.role != Role.LOCAL:
            then(None)
            return
        sides = [info.local_project, info.partner_project]
        self.app.push_screen(
            PickDialog(f"Which side of {key}?", sides), lambda side: then(side) if side else None
        )

    def configure(self, key: str, project: str | None = None) -> None:
        row = self.row_info(key)
        if project is None and row is not None and row.role == Role.LOCAL:
            self.with_side(key, lambda side: self.configure(key, side))
            return
        installation = self.driver.installation
        slot = (key, project or "")

        def kept(model: DraftModel | None) -> None:
            if model is None:
                self.config_drafts.pop(slot, None)
            else:
                self.config_drafts[slot] = model
            self.driver.request_reload()

        def opened(model: DraftModel) -> None:
            unsaved = self.config_drafts.get(slot)
            self.app.push_screen(
                ConfigureScreen(
                    self.driver,
                    unsaved or model,
                    kept=kept,
                    publish=lambda side: self.publish(key, side),
                    changed=unsaved is not None,
                )
            )

        self.driver.submit(
            f"Read the configuration of {key}", lambda: editor.load(installation, key, project), opened
        )

    def publish(self, key: str, project: str | None = None) -> None:
        info = self.row_info(key)
        if info is None:
            return
        if project is None and info.role == Role.LOCAL:
            self.with_side(key, lambda side: self.publish(key, side))
            return
        installation = self.driver.installation

        def load() -> tuple[str, Any, Any]:
            side = editor.load(installation, key, project)
            return (
                side.role,
                installation.config_diff(key, project),
                installation.config_dry_run(key, project),
            )

        def chosen(choice: PublishChoice | None) -> None:
            if choice is None:
                return
            self.publish_messages.pop(key, None)
            self.driver.submit(
                f"Publish {key}",
                lambda: installation.publish_config(key, choice.message, project, start=choice.start),
                lambda done: self.app.notify(f"{key}: {done.status} - {done.status_detail}"),
            )

        def loaded(found: tuple[str, Any, Any]) -> None:
            role, changes, dry_run = found
            dialog = PublishDialog(info, role, changes, dry_run, self.publish_messages.get(key, ""))

            def closed(choice: PublishChoice | None) -> None:
                if choice is None and dialog.message.strip():
                    self.publish_messages[key] = dialog.message
                chosen(choice)

            self.app.push_screen(dialog, closed)

        self.driver.submit(f"Prepare publishing {key}", load, loaded)

    def review(self, key: str) -> None:
        info = self.row_info(key)
        if info is None:
            return
        installation = self.driver.installation
        projects = [info.local_project, info.partner_project] if info.role == Role.LOCAL else [None]

        def load() -> tuple[str | None, Any]:
            for project in projects:
                incoming = installation.config_incoming(key, project)
                if incoming is not None:
                    return project, incoming
            return None, None

        def answered(project: str | None, incoming: Any, answer: str | None) -> None:
            if answer == "accept" and incoming.proposal:
                self.driver.submit(
                    f"Accept the proposal of {key}",
                    lambda: installation.accept_config(key, project),
                    lambda done: self.app.notify(f"{key}: {done.status_detail}"),
                )
            elif answer == "accept":
                self.configure(key, project)  # binding is configuring, then publishing
            elif answer == "decline":
                dialog = MessageDialog(
                    f"Decline the partner's draft of {key}",
                    "Why, for the partner",
                    self.decline_messages.get(key, ""),
                )

                def send(message: str | None) -> None:
                    if not message:
                        self.decline_messages[key] = dialog.text  # what was typed, for next time
                        return
                    self.decline_messages.pop(key, None)
                    self.driver.submit(
                        f"Decline the draft of {key}",
                        lambda: installation.decline_config(key, message, project),
                        lambda done: self.app.notify(f"{key}: {done.status_detail}"),
                    )

                self.app.push_screen(dialog, send)

        def loaded(found: tuple[str | None, Any]) -> None:
            project, incoming = found
            if incoming is None:
                self.app.notify(f"{key}: nothing from the partner to review", severity="warning")
                return
            self.app.push_screen(
                ReviewScreen(info, incoming), lambda answer: answered(project, incoming, answer)
            )

        self.driver.submit(f"Read the partner's draft of {key}", load, loaded)
