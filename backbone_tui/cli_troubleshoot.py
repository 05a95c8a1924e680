"""`backbone sync analyze|skip-change` and `messages problems|recreate|ignore`: troubleshooting."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from engine.errors import BackboneError, FieldError

if TYPE_CHECKING:
    from engine.service.analysis import Analysis
    from engine.service.installation import Installation

SEVERITY_BANNER = {"error": "ERROR  ", "warning": "WARNING", "info": "info   "}


def register(groups: dict[str, Any]) -> None:
    """Add the troubleshooting commands to the `sync` and `messages` groups."""
    from .cli import _sub

    p = _sub(
        groups["sync"],
        "analyze",
        "what keeps a synchronization (or any) from working, problems first, each with its fix",
        "backbone sync analyze ACME-GLOBEX-1",
        "backbone sync analyze --all --json",
    )
    p.add_argument("key", nargs="?", help="the synchronization (or --all)")
    p.add_argument("--all", action="store_true", help="every synchronization (no network checks)")
    p.add_argument(
        "--check", action="store_true", help="with --all: log in to the mail servers and try the folders too"
    )
    p.add_argument("--no-check", action="store_true", help="one synchronization: skip the channel's log-in")
    p.add_argument("--json", action="store_true", help="JSON for scripts")
    p.set_defaults(handler=_analyze)
    p = _sub(
        groups["sync"],
        "skip-change",
        "skip the tracker change that stopped a side (a bug it trips), recorded, and start again",
        "backbone sync skip-change ACME-GLOBEX-1 --reason 'reported as BUG-7; the edit is redone by hand'",
    )
    p.add_argument("key")
    p.add_argument("--reason", required=True, help="why: recorded in the history")
    p.add_argument("--project", dest="side_project", help="local synchronizations: which side")
    p.set_defaults(handler=_skip_change)

    p = _sub(
        groups["messages"],
        "problems",
        "the error table: every held, failed or waiting message with its reason and actions",
        "backbone messages problems ACME-GLOBEX-1",
        "backbone messages problems --all --json",
    )
    p.add_argument("key", nargs="?", help="the synchronization (or --all)")
    p.add_argument("--all", action="store_true", help="every synchronization")
    p.add_argument("--json", action="store_true", help="JSON for scripts")
    p.set_defaults(handler=_problems)
    issue_help = "a local key like GLOBEX-12 or a pair id (repeat for several; a deleted issue: its pair id)"
    p = _sub(
        groups["messages"],
        "recreate",
        "an issue deleted here: create it again from the partner's full snapshot",
        "backbone messages recreate ACME-GLOBEX-1 --issue 3f2a9c01d2e84b7f9a6c5d4e3b2a1f09",
    )
    p.add_argument("key")
    p.add_argument("--issue", dest="issues", action="append", required=True, help=issue_help)
    p.add_argument("--reason", default="", help="why (recorded in the history)")
    p.set_defaults(handler=_recreate)
    p = _sub(
        groups["messages"],
        "ignore",
        "an issue deleted here: ignore the partner's future changes of it (recorded)",
        "backbone messages ignore ACME-GLOBEX-1 --issue 3f2a9c01d2e84b7f9a6c5d4e3b2a1f09 "
        "--reason 'closed as a duplicate' --yes",
    )
    p.add_argument("key")
    p.add_argument("--issue", dest="issues", action="append", required=True, help=issue_help)
    p.add_argument("--reason", required=True, help="why: recorded in the history")
    p.add_argument("--yes", action="store_true", help="confirm: its held and later messages are not applied")
    p.set_defaults(handler=_ignore)


def _analyze(inst: Installation, args: argparse.Namespace) -> int:
    from .cli import EXIT_OK

    if args.all == bool(args.key):
        raise FieldError("key", "name one synchronization, or --all")
    if args.all:
        analyses = inst.analyze_all(check_channels=args.check)
    else:
        analyses = [inst.analyze(args.key, check_channel=not args.no_check)]
    if args.json:
        data = [analysis.to_json() for analysis in analyses]
        print(json.dumps(data if args.all else data[0], indent=2))
        return EXIT_OK
    if args.all:
        _print_all(analyses)
    else:
        _print_one(analyses[0])
    return EXIT_OK


def _print_one(analysis: Analysis) -> None:
    """Problems first as banners with the command that fixes each, then the rest, then the folders."""
    print(f"{analysis.key} ({analysis.name}): {analysis.status}: {analysis.status_detail}")
    if not analysis.problems:
        print("no problems found")
    for finding in analysis.findings:
        print(f"{SEVERITY_BANNER.get(finding.severity, finding.severity)}  {finding.reason}: {finding.text}")
        for fix in finding.fixes:
            print(f"           fix: {fix.command or '(no command)'}    {fix.label}")
    from .cli import _print_table

    rows = [
        [
            scan.side,
            scan.folder,
            str(scan.count),
            f"{scan.oldest:%Y-%m-%d %H:%M}" if scan.oldest else "-",
            ", ".join(f"{code or '-'} {count}" for code, count in scan.reasons[:4]),
        ]
        for scan in analysis.folders
        if scan.count
    ]
    if rows:
        print()
        _print_table(rows, ["SIDE", "FOLDER", "COUNT", "OLDEST SINCE", "REASONS"])


def _print_all(analyses: list[Analysis]) -> None:
    """One line per synchronization with problems, the first problem and its fix; then a count."""
    troubled = [analysis for analysis in analyses if analysis.problems]
    for analysis in troubled:
        first = analysis.problems[0]
        more = f" (+{len(analysis.problems) - 1} more)" if len(analysis.problems) > 1 else ""
        print(f"{SEVERITY_BANNER.get(first.severity, first.severity)}  {analysis.key}: {first.text}{more}")
        if first.fixes:
            print(f"           fix: {first.fixes[0].command or first.fixes[0].label}")
    print(f"{len(troubled)} of {len(analyses)} synchronization(s) with problems")


def _skip_change(inst: Installation, args: argparse.Namespace) -> int:
    from .cli import EXIT_OK

    result = inst.troubleshooting.skip_change(args.key, args.reason, args.side_project)
    print(result.text)
    return EXIT_OK


def _problems(inst: Installation, args: argparse.Namespace) -> int:
    from .cli import EXIT_OK, _print_table

    if args.all == bool(args.key):
        raise FieldError("key", "name one synchronization, or --all")
    rows = inst.problems(None if args.all else args.key)
    if args.json:
        print(json.dumps([row.to_json() for row in rows], indent=2))
        return EXIT_OK
    _print_table(
        [
            [
                row.sync_key,
                str(row.message_id),
                row.folder,
                row.reason_code or "-",
                row.issue_key or "-",
                f"{(row.pair_id or '-')[:12]} {row.message_type} {row.epoch}/{row.seq}",
                f"{row.updated:%Y-%m-%d %H:%M}",
                str(row.attempts),
                ",".join(row.actions) or "-",
                row.reason_text[:50],
            ]
            for row in rows
        ],
        ["SYNC", "ID", "FOLDER", "REASON", "OCCURRED IN", "TRIGGERED BY", "TIME", "TRIES", "ACTIONS", "TEXT"],
    )
    return EXIT_OK


def _recreate(inst: Installation, args: argparse.Namespace) -> int:
    from .cli import EXIT_OK

    print(inst.troubleshooting.recreate(args.key, args.issues, args.reason).text)
    return EXIT_OK


def _ignore(inst: Installation, args: argparse.Namespace) -> int:
    from .cli import EXIT_OK

    if not args.yes:
        raise BackboneError(
            f"{args.key}: ignoring future changes of {', '.join(args.issues)} cannot be undone here; "
            "add --yes to confirm"
        )
    print(inst.troubleshooting.ignore(args.key, args.issues, args.reason).text)
    return EXIT_OK
