"""A private, real mail server for tests: Dovecot (IMAP + LMTP) and an aiosmtpd SMTP relay.

Everything runs on loopback ports from one temporary directory; nothing touches the system's
Dovecot. Use `MailServer` as a context manager or the `mail_server` fixture.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from engine.channels.email import MailSettings

MAIL_UID = 8  # Debian's `mail` user: Dovecot refuses to store mail as root.
HOST = "127.0.0.1"


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = HOST) -> bool:
    """Whether something accepts TCP connections on `host:port`."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def dovecot_available() -> bool:
    return shutil.which("dovecot") is not None and shutil.which("doveadm") is not None


@dataclass
class _Relay:
    """aiosmtpd handler: checks logins against the server's users and relays mail over LMTP."""

    server: MailServer
    queued: list[tuple[str, str, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def authenticate(
        self, _server: Any, _session: Any, _envelope: Any, mechanism: str, auth_data: Any
    ) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode("utf-8", "replace")
            password = auth_data.password.decode("utf-8", "replace")
            if self.server.users.get(login) == password:
                return AuthResult(success=True, auth_data=auth_data)
        # handled=False lets aiosmtpd answer 535; handled=True would leave the client hanging.
        return AuthResult(success=False, handled=False)

    async def handle_RCPT(  # noqa: N802 - aiosmtpd hook name
        self, _server: Any, _session: Any, envelope: Any, address: str, _options: list[str]
    ) -> str:
        if self.server.reject_all:
            return "451 4.3.0 temporarily refusing mail (test)"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd hook name
        self, _server: Any, _session: Any, envelope: Any
    ) -> str:
        data = envelope.original_content or envelope.content
        for rcpt in envelope.rcpt_tos:
            answer = self.deliver(envelope.mail_from or "", rcpt, data)
            if answer is not None:
                return answer
        return "250 OK"

    def deliver(self, sender: str, rcpt: str, data: bytes) -> str | None:
        """Relay one mail to one recipient; queue it while Dovecot is down. None when done."""
        try:
            self.server.lmtp_deliver(sender, rcpt, data)
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            return f"{code} {text.decode('utf-8', 'replace')}"
        except (OSError, smtplib.SMTPException):
            with self.lock:
                self.queued.append((sender, rcpt, data))
        return None

    def flush(self) -> None:
        """Deliver what was queued while Dovecot was down."""
        with self.lock:
            queued, self.queued = self.queued, []
        for sender, rcpt, data in queued:
            self.deliver(sender, rcpt, data)


class MailServer:
    """Private Dovecot (IMAP + LMTP) plus an SMTP relay with AUTH, all on loopback.

    `imap_capability` overrides Dovecot's post-login CAPABILITY line (e.g. without IDLE or
    MOVE) to exercise a client's fallbacks. `tls=True` adds a self-signed certificate:
    IMAP then offers STARTTLS on `imap_port` and TLS on `imaps_port`, SMTP offers STARTTLS;
    `ca_file` is the certificate to trust.
    """

    def __init__(
        self,
        users: dict[str, str] | None = None,
        *,
        imap_capability: str | None = None,
        tls: bool = False,
    ) -> None:
        self.host = HOST
        self.users: dict[str, str] = dict(users or {})
        self.imap_capability = imap_capability
        self.tls = tls
        self.reject_all = False
        self.dir = Path(tempfile.mkdtemp(prefix="bbmail-", dir="/tmp"))
        self.dir.chmod(0o755)
        self.imap_port = free_port()
        self.imaps_port = free_port() if tls else 0
        self.lmtp_port = free_port()
        self.smtp_port = free_port()
        self.ca_file = str(self.dir / "cert.pem") if tls else ""
        self.relay = _Relay(self)
        self._controller: Any = None
        self._imap_enabled = True
        self._started = False
        self._account_count = 0
        self._users_stamp = 0

    # ----------------------------------------------------------------- lifecycle

    def __enter__(self) -> MailServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start Dovecot and the SMTP relay; ready when this returns."""
        if not dovecot_available():
            raise RuntimeError("dovecot is not installed (apt-get install dovecot-imapd dovecot-lmtpd)")
        for sub in ("run", "state", "mail"):
            (self.dir / sub).mkdir(exist_ok=True)
        if os.geteuid() == 0:
            os.chown(self.dir / "mail", MAIL_UID, MAIL_UID)
        if self.tls:
            self._make_certificate()
        self._write_users()
        self._start_dovecot()
        self.start_smtp()
        self._started = True

    def stop(self) -> None:
        """Stop everything and remove the directory."""
        with contextlib.suppress(Exception):
            self.stop_smtp()
        self._stop_dovecot(grace=0.0)
        shutil.rmtree(self.dir, ignore_errors=True)
        self._started = False

    # ----------------------------------------------------------------- users

    def add_user(self, address: str, password: str) -> None:
        """Add (or change) an account; its user name is the full address."""
        if any(c in address + password for c in ":\n") or "/" in address:
            raise ValueError("user names may not contain ':', '/' or newlines, passwords ':'")
        self.users[address] = password
        if self._started:
            self._write_users()

    def new_account(self, name: str = "user") -> tuple[str, str]:
        """Add an account with a unique address; returns (address, password)."""
        self._account_count += 1
        address = f"{name}-{self._account_count}@example.test"
        password = f"pw-{name}-{self._account_count}-secret"
        self.add_user(address, password)
        return address, password

    def settings(self, sender: str, receiver: str, timeout: float = 10.0) -> MailSettings:
        """Mail settings for the installation `sender` whose partner is `receiver`.

        It sends from `sender` to `receiver` and receives in `sender`'s INBOX, in plain text
        (or STARTTLS with `ca_file` when the server has TLS).
        """
        from engine.channels.email import ImapSettings, MailSettings, SmtpSettings

        tls: Any = "starttls" if self.tls else "none"
        receive = ImapSettings(
            self.host, self.imap_port, tls, sender, self.users[sender], ca_file=self.ca_file
        )
        send = SmtpSettings(
            self.host,
            self.smtp_port,
            tls,
            sender,
            self.users[sender],
            sender,
            receiver,
            ca_file=self.ca_file,
        )
        return MailSettings(receive, send, timeout)

    def partner_settings(self) -> tuple[MailSettings, MailSettings]:
        """New accounts for Acme and Globex, each sending to the other: (acme side, globex side).
        Each side's own address is its `receive.username`."""
        acme, _ = self.new_account("acme")
        globex, _ = self.new_account("globex")
        return self.settings(acme, globex), self.settings(globex, acme)

    def pairing_settings(self) -> tuple[MailSettings, MailSettings]:
        """`partner_settings` as a pairing starts: neither side knows where to send yet (the
        primary learns it from the HANDSHAKE, the secondary from the handshake file)."""
        acme, globex = self.partner_settings()
        acme.send.to_addr = globex.send.to_addr = ""
        return acme, globex

    def imap(self, address: str) -> Any:
        """A logged-in IMAPClient for inspecting or changing `address`'s mailboxes."""
        from imapclient import IMAPClient  # type: ignore[import-untyped]

        client = IMAPClient(self.host, self.imap_port, ssl=False, timeout=10)
        if self.tls:
            client.starttls(ssl.create_default_context(cafile=self.ca_file))
        client.login(address, self.users[address])
        return client

    def _write_users(self) -> None:
        """One passwd-file per user: Dovecot rereads a file at most once a second."""
        users_dir = self.dir / "users"
        users_dir.mkdir(exist_ok=True)
        for address, password in self.users.items():
            home = self.dir / "mail" / address
            line = f"{address}:{{PLAIN}}{password}::::{home}::\n"
            target = users_dir / address
            if target.exists() and target.read_text() == line:
                continue
            staging = users_dir / f".{address}.tmp"
            staging.write_text(line)
            staging.chmod(0o644)
            # A changed password must be seen even within the same second and size.
            self._users_stamp = max(self._users_stamp + 1, int(time.time()))
            os.utime(staging, (self._users_stamp, self._users_stamp))
            os.replace(staging, target)

    # ----------------------------------------------------------------- IMAP side

    def stop_imap(self) -> None:
        """Close the IMAP port and drop every IMAP connection; LMTP keeps delivering."""
        self._imap_enabled = False
        self._reload()
        self.doveadm("kick", "*", check=False)
        self._wait_port(self.imap_port, open_=False)

    def start_imap(self) -> None:
        """Open the IMAP port again after `stop_imap`."""
        self._imap_enabled = True
        self._reload()
        self._wait_port(self.imap_port, open_=True)

    def stop_dovecot(self) -> None:
        """Stop Dovecot entirely (IMAP and LMTP); the SMTP relay queues mail meanwhile."""
        self._stop_dovecot()

    def start_dovecot(self) -> None:
        """Start Dovecot again and deliver what the relay queued."""
        self._start_dovecot()
        self.relay.flush()

    def doveadm(self, *args: str, check: bool = True) -> str:
        """Run `doveadm` against this server; returns its standard output."""
        result = subprocess.run(
            ["doveadm", "-c", str(self.conf), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"doveadm {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def lmtp_deliver(self, sender: str, rcpt: str, data: bytes) -> None:
        """Deliver one mail straight into a mailbox over LMTP."""
        with smtplib.LMTP(self.host, self.lmtp_port, timeout=10) as lmtp:
            lmtp.sendmail(sender, [rcpt], data)

    def maildir_count(self, address: str, folder: str = "INBOX") -> int:
        """How many mails `folder` holds (read with doveadm, not IMAP)."""
        out = self.doveadm("mailbox", "status", "-u", address, "messages", folder)
        return int(out.strip().split("=", 1)[1])

    @property
    def conf(self) -> Path:
        return self.dir / "dovecot.conf"

    @property
    def log(self) -> str:
        path = self.dir / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _config(self) -> str:
        d = self.dir
        protocols = "imap lmtp" if self._imap_enabled else "lmtp"
        root = os.geteuid() == 0
        if root:
            identity = f"mail_uid = {MAIL_UID}\nmail_gid = {MAIL_UID}\nfirst_valid_uid = {MAIL_UID}\n"
            anvil_chroot = ""
        else:
            user = _user_name()
            identity = (
                f"default_internal_user = {user}\ndefault_login_user = {user}\n"
                f"first_valid_uid = {os.geteuid()}\n"
            )
            anvil_chroot = "  chroot =\n"
        login_chroot = "" if root else "  chroot =\n"
        ssl_lines = "ssl = no\n"
        if self.tls:
            ssl_lines = f"ssl = yes\nssl_cert = <{d}/cert.pem\nssl_key = <{d}/key.pem\n"
        capability = f"imap_capability = {self.imap_capability}\n" if self.imap_capability else ""
        return f"""\
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
protocols = {protocols}
listen = {HOST}
{ssl_lines}disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
mail_location = maildir:~/Maildir
mail_fsync = never
{identity}{capability}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/users/%u
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {d}/users/%u
  default_fields = uid={os.geteuid() if not root else MAIL_UID} gid={os.getegid() if not root else MAIL_UID}
}}
service imap-login {{
{login_chroot}  inet_listener imap {{
    address = {HOST}
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = {HOST}
    port = {self.imaps_port}
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = {HOST}
    port = {self.lmtp_port}
  }}
}}
service anvil {{
  # Nobody may reach the auth penalty socket, so failed logins don't slow later ones down.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
{anvil_chroot}}}
"""

    def _start_dovecot(self) -> None:
        self.conf.write_text(self._config())
        check = subprocess.run(
            ["dovecot", "-c", str(self.conf), "-n"], capture_output=True, text=True, check=False
        )
        if check.returncode != 0:
            raise RuntimeError(f"dovecot config rejected: {check.stderr.strip()}")
        # The daemon inherits the pipes, so its output goes to a file, never to a pipe.
        with open(self.dir / "dovecot.out", "wb") as out:
            start = subprocess.run(
                ["dovecot", "-c", str(self.conf)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                check=False,
                timeout=30,
            )
        if start.returncode != 0:
            output = (self.dir / "dovecot.out").read_text(errors="replace").strip()
            raise RuntimeError(f"dovecot did not start: {output}\n{self.log}")
        if self._imap_enabled:
            self._wait_port(self.imap_port, open_=True)
        self._wait_port(self.lmtp_port, open_=True)

    def _stop_dovecot(self, grace: float = 2.0) -> None:
        pid = self._master_pid()
        if pid is None:
            return
        children = _children(pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        # Usually ~1 s; a master stopped right after a restart can take 6 s, so cut it short.
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.02)
        for leftover in [pid, *children]:
            if _alive(leftover):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(leftover, signal.SIGKILL)
        with contextlib.suppress(FileNotFoundError):
            (self.dir / "run" / "master.pid").unlink()

    def _reload(self) -> None:
        pid = self._master_pid()
        if pid is None:
            raise RuntimeError("dovecot is not running")
        self.conf.write_text(self._config())
        os.kill(pid, signal.SIGHUP)

    def _master_pid(self) -> int | None:
        try:
            pid = int((self.dir / "run" / "master.pid").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _alive(pid) else None

    def _wait_port(self, port: int, *, open_: bool, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if port_open(port) == open_:
                return
            time.sleep(0.02)
        state = "open" if open_ else "close"
        raise RuntimeError(f"port {port} did not {state} within {timeout} s\n{self.log}")

    def _make_certificate(self) -> None:
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                f"/CN={HOST}",
                "-addext",
                f"subjectAltName=IP:{HOST}",
                "-keyout",
                str(self.dir / "key.pem"),
                "-out",
                str(self.dir / "cert.pem"),
            ],
            capture_output=True,
            check=True,
        )

    # ----------------------------------------------------------------- SMTP side

    def start_smtp(self) -> None:
        """Start (or restart) the SMTP relay on `smtp_port`."""
        if self._controller is not None:
            return
        logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd's per-login chatter
        tls_context = None
        if self.tls:
            tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls_context.load_cert_chain(self.dir / "cert.pem", self.dir / "key.pem")
        controller = _plain_auth_controller()(
            self.relay,
            hostname=self.host,
            port=self.smtp_port,
            authenticator=self.relay.authenticate,
            auth_required=True,
            tls_context=tls_context,
        )
        controller.start()
        self._controller = controller

    def stop_smtp(self) -> None:
        """Stop the SMTP relay (its port refuses connections until `start_smtp`)."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
            self._wait_port(self.smtp_port, open_=False)


def _plain_auth_controller() -> type[Any]:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP

    class PlainAuthController(Controller):
        """Allows AUTH without TLS, without the per-connection warning aiosmtpd emits for it."""

        def factory(self) -> SMTP:
            server = SMTP(self.handler, **self.SMTP_kwargs)
            server._auth_require_tls = False  # pinned aiosmtpd 1.4.6
            return server

    return PlainAuthController


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        if state == "Z":
            return False
    return True


def _children(pid: int) -> list[int]:
    """Direct children of `pid` (Dovecot's master starts all its services itself)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            children.append(int(entry.name))
    return children


def _user_name() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


requires_dovecot = pytest.mark.skipif(
    not dovecot_available(),
    reason="dovecot is not installed: apt-get install dovecot-imapd dovecot-lmtpd",
)

DEFAULT_USERS = {"acme@example.test": "acme-secret", "globex@example.test": "globex-secret"}


@pytest.fixture(scope="module")
def mail_server() -> Iterator[MailServer]:
    """One running private mail server per test module, with the `DEFAULT_USERS` accounts.

    Tests share it: take fresh accounts with `new_account()`, and restart whatever you stop.
    """
    if not dovecot_available():
        pytest.skip("dovecot is not installed: apt-get install dovecot-imapd dovecot-lmtpd")
    with MailServer(DEFAULT_USERS) as server:
        yield server


@pytest.fixture
def mail_pair(mail_server: MailServer) -> tuple[MailSettings, MailSettings]:
    """Settings of two fresh partner accounts on `mail_server`: (acme side, globex side)."""
    return mail_server.partner_settings()
