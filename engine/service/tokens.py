"""Bearer tokens of the REST API: created once (the secret is shown then), listed, revoked, verified."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import update
from sqlmodel import col, select

from engine.errors import BackboneError, FieldError
from engine.store.models import ApiToken
from engine.trackers.base import utcnow

if TYPE_CHECKING:
    from engine.service.installation import Installation

TOKEN_PREFIX = "bbt_"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: how stale a token's `last_used` may get: a busy client writes it once a minute, not per request
LAST_USED_RESOLUTION = timedelta(seconds=60)


@dataclass(frozen=True)
class TokenInfo:
    """A token as listed: never its secret, nor its digest."""

    name: str
    created: datetime
    last_used: datetime | None
    revoked: datetime | None

    def to_json(self) -> dict[str, Any]:
        """The JSON shape of `api token list --json`."""
        return {
            "name": self.name,
            "created": self.created.isoformat(),
            "last_used": self.last_used.isoformat() if self.last_used else None,
            "revoked": self.revoked.isoformat() if self.revoked else None,
        }


def digest(secret: str) -> str:
    """The SHA-256 hex digest a token is stored as."""
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiTokens:
    """The REST API's bearer tokens, stored as SHA-256 digests in `ApiToken`."""

    def __init__(self, installation: Installation) -> None:
        self.i = installation

    def create(self, name: str) -> str:
        """Make a token named `name` and return its secret (shown once, stored only hashed)."""
        if not NAME_PATTERN.fullmatch(name):
            raise FieldError("name", f"{name!r}: expected 1-64 letters, digits, '-', '_' or '.'")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.i.db.write() as s:
            if s.exec(select(ApiToken).where(ApiToken.name == name)).first() is not None:
                raise FieldError("name", f"{name!r}: a token of that name exists (revoked ones keep theirs)")
            s.add(ApiToken(name=name, digest=digest(secret), created=utcnow()))
        return secret

    def list_tokens(self) -> list[TokenInfo]:
        """Every token, oldest first, revoked ones too."""
        with self.i.db.session() as s:
            rows = s.exec(select(ApiToken).order_by(col(ApiToken.id))).all()
        return [TokenInfo(row.name, row.created, row.last_used, row.revoked) for row in rows]

    def revoke(self, name: str) -> TokenInfo:
        """Revoke a token at once: every request with it is refused from now on."""
        with self.i.db.write() as s:
            row = s.exec(select(ApiToken).where(ApiToken.name == name)).first()
            if row is None:
                raise BackboneError(f"no API token named {name!r} ('api token list' shows them)")
            if row.revoked is not None:
                raise BackboneError(f"API token {name!r} was revoked on {row.revoked:%Y-%m-%d %H:%M}")
            row.revoked = utcnow()
            s.add(row)
            return TokenInfo(row.name, row.created, row.last_used, row.revoked)

    def verify(self, secret: str) -> str | None:
        """The name of the valid (not revoked) token with this secret, else None; notes its use."""
        if not secret.startswith(TOKEN_PREFIX):
            return None
        wanted = digest(secret)
        with self.i.db.session() as s:
            row = s.exec(select(ApiToken).where(ApiToken.digest == wanted)).first()
        if row is None or row.revoked is not None:
            return None
        now = utcnow()
        last = row.last_used
        if last is not None and last.tzinfo is None:
            last = last.replace(tzinfo=now.tzinfo)
        if last is None or now - last >= LAST_USED_RESOLUTION:
            with self.i.db.write() as s:
                s.execute(update(ApiToken).where(col(ApiToken.id) == row.id).values(last_used=now))
        return row.name
