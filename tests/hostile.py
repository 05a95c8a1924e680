"""Hostile inputs built with real tools, shared by the tests of bad input over every channel."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from engine.service.installation import Installation


def compression_bomb(recipient: Installation, key: str, unpacked_bytes: int = 300_000_000) -> bytes:
    """An unsigned OpenPGP message to `recipient`'s key for synchronization `key`: a few hundred
    kB of zlib that unpack to `unpacked_bytes` of zeros (anyone with the handshake file can make it)."""
    fingerprint = recipient.sync_info(key).own_fingerprint
    public = recipient.keyring.export_public(fingerprint)
    folder = Path(tempfile.mkdtemp(prefix="bomb-", dir="/tmp"))
    try:
        gpg = ["gpg", "--homedir", str(folder), "--batch", "--no-options", "--quiet"]
        subprocess.run([*gpg, "--import"], input=public.encode(), check=True, capture_output=True)
        sealed = subprocess.run(
            [*gpg, "--always-trust", "-r", fingerprint, "--compress-algo", "zlib", "-z", "9", "-a", "-e"],
            input=bytes(unpacked_bytes),
            check=True,
            capture_output=True,
        )
        return sealed.stdout
    finally:
        subprocess.run(["gpgconf", "--homedir", str(folder), "--kill", "gpg-agent"], check=False)
        shutil.rmtree(folder, ignore_errors=True)
