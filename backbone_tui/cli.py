"""`backbone`: the command-line interface (SPEC section 8); without a command, the TUI."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import BackboneError, FieldError
from engine.vocab import ALL_STATUSES, Protocol, Role, SyncStatus

from . import cli_api, cli_notify, cli_ops, cli_trackers, cli_troubleshoot

if TYPE_CHECKING:
    from engine.service.installation import Installation

EXIT_OK, EXIT_USER, EXIT_USAGE = 0, 1, 2
EXIT_PIPE = 128 + signal.SIGPIPE  # as a shell reports a command whose reader went away
CREATING_COMMANDS = {("project", "create"), ("sync", "create")}


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def _sub(group: Any, name: str, help: str, *examples: str) -> argparse.ArgumentParser:
    """A subcommand with its help line (listed in --help and in completion) and examples."""
    parser: argparse.ArgumentParser = group.add_parser(
        name,
        help=help,
        description=help[:1].upper() + help[1:] + ".",
        epilog=_examples(*examples) if examples else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(parser=parser)  # the innermost command's parser: it names the flags
    return parser


#: engine fields that no single flag stands for
FIELD_TEXT = {"mail": "mail settings (--imap-*, --smtp-*)"}


def _flag(parsers: Sequence[argparse.ArgumentParser], field: str) -> str:
    """The option that sets the engine's `field` in the command that ran (`--handshake-out`)."""
    for parser in parsers:
        for action in parser._actions:  # noqa: SLF001 - argparse has no public list of its options
            if action.dest == field and not isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
                longest = max(action.option_strings, key=len, default="")
                return longest or str(action.metavar or field.upper())
    return FIELD_TEXT.get(field, field)


def _group(group: Any, name: str, help: str, handler: Callable[..., int], *examples: str) -> Any:
    """A command with actions (sync, config, ...): its parser handled by `handler`; returns the actions."""
    parser = _sub(group, name, help, *examples)
    parser.set_defaults(handler=handler)
    return parser.add_subparsers(dest="action", metavar="ACTION", required=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="backbone",
        description="Keep issues in sync between two trackers over file exchange or email. "
        "Without a command: the terminal UI.",
        epilog=_examples(
            "backbone demo ./demo                       two paired installations, then the TUI",
            "backbone --home ./demo/acme                the TUI of one home",
            "backbone --home H sync list --status RUNNING",
            "backbone completion bash > /etc/bash_completion.d/backbone",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"backbone {_version()}")
    parser.add_argument("--home", help="installation folder (default: $BACKBONE_HOME or the user data dir)")
    parser.add_argument("--project", help="open the project overview of this project (TUI)")
    parser.add_argument(
        "--log-level",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        default="INFO",
        help="what goes to HOME/logs/backbone.log (and to stderr for 'run' as a service); default INFO",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = _sub(
        sub, "demo", "two paired installations syncing sample issues", "backbone demo ./demo --no-tui"
    )
    demo.add_argument("dir", type=Path, help="folder for acme/, globex/ and exchange/")
    demo.add_argument("--no-encryption", action="store_true", help="plain messages instead of OpenPGP")
    demo.add_argument("--no-tui", action="store_true", help="sync, print a summary and exit")
    demo.add_argument(
        "--protocol",
        choices=(Protocol.FILE.value, Protocol.EMAIL.value),
        default=Protocol.FILE.value,
        help="how messages travel",
    )
    demo.add_argument(
        "--mail-server",
        metavar="HOST:IMAP_PORT:SMTP_PORT",
        help="email demo: a mail server without TLS on which the accounts below exist",
    )
    demo.add_argument("--acme-mail", metavar="ADDRESS", help="email demo: Acme's account (also its login)")
    demo.add_argument("--globex-mail", metavar="ADDRESS", help="email demo: Globex's account")
    demo.set_defaults(handler=None)

    run = _sub(
        sub,
        "run",
        "the headless engine",
        "backbone --home H run",
        "backbone --home H run --once",
        "backbone --home H run --api 127.0.0.1:8642",
    )
    run.add_argument("--once", action="store_true", help="do all pending work, then exit")
    run.add_argument(
        "--reconcile",
        action="store_true",
        help="compare every message folder with the database at start, even after a clean stop "
        "(after files under data/ were moved by hand)",
    )
    run.add_argument(
        "--api",
        metavar="HOST:PORT",
        nargs="?",
        const="127.0.0.1:8642",
        help="also serve the REST API under /api/1/ (alone: 127.0.0.1:8642; tokens: 'api token create')",
    )
    run.add_argument(
        "--api-insecure-bind",
        action="store_true",
        help="allow plain HTTP on a non-loopback address (else it needs --api-cert and --api-key)",
    )
    run.add_argument("--api-cert", metavar="FILE", help="serve the API over HTTPS: the PEM certificate")
    run.add_argument("--api-key", metavar="FILE", help="serve the API over HTTPS: the PEM private key")
    run.set_defaults(handler=_run)

    doctor = _sub(sub, "doctor", "check the home's database file (read-only) and say what is damaged")
    doctor.set_defaults(handler=None)
    completion = _sub(sub, "completion", "print a shell completion script", "backbone completion bash")
    completion.add_argument("shell", choices=("bash", "zsh", "tcsh"), help="the shell to complete for")
    completion.set_defaults(handler=None)

    actions = _group(sub, "sync", "synchronizations: create, pair, start, stop, inspect, delete", _sync)
    groups: dict[str, Any] = {"top": sub, "sync": actions}
    p = _sub(actions, "list", "every synchronization, one line each", "backbone sync list --status STOPPED")
    p.add_argument("--status", help="only this status (e.g. RUNNING or 'REQUEST SENT')")
    p.add_argument("--project", dest="filter_project", help="only this local project")
    p.add_argument("--json", action="store_true", help="JSON for scripts")
    p = _sub(actions, "show", "one synchronization in full", "backbone sync show ACME-GLOBEX-1 --json")
    p.add_argument("key")
    p.add_argument("--json", action="store_true", help="JSON for scripts")
    p = _sub(
        actions,
        "resync",
        "send a snapshot of synced issues again (a new epoch): all, one issue, or one mapping",
        "backbone sync resync ACME-GLOBEX-1 --issue ACME-12",
        "backbone sync resync ACME-GLOBEX-1 --field f-3a9c01d2",
    )
    p.add_argument("key")
    p.add_argument("--issue", help="only this local issue (key) or pair id")
    p.add_argument("--field", help="only this mapping id ('status' for the status)")
    p.add_argument("--project", dest="side_project", help="local synchronizations: which side")
    p = _sub(
        actions,
        "create",
        "a new synchronization: a primary's request, a secondary from a handshake file, or local",
        "backbone sync create --role primary --project ACME --user sync-bot --name N "
        "--exchange /srv/x --handshake-out hs.json",
        "backbone sync create --role secondary --handshake hs.json --project GLOBEX --user sync-bot "
        "--exchange /srv/y",
    )
    p.add_argument(
        "--role", choices=tuple(role.value for role in Role), required=True, help="this side's role"
    )
    p.add_argument("--project", dest="sync_project", required=True, help="the local project")
    p.add_argument("--partner-project", help="primary: the partner's project key; local: the second project")
    p.add_argument("--user", required=True, help="the synchronization user (fixed once set)")
    p.add_argument("--protocol", default=Protocol.FILE.value, help="file (default) or email")
    p.add_argument("--name", help="primary, local: the synchronization's name")
    p.add_argument("--description", default="", help="free text")
    p.add_argument("--exchange", help="file protocol: the exchange folder (SEND and RECEIVE)")
    p.add_argument("--handshake-out", help="primary: where to write the handshake file for the partner")
    p.add_argument("--handshake", help="secondary: the partner's handshake file")
    p.add_argument(
        "--fingerprint", help="secondary: the primary's key fingerprint, confirmed with the partner"
    )
    p.add_argument("--no-encryption", action="store_true", help="primary: plain messages (not advised)")
    _mail_options(p)
    p.add_argument("--review", action="store_true", help="review mode: configuration changes are drafts")
    p.add_argument(
        "--tracker",
        default="embedded",
        help="the tracker the project lives in ('tracker list'; default embedded)",
    )
    p.add_argument("--partner-tracker", help="local: the tracker of --partner-project (default: --tracker)")
    for name, text in (("accept", "accept an incoming request"), ("decline", "decline an incoming request")):
        p = _sub(actions, name, text, f"backbone sync {name} ACME-GLOBEX-1")
        p.add_argument("key")
    for name in ("start", "stop"):
        p = _sub(
            actions,
            name,
            f"{name} synchronizing issues (several keys, or all in one state)",
            f"backbone sync {name} ACME-GLOBEX-1",
            f"backbone sync {name} --status {'STOPPED' if name == 'start' else 'RUNNING'}",
        )
        p.add_argument("keys", nargs="*", help="synchronization keys")
        p.add_argument("--status", help="all synchronizations in this state instead of keys")
    p = _sub(
        actions,
        "support-zip",
        "a ZIP for the support team (no passwords, keys or issue contents)",
        "backbone sync support-zip ACME-GLOBEX-1 -o /tmp",
    )
    p.add_argument("key")
    p.add_argument("-o", "--output", help="file or folder (default: HOME/support/)")
    p = _sub(
        actions,
        "handshake",
        "write the handshake file again (primary, REQUEST SENT)",
        "backbone sync handshake ACME-GLOBEX-1 -o hs2.json",
    )
    p.add_argument("key")
    p.add_argument(
        "-o", "--output", dest="handshake_out", required=True, help="the new file (its folder must exist)"
    )
    p = _sub(
        actions,
        "test",
        "check the channel again (mail log-in, exchange folder)",
        "backbone sync test ACME-GLOBEX-1",
    )
    p.add_argument("key")
    p = _sub(
        actions, "edit", "change name or description", "backbone sync edit ACME-GLOBEX-1 --name 'New name'"
    )
    p.add_argument("key")
    p.add_argument("--name", help="the new name")
    p.add_argument("--description", help="the new description")
    p.add_argument("--user", help=argparse.SUPPRESS)
    p.add_argument("--protocol", help=argparse.SUPPRESS)
    p = _sub(
        actions,
        "delete",
        "stop and delete (message files are kept)",
        "backbone sync delete ACME-GLOBEX-1 --yes",
    )
    p.add_argument("key")
    p.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")

    actions = _group(
        sub,
        "config",
        "mapping configuration: the draft, publishing, the partner's versions",
        _config,
        "backbone config export ACME-GLOBEX-1 -o acme.toml     edit it, then:",
        "backbone config import ACME-GLOBEX-1 acme.toml",
        "backbone config publish ACME-GLOBEX-1 --message 'Severity is shared now'",
    )
    side_help = "local synchronizations: which side"
    p = _sub(
        actions,
        "export",
        "print (or write) this side's draft (the secondary's: a template to bind)",
        "backbone config export ACME-GLOBEX-1 -o acme.toml",
    )
    p.add_argument("key")
    p.add_argument("-o", "--output", help="write to this file instead of printing")
    p.add_argument("--project", dest="side_project", help=side_help)
    p = _sub(
        actions,
        "import",
        "replace this side's draft from a file (the version in force stays)",
        "backbone config import ACME-GLOBEX-1 acme.toml",
    )
    p.add_argument("key")
    p.add_argument("file", help="a TOML file as 'config export' writes it")
    p.add_argument("--project", dest="side_project", help=side_help)
    p = _sub(
        actions,
        "diff",
        "the draft against the version in force, per mapping (or two versions)",
        "backbone config diff ACME-GLOBEX-1",
        "backbone config diff ACME-GLOBEX-1 --from 1 --to 3",
    )
    p.add_argument("key")
    p.add_argument("--from", dest="from_version", type=int, help="an older version (config history)")
    p.add_argument("--to", dest="to_version", type=int, help="a newer version")
    p.add_argument("--project", dest="side_project", help=side_help)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = _sub(
        actions,
        "dry-run",
        "the draft against every synced issue: values it cannot map, new mappings to resync",
        "backbone config dry-run ACME-GLOBEX-1 --json",
    )
    p.add_argument("key")
    p.add_argument("--project", dest="side_project", help=side_help)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = _sub(
        actions,
        "publish",
        "primary: send the draft to the partner; secondary: put the bound version in force "
        "(in review mode, narrower directions are proposed to the primary)",
        "backbone config publish ACME-GLOBEX-1 --message 'Priorities are synced too'",
        "backbone config publish ACME-GLOBEX-1 --start        (secondary)",
    )
    p.add_argument("key")
    p.add_argument(
        "-m",
        "--message",
        default="",
        help="what changed, for the partner (required on the primary, and for a proposal)",
    )
    p.add_argument("--start", action="store_true", help="start synchronizing once the version is in force")
    p.add_argument("--project", dest="side_project", help=side_help)
    p = _sub(
        actions,
        "decline",
        "review mode: decline the partner's draft (secondary) or proposal (primary) with a message",
        "backbone config decline ACME-GLOBEX-1 -m 'We do not share the customer'",
    )
    p.add_argument("key")
    p.add_argument("-m", "--message", default="", help="why, for the partner (required)")
    p.add_argument("--project", dest="side_project", help=side_help)
    p = _sub(
        actions,
        "accept",
        "review mode, primary: accept the secondary's proposal as the next version",
        "backbone config accept ACME-GLOBEX-1",
    )
    p.add_argument("key")
    p.add_argument("--project", dest="side_project", help=side_help)
    p = _sub(
        actions,
        "incoming",
        "the partner's new version (or, on the primary, its proposal), its message and what it changes",
        "backbone config incoming ACME-GLOBEX-1",
    )
    p.add_argument("key")
    p.add_argument("--project", dest="side_project", help=side_help)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = _sub(
        actions,
        "history",
        "every version that was in force on this side",
        "backbone config history ACME-GLOBEX-1 --json",
    )
    p.add_argument("key")
    p.add_argument("--project", dest="side_project", help=side_help)
    p.add_argument("--json", action="store_true", help="machine-readable output")

    actions = _group(
        sub,
        "messages",
        "messages of a synchronization: list, retry, skip",
        _messages,
        "backbone messages ACME-GLOBEX-1 --folder ERROR",
        "backbone messages retry ACME-GLOBEX-1 --issue GLOBEX-12",
        "backbone messages skip ACME-GLOBEX-1 --issue GLOBEX-12",
    )
    groups["messages"] = actions
    p = _sub(
        actions,
        "list",
        "the messages, folder by folder (also: 'messages KEY')",
        "backbone messages list ACME-GLOBEX-1",
    )
    p.add_argument("key")
    p.add_argument("--folder", help="only this folder (ERROR, REJECTED, SEND_ERROR, ...)")
    p.add_argument("--json", action="store_true", help="JSON for scripts")
    p = _sub(
        actions, "retry", "queue held and failed messages again", "backbone messages retry ACME-GLOBEX-1"
    )
    p.add_argument("key")
    p.add_argument("--issue", help="only this issue: a pair id or a local key like GLOBEX-12")
    p = _sub(
        actions,
        "skip",
        "skip the first held message of an issue",
        "backbone messages skip ACME-GLOBEX-1 --issue GLOBEX-12 --reason 'value added by hand'",
    )
    p.add_argument("key")
    p.add_argument("--issue", required=True, help="a pair id or a local key like GLOBEX-12")
    p.add_argument("--reason", required=True, help="why: recorded in the history")

    actions = _group(sub, "project", "embedded tracker projects", _project)
    p = _sub(actions, "create", "a new project", "backbone project create ACME --name Acme")
    p.add_argument("key", help="upper-case letters and digits")
    p.add_argument("--name", required=True, help="the project's name")
    p = _sub(
        actions,
        "field",
        "add a custom field",
        "backbone project field ACME Impact --kind select --option Low",
    )
    p.add_argument("key")
    p.add_argument("name")
    p.add_argument("--kind", choices=("text", "number", "select"), default="text", help="the field's kind")
    p.add_argument("--option", action="append", default=[], help="select fields: an allowed value (repeat)")
    p = _sub(actions, "list", "every project")
    p.add_argument("--json", action="store_true", help="JSON for scripts")

    actions = _group(sub, "issue", "embedded tracker issues", _issue)
    p = _sub(
        actions,
        "create",
        "a new issue",
        "backbone issue create --project ACME --type Bug --summary 'It broke'",
    )
    p.add_argument("--project", dest="issue_project", required=True, help="the project")
    p.add_argument("--type", required=True, help="Bug, Task, Story or Sub-task")
    p.add_argument("--summary", required=True, help="one line")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="another field (repeat)")
    p.add_argument("--parent", help="sub-tasks: the parent's key")
    p = _sub(actions, "update", "change fields", "backbone issue update ACME-1 --set priority=High")
    p.add_argument("issue")
    p.add_argument(
        "--set", action="append", default=[], metavar="FIELD=VALUE", required=True, help="a field (repeat)"
    )
    p = _sub(actions, "comment", "add a comment", "backbone issue comment ACME-1 'Seen again'")
    p.add_argument("issue")
    p.add_argument("text")
    p = _sub(actions, "attach", "attach a file", "backbone issue attach ACME-1 ./error.log")
    p.add_argument("issue")
    p.add_argument("file")
    p = _sub(actions, "transition", "move to a status", "backbone issue transition ACME-1 Done")
    p.add_argument("issue")
    p.add_argument("status")
    p = _sub(actions, "link", "link to another issue", "backbone issue link ACME-2 ACME-1 --kind blocks")
    p.add_argument("issue")
    p.add_argument("target")
    p.add_argument("--kind", default="relates", help="the link's kind (default: relates)")
    p = _sub(actions, "show", "one issue in full", "backbone issue show ACME-1 --json")
    p.add_argument("issue")
    p.add_argument("--json", action="store_true", help="JSON for scripts")
    p = _sub(actions, "list", "every issue, one line each", "backbone issue list --project ACME")
    p.add_argument("--project", dest="issue_project", help="only this project")
    p.add_argument("--json", action="store_true", help="JSON for scripts")
    for action in actions.choices.values():
        action.add_argument("--as", dest="as_user", default="admin", help="act as this user (default: admin)")

    actions = _group(sub, "user", "embedded tracker users (for user fields matched by e-mail)", _user)
    p = _sub(
        actions,
        "add",
        "add a user, or change its e-mail address",
        "backbone user add alice --email alice@acme.example",
    )
    p.add_argument("name", help="the user name issues show (letters, digits, - _ .)")
    p.add_argument("--email", required=True, help="the address a partner knows this person by")
    p = _sub(actions, "list", "every user with an e-mail address")
    p.add_argument("--json", action="store_true", help="JSON for scripts")

    actions = _group(sub, "tracker", "trackers: Jira and Redmine accounts, the embedded tracker", _tracker)
    groups["tracker"] = actions
    p = _sub(
        actions,
        "maintenance",
        "take the tracker offline (or back) to test outages",
        "backbone tracker maintenance on",
    )
    p.add_argument("state", choices=("on", "off"))
    for register in REGISTRARS:
        register(groups)
    return parser


#: modules that add commands: each `register(groups)` adds its parsers (with their own `handler`)
#: to the groups "top", "sync", "messages" and "tracker"
REGISTRARS: tuple[Callable[[dict[str, Any]], None], ...] = (
    cli_ops.register,
    cli_trackers.register,
    cli_notify.register,
    cli_api.register,
    cli_troubleshoot.register,
)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("backbone-tui")
    except PackageNotFoundError:
        return "unknown"


def _mail_options(p: argparse.ArgumentParser) -> None:
    mail = p.add_argument_group(
        "email protocol",
        "passwords come from $BACKBONE_IMAP_PASSWORD / $BACKBONE_SMTP_PASSWORD, else a prompt; "
        "they are stored only in the home's database",
    )
    mail.add_argument("--imap-host")
    mail.add_argument("--imap-port", type=int)
    mail.add_argument("--imap-tls", choices=("none", "starttls", "tls"), default="tls")
    mail.add_argument("--imap-user")
    mail.add_argument("--imap-folder", default="INBOX")
    mail.add_argument("--smtp-host")
    mail.add_argument("--smtp-port", type=int)
    mail.add_argument("--smtp-tls", choices=("none", "starttls", "tls"), default="starttls")
    mail.add_argument("--smtp-user")
    mail.add_argument("--same-credentials", action="store_true", help="send with the IMAP user and password")
    mail.add_argument("--from", dest="from_addr", help="our sending address")
    mail.add_argument(
        "--to", dest="to_addr", help="the partner's receive address (secondary: from the handshake)"
    )
    mail.add_argument("--address", help="our receive address, told to the partner (default: --from)")
    mail.add_argument("--ca-file", default="", help="PEM file of CAs to trust for the mail servers")


def _mail_settings(args: argparse.Namespace) -> Any:
    """MailSettings from the command line, or None when no mail option was given."""
    import getpass
    import os

    from engine.channels.email import ImapSettings, MailSettings, SmtpSettings

    if not any((args.imap_host, args.smtp_host, args.imap_user)):
        return None
    missing = [
        flag
        for flag, value in (
            ("--imap-host", args.imap_host),
            ("--imap-user", args.imap_user),
            ("--smtp-host", args.smtp_host),
            ("--from", args.from_addr),
        )
        if not value
    ]
    if missing:
        raise BackboneError(f"--protocol email needs {', '.join(missing)}")

    def password(kind: str, user: str) -> str:
        value = os.environ.get(f"BACKBONE_{kind}_PASSWORD")
        if value is not None:
            return value
        if not sys.stdin.isatty():
            raise BackboneError(f"set BACKBONE_{kind}_PASSWORD (no terminal to ask for the {kind} password)")
        return getpass.getpass(f"{kind} password for {user}: ")

    imap_password = password("IMAP", args.imap_user)
    default_ports = {"none": (143, 25), "starttls": (143, 587), "tls": (993, 465)}
    receive = ImapSettings(
        args.imap_host,
        args.imap_port or default_ports[args.imap_tls][0],
        args.imap_tls,
        args.imap_user,
        imap_password,
        args.imap_folder,
        args.ca_file,
    )
    if args.same_credentials:
        smtp_user, smtp_password = args.imap_user, imap_password
    else:
        smtp_user = args.smtp_user or args.imap_user
        smtp_password = password("SMTP", smtp_user)
    send = SmtpSettings(
        args.smtp_host,
        args.smtp_port or default_ports[args.smtp_tls][1],
        args.smtp_tls,
        smtp_user,
        smtp_password,
        args.from_addr,
        args.to_addr or "",
        args.ca_file,
    )
    return MailSettings(receive, send)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(_with_default_actions(list(sys.argv[1:] if argv is None else argv)))
        try:
            code = _dispatch(parser, args)
        except FieldError as exc:  # the flag that set the field, and what was expected
            command_parser = getattr(args, "parser", None)
            flag = _flag([p for p in (command_parser, parser) if p is not None], exc.field)
            print(f"backbone: {flag}: {exc.text}", file=sys.stderr)
            code = EXIT_USER
        except BackboneError as exc:
            print(f"backbone: {exc}", file=sys.stderr)
            code = EXIT_USER
        sys.stdout.flush()  # here, so a closed pipe is caught below and not at exit
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `backbone ... | head`: the reader has what it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_PIPE


def _with_default_actions(argv: list[str]) -> list[str]:
    """`messages KEY ...` is short for `messages list KEY ...` (the SPEC's form)."""
    if "messages" in argv:
        at = argv.index("messages") + 1
        actions = ("list", "retry", "skip", "resend", "problems", "recreate", "ignore", "-h", "--help")
        if at < len(argv) and argv[at] not in actions:
            return [*argv[:at], "list", *argv[at:]]
    return argv


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.command == "demo":
        return _demo(args)
    if args.command == "doctor":
        return _doctor(args)
    if args.command == "completion":
        import shtab

        print(shtab.complete(parser, shell=args.shell))
        return EXIT_OK
    from sqlalchemy.exc import DatabaseError

    from engine.service.installation import Installation

    creates = (args.command, getattr(args, "action", None)) in CREATING_COMMANDS
    inst = Installation(args.home, create=creates)
    try:
        service = args.command == "run" and not args.once and not sys.stderr.isatty()
        inst.setup_logging(args.log_level, stderr=service)
        if args.command is None:
            from .app import run_tui

            return run_tui(inst, project=args.project)
        return _command(inst, args)
    except DatabaseError as exc:  # a damaged file or a failing disk: one line, never a traceback
        raise BackboneError(inst.db.damage_text(exc.orig or exc)) from None
    finally:
        inst.close()


def _command(inst: Installation, args: argparse.Namespace) -> int:
    handler: Callable[[Installation, argparse.Namespace], int] = args.handler
    return handler(inst, args)


def _program() -> str:
    """How to run this command again: `backbone` when that is the one on PATH, else the path used."""
    import shutil

    used = sys.argv[0] if sys.argv else ""
    found = shutil.which("backbone")
    if os.path.basename(used) != "backbone" or (found and os.path.realpath(found) == os.path.realpath(used)):
        return "backbone"
    return os.path.relpath(used)


def _doctor(args: argparse.Namespace) -> int:
    from engine.store.database import integrity_report
    from engine.store.home import HomePaths, resolve_home

    database = HomePaths(resolve_home(args.home)).database
    findings = integrity_report(database)
    if not findings:
        print(f"{database}: the database is sound (integrity check ok)")
        return EXIT_OK
    print(f"{database}: the database is damaged:")
    for finding in findings[:20]:
        print(f"  {finding}")
    print(
        "Stop every backbone process of this home and restore the file from a backup; the message "
        "files under data/ are filed again at the next start."
    )
    return EXIT_USER


# -- demo and run ---------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    from engine.runtime.demo import build_demo, settle, summary
    from engine.runtime.engine import Engine

    started = time.monotonic()
    mail = _demo_mail(args) if args.protocol == Protocol.EMAIL else None
    demo = build_demo(args.dir, encryption=not args.no_encryption, mail=mail)
    for inst in (demo.acme, demo.globex):
        inst.setup_logging()
    if args.no_tui or not (sys.stdin.isatty() and sys.stdout.isatty()):
        settle((Engine(demo.acme), Engine(demo.globex)))
        for line in summary(demo, time.monotonic() - started, program=_program()):
            print(line)
        demo.close()
        return EXIT_OK
    from .app import run_tui

    partner = Engine(demo.globex)
    partner.start()
    try:
        return run_tui(demo.acme)
    finally:
        partner.stop()
        demo.close()


DEMO_MAIL_HELP = """the email demo needs a mail server it can reach, with two accounts:
  backbone demo DIR --protocol email --mail-server 127.0.0.1:143:25 \\
      --acme-mail acme@example.test --globex-mail globex@example.test
with the passwords in $BACKBONE_DEMO_ACME_PASSWORD and $BACKBONE_DEMO_GLOBEX_PASSWORD
(IMAP and SMTP without TLS, as on a private test server; Debian's dovecot-imapd serves IMAP)"""


def _demo_mail(args: argparse.Namespace) -> Any:
    import os

    from engine.channels.email import ImapSettings, MailSettings, SmtpSettings

    passwords = [os.environ.get(f"BACKBONE_DEMO_{who}_PASSWORD") for who in ("ACME", "GLOBEX")]
    if not (args.mail_server and args.acme_mail and args.globex_mail) or None in passwords:
        raise BackboneError(DEMO_MAIL_HELP)
    try:
        host, imap_port, smtp_port = args.mail_server.rsplit(":", 2)
        ports = int(imap_port), int(smtp_port)
    except ValueError:
        raise BackboneError(
            f"--mail-server {args.mail_server!r}: expected HOST:IMAP_PORT:SMTP_PORT"
        ) from None

    def account(address: str, password: str) -> Any:
        return MailSettings(
            ImapSettings(host, ports[0], "none", address, password),
            SmtpSettings(host, ports[1], "none", address, password, address, ""),
        )

    return account(args.acme_mail, passwords[0] or ""), account(args.globex_mail, passwords[1] or "")


def _run(inst: Installation, args: argparse.Namespace) -> int:
    from engine.runtime.engine import Engine

    engine = Engine(inst)
    api = None
    if args.api is not None:
        if args.once:
            raise FieldError("api", "not with --once (the API serves a running engine)")
        from engine.runtime.api import ApiServer, parse_bind

        bind = parse_bind(args.api, cert=args.api_cert, key=args.api_key, insecure=args.api_insecure_bind)
        api = ApiServer(inst, engine, bind)  # listens now: a taken port fails before the engine starts
    if args.once:
        work = engine.run_once(full_reconcile=args.reconcile)
        print(f"done: {work} step(s) of work")
        return EXIT_OK
    stopping = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)  # before start: a Ctrl-C during start-up stops cleanly too
    signal.signal(signal.SIGTERM, on_signal)
    try:
        engine.start(full_reconcile=args.reconcile)
        if api is not None:
            api.start()
    except BaseException:
        if api is not None:
            api.stop()
        engine.stop()
        raise
    if api is not None:
        print(f"REST API on {api.url} (bearer tokens: 'backbone api token create NAME')", flush=True)
    print(
        f"engine running for {inst.paths.root} (pid lock {inst.paths.lock_file}); Ctrl-C stops it", flush=True
    )
    while engine.running and (api is None or api.running):
        if stopping.wait(1.0):  # a signal interrupts the wait: Ctrl-C stops at once
            break
    if api is not None:
        api.stop()
    engine.stop()
    if engine.failure:
        print(f"backbone: {engine.failure}", file=sys.stderr)
        return EXIT_USER
    print("engine stopped")
    return EXIT_OK


# -- sync -----------------------------------------------------------------------------------


def _print_table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _sync(inst: Installation, args: argparse.Namespace) -> int:
    action = args.action
    if action == "list":
        syncs = inst.list_syncs(
            status=_status_arg(args.status), project=_project_arg(inst, args.filter_project or args.project)
        )
        if args.json:
            print(json.dumps([info.to_json() for info in syncs], indent=2))
        else:
            _print_table(
                [
                    [
                        i.key,
                        i.name,
                        i.local_project,
                        i.partner_project,
                        i.role,
                        i.protocol,
                        i.status,
                        str(i.errors),
                        str(i.pending),
                    ]
                    for i in syncs
                ],
                ["KEY", "NAME", "PROJECT", "PARTNER", "ROLE", "PROTOCOL", "STATUS", "ERRORS", "PENDING"],
            )
        return EXIT_OK
    if action == "show":
        info = inst.sync_info(args.key)
        if args.json:
            print(json.dumps(info.to_json(), indent=2))
        else:
            for name, value in info.to_json().items():
                if value not in ("", None):
                    print(f"{name:20} {value}")
            if info.key_warning():
                print(f"WARNING: {info.key_warning()}; renew the key before then")
        return EXIT_OK
    if action == "create":
        return _sync_create(inst, args)
    if action == "support-zip":
        from engine.service.support import create_support_zip

        path = create_support_zip(inst, args.key, Path(args.output) if args.output else None)
        print(f"{args.key}: support ZIP written to {path}")
        return EXIT_OK
    if action == "handshake":
        print(f"{args.key}: handshake file written to {inst.export_handshake(args.key, args.handshake_out)}")
        return EXIT_OK
    if action == "test":
        for line in inst.test_channel(args.key):
            print(line)
        return EXIT_OK
    if action == "accept":
        info = inst.accept(args.key)
        print(f"{info.key}: {info.status} ({info.status_detail})")
        return EXIT_OK
    if action == "resync":
        count = inst.resync(args.key, args.issue, args.field, args.side_project)
        print(f"{args.key}: {count} issue(s) resynchronized (RESYNC queued)")
        return EXIT_OK
    if action == "decline":
        info = inst.decline(args.key)
        print(f"{info.key}: {info.status}")
        return EXIT_OK
    if action in ("start", "stop"):
        keys = list(args.keys)
        if args.status:
            if keys:
                raise BackboneError("give keys or --status, not both")
            keys = [info.key for info in inst.list_syncs(status=_status_arg(args.status))]
        if not keys:
            raise BackboneError(f"nothing to {action}: give synchronization keys or --status")
        for info in (inst.start if action == "start" else inst.stop)(keys):
            print(f"{info.key}: {info.status}")
        return EXIT_OK
    if action == "edit":
        if all(value is None for value in (args.name, args.description, args.user, args.protocol)):
            raise BackboneError("nothing to change: give --name and/or --description")
        info = inst.edit(
            args.key, name=args.name, description=args.description, user=args.user, protocol=args.protocol
        )
        print(f"{info.key}: {info.name}")
        return EXIT_OK
    if action == "delete":
        if not args.yes:
            raise BackboneError(f"deleting {args.key} cannot be undone: add --yes to confirm")
        info = inst.sync_info(args.key)
        if info.status == SyncStatus.RUNNING:
            inst.stop([args.key])
        inst.delete(args.key)
        print(f"{args.key}: deleted (message files kept under {inst.paths.data / 'deleted'})")
        return EXIT_OK
    raise AssertionError(action)


def _sync_create(inst: Installation, args: argparse.Namespace) -> int:
    if args.role == Role.PRIMARY:
        missing = [
            flag
            for flag, value in (("--name", args.name), ("--handshake-out", args.handshake_out))
            if not value
        ]
        if missing:
            raise BackboneError(f"sync create --role primary needs {' and '.join(missing)}")
        info, path = inst.create_primary(
            project=args.sync_project,
            user=args.user,
            protocol=args.protocol,
            name=args.name,
            handshake_out=args.handshake_out,
            exchange=args.exchange,
            description=args.description,
            review=args.review,
            partner_project=args.partner_project,
            encryption=not args.no_encryption,
            mail=_mail_settings(args),
            address=args.address or "",
            tracker=args.tracker,
        )
        print(f"{info.key}: {info.status}; handshake file written to {path}")
        if info.own_fingerprint:
            print(f"key fingerprint: {_spaced(info.own_fingerprint)}")
            print("confirm it with the partner out of band (phone, a signed mail) before they accept")
        else:
            print("encryption is OFF: messages travel as plain JSON")
        print(
            "deliver the file to the partner securely; they run: "
            "backbone sync create --role secondary --handshake FILE ..."
        )
        return EXIT_OK
    if args.role == Role.SECONDARY:
        if not args.handshake:
            raise BackboneError("sync create --role secondary needs --handshake FILE")
        data = inst.read_handshake(args.handshake, args.fingerprint)
        print(f"handshake file {args.handshake}:")
        print(f"  synchronization  {data['sync']}  {data['name']!r}")
        if data.get("description"):
            print(f"  description      {data['description']}")
        print(
            f"  partner project  {data['primary']['project']}  ({data['protocol']}, review mode "
            f"{'on' if data.get('review') else 'off'})"
        )
        if data["encryption"]:
            print(f"  partner key      {_spaced(data['key']['fingerprint'])}")
            if not args.fingerprint:
                print("  (confirm this fingerprint with the partner; --fingerprint makes it a check)")
        else:
            print("  encryption       OFF: messages travel as plain JSON")
        info = inst.create_secondary(
            handshake=args.handshake,
            project=args.sync_project,
            user=args.user,
            exchange=args.exchange,
            expected_fingerprint=args.fingerprint,
            mail=_mail_settings(args),
            address=args.address or "",
            tracker=args.tracker,
        )
        print(f"{info.key}: {info.status}; run 'backbone sync accept {info.key}' or 'sync decline'")
        return EXIT_OK
    if not args.partner_project:
        raise BackboneError("sync create --role local needs --partner-project")
    info = inst.create_local(
        project=args.sync_project,
        partner_project=args.partner_project,
        user=args.user,
        name=args.name or f"{args.sync_project} <-> {args.partner_project}",
        description=args.description,
        tracker=args.tracker,
        partner_tracker=args.partner_tracker,
    )
    print(f"{info.key}: {info.status}")
    return EXIT_OK


def _status_arg(status: str | None) -> str | None:
    """A --status value as stored (any case, `_` for spaces), or an error listing the valid ones."""
    if status is None:
        return None
    wanted = status.upper().replace("_", " ")
    if wanted not in ALL_STATUSES:
        raise BackboneError(f"--status {status!r}: expected one of {', '.join(ALL_STATUSES)}")
    return wanted


def _project_arg(inst: Any, project: str | None) -> str | None:
    if project is None:
        return None
    known = [key for key, _ in inst.tracker.projects()]
    if project not in known:
        raise BackboneError(
            f"--project {project!r}: expected one of {', '.join(known) or '(no projects yet)'}"
        )
    return project


def _spaced(fingerprint: str) -> str:
    return " ".join(fingerprint[i : i + 4] for i in range(0, len(fingerprint), 4))


def _config(inst: Installation, args: argparse.Namespace) -> int:
    key, side = args.key, args.side_project
    if args.action == "export":
        text = inst.config_export(key, side)
        if args.output:
            Path(args.output).write_text(text)
            print(f"written to {args.output}")
        else:
            sys.stdout.write(text)
    elif args.action == "import":
        inst.config_import(key, args.file, side)
        print(f"{key}: draft imported from {args.file} (config diff shows it, config publish sends it)")
    elif args.action == "diff":
        changes = inst.config_diff(key, side, from_version=args.from_version, to_version=args.to_version)
        if args.json:
            print(json.dumps([vars(change) for change in changes], indent=2))
        else:
            print("\n".join(change.line() for change in changes) or "no changes against the version in force")
    elif args.action == "dry-run":
        run = inst.config_dry_run(key, side)
        if args.json:
            print(json.dumps(run.to_dict(), indent=2))
        else:
            print(f"{run.pairs} synced issue(s) looked at")
            for change in run.changes:
                print(f"  {change.line()}")
            for issue, mapping, value in run.unmappable:
                print(f"  cannot map: {issue} {mapping} = {value!r}")
            for mapping, count in sorted(run.resync.items()):
                print(f"  new mapping {mapping}: {count} issue(s) filled by a RESYNC once in force")
            if not (run.changes or run.unmappable):
                print("  nothing changes")
    elif args.action == "publish":
        info = inst.publish_config(key, args.message, side, start=args.start)
        print(f"{key}: {info.status}: {info.status_detail}")
    elif args.action in ("decline", "accept"):
        if args.action == "decline":
            info = inst.decline_config(key, args.message, side)
        else:
            info = inst.accept_config(key, side)
        print(f"{key}: {info.status}: {info.status_detail}")
    elif args.action == "incoming":
        incoming = inst.config_incoming(key, side)
        if args.json:
            print(json.dumps(incoming.to_dict() if incoming else None, indent=2))
        elif incoming is None:
            print(f"{key}: no new version from the partner")
        elif incoming.proposal:
            print(f"the partner proposes a change of version {incoming.version} (in force here)")
            print(f"message: {incoming.message}")
            for change in incoming.changes:
                print(f"  {change.line()}")
            print(f"next: backbone config accept {key}, or config decline {key} -m WHY")
        else:
            print(f"version {incoming.version} from the partner (version {incoming.in_force} in force here)")
            print(f"message: {incoming.message}")
            for change in incoming.changes:
                print(f"  {change.line()}")
            print(f"next: backbone config export {key} -o bind.toml; edit; config import; config publish")
    else:
        versions = inst.config_history(key, side)
        if args.json:
            print(json.dumps([version.to_dict() for version in versions], indent=2))
        for version in versions if not args.json else []:
            narrowed = ", ".join(f"{k} {v}" for k, v in sorted(version.narrowed.items()))
            print(f"{version.version:>4}  {version.at}  {version.author:<9}  {version.message}")
            if narrowed:
                print(f"      narrowed: {narrowed}")
    return EXIT_OK


def _messages(inst: Installation, args: argparse.Namespace) -> int:
    if args.action == "skip":
        skipped, count = inst.skip(args.key, args.issue, reason=args.reason)
        print(f"{args.key}: {skipped} message(s) skipped, {count} queued again")
        return EXIT_OK
    if args.action == "retry":
        count = inst.retry(args.key, args.issue)
        print(f"{args.key}: {count} message(s) queued again")
        return EXIT_OK
    rows = inst.messages(args.key, args.folder)
    if args.json:
        print(json.dumps([row.to_json() for row in rows], indent=2))
        return EXIT_OK
    _print_table(
        [
            [
                str(r.id),
                r.direction,
                r.type or "-",
                (r.issue or "-")[:12],
                f"{r.epoch}/{r.seq}",
                r.folder + (f"/{r.hold[:12]}" if r.hold else ""),
                r.reason_code or "-",
                r.reason_text[:60],
            ]
            for r in rows
        ],
        ["ID", "DIR", "TYPE", "ISSUE", "EPOCH/SEQ", "FOLDER", "REASON", "TEXT"],
    )
    return EXIT_OK


# -- embedded tracker -----------------------------------------------------------------------


def _project(inst: Installation, args: argparse.Namespace) -> int:
    if args.action == "create":
        inst.tracker.create_project(args.key, args.name)
        print(f"project {args.key} created")
    elif args.action == "field":
        inst.tracker.add_custom_field(args.key, args.name, args.kind, args.option)
        print(f"{args.key}: custom field {args.name!r} ({args.kind}) added")
    else:
        projects = inst.tracker.projects()
        if args.json:
            print(json.dumps([{"key": k, "name": n} for k, n in projects], indent=2))
        else:
            _print_table([[k, n] for k, n in projects], ["KEY", "NAME"])
    return EXIT_OK


def _parse_sets(pairs: list[str]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for item in pairs:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise BackboneError(f"--set {item!r}: expected FIELD=VALUE")
        fields[name.strip()] = value
    return fields


def _issue(inst: Installation, args: argparse.Namespace) -> int:
    from engine.errors import TrackerOffline, TrackerRefused

    t = inst.tracker
    try:
        return _issue_action(inst, t, args)
    except TrackerRefused as exc:
        raise BackboneError(str(exc)) from None
    except TrackerOffline as exc:
        raise BackboneError(str(exc)) from None


def _issue_action(inst: Any, t: Any, args: argparse.Namespace) -> int:
    action = args.action
    if action == "create":
        fields = {"summary": args.summary, **_parse_sets(args.set)}
        parent = t.issue_key_to_id(args.parent) if args.parent else None
        issue_id = t.create_issue(
            args.issue_project, args.type, fields, as_user=args.as_user, parent_id=parent
        )
        print(t.read_issue(issue_id).key)
        return EXIT_OK
    if action == "list":
        issues = t.list_issues(args.issue_project)
        if args.json:
            print(json.dumps([_issue_json(i) for i in issues], indent=2))
        else:
            _print_table(
                [
                    [i.key, i.issue_type, i.status, str(i.fields.get("priority")), i.fields["summary"][:60]]
                    for i in issues
                ],
                ["KEY", "TYPE", "STATUS", "PRIORITY", "SUMMARY"],
            )
        return EXIT_OK
    issue_id = t.issue_key_to_id(args.issue)
    if action == "update":
        changed = t.update_issue(issue_id, _parse_sets(args.set), as_user=args.as_user)
        print(f"{args.issue}: " + (f"changed {', '.join(changed)}" if changed else "nothing changed"))
    elif action == "comment":
        t.add_comment(issue_id, args.text, as_user=args.as_user)
        print(f"{args.issue}: comment added")
    elif action == "attach":
        source = Path(args.file)
        if not source.is_file():
            raise BackboneError(f"{source}: not a readable file")
        t.add_attachment(issue_id, source.name, source.read_bytes(), as_user=args.as_user)
        print(f"{args.issue}: attached {source.name}")
    elif action == "transition":
        moved = t.transition(issue_id, args.status, as_user=args.as_user)
        print(f"{args.issue}: " + (f"now {args.status}" if moved else f"already {args.status}"))
    elif action == "link":
        t.add_link(issue_id, t.issue_key_to_id(args.target), args.kind, as_user=args.as_user)
        print(f"{args.issue} {args.kind} {args.target}")
    elif action == "show":
        issue = t.read_issue(issue_id)
        if args.json:
            print(json.dumps(_issue_json(issue), indent=2))
        else:
            data = _issue_json(issue)
            parent = t.read_issue(issue.parent_id) if issue.parent_id else None
            for name, value in (("key", data["key"]), ("type", data["type"]), ("status", data["status"])):
                print(f"{name:12} {value}")
            if parent is not None:
                print(f"{'parent':12} {parent.key}")
            for name, value in data["fields"].items():
                print(f"{name:12} {value}")
            for c in data["comments"]:
                print(f"comment      [{c['author']}] {c['body']}")
            for a in data["attachments"]:
                print(f"attachment   {a['filename']} ({a['size']} bytes, {a['media_type']})")
            for kind, target in issue.links:
                linked = t.read_issue(target)
                print(f"link         {kind} {linked.key if linked else target}")
    return EXIT_OK


def _issue_json(issue: Any) -> dict[str, Any]:
    return {
        "id": issue.id,
        "key": issue.key,
        "project": issue.project,
        "type": issue.issue_type,
        "status": issue.status,
        "parent": issue.parent_id,
        "fields": issue.fields,
        "created": issue.created.isoformat(),
        "updated": issue.updated.isoformat(),
        "comments": [
            {"author": c.author, "body": c.body, "created": c.created.isoformat()} for c in issue.comments
        ],
        "attachments": [
            {"filename": a.filename, "size": a.size, "media_type": a.media_type} for a in issue.attachments
        ],
        "links": [{"kind": kind, "target": target} for kind, target in issue.links],
    }


def _user(inst: Installation, args: argparse.Namespace) -> int:
    if args.action == "add":
        inst.tracker.add_user(args.name, args.email)
        print(f"user {args.name} <{args.email.strip().lower()}>")
        return EXIT_OK
    users = inst.tracker.user_emails()
    if args.json:
        print(json.dumps([{"name": n, "email": e} for n, e in users.items()], indent=2))
    else:
        _print_table([[n, e] for n, e in users.items()], ["NAME", "EMAIL"])
    return EXIT_OK


def _tracker(inst: Installation, args: argparse.Namespace) -> int:
    inst.tracker.set_maintenance(args.state == "on")
    print(f"embedded tracker maintenance {args.state}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
