"""`backbone sync settings|history|analyze` and `messages resend`: the operations commands."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from engine.errors import FieldError

if TYPE_CHECKING:
    from engine.service.installation import Installation


def register(groups: dict[str, Any]) -> None:
    """Add the operations commands to the `sync` and `messages` groups."""
    from .cli import _sub

    p = _sub(
        groups["sync"],
        "settings",
        "list or change the advanced settings (resend, retention, intervals, sizes)",
        "backbone sync settings ACME-GLOBEX-1",
        "backbone sync settings ACME-GLOBEX-1 --set resend_after=300 --set retention_sent=14",
    )
    p.add_argument("key")
    p.add_argument("--set", dest="assignments", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--json", action="store_true", help="JSON for scripts")
    p.set_defaults(handler=_settings)
    p = _sub(
        groups["sync"],
        "history",
        "what happened to each issue: messages in and out, conflicts, operator actions; with --issue, "
        "which message set each field's value",
        "backbone sync history ACME-GLOBEX-1",
        "backbone sync history ACME-GLOBEX-1 --issue GLOBEX-12 --json",
    )
    p.add_argument("key")
    p.add_argument("--issue", help="only this issue: a local key like GLOBEX-12 or a pair id")
    p.add_argument("--limit", type=int, default=500, help="the newest N events (default 500)")
    p.add_argument("--json", action="store_true", help="JSON for scripts")
    p.set_defaults(handler=_history)
    p = _sub(
        groups["messages"],
        "resend",
        "ask the partner to send an issue's messages again (or a full snapshot with --resync)",
        "backbone messages resend ACME-GLOBEX-1 --issue GLOBEX-12",
    )
    p.add_argument("key")
    p.add_argument("--issue", required=True, help="a pair id or a local key like GLOBEX-12")
    p.add_argument("--resync", action="store_true", help="ask for a RESYNC (every value) instead")
    p.add_argument("--reason", default="", help="why, for the issue's history")
    p.set_defaults(handler=_resend)


def _settings(inst: Installation, args: argparse.Namespace) -> int:
    from .cli import EXIT_OK, _print_table

    if args.assignments:
        changes: dict[str, str] = {}
        for assignment in args.assignments:
            name, sep, value = assignment.partition("=")
            if not sep or not name.strip():
                raise FieldError("assignments", f"{assignment!r}: expected NAME=VALUE")
            changes[name.strip()] = value
        rows = inst.change_settings(args.key, changes)
    else:
        rows = inst.settings(args.key)
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    _print_table(
        [
            [
                row["name"],
                f"{row['value']}{' *' if row['changed'] else ''}",
                str(row["default"]),
                row["unit"],
                row["help"],
            ]
            for row in rows
        ],
        ["NAME", "VALUE", "DEFAULT", "UNIT", "WHAT IT DOES"],
    )
    if args.assignments:
        print(f"{args.key}: settings changed; a running engine uses them within a second")
    return EXIT_OK


def _marked(row: dict[str, Any]) -> str:
    """A setting's value, with `*` when it differs from the default."""
    return f"{row['value']}{' *' if row['changed'] else ''}"


def _resend(inst: Installation, args: argparse.Namespace) -> int:
    from .cli import EXIT_OK

    asked = inst.delivery.request_resend(args.key, args.issue, resync=args.resync, reason=args.reason)
    what = "a full snapshot (RESYNC)" if args.resync else "its messages after the last one applied here"
    print(f"{args.key}: {asked} request(s) queued for {args.issue}: the partner sends {what}")
    return EXIT_OK


def _history(inst: Installation, args: argparse.Namespace) -> int:
    from .cli import EXIT_OK, _print_table

    entries = inst.issue_history.history(args.key, args.issue, args.limit)
    origins = inst.issue_history.provenance(args.key, args.issue) if args.issue else []
    if args.json:
        data: dict[str, Any] = {"events": [entry.to_json() for entry in entries]}
        if args.issue:
            data["fields"] = [origin.to_json() for origin in origins]
        print(json.dumps(data, indent=2))
        return EXIT_OK
    if not entries:
        print(f"{args.key}: nothing has happened{' to ' + args.issue if args.issue else ''} yet")
    _print_table(
        [
            [f"{entry.at:%Y-%m-%d %H:%M:%S}", entry.issue_key or "-", entry.kind, entry.text]
            for entry in entries
        ],
        ["WHEN (UTC)", "ISSUE", "WHAT", "DETAIL"],
    )
    if origins:
        print()
        _print_table(
            [
                [
                    origin.field,
                    json.dumps(origin.local_value, ensure_ascii=False)[:60],
                    "here" if origin.origin == "local" else "partner",
                    origin.at,
                    _message_ref(origin),
                ]
                for origin in origins
            ],
            ["FIELD", "VALUE", "SET BY", "CHANGED", "MESSAGE"],
        )
    return EXIT_OK


def _message_ref(origin: Any) -> str:
    """Which message carried a field's value, as a person reads it."""
    if not origin.direction:
        return "-"
    arrow = "sent" if origin.direction == "out" else "received"
    kept = origin.message_id or "no longer kept"
    return f"{arrow} seq {origin.seq} of epoch {origin.epoch} ({kept})"
