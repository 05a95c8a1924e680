"""`backbone tracker add|update|list|test|remove`: the Jira and Redmine accounts synchronizations use."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
from typing import TYPE_CHECKING, Any

from engine.errors import BackboneError

if TYPE_CHECKING:
    from engine.service.installation import Installation


def register(groups: dict[str, Any]) -> None:
    """Add the account commands to the `tracker` group."""
    from .cli import _sub

    actions = groups["tracker"]
    p = _sub(
        actions,
        "add",
        "add a Jira or Redmine (the secret from $BACKBONE_TRACKER_<NAME>_SECRET or a prompt)",
        "backbone tracker add jira-acme --kind jira --url https://acme.atlassian.net --api-version 3 "
        "--auth token --user sync-bot@acme.example",
        "backbone tracker add redmine --kind redmine --url https://redmine.acme.example --auth apikey "
        "--user sync-bot",
    )
    p.add_argument("name", help="lower-case letters, digits, - and _")
    p.add_argument("--kind", required=True, choices=("jira", "redmine"), help="the tracker's kind")
    _account_arguments(p, adding=True)
    p.set_defaults(handler=_add)
    p = _sub(
        actions,
        "update",
        "change an account: new credentials (--secret), address, user, options; a refusal of the "
        "old credentials is cleared and what waits in OFFLINE is retried",
        "BACKBONE_TRACKER_REDMINE_SECRET=... backbone tracker update redmine --secret",
        "backbone tracker update jira-acme --url https://jira.acme.example --poll-interval 5",
    )
    p.add_argument("name")
    _account_arguments(p, adding=False)
    p.add_argument(
        "--secret",
        action="store_true",
        help="a new secret, from $BACKBONE_TRACKER_<NAME>_SECRET or a prompt",
    )
    p.set_defaults(handler=_update)
    p = _sub(actions, "list", "every tracker: the embedded one and the accounts (never a secret)")
    p.add_argument("--json", action="store_true", help="JSON for scripts")
    p.set_defaults(handler=_list)
    p = _sub(
        actions,
        "test",
        "reach a tracker, log in, and check the sync user's permissions on a project",
        "backbone tracker test redmine --project ACME",
    )
    p.add_argument("name")
    p.add_argument(
        "--project", dest="tracker_project", help="also check this project and the permissions there"
    )
    p.set_defaults(handler=_test)
    p = _sub(actions, "remove", "remove an account (refused while a synchronization uses it)")
    p.add_argument("name")
    p.set_defaults(handler=_remove)


def _account_arguments(p: argparse.ArgumentParser, *, adding: bool) -> None:
    """The account's values: required when adding (with defaults), each optional when updating."""
    p.add_argument("--url", required=adding, help="its base address, e.g. https://jira.acme.example")
    p.add_argument(
        "--api-version",
        type=int,
        default=0 if adding else None,
        help="Jira: 2 (Server/Data Center) or 3 (Cloud)",
    )
    p.add_argument(
        "--auth", help="jira: token (e-mail and API token; the default), basic or pat; redmine: apikey"
    )
    p.add_argument("--user", required=adding, help="the synchronization user's login there")
    p.add_argument("--poll-interval", type=float, help="seconds between looks for changes (default 1)")
    p.add_argument(
        "--option",
        dest="options",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a connector setting (e.g. redmine's sync_marker_field_id=7, relation_sweep=60); repeat",
    )


def secret_variable(name: str) -> str:
    """The environment variable that gives a tracker's secret, e.g. BACKBONE_TRACKER_JIRA_ACME_SECRET."""
    return f"BACKBONE_TRACKER_{re.sub(r'[^A-Z0-9]', '_', name.upper())}_SECRET"


def _add(inst: Installation, args: argparse.Namespace) -> int:
    from engine.service.trackers import AUTHS, check_name, parse_options

    from .cli import EXIT_OK

    check_name(args.name)  # before asking for the secret
    secret = _secret(args.name, f"{args.kind} secret (password, API token or key) for {args.user}: ")
    auth = args.auth or AUTHS[args.kind][0]
    info = inst.trackers.add(
        args.name,
        args.kind,
        args.url,
        auth=auth,
        user=args.user,
        secret=secret,
        api_version=args.api_version or (3 if args.kind == "jira" else 0),
        poll_interval=args.poll_interval,
        options=parse_options(args.options),
    )
    print(f"tracker {info.name} added ({info.kind} at {info.url}, as {info.user}); check it with:")
    print(f"  backbone tracker test {info.name} --project KEY")
    return EXIT_OK


def _secret(name: str, prompt: str) -> str:
    """The secret from the account's environment variable, else asked for (never echoed)."""
    variable = secret_variable(name)
    secret = os.environ.get(variable, "")
    if not secret:
        if not sys.stdin.isatty():
            raise BackboneError(f"no secret: set ${variable} (or run in a terminal to be asked)")
        secret = getpass.getpass(prompt)
    return secret


def _update(inst: Installation, args: argparse.Namespace) -> int:
    from engine.service.trackers import parse_options

    from .cli import EXIT_OK

    before = inst.trackers.info(args.name)  # before asking for the secret
    secret = _secret(args.name, f"new secret for {args.user or before.user}: ") if args.secret else None
    info = inst.trackers.update(
        args.name,
        url=args.url,
        auth=args.auth,
        user=args.user,
        secret=secret,
        api_version=args.api_version,
        poll_interval=args.poll_interval,
        options=parse_options(args.options),
    )
    print(f"tracker {info.name} updated ({info.kind} at {info.url}, as {info.user}); check it with:")
    print(f"  backbone tracker test {info.name} --project KEY")
    return EXIT_OK


def _list(inst: Installation, args: argparse.Namespace) -> int:
    from .cli import EXIT_OK, _print_table

    infos = inst.trackers.accounts()
    if args.json:
        print(json.dumps([info.to_json() for info in infos], indent=2))
        return EXIT_OK
    _print_table(
        [
            [
                info.name,
                info.kind,
                info.url or "-",
                str(info.api_version or "-"),
                info.auth or "-",
                info.user or "-",
                ", ".join(info.used_by) or "-",
                f"credentials refused: {info.problem}" if info.problem else "ok",
            ]
            for info in infos
        ],
        ["NAME", "KIND", "URL", "API", "AUTH", "USER", "USED BY", "STATE"],
    )
    return EXIT_OK


def _test(inst: Installation, args: argparse.Namespace) -> int:
    from .cli import EXIT_OK

    for line in inst.trackers.test(args.name, args.tracker_project):
        print(line)
    return EXIT_OK


def _remove(inst: Installation, args: argparse.Namespace) -> int:
    from .cli import EXIT_OK

    inst.trackers.remove(args.name)
    print(f"tracker {args.name} removed")
    return EXIT_OK
