"""Durable file operations: stage then rename, never a silent copy-and-delete."""

from __future__ import annotations

import errno
import os
import stat
import uuid
from pathlib import Path


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def stage_name(final_name: str) -> str:
    """A hidden name readers skip while the file is being written."""
    return f".{final_name}.{uuid.uuid4().hex[:8]}.part"


def write_atomic(
    target: Path, data: bytes, *, durable: bool = True, sync_dir: bool = True, mode: int = 0o600
) -> None:
    """Write `data` under a staging name in the target's folder, fsync, rename into place."""
    staging = target.parent / stage_name(target.name)
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        staging.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(staging, target)
    if durable and sync_dir:
        fsync_dir(target.parent)


def move(source: Path, target: Path) -> None:
    """Rename `source` to `target`; across filesystems copy durably, then unlink the source.

    The target's folder is created when missing (an issue folder under ERROR/, say)."""
    try:
        os.replace(source, target)
    except FileNotFoundError:
        if not source.exists() or target.parent.is_dir():
            raise
        target.parent.mkdir(parents=True, exist_ok=True)
        move(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        write_atomic(target, source.read_bytes())
        source.unlink()


def read_limited(path: Path, limit: int) -> bytes:
    """Read a regular file without following a symlink; refuse more than `limit` bytes."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            total += len(chunk)
            if total > limit:
                raise ValueError(f"larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def folder_problem(path: Path, access: int = os.R_OK) -> str:
    """What keeps `path` from being used as a folder (missing, a dangling link, a file, no
    `access` rights), in words naming it; "" when it is usable."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            return f"{path} is a link to {os.readlink(path)}, which does not exist"
        return f"{path} is missing"
    except OSError as exc:
        return f"{path} cannot be reached: {exc.strerror or exc}"
    if not stat.S_ISDIR(info.st_mode):
        return f"{path} is not a folder"
    if not os.access(path, access | os.X_OK):
        return f"{path} is not {'writable' if access & os.W_OK else 'readable'} by this user"
    return ""


# File systems whose files can change without this machine's kernel knowing (another machine
# writes them): inotify reports nothing there, so a watch would never wake anyone.
NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "ceph", "glusterfs", "9p",
        "lustre", "gpfs", "davfs", "fuse.sshfs", "fuse.rclone", "fuse.s3fs", "fuse.gcsfuse",
        "fuse.glusterfs", "fuse.davfs2", "fuse.cephfs",
    }
)  # fmt: skip


def mount_of(path: str, mountinfo: str) -> tuple[str, str] | None:
    """(mount point, file system type) of the mount holding `path` (already resolved), read from
    the text of `/proc/self/mountinfo` (proc(5)); None when no line covers it."""
    best: tuple[str, str] | None = None
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields, after = left.split(), right.split()
        if not sep or len(fields) < 5 or not after:
            continue
        point = fields[4].replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best[0])):
            best = (point, after[0])  # the last of equal mount points is the one on top
    return best


def network_filesystem(path: Path) -> str | None:
    """The type of the network file system `path` lies on (where symbolic links point), or
    None: a local one, or not known (no `/proc` here)."""
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return None
    found = mount_of(os.path.realpath(path), mountinfo)
    return found[1] if found is not None and found[1] in NETWORK_FILESYSTEMS else None
