"""Exceptions shared across the engine; each carries a reason code and a one-line text."""

from __future__ import annotations

from engine.vocab import Reason


class BackboneError(Exception):
    """A user-facing error: the CLI prints its text and exits 1."""


class FieldError(BackboneError):
    """A wrong input: `field` names it (the CLI shows its flag, a form marks its field), `text`
    says what was expected. Field names are the service's parameter names (`protocol`, `user`,
    `exchange`, `mail`, `project`, `name`, `description`, `handshake_out`, `home`, `folder`)."""

    def __init__(self, field: str, text: str) -> None:
        super().__init__(f"{field}: {text}")
        self.field = field
        self.text = text


class ReasonError(Exception):
    """An outcome with an `UPPER_SNAKE` reason code and a one-line text for people."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(f"{code}: {text}")
        self.code = code
        self.text = text


class RejectedError(ReasonError):
    """Untrusted input that must never change anything: the message goes to `REJECTED`."""


class ApplyError(ReasonError):
    """A message that could not be applied: the message goes to `ERROR/<issue>/`."""


class MissingIssueError(ReasonError):
    """A message needs an issue that is not synced yet: the message goes to `MISSING/<pair>/`."""

    def __init__(self, pair_id: str, text: str) -> None:
        super().__init__(Reason.PARENT_MISSING, text)
        self.pair_id = pair_id


class TrackerOffline(Exception):
    """The tracker cannot be reached; the caller retries later."""


class TrackerRefused(Exception):
    """The tracker refused a write (validation, permissions, workflow)."""


class TrackerAuthFailed(TrackerOffline):
    """The tracker refused our credentials (401/403): nothing is sent to it until an administrator
    fixes them; like `TrackerOffline`, nothing is lost meanwhile."""
