"""`backbone sync notify` and `backbone notify smtp|show|test`: who is told, and by which account."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from engine.errors import BackboneError

if TYPE_CHECKING:
    from engine.service.installation import Installation


def register(groups: dict[str, Any]) -> None:
    """Add `notify` to the `sync` group and the top-level `notify` group."""
    from .cli import _group, _sub

    p = _sub(
        groups["sync"],
        "notify",
        "list, add or remove the addresses told about failures, drafts and expiring keys",
        "backbone sync notify ACME-GLOBEX-1",
        "backbone sync notify ACME-GLOBEX-1 --add ops@acme.example",
        "backbone sync notify ACME-GLOBEX-1 --remove ops@acme.example --json",
    )
    p.add_argument("key")
    p.add_argument("--add", action="append", default=[], metavar="ADDR", help="tell this address (repeat)")
    p.add_argument("--remove", action="append", default=[], metavar="ADDR", help="stop telling it (repeat)")
    p.add_argument("--json", action="store_true", help="JSON for scripts")
    p.set_defaults(handler=_sync_notify)

    actions = _group(
        groups["top"],
        "notify",
        "notification mails: the installation-wide account, and a test",
        _notify,
        "backbone notify smtp --host smtp.acme.example --user bb --from bb@acme.example",
        "backbone notify show --json",
        "backbone notify test ops@acme.example",
    )
    p = _sub(
        actions,
        "smtp",
        "set the account notifications go out by (email synchronizations use their own); "
        "the password comes from $BACKBONE_NOTIFY_SMTP_PASSWORD, else a prompt",
        "backbone notify smtp --host smtp.acme.example --port 587 --tls starttls --user bb "
        "--from bb@acme.example",
        "backbone notify smtp --clear",
    )
    p.add_argument("--host", help="the SMTP server")
    p.add_argument("--port", type=int, help="default: 25, 587 with starttls, 465 with tls")
    p.add_argument("--tls", choices=("none", "starttls", "tls"), default="starttls", help="default starttls")
    p.add_argument("--user", default="", help="the login (none: send without logging in)")
    p.add_argument("--from", dest="from_addr", help="the sending address")
    p.add_argument("--ca-file", default="", help="PEM file of CAs to trust for the server")
    p.add_argument("--clear", action="store_true", help="remove the account")
    p = _sub(
        actions, "show", "the account (never its password) and the last mails sent", "backbone notify show"
    )
    p.add_argument("--json", action="store_true", help="JSON for scripts")
    p = _sub(
        actions,
        "test",
        "send one test mail and say what happened",
        "backbone notify test ops@acme.example",
        "backbone notify test ops@acme.example --sync ACME-GLOBEX-1",
    )
    p.add_argument("address")
    p.add_argument("--sync", dest="sync_key", help="by the account this synchronization notifies with")


def _sync_notify(inst: Installation, args: argparse.Namespace) -> int:
    from .cli import EXIT_OK

    if args.add or args.remove:
        addresses = inst.notifications.change_recipients(args.key, args.add, args.remove)
    else:
        addresses = inst.notifications.recipients(args.key)
    if args.json:
        print(json.dumps({"sync": args.key, "recipients": addresses}, indent=2))
        return EXIT_OK
    for address in addresses:
        print(address)
    if not addresses:
        print(f"{args.key}: nobody is notified (add an address with --add)")
    return EXIT_OK


def _notify(inst: Installation, args: argparse.Namespace) -> int:
    if args.action == "smtp":
        return _smtp(inst, args)
    if args.action == "show":
        return _show(inst, args)
    from .cli import EXIT_OK

    print(inst.notifications.send_test(args.address, args.sync_key))
    return EXIT_OK


def _smtp(inst: Installation, args: argparse.Namespace) -> int:
    from engine.channels.email import SmtpSettings

    from .cli import EXIT_OK

    if args.clear:
        inst.notifications.set_account(None)
        print("notification account removed")
        return EXIT_OK
    missing = [flag for flag, value in (("--host", args.host), ("--from", args.from_addr)) if not value]
    if missing:
        raise BackboneError(f"notify smtp needs {', '.join(missing)}")
    port = args.port or {"none": 25, "starttls": 587, "tls": 465}[args.tls]
    settings = SmtpSettings(
        args.host, port, args.tls, args.user, _password(args.user), args.from_addr, "", args.ca_file
    )
    inst.notifications.set_account(settings)
    print(f"notifications go out by SMTP {args.host}:{port} from {args.from_addr}")
    print("send a test with: backbone notify test ADDRESS")
    return EXIT_OK


def _password(user: str) -> str:
    """The account's password: from the environment, else asked on the terminal (no user: none)."""
    from engine.service.notify import PASSWORD_ENV

    if not user:
        return ""
    value = os.environ.get(PASSWORD_ENV)
    if value is not None:
        return value
    if not sys.stdin.isatty():
        raise BackboneError(f"set {PASSWORD_ENV} (no terminal to ask for the SMTP password)")
    import getpass

    return getpass.getpass(f"SMTP password for {user}: ")


def _show(inst: Installation, args: argparse.Namespace) -> int:
    from .cli import EXIT_OK, _print_table

    shown = inst.notifications.show()
    if args.json:
        print(json.dumps(shown, indent=2))
        return EXIT_OK
    smtp = shown["smtp"]
    if smtp is None:
        print("account: none (email synchronizations notify by their own; set one: backbone notify smtp)")
    else:
        login = f" as {smtp['username']}" if smtp["username"] else ""
        password = ", password set" if smtp["password_set"] else ""
        print(f"account: SMTP {smtp['host']}:{smtp['port']} ({smtp['tls']}){login}{password}")
        print(f"from: {smtp['from_addr']}")
    print(f"recipients: {shown['recipients']} address(es) over all synchronizations")
    if shown["recent"]:
        print()
        _print_table(
            [[row["at"][:19], row["sync"], row["kind"], row["text"]] for row in shown["recent"]],
            ["SENT", "SYNC", "KIND", "WHAT"],
        )
    return EXIT_OK
