"""`backbone api token create|list|revoke`: the REST API's bearer tokens."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.service.installation import Installation


def register(groups: dict[str, Any]) -> None:
    """Add the top-level `api` group with its `token` commands."""
    from .cli import _group, _sub

    api = _group(groups["top"], "api", "the REST API: bearer tokens", _api, "backbone api token create ci")
    tokens = _group(
        api,
        "token",
        "bearer tokens of the REST API (stored hashed; the secret is shown once)",
        _api,
        "backbone api token create grafana",
        "backbone api token list --json",
        "backbone api token revoke grafana",
    )
    p = _sub(
        tokens, "create", "make a token and print its secret (once)", "backbone api token create grafana"
    )
    p.add_argument("name", help="what the token is for (letters, digits, - _ .)")
    p.set_defaults(handler=_create)
    p = _sub(tokens, "list", "every token: name, created, last used, revoked (never the secret)")
    p.add_argument("--json", action="store_true", help="JSON for scripts")
    p.set_defaults(handler=_list)
    p = _sub(tokens, "revoke", "refuse every request with this token from now on")
    p.add_argument("name")
    p.set_defaults(handler=_revoke)


def _api(inst: Installation, args: argparse.Namespace) -> int:
    """Never called: argparse requires an action, whose own handler runs."""
    raise AssertionError(args)


def _create(inst: Installation, args: argparse.Namespace) -> int:
    from .cli import EXIT_OK

    secret = inst.tokens.create(args.name)
    print(secret)
    print(
        f"API token {args.name!r} created; this is the only time its secret is shown "
        "(send it as 'Authorization: Bearer TOKEN')",
        file=sys.stderr,
    )
    return EXIT_OK


def _list(inst: Installation, args: argparse.Namespace) -> int:
    from .cli import EXIT_OK, _print_table

    tokens = inst.tokens.list_tokens()
    if args.json:
        print(json.dumps([token.to_json() for token in tokens], indent=2))
        return EXIT_OK
    if not tokens:
        print("no API tokens ('backbone api token create NAME' makes one)")
        return EXIT_OK
    _print_table(
        [
            [
                token.name,
                f"{token.created:%Y-%m-%d %H:%M}",
                f"{token.last_used:%Y-%m-%d %H:%M}" if token.last_used else "never",
                f"{token.revoked:%Y-%m-%d %H:%M}" if token.revoked else "",
            ]
            for token in tokens
        ],
        ["NAME", "CREATED", "LAST USED", "REVOKED"],
    )
    return EXIT_OK


def _revoke(inst: Installation, args: argparse.Namespace) -> int:
    from .cli import EXIT_OK

    token = inst.tokens.revoke(args.name)
    print(f"API token {token.name!r} revoked; requests with it are refused from now on")
    return EXIT_OK
