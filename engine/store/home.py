"""Where an installation keeps its files, and the one-engine-per-home lock."""

from __future__ import annotations

import fcntl
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from engine.errors import BackboneError

log = logging.getLogger("backbone.home")


def resolve_home(home: str | os.PathLike[str] | None) -> Path:
    """The home folder: the argument, else `$BACKBONE_HOME`, else the platform's user data dir."""
    if home:
        return Path(home).expanduser().absolute()
    env = os.environ.get("BACKBONE_HOME")
    if env:
        return Path(env).expanduser().absolute()
    return Path(platformdirs.user_data_dir("backbone-tui", appauthor=False))


@dataclass(frozen=True)
class HomePaths:
    """The fixed layout of one installation's folder."""

    root: Path

    @property
    def database(self) -> Path:
        return self.root / "backbone.db"

    @property
    def gnupg(self) -> Path:
        return self.root / "gnupg"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def processes(self) -> Path:
        """One file per process that has the home open (see `engine.store.projection`)."""
        return self.root / "processes"

    @property
    def attachments(self) -> Path:
        return self.root / "attachments"

    @property
    def lock_file(self) -> Path:
        return self.root / "engine.lock"

    def check(self) -> None:
        """Refuse a home path that names something other than a folder."""
        if self.root.exists() and not self.root.is_dir():
            raise BackboneError(f"{self.root}: the home must be a folder, and this is a file")

    def create(self) -> None:
        """Create the folders, private to this user: `data/` holds decrypted issue text.

        An existing home that other users can enter is closed (0700), with a log line."""
        self.check()
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            mode = stat.S_IMODE(self.root.stat().st_mode)
            if mode & 0o077:
                os.chmod(self.root, 0o700)
                log.warning("home %s was open to other users (mode %o); closed to 0700", self.root, mode)
            for folder in (self.logs, self.data, self.attachments, self.gnupg):
                folder.mkdir(mode=0o700, exist_ok=True)
            os.chmod(self.gnupg, 0o700)
        except OSError as exc:
            raise BackboneError(f"{self.root}: cannot use this folder as the home ({exc.strerror})") from None


class EngineLock:
    """An exclusive `flock` on the home's lock file, naming the process that holds it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock; False (and nothing held) when another process has it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.fsync(fd)
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def holder_pid(self) -> int | None:
        """The pid written by the process that holds (or last held) the lock."""
        try:
            text = self.path.read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def require(self) -> None:
        if not self.acquire():
            raise BackboneError(
                f"another process (pid {self.holder_pid()}) runs the engine of this home "
                f"({self.path.parent}); stop it first"
            )
