"""OpenPGP through GnuPG: one installation's key ring, and the codec that signs and encrypts messages.

`Keyring` owns the home's `gnupg/` folder (mode 0700; the machine key has no passphrase unless one
is given, so that folder's permissions are its protection). Every gpg call holds a per-folder lock
(one gpg process at a time) and is bounded by a timeout: the call runs in a helper thread, and a
call that overruns has its gpg processes and the folder's gpg-agent killed, then raises `GpgError`.

`GpgCodec.open` applies RELIABILITY rule 8 by reading gpg's status lines itself, because
python-gnupg reports `ok=True, valid=False` for an unsigned message, `valid` regardless of trust
and only the last of several signatures.

Bundles: `GpgCodec.seal_many` seals several envelopes in one payload, the JSON object
`{"bundle": [ENVELOPE-JSON-TEXT, ...]}` (one gpg call instead of one per envelope);
`split_bundle` turns an opened plaintext, bundle or single envelope, into envelope JSON texts.

Options go on gpg's command line and `--no-options` ignores any `gpg.conf`, so a hand-edited file
cannot change how messages are checked; `gpg-agent.conf` allows loopback pinentry and caches no
passphrase.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import shutil
import stat
import subprocess
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import gnupg  # type: ignore[import-untyped]

from engine.domain.envelope import bundle_text, load_json
from engine.errors import BackboneError, RejectedError
from engine.vocab import MessageType, Reason

T = TypeVar("T")

DEFAULT_TIMEOUT = 30.0
KILL_GRACE = 2.0
DEFAULT_MAX_PLAINTEXT_BYTES = 64 * 1024 * 1024
# A unix socket path holds at most 107 bytes; gpg puts `S.gpg-agent.browser` in the homedir.
MAX_HOMEDIR_CHARS = 80
FINGERPRINT = re.compile(r"^[0-9A-F]{40}$")
SIGNATURE_RESULTS = frozenset({"GOODSIG", "EXPSIG", "EXPKEYSIG", "REVKEYSIG", "BADSIG", "ERRSIG"})
GPG_OPTIONS = [
    "--no-options",
    "--pinentry-mode",
    "loopback",
    "--no-auto-key-retrieve",
    "--auto-key-locate",
    "local",
    "--disable-dirmngr",
    "--no-symkey-cache",
    "--no-greeting",
]
AGENT_CONF = "allow-loopback-pinentry\ndefault-cache-ttl 0\nmax-cache-ttl 0\n"

_folder_locks: dict[str, threading.RLock] = {}
_folder_locks_guard = threading.Lock()


class GpgError(BackboneError):
    """gpg could not do its part (missing, hung, unusable key): not the message's fault."""


def normalize_fingerprint(fingerprint: str) -> str:
    """Upper-case 40-hex form of a v4 fingerprint written with or without spaces."""
    compact = "".join(fingerprint.split()).upper()
    if not FINGERPRINT.match(compact):
        raise ValueError(f"not an OpenPGP v4 fingerprint: {fingerprint!r}")
    return compact


@dataclass(frozen=True)
class DecryptResult:
    """What one decrypt-and-verify call produced; `status` is gpg's status lines as (keyword, args)."""

    plaintext: bytes
    status: tuple[tuple[str, str], ...]
    returncode: int | None
    too_large: bool


class _BoundedGPG(gnupg.GPG):  # type: ignore[misc]
    """python-gnupg that tracks the gpg processes it starts, so a watchdog can kill them."""

    def __init__(self, **kwargs: Any) -> None:
        self.live_processes: set[subprocess.Popen[bytes]] = set()
        self._live_guard = threading.Lock()
        super().__init__(**kwargs)

    def _open_subprocess(self, args: list[str], passphrase: bool = False) -> Any:
        process = super()._open_subprocess(args, passphrase)
        with self._live_guard:
            self.live_processes.add(process)
        return process

    def _handle_io(
        self, args: Any, fileobj_or_path: Any, result: Any, passphrase: Any = None, binary: bool = False
    ) -> Any:
        """As python-gnupg's, but gpg that stops reading early (it refused the input, or was stopped
        at the plaintext cap) is no crash: its status lines, collected by then, say why."""
        try:
            return super()._handle_io(args, fileobj_or_path, result, passphrase, binary)
        except BrokenPipeError:
            result.input_cut = True
            return result

    def _collect_output(self, process: Any, result: Any, writer: Any = None, stdin: Any = None) -> Any:
        try:
            return super()._collect_output(process, result, writer, stdin)
        finally:
            with self._live_guard:
                self.live_processes.discard(process)

    def kill_live(self) -> None:
        with self._live_guard:
            processes = list(self.live_processes)
        for process in processes:
            with contextlib.suppress(OSError):
                process.kill()


def _status_lines(stderr: str) -> tuple[tuple[str, str], ...]:
    lines = []
    for line in stderr.splitlines():
        if line.startswith("[GNUPG:] "):
            keyword, _, args = line[9:].strip().partition(" ")
            lines.append((keyword, args))
    return tuple(lines)


def _gpg_passphrase(passphrase: str | None) -> str | None:
    """The passphrase as python-gnupg writes it (Latin-1), so gpg receives its UTF-8 bytes."""
    if passphrase is None:
        return None
    if "\n" in passphrase or "\r" in passphrase:
        raise ValueError("a passphrase cannot contain line breaks")
    return passphrase.encode("utf-8").decode("latin-1")


def _short_alias(folder: Path) -> Path:
    """A short symlink to `folder` in a private directory under /tmp, for gpg's agent socket."""
    base = Path("/tmp") if os.path.isdir("/tmp") else Path(os.path.realpath(os.sep))
    private = base / f"backbone-gpg-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        private.mkdir(mode=0o700)
    info = os.lstat(private)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise GpgError(f"{private} is not a private directory of this user; remove it")
    target = os.path.realpath(folder)
    alias = private / hashlib.sha256(target.encode()).hexdigest()[:16]
    if not (alias.is_symlink() and os.readlink(alias) == target):
        staging = private / f".{alias.name}.{os.getpid()}.{threading.get_ident()}"
        staging.unlink(missing_ok=True)
        os.symlink(target, staging)
        os.replace(staging, alias)
    return alias


class Keyring:
    """One installation's GnuPG folder: its own key and the pinned partner keys."""

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        passphrase: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        gpg_binary: str = "gpg",
    ) -> None:
        self.folder = Path(folder).absolute()
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        agent_conf = self.folder / "gpg-agent.conf"
        if not agent_conf.exists():
            agent_conf.write_text(AGENT_CONF)
        # gpg keeps the agent's sockets in the homedir, and a socket path is limited to ~107 bytes.
        use_alias = len(str(self.folder)) > MAX_HOMEDIR_CHARS and os.name == "posix"
        self.homedir = _short_alias(self.folder) if use_alias else self.folder
        self.timeout = timeout
        self._passphrase = _gpg_passphrase(passphrase)
        with _folder_locks_guard:
            self._lock = _folder_locks.setdefault(os.path.realpath(self.folder), threading.RLock())
        try:
            self._gpg = _BoundedGPG(
                gpgbinary=gpg_binary, gnupghome=str(self.homedir), options=list(GPG_OPTIONS)
            )
        except (OSError, ValueError) as exc:
            raise GpgError(f"cannot run gpg ({gpg_binary}): {exc}") from None

    def __enter__(self) -> Keyring:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, what: str, operation: Callable[[], T]) -> T:
        """Run one python-gnupg operation under the folder lock, killing gpg when it overruns."""
        with self._lock:
            outcome: list[tuple[bool, Any]] = []

            def run() -> None:
                try:
                    outcome.append((True, operation()))
                except BaseException as exc:  # handed to the calling thread
                    outcome.append((False, exc))

            worker = threading.Thread(target=run, name=f"gpg-{what}", daemon=True)
            worker.start()
            worker.join(self.timeout)
            if worker.is_alive():
                self._gpg.kill_live()
                self._kill_agent()
                worker.join(KILL_GRACE)
                raise GpgError(f"gpg did not finish ({what}) within {self.timeout:g} s; stopped it")
            succeeded, value = outcome[0]
            if not succeeded:
                raise value
            return value  # type: ignore[no-any-return]

    def _run_args(self, what: str, args: list[str]) -> Any:
        """A gpg command python-gnupg has no method for; returns its status-handler result."""

        def operation() -> Any:
            result = self._gpg.result_map["verify"](self._gpg)
            stream = gnupg._make_binary_stream(b"", self._gpg.encoding)
            self._gpg._handle_io(args, stream, result, passphrase=self._passphrase, binary=True)
            return result

        return self._call(what, operation)

    def _kill_agent(self) -> None:
        gpgconf = shutil.which("gpgconf")
        if gpgconf is None:
            return
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(
                [gpgconf, "--homedir", str(self.homedir), "--kill", "gpg-agent"],
                capture_output=True,
                timeout=10,
                check=False,
            )

    def close(self) -> None:
        """Stop this folder's gpg-agent (it would otherwise keep running)."""
        with self._lock:
            self._kill_agent()

    def _list(self, fingerprint: str | None = None, secret: bool = False) -> list[dict[str, Any]]:
        keys = [fingerprint] if fingerprint else None
        listed = self._call("list keys", lambda: self._gpg.list_keys(secret=secret, keys=keys))
        return list(listed)

    def own_fingerprint(self) -> str | None:
        """The primary fingerprint of this installation's key (the newest, if there are several)."""
        keys = self._list(secret=True)
        if not keys:
            return None
        newest = max(keys, key=lambda key: int(key.get("date") or 0))
        return str(newest["fingerprint"])

    def ensure_key(self, name: str, email: str, expire_days: int = 730) -> str:
        """This installation's key, created if missing: ed25519 signing primary, cv25519 subkey."""
        for label, value in (("name", name), ("email", email)):
            if not value.strip() or any(ord(char) < 32 or char in "<>" for char in value):
                raise ValueError(f"{label} must be one line without < or >: {value!r}")
        if "@" not in email or expire_days < 1:
            raise ValueError("expected an email address and a positive expire_days")
        with self._lock:
            existing = self.own_fingerprint()
            if existing:
                return existing
            if self._passphrase is not None:
                return self._create_protected_key(name, email, expire_days)
            params: dict[str, Any] = {
                "key_type": "EDDSA",
                "key_curve": "ed25519",
                "key_usage": "sign",
                "subkey_type": "ECDH",
                "subkey_curve": "cv25519",
                "subkey_usage": "encrypt",
                "name_real": name,
                "name_email": email,
                "expire_date": f"{expire_days}d",
                "no_protection": True,
            }
            batch = self._gpg.gen_key_input(**params)
            result = self._call("create key", lambda: self._gpg.gen_key(batch))
            fingerprint = str(result.fingerprint or "")
            if not FINGERPRINT.match(fingerprint):
                raise GpgError(f"gpg could not create a key: {result.status or result.stderr}")
            return fingerprint

    def _create_protected_key(self, name: str, email: str, expire_days: int) -> str:
        """The same key under a passphrase, handed to each of the two gpg calls: the agent caches
        nothing, so a batch `--gen-key` that needs it twice failed when the cache lapsed between."""
        created = self._run_args(
            "create key", ["--quick-gen-key", f"{name} <{email}>", "ed25519", "sign", f"{expire_days}d"]
        )
        fingerprint = self.own_fingerprint()
        if created.returncode != 0 or fingerprint is None:
            raise GpgError(f"gpg could not create a key: {_last_error(created.stderr)}")
        added = self._run_args(
            "create key", ["--quick-add-key", fingerprint, "cv25519", "encr", f"{expire_days}d"]
        )
        if added.returncode != 0:
            raise GpgError(f"gpg could not add the encryption key: {_last_error(added.stderr)}")
        return fingerprint

    def set_expiry(self, fingerprint: str, expires_in: timedelta) -> None:
        """Move the expiry of an own key (primary and subkeys) to `expires_in` from now."""
        fingerprint = normalize_fingerprint(fingerprint)
        period = f"seconds={max(1, int(expires_in.total_seconds()))}"
        for args in (
            ["--quick-set-expire", fingerprint, period],
            ["--quick-set-expire", fingerprint, period, "*"],
        ):
            result = self._run_args("set expiry", args)
            if result.returncode != 0:
                raise GpgError(f"gpg could not change the expiry of {fingerprint}: {result.stderr}")

    def export_public(self, fingerprint: str) -> str:
        """The armored public key (never a private key) for a handshake."""
        fingerprint = normalize_fingerprint(fingerprint)
        armored = str(self._call("export key", lambda: self._gpg.export_keys(fingerprint)))
        if not armored.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----") or "PRIVATE" in armored:
            raise GpgError(f"no public key {fingerprint} in {self.folder}")
        return armored

    def import_partner_key(self, armored: str, expected_fingerprint: str) -> str:
        """Import the one public key in `armored` if its primary fingerprint is the expected one."""
        expected = normalize_fingerprint(expected_fingerprint)
        blob = armored.encode("utf-8")
        if b"PRIVATE KEY" in blob:
            raise RejectedError(Reason.KEY_INVALID, "the key file holds a private key; refused")
        scanned = list(self._call("scan key", lambda: self._gpg.scan_keys_mem(blob)))
        if not scanned:
            raise RejectedError(Reason.KEY_INVALID, "no OpenPGP public key found")
        if len(scanned) > 1:
            raise RejectedError(Reason.KEY_MULTIPLE, f"expected one key, found {len(scanned)}; refused")
        if scanned[0].get("type") != "pub":
            raise RejectedError(Reason.KEY_INVALID, "the key file holds a private key; refused")
        found = str(scanned[0].get("fingerprint") or "")
        if found != expected:
            raise RejectedError(Reason.KEY_MISMATCH, f"key {found} is not the expected {expected}")
        result = self._call("import key", lambda: self._gpg.import_keys(blob))
        imported = {str(fpr) for fpr in result.fingerprints}
        if imported != {expected} or result.sec_read:
            raise RejectedError(Reason.KEY_INVALID, f"gpg did not import key {expected} cleanly")
        return expected

    def key_expiry(self, fingerprint: str) -> datetime | None:
        """When the key stops working (the earliest expiry of its primary and subkeys), or None."""
        fingerprint = normalize_fingerprint(fingerprint)
        keys = [key for key in self._list(fingerprint) if key.get("fingerprint") == fingerprint]
        if not keys:
            raise GpgError(f"no key {fingerprint} in {self.folder}")
        stamps = [keys[0].get("expires")] + [
            info.get("expires") for info in keys[0].get("subkey_info", {}).values()
        ]
        deadlines = [int(stamp) for stamp in stamps if stamp]
        return datetime.fromtimestamp(min(deadlines), UTC) if deadlines else None

    def signing_deadline(self, primary: str, signing_key: str) -> int | None:
        """Epoch seconds after which signatures by `signing_key` (of `primary`) are invalid."""
        keys = [key for key in self._list(primary) if key.get("fingerprint") == primary]
        if not keys:
            return None
        stamps = [keys[0].get("expires")]
        for keyid, info in keys[0].get("subkey_info", {}).items():
            if signing_key.endswith(str(keyid)):
                stamps.append(info.get("expires"))
        deadlines = [int(stamp) for stamp in stamps if stamp]
        return min(deadlines) if deadlines else None

    def encrypt_sign(self, plaintext: bytes, signer: str, recipient: str) -> bytes:
        """Sign with `signer` and encrypt to `recipient` in one gpg call; armored."""

        def operation() -> Any:
            return self._gpg.encrypt(
                plaintext,
                recipient,
                sign=True,
                armor=True,
                always_trust=True,
                passphrase=self._passphrase,
                extra_args=["--local-user", signer],
            )

        result = self._call("seal", operation)
        if not result.ok or result.returncode != 0 or not result.data:
            detail = result.status_detail or result.status or "failed"
            raise GpgError(f"gpg could not sign and encrypt ({detail}): {_last_error(result.stderr)}")
        return bytes(result.data)

    def sign_text(self, text: str, signer: str) -> str:
        """An armored signed (not encrypted) message holding `text`, signed by `signer`."""
        signer = normalize_fingerprint(signer)

        def operation() -> Any:
            return self._gpg.sign(
                text.encode("utf-8"), keyid=signer, passphrase=self._passphrase, clearsign=False
            )

        result = self._call("sign", operation)
        if result.returncode != 0 or not result.data:
            raise GpgError(f"gpg could not sign: {_last_error(result.stderr)}")
        return bytes(result.data).decode("ascii")

    def verified_text(self, armored: str, signer: str, max_bytes: int = 1 << 20) -> str:
        """The text of a signed message, if its one valid signature is by `signer`'s key."""
        result = self.decrypt_verify(armored.encode("utf-8"), max_bytes)
        if result.too_large:
            raise RejectedError(Reason.TOO_LARGE, f"the signed text exceeds {max_bytes} bytes")
        GpgCodec(self, signer, signer)._check_signature(result.status)
        if result.returncode != 0:
            raise RejectedError(Reason.SIG_BAD, f"gpg reported an error (exit code {result.returncode})")
        return result.plaintext.decode("utf-8", "replace")

    def decrypt_verify(self, data: bytes, max_plaintext_bytes: int) -> DecryptResult:
        """Decrypt and verify in one gpg call; stops gpg when the plaintext exceeds the limit, so
        a compression bomb costs at most `max_plaintext_bytes` of memory."""
        plaintext = bytearray()
        too_large = False

        def on_data(chunk: bytes) -> bool:
            nonlocal too_large
            if not too_large:
                plaintext.extend(chunk)
                if len(plaintext) > max_plaintext_bytes:
                    too_large = True
                    plaintext.clear()
                    self._gpg.kill_live()
            return False  # python-gnupg keeps nothing itself

        def operation() -> Any:
            self._gpg.on_data = on_data
            try:
                return self._gpg.decrypt(data, passphrase=self._passphrase)
            finally:
                self._gpg.on_data = None

        result = self._call("open", operation)
        return DecryptResult(
            plaintext=b"" if too_large else bytes(plaintext),
            status=_status_lines(str(result.stderr or "")),
            returncode=result.returncode,
            too_large=too_large,
        )


def _last_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("gpg: ")]
    return lines[-1][5:] if lines else "no message"


class GpgCodec:
    """Signs and encrypts envelopes for the pinned partner, and accepts only what rule 8 allows."""

    def __init__(
        self,
        keyring: Keyring,
        own_fingerprint: str,
        partner_fingerprint: str,
        *,
        max_plaintext_bytes: int = DEFAULT_MAX_PLAINTEXT_BYTES,
    ) -> None:
        self.keyring = keyring
        self.own_fingerprint = normalize_fingerprint(own_fingerprint)
        self.partner_fingerprint = normalize_fingerprint(partner_fingerprint)
        self.max_plaintext_bytes = max_plaintext_bytes

    def seal(self, envelope_json: str) -> bytes:
        return self.keyring.encrypt_sign(
            envelope_json.encode("utf-8"), self.own_fingerprint, self.partner_fingerprint
        )

    def seal_many(self, envelope_jsons: Sequence[str]) -> bytes:
        """Seal several envelopes as one bundle (read back with `split_bundle`)."""
        return self.seal(bundle_text(envelope_jsons))

    def open(self, data: bytes) -> str:
        """The plaintext, if decryption and the one signature by the pinned key hold (rule 8)."""
        result = self.keyring.decrypt_verify(data, self.max_plaintext_bytes)
        if result.too_large:
            raise RejectedError(
                Reason.TOO_LARGE,
                f"the content unpacks to more than {self.max_plaintext_bytes} bytes (stopped there)",
            )
        self._check_decrypted(result.status)
        self._check_signature(result.status)
        if result.returncode != 0:
            raise RejectedError(Reason.SIG_BAD, f"gpg reported an error (exit code {result.returncode})")
        try:
            return result.plaintext.decode("utf-8")
        except UnicodeDecodeError:
            raise RejectedError(Reason.ENVELOPE_INVALID, "signed plaintext is not UTF-8") from None

    @staticmethod
    def _check_decrypted(status: Iterable[tuple[str, str]]) -> None:
        keywords = {keyword for keyword, _ in status}
        if "DECRYPTION_OKAY" in keywords and not keywords & {"DECRYPTION_FAILED", "BADMDC"}:
            return
        if "NO_SECKEY" in keywords:
            text = "encrypted to another key, not to this installation"
        elif "BEGIN_DECRYPTION" in keywords:
            text = "damaged or truncated message (decryption failed)"
        elif "PLAINTEXT" in keywords:
            text = "not encrypted"
        elif "NEED_PASSPHRASE_SYM" in keywords:
            text = "encrypted with a password, not to this installation's key"
        else:
            text = "not an OpenPGP message, or damaged or truncated"
        raise RejectedError(Reason.DECRYPT_FAILED, text)

    def _check_signature(self, status: Sequence[tuple[str, str]]) -> None:
        results = [(keyword, args) for keyword, args in status if keyword in SIGNATURE_RESULTS]
        count = max(len(results), sum(1 for keyword, _ in status if keyword == "NEWSIG"))
        if count == 0:
            raise RejectedError(Reason.SIG_MISSING, "the message is not signed")
        if count > 1:
            raise RejectedError(Reason.SIG_MULTIPLE, f"expected one signature, found {count}")
        keyword, args = results[0]
        if keyword == "BADSIG":
            raise RejectedError(Reason.SIG_BAD, "the signature does not match the content")
        if keyword == "ERRSIG":
            parts = args.split()
            signer = parts[6] if len(parts) > 6 else parts[0] if parts else "?"
            if len(parts) > 5 and parts[5] == "9":
                raise RejectedError(Reason.SIG_WRONG_KEY, f"signed by unknown key {signer}")
            raise RejectedError(Reason.SIG_BAD, f"the signature of key {signer} cannot be checked")
        valid = [args.split() for keyword, args in status if keyword == "VALIDSIG"]
        if len(valid) != 1 or len(valid[0]) < 10:
            raise RejectedError(Reason.SIG_BAD, "gpg did not confirm the signature")
        signing_key, signed_at, primary = valid[0][0], int(valid[0][2]), valid[0][9]
        if primary != self.partner_fingerprint:
            raise RejectedError(
                Reason.SIG_WRONG_KEY, f"signed by {primary}, not the partner's {self.partner_fingerprint}"
            )
        if keyword == "REVKEYSIG":
            raise RejectedError(Reason.KEY_REVOKED, f"the partner's key {primary} is revoked")
        if keyword == "EXPSIG":
            raise RejectedError(Reason.SIG_BAD, "the signature itself has expired")
        if keyword == "EXPKEYSIG":
            deadline = self.keyring.signing_deadline(primary, signing_key)
            if deadline is None or signed_at >= deadline:
                raise RejectedError(Reason.KEY_EXPIRED, f"signed after the partner's key {primary} expired")


PAIRING_TYPES = (MessageType.HANDSHAKE, MessageType.DECLINE)


class HandshakeCodec:
    """Before pairing: opens only a HANDSHAKE carrying this request's secret, then pins its key.

    The partner's key travels inside the encrypted HANDSHAKE, so the signature can only be checked
    after that key is imported; the secret is checked first, so no stranger's key is ever imported.
    """

    def __init__(self, keyring: Keyring, own_fingerprint: str, secret: str) -> None:
        self.keyring = keyring
        self.own_fingerprint = normalize_fingerprint(own_fingerprint)
        self.secret = secret

    def seal(self, envelope_json: str) -> bytes:
        raise GpgError("no partner key is pinned yet: nothing can be sent before the handshake")

    def seal_many(self, envelope_jsons: Sequence[str]) -> bytes:
        return self.seal("")

    def open(self, data: bytes) -> str:
        result = self.keyring.decrypt_verify(data, 1 << 20)
        if result.too_large:
            raise RejectedError(
                Reason.TOO_LARGE, "a handshake message unpacks to more than 1 MiB (stopped there)"
            )
        GpgCodec._check_decrypted(result.status)
        envelope = load_json(result.plaintext, "handshake message")
        body = envelope.get("body") if isinstance(envelope, dict) else None
        if not isinstance(body, dict) or envelope.get("type") not in PAIRING_TYPES:
            raise RejectedError(Reason.NOT_PAIRED, "only a HANDSHAKE or DECLINE is accepted before pairing")
        secret = body.get("secret")
        if not self.secret or not isinstance(secret, str) or not hmac.compare_digest(secret, self.secret):
            raise RejectedError(
                Reason.BAD_PAIRING_SECRET, "the HANDSHAKE does not carry this request's secret"
            )
        key = body.get("key")
        if not isinstance(key, dict) or not isinstance(key.get("public"), str):
            raise RejectedError(Reason.KEY_INVALID, "the HANDSHAKE carries no public key")
        try:
            fingerprint = normalize_fingerprint(str(key.get("fingerprint", "")))
        except ValueError:
            raise RejectedError(Reason.KEY_INVALID, "the HANDSHAKE's key fingerprint is malformed") from None
        self.keyring.import_partner_key(key["public"], fingerprint)
        return GpgCodec(self.keyring, self.own_fingerprint, fingerprint).open(data)
