"""Configuration authority (SPEC section 4): each side's draft beside the version in force; the
primary publishes its terms, the secondary binds them and acknowledges.

The primary's draft is a full mapping file (local names -> mapping ids). The secondary's draft
binds the primary's mapping ids to its own names and may narrow directions; `check_binding`
refuses anything that adds, removes or widens a mapping.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlmodel import Session, col, select

from engine.config.mapping import MappingConfig, check_against, parse_config
from engine.config.terms import Change, Terms
from engine.domain.side import SideCtx
from engine.errors import BackboneError, FieldError
from engine.pipeline.config_control import (
    MAX_MESSAGE_CHARS,
    accept_body,
    ack_body,
    config_body,
    decline_body,
    keep_version,
    proposal_body,
    put_in_force,
)
from engine.pipeline.records import Outgoing
from engine.service.views import SyncInfo
from engine.store.models import ConfigVersion, IssuePair, Synchronization, SyncSide
from engine.vocab import DraftState, MessageType, Role, SyncStatus

if TYPE_CHECKING:
    from engine.service.installation import Installation

PUBLISHABLE = (SyncStatus.STOPPED, SyncStatus.RUNNING, SyncStatus.WAITING_FOR_PARTNER)


@dataclass(frozen=True)
class IncomingConfig:
    """A version the partner published that this side has not bound yet, or (on the primary, in
    review mode) the secondary's proposal of narrower directions within the version in force."""

    version: int
    in_force: int
    message: str
    changes: list[Change]
    proposal: bool = False  # review mode: the secondary's proposal of narrower directions

    def to_dict(self) -> dict[str, Any]:
        return {
            "proposal": self.proposal,
            "version": self.version,
            "in_force": self.in_force,
            "message": self.message,
            "changes": [{"what": c.what, "id": c.id, "how": c.how, "detail": c.detail} for c in self.changes],
        }


@dataclass(frozen=True)
class VersionInfo:
    """One version that was in force on this side."""

    version: int
    author: str
    at: str
    message: str
    narrowed: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "author": self.author,
            "at": self.at,
            "message": self.message,
            "narrowed": self.narrowed,
        }


@dataclass(frozen=True)
class DryRun:
    """What putting the draft in force would do to the issues synced today."""

    pairs: int  # synced issues looked at
    changes: list[Change]  # the draft against the version in force
    unmappable: list[tuple[str, str, str]]  # (issue key, mapping id or "type"/"status", local value)
    resync: dict[str, int]  # new mapping id -> how many synced issues a RESYNC would fill

    def to_dict(self) -> dict[str, Any]:
        return {
            "pairs": self.pairs,
            "changes": [vars(change) for change in self.changes],
            "unmappable": [{"issue": i, "mapping": m, "value": v} for i, m, v in self.unmappable],
            "resync": self.resync,
        }


class Configuration:
    """Drafts, publishing, binding and the versions in force of each side."""

    def __init__(self, installation: Installation) -> None:
        self.i = installation

    # -- reading ---------------------------------------------------------------------------

    def export(self, key: str, project: str | None = None) -> str:
        """This side's draft as TOML: the primary's mapping file, or the secondary's binding
        template listing every mapping id of the partner's terms (new ones left to bind)."""
        side, row = self.side_row(key, project)
        if row.draft_text:
            return row.draft_text
        if side.role == Role.SECONDARY:
            terms = self.terms_to_bind(row)
            if terms is None:
                return row.config_text
            bound = parse_config(row.config_text, "in force") if row.config_text else None
            version = row.pending_version or row.config_version
            return terms.template(bound, role=Role.SECONDARY, message=row.pending_message, version=version)
        return row.config_text

    def diff(
        self,
        key: str,
        project: str | None = None,
        *,
        from_version: int | None = None,
        to_version: int | None = None,
    ) -> list[Change]:
        """The draft against the version in force, per mapping (the primary's terms; the
        secondary's binding), or two versions of the history against each other."""
        side, row = self.side_row(key, project)
        if from_version is not None or to_version is not None:
            if from_version is None or to_version is None:
                raise FieldError("from_version", "give both --from and --to")
            kept = {v.version: v for v in self._versions(side)}
            for field, wanted in (("from_version", from_version), ("to_version", to_version)):
                if wanted not in kept:
                    known = ", ".join(str(v) for v in sorted(kept)) or "none"
                    raise FieldError(field, f"version {wanted} was never in force here (known: {known})")
            older, newer = (
                Terms.from_body(json.loads(kept[v].terms_json)) for v in (from_version, to_version)
            )
            return newer.changes_since(older)
        draft = parse_config(self.export(key, side.project), "draft")
        in_force = parse_config(row.config_text, "in force") if row.config_text else None
        if side.role == Role.SECONDARY:
            before = in_force or MappingConfig()
            return _binding_changes(before, draft)
        return Terms.of(draft).changes_since(Terms.of(in_force) if in_force and row.config_version else None)

    def dry_run(self, key: str, project: str | None = None) -> DryRun:
        """The draft against every synced issue of this side, before publishing: the values it
        cannot map, the direction changes, how many issues each new mapping would resync."""
        side, row = self.side_row(key, project)
        draft = parse_config(self.export(key, side.project), "draft")
        in_force = parse_config(row.config_text, "in force") if row.config_text else MappingConfig()
        with self.i.db.session() as s:
            issue_ids = [
                p.issue_id
                for p in s.exec(select(IssuePair).where(IssuePair.side_id == side.id)).all()
                if p.issue_id is not None
            ]
        unmappable: list[tuple[str, str, str]] = []
        looked_at = 0
        for issue_id in issue_ids:
            issue = self.i.trackers.for_side(side).read_issue(issue_id)
            if issue is None:
                continue
            looked_at += 1
            if draft.type_id(issue.issue_type) is None:
                unmappable.append((issue.key, "type", issue.issue_type))
            if draft.status_id(issue.status) is None:
                unmappable.append((issue.key, "status", issue.status))
            for mapping in draft.fields:
                value = issue.fields.get(mapping.local)
                if not mapping.sends or not mapping.values or value in (None, "", []):
                    continue
                for one in value if isinstance(value, list) else [value]:
                    if str(one) not in mapping.values and mapping.default is None:
                        unmappable.append((issue.key, mapping.id, str(one)))
        known = {m.id for m in in_force.fields}
        resync = (
            {m.id: looked_at for m in draft.fields if m.id not in known and m.sends}
            if row.config_version
            else {}
        )
        return DryRun(looked_at, self.diff(key, side.project), unmappable, resync)

    def incoming(self, key: str, project: str | None = None) -> IncomingConfig | None:
        """The partner's pending version, its message and what it changes (None: nothing pending)."""
        side, row = self.side_row(key, project)
        if side.role == Role.PRIMARY and row.proposal:
            proposal = json.loads(row.proposal)
            return IncomingConfig(
                proposal["version"],
                row.config_version,
                proposal["message"],
                [
                    Change(
                        "field" if what not in ("comments", "attachments") else what, what, "narrowed", how
                    )
                    for what, how in sorted(proposal["narrowed"].items())
                ],
                proposal=True,
            )
        if side.role != Role.SECONDARY or not row.pending_version:
            return None
        pending = Terms.from_body(json.loads(row.pending_terms))
        in_force = Terms.from_body(json.loads(row.terms_json)) if row.terms_json else None
        return IncomingConfig(
            row.pending_version, row.config_version, row.pending_message, pending.changes_since(in_force)
        )

    def history(self, key: str, project: str | None = None) -> list[VersionInfo]:
        """Every version that was in force on this side, oldest first."""
        side, _ = self.side_row(key, project)
        rows = self._versions(side)
        return [
            VersionInfo(
                r.version, r.author, r.at.isoformat(timespec="seconds"), r.message, json.loads(r.narrowed)
            )
            for r in rows
        ]

    # -- changing --------------------------------------------------------------------------

    def import_file(self, key: str, path: str | Path, project: str | None = None) -> None:
        """Replace this side's draft from a TOML file (never the version in force)."""
        source = Path(path)
        try:
            text = source.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise BackboneError(f"{source}: cannot read ({exc})") from None
        self.import_text(key, text, str(source), project)

    def import_text(self, key: str, text: str, source: str, project: str | None = None) -> None:
        """Replace this side's draft from TOML text, checked against the tracker and, on the
        secondary, against the partner's terms; `source` names it in errors."""
        side, row = self.side_row(key, project)
        config = self._checked(side, text, source)
        if side.role == Role.SECONDARY:
            terms = self.terms_to_bind(row)
            if terms is None:
                raise BackboneError(f"{key}: no configuration from the primary yet; it defines the mappings")
            terms.check_binding(config, source, role=Role.SECONDARY)
        with self.i.db.write() as s:
            stored = s.get(SyncSide, side.id)
            assert stored is not None
            stored.draft_text = text
            s.add(stored)
        self.i._changed(key)

    def publish(
        self, key: str, message: str = "", project: str | None = None, *, start: bool = False
    ) -> SyncInfo:
        """Primary: send the draft as version N+1 (`CONFIG`) -> WAITING FOR PARTNER. Secondary:
        put the bound version in force and acknowledge it (`CONFIG_ACK`) -> STOPPED (RUNNING
        with `start`). A draft that changes no shared term goes in force at once, unsent."""
        side, row = self.side_row(key, project)
        if side.role == Role.SECONDARY:
            return self._publish_binding(side, row, message.strip(), start=start)
        message = _required(message, "a message for the partner is required: say what changed")
        status = self._status(key)
        if status not in PUBLISHABLE:
            raise BackboneError(
                f"{key} is {status}: a configuration is published once paired (STOPPED or RUNNING)"
            )
        text = row.draft_text or row.config_text
        draft = self._checked(side, text, "the draft")
        terms = Terms.of(draft)
        in_force = Terms.from_body(json.loads(row.terms_json)) if row.terms_json else None
        if row.config_version and in_force == terms and not row.pending_version:
            return self._in_force_here(side, text)  # local names only: nothing for the partner to bind
        version = max(row.config_version, row.pending_version, row.last_published) + 1
        with self.i.db.write() as s:
            stored = s.get(SyncSide, side.id)
            sync = s.get(Synchronization, key)
            assert stored is not None and sync is not None
            queued = self.i.pipeline.queue(
                s, side, Outgoing(MessageType.CONFIG, config_body(version, message, terms))
            )
            stored.pending_version, stored.pending_text, stored.last_published = version, text, version
            stored.pending_terms = json.dumps(terms.to_body(), sort_keys=True)
            stored.pending_message, stored.start_when_in_force = message, start
            stored.proposal = ""  # the partner's proposal against the older version is superseded
            s.add(stored)
            sync.status = SyncStatus.WAITING_FOR_PARTNER
            sync.status_detail = f"published version {version}; waiting for the partner to bind it"
            if sync.review:
                sync.draft_state = DraftState.SENT
            s.add(sync)
        self.i.pipeline.write_send_files(side, [queued])
        self.i._changed(key)
        return self.i.queries.sync_info(key)

    def _publish_binding(self, side: SideCtx, row: SyncSide, message: str, *, start: bool) -> SyncInfo:
        key = side.sync_key
        if not row.pending_version and not (row.draft_text and row.terms_json):
            raise BackboneError(
                f"{key}: no new version from the primary to bind, and no draft to put in force"
            )
        terms = Terms.from_body(json.loads(row.pending_terms or row.terms_json))
        text = row.draft_text or self.export(key, side.project)
        config = self._checked(side, text, "the draft")
        terms.check_binding(config, "the draft", role=Role.SECONDARY)
        unbound = terms.unbound(config, role=Role.SECONDARY)
        if unbound:
            raise BackboneError(
                f"{key}: bind {', '.join(unbound[:8])}{' ...' if len(unbound) > 8 else ''} first "
                "(config export, edit, config import)"
            )
        if not row.pending_version:  # new local names or narrower directions within the same terms
            if row.proposal:
                raise BackboneError(
                    f"{key}: your proposal waits for the partner's review (accept or decline); "
                    "publish again once it is answered"
                )
            if self._review(key) and terms.narrowed(config, role=Role.SECONDARY) != terms.narrowed(
                parse_config(row.config_text, "in force"), role=Role.SECONDARY
            ):
                return self._propose(side, row, text, terms.narrowed(config, role=Role.SECONDARY), message)
            return self._in_force_here(side, text)
        narrowed = terms.narrowed(config, role=Role.SECONDARY)
        version = row.pending_version
        with self.i.db.write() as s:
            stored = s.get(SyncSide, side.id)
            sync = s.get(Synchronization, key)
            assert stored is not None and sync is not None
            stored.pending_text = text
            queued = self.i.pipeline.queue(
                s, side, Outgoing(MessageType.CONFIG_ACK, ack_body(version, narrowed))
            )
            put_in_force(s, stored, author=Role.SECONDARY, narrowed=narrowed)
            stored.draft_text = ""
            if sync.review:
                sync.draft_state = DraftState.PUBLISHED
            if sync.role == Role.LOCAL:  # one status for both sides: the primary's is still pending
                sync.status = SyncStatus.WAITING_FOR_PARTNER
                sync.status_detail = f"version {version} bound; waiting for the acknowledgement"
                partner = s.get(SyncSide, side.partner_side_id)
                if partner is not None and start:
                    partner.start_when_in_force = True
                    s.add(partner)
            else:
                sync.status = SyncStatus.RUNNING if start else SyncStatus.STOPPED
                sync.status_detail = f"version {version} in force" + (
                    "; synchronizing issues" if start else "; start when ready"
                )
            s.add(sync)
        self.i.pipeline.write_send_files(side, [queued])
        self._after_in_force(side)
        return self.i.queries.sync_info(key)

    def decline(self, key: str, message: str, project: str | None = None) -> SyncInfo:
        """Review mode, secondary: decline the partner's pending version with a message
        (`CONFIG_DECLINE`); the version in force stays, the partner's draft becomes DECLINED."""
        side, row = self.side_row(key, project)
        message = _required(message, "say why the draft is declined, for the partner")
        if not self._review(key):
            raise BackboneError(f"{key} is not in review mode: bind the new version (config publish)")
        if side.role == Role.PRIMARY and row.proposal:
            return self._decline_proposal(side, row, message)
        if side.role != Role.SECONDARY or not row.pending_version:
            raise BackboneError(f"{key}: no draft from the partner to decline")
        version = row.pending_version

        def declined(stored: SyncSide, sync: Synchronization, s: Session) -> None:
            stored.pending_version, stored.pending_terms, stored.pending_message = 0, "", ""
            stored.draft_text = ""
            sync.status = SyncStatus.STOPPED
            sync.draft_state = DraftState.PUBLISHED if stored.config_version else DraftState.NONE
            sync.status_detail = (
                f"you declined version {version}; version {stored.config_version} stays in force"
            )

        return self._send(
            side, Outgoing(MessageType.CONFIG_DECLINE, decline_body(version, message)), declined
        )

    def accept(self, key: str, project: str | None = None) -> SyncInfo:
        """Review mode, primary: accept the secondary's proposal as version N+1 on both sides
        (`CONFIG_ACCEPT`): the same terms, the directions it proposed."""
        side, row = self.side_row(key, project)
        if side.role != Role.PRIMARY or not row.proposal:
            raise BackboneError(f"{key}: no proposal from the partner to accept")
        proposal = json.loads(row.proposal)
        version = max(row.config_version, row.pending_version, row.last_published) + 1

        def accepted(stored: SyncSide, sync: Synchronization, s: Session) -> None:
            stored.config_version = stored.last_published = version
            stored.proposal = ""
            keep_version(
                s,
                stored,
                version,
                author=Role.SECONDARY,
                message=proposal["message"],
                narrowed=proposal["narrowed"],
            )
            sync.draft_state = DraftState.PUBLISHED
            sync.status_detail = f"accepted the partner's proposal as version {version}"

        return self._send(
            side, Outgoing(MessageType.CONFIG_ACCEPT, accept_body(version, proposal["version"])), accepted
        )

    def _propose(
        self, side: SideCtx, row: SyncSide, text: str, narrowed: dict[str, str], message: str
    ) -> SyncInfo:
        """Review mode, secondary: send narrower directions to the primary for review."""
        message = _required(
            message, "review mode: narrowing what this side shares is a proposal; say why, for the partner"
        )
        version = row.config_version

        def proposed(stored: SyncSide, sync: Synchronization, s: Session) -> None:
            stored.draft_text = text
            stored.proposal = json.dumps(
                {"version": version, "message": message, "narrowed": narrowed, "text": text}
            )
            sync.draft_state = DraftState.SENT
            sync.status_detail = (
                f"proposed a change of version {version} to the partner; it stays in force until accepted"
            )

        body = proposal_body(version, message, narrowed)
        return self._send(side, Outgoing(MessageType.CONFIG_PROPOSAL, body), proposed)

    def _decline_proposal(self, side: SideCtx, row: SyncSide, message: str) -> SyncInfo:
        proposal = json.loads(row.proposal)

        def declined(stored: SyncSide, sync: Synchronization, s: Session) -> None:
            stored.proposal = ""
            sync.draft_state = DraftState.PUBLISHED
            sync.status_detail = (
                f"you declined the partner's proposal; version {stored.config_version} stays in force"
            )

        body = decline_body(proposal["version"], message)
        return self._send(side, Outgoing(MessageType.CONFIG_DECLINE, body), declined)

    def _send(
        self, side: SideCtx, outgoing: Outgoing, change: Callable[[SyncSide, Synchronization, Session], None]
    ) -> SyncInfo:
        """Queue `outgoing` and apply `change` to the side and its synchronization in one
        transaction, then hand the message to the channel."""
        with self.i.db.write() as s:
            stored = s.get(SyncSide, side.id)
            sync = s.get(Synchronization, side.sync_key)
            assert stored is not None and sync is not None
            queued = self.i.pipeline.queue(s, side, outgoing)
            change(stored, sync, s)
            s.add(stored)
            s.add(sync)
        self.i.pipeline.write_send_files(side, [queued])
        self.i._changed(side.sync_key)
        return self.i.queries.sync_info(side.sync_key)

    # -- checks ----------------------------------------------------------------------------

    def problems_before_start(self, key: str) -> list[str]:
        """Why `key` cannot start yet: no version in force, a version pending, unbound mappings
        (on every side here: a `local` synchronization has two)."""
        problems: list[str] = []
        sides = self.i.queries.sides_of(key)
        with self.i.db.session() as s:
            rows = {side.id: s.get(SyncSide, side.id) for side in sides}
        for side in sides:
            row = rows[side.id]
            if row is None:
                continue
            where = f"{side.folder}: " if len(sides) > 1 else ""
            if not row.config_version:
                problems.append(
                    f"{where}no configuration in force yet (the primary publishes one: config publish)"
                )
                continue
            if row.pending_version:
                problems.append(f"{where}version {row.pending_version} is pending")
            if row.terms_json:
                terms = Terms.from_body(json.loads(row.terms_json))
                unbound = terms.unbound(parse_config(row.config_text, "in force"), role=side.role)
                if unbound:
                    problems.append(f"{where}unbound: {', '.join(unbound[:8])}")
        return problems

    def _versions(self, side: SideCtx) -> list[ConfigVersion]:
        with self.i.db.session() as s:
            return list(
                s.exec(
                    select(ConfigVersion)
                    .where(ConfigVersion.side_id == side.id)
                    .order_by(col(ConfigVersion.id))
                ).all()
            )

    def _checked(self, side: SideCtx, text: str, source: str) -> MappingConfig:
        config = parse_config(text, source)
        tracker = self.i.trackers.for_side(side)
        check_against(
            config,
            source,
            issue_types=tracker.issue_types(side.project),
            statuses=tracker.statuses(side.project),
            field_kinds=tracker.field_names(side.project),
        )
        return config

    def terms_to_bind(self, row: SyncSide) -> Terms | None:
        """The partner's terms this side binds: the pending version's, else those in force."""
        raw = row.pending_terms or row.terms_json
        return Terms.from_body(json.loads(raw)) if raw else None

    def side_row(self, key: str, project: str | None) -> tuple[SideCtx, SyncSide]:
        """One side of `key` (the one of `project` on a local synchronization) and its row."""
        side = self.i.lifecycle._one_side(key, project)
        with self.i.db.session() as s:
            row = s.get(SyncSide, side.id)
        if row is None:
            raise BackboneError(f"synchronization {key} does not exist")
        return side, row

    def _review(self, key: str) -> bool:
        with self.i.db.session() as s:
            sync = s.get(Synchronization, key)
            return bool(sync and sync.review)

    def _status(self, key: str) -> str:
        with self.i.db.session() as s:
            sync = s.get(Synchronization, key)
            return sync.status if sync else ""

    def _in_force_here(self, side: SideCtx, text: str) -> SyncInfo:
        """Put a draft in force on this side alone: it changes no shared term."""
        with self.i.db.write() as s:
            stored = s.get(SyncSide, side.id)
            assert stored is not None
            stored.config_text, stored.draft_text = text, ""
            s.add(stored)
        self._after_in_force(side)
        return self.i.queries.sync_info(side.sync_key)

    def _after_in_force(self, side: SideCtx) -> None:
        fresh = self.i.pipeline.side(side.id)
        self.i.pipeline.release_config_pending(fresh)
        self.i.pipeline.fill_new_mappings(fresh)
        self.i._changed(side.sync_key)


def _required(message: str, missing: str) -> str:
    message = message.strip()
    if not message:
        raise FieldError("message", missing)
    if len(message) > MAX_MESSAGE_CHARS:
        raise FieldError("message", f"at most {MAX_MESSAGE_CHARS} characters")
    return message


def _binding_changes(before: MappingConfig, after: MappingConfig) -> list[Change]:
    """How a secondary's binding changed: new or changed local names and directions."""
    changes: list[Change] = []
    old = {m.id: m for m in before.fields}
    for mapping in after.fields:
        was = old.get(mapping.id)
        if was is None:
            changes.append(Change("field", mapping.id, "added", mapping.direction))
        elif (was.local, was.direction, was.values) != (mapping.local, mapping.direction, mapping.values):
            parts = [
                f"{what} {before_value!r} -> {after_value!r}"
                for what, before_value, after_value in (
                    ("local", was.local, mapping.local),
                    ("direction", was.direction, mapping.direction),
                    ("values", was.values, mapping.values),
                )
                if before_value != after_value
            ]
            changes.append(Change("field", mapping.id, "changed", "; ".join(parts)))
    for what, new_table, old_table in (
        ("issue type", after.issue_types, before.issue_types),
        ("status", after.statuses, before.statuses),
    ):
        old_ids, new_ids = set(old_table.values()), set(new_table.values())
        changes += [Change(what, i, "added") for i in sorted(new_ids - old_ids)]
        changes += [Change(what, i, "removed") for i in sorted(old_ids - new_ids)]
    return changes
