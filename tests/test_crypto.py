"""The GnuPG key ring and codec against real gpg: round trips and every way rule 8 rejects."""

from __future__ import annotations

import base64
import os
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import gnupg  # type: ignore[import-untyped]
import pytest

from engine.domain.envelope import split_bundle
from engine.errors import RejectedError
from engine.trust.gpg import AGENT_CONF, GpgCodec, GpgError, Keyring

PAYLOAD_2KB = '{"body":{"text":"' + "päyload " * 250 + '"},"format":1}'


@dataclass
class Party:
    """One installation's key ring and its key."""

    keyring: Keyring
    fingerprint: str

    def raw(self) -> Any:
        """A bare python-gnupg handle on the same folder, for crafting hostile messages."""
        return gnupg.GPG(gnupghome=str(self.keyring.homedir), options=["--pinentry-mode", "loopback"])

    def export(self) -> str:
        return self.keyring.export_public(self.fingerprint)


MakeParty = Callable[..., Party]


def _new_party(folders: list[Path], keyrings: list[Keyring], name: str, **kwargs: Any) -> Party:
    folder = Path(tempfile.mkdtemp(prefix="bbk-", dir="/tmp")) / "gnupg"
    folders.append(folder.parent)
    if kwargs.get("passphrase"):
        # Cheap key protection, for test speed only (the default costs ~0.5 s per use).
        folder.mkdir(mode=0o700)
        (folder / "gpg-agent.conf").write_text(AGENT_CONF + "s2k-count 65536\n")
    keyring = Keyring(folder, **kwargs)
    keyrings.append(keyring)
    return Party(keyring, keyring.ensure_key(name, f"{name}@example.test"))


@pytest.fixture(scope="module")
def parties() -> Iterator[dict[str, Party]]:
    """alice and bob paired; carol knows bob and alice knows carol (to craft wrong messages)."""
    folders: list[Path] = []
    keyrings: list[Keyring] = []
    made = {name: _new_party(folders, keyrings, name) for name in ("alice", "bob", "carol")}
    alice, bob, carol = made["alice"], made["bob"], made["carol"]
    bob.keyring.import_partner_key(alice.export(), alice.fingerprint)
    alice.keyring.import_partner_key(bob.export(), bob.fingerprint)
    carol.keyring.import_partner_key(bob.export(), bob.fingerprint)
    alice.keyring.import_partner_key(carol.export(), carol.fingerprint)
    yield made
    for keyring in keyrings:
        keyring.close()
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def make_party() -> Iterator[MakeParty]:
    """Fresh key rings for tests that change keys; agents stopped and folders removed after."""
    folders: list[Path] = []
    keyrings: list[Keyring] = []
    yield lambda name, **kwargs: _new_party(folders, keyrings, name, **kwargs)
    for keyring in keyrings:
        keyring.close()
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def codecs(sender: Party, receiver: Party) -> tuple[GpgCodec, GpgCodec]:
    """The sender's codec (to the receiver) and the receiver's codec (pinning the sender)."""
    return (
        GpgCodec(sender.keyring, sender.fingerprint, receiver.fingerprint),
        GpgCodec(receiver.keyring, receiver.fingerprint, sender.fingerprint),
    )


def rejected(codec: GpgCodec, data: bytes) -> str:
    with pytest.raises(RejectedError) as caught:
        codec.open(data)
    assert caught.value.text and "\n" not in caught.value.text
    return caught.value.code


def dearmor(armored: bytes) -> bytes:
    lines = armored.decode().strip().splitlines()
    body = lines[lines.index("") + 1 : -1]
    return base64.b64decode("".join(line for line in body if not line.startswith("=")))


# Keys


def test_key_is_created_once_with_two_years_expiry(parties: dict[str, Party]) -> None:
    alice = parties["alice"]
    assert alice.keyring.ensure_key("alice", "alice@example.test") == alice.fingerprint
    assert alice.keyring.own_fingerprint() == alice.fingerprint
    expiry = alice.keyring.key_expiry(alice.fingerprint)
    assert expiry is not None
    assert abs(expiry - (datetime.now(UTC) + timedelta(days=730))) < timedelta(days=1)
    assert stat.S_IMODE(os.stat(alice.keyring.folder).st_mode) == 0o700


def test_export_is_public_only(parties: dict[str, Party]) -> None:
    exported = parties["alice"].export()
    assert exported.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert "PRIVATE" not in exported


def test_import_refuses_a_wrong_fingerprint(make_party: MakeParty, parties: dict[str, Party]) -> None:
    dave = make_party("dave")
    alice, carol = parties["alice"], parties["carol"]
    with pytest.raises(RejectedError) as caught:
        dave.keyring.import_partner_key(carol.export(), alice.fingerprint)
    assert caught.value.code == "KEY_MISMATCH"
    assert carol.fingerprint not in dave.raw().list_keys().fingerprints


def test_import_refuses_two_keys(make_party: MakeParty, parties: dict[str, Party]) -> None:
    dave = make_party("dave")
    alice, carol = parties["alice"], parties["carol"]
    one_block = alice.raw().export_keys([alice.fingerprint, carol.fingerprint])
    for blob in (one_block, alice.export() + carol.export()):
        with pytest.raises(RejectedError) as caught:
            dave.keyring.import_partner_key(blob, alice.fingerprint)
        assert caught.value.code == "KEY_MULTIPLE"
    assert dave.raw().list_keys().fingerprints == [dave.fingerprint]


def test_import_refuses_private_keys_and_garbage(make_party: MakeParty, parties: dict[str, Party]) -> None:
    dave = make_party("dave")
    carol = parties["carol"]
    secret = carol.raw().export_keys(carol.fingerprint, secret=True, expect_passphrase=False)
    assert "PRIVATE KEY" in secret
    for blob in (secret, "not a key", ""):
        with pytest.raises(RejectedError) as caught:
            dave.keyring.import_partner_key(blob, carol.fingerprint)
        assert caught.value.code == "KEY_INVALID"
    assert dave.raw().list_keys(secret=True).fingerprints == [dave.fingerprint]


def test_long_folder_path_uses_a_short_alias(tmp_path: Path) -> None:
    folder = tmp_path / ("long-" * 20) / "gnupg"
    with Keyring(folder) as keyring:
        fingerprint = keyring.ensure_key("long", "long@example.test")
        assert keyring.homedir != keyring.folder and len(str(keyring.homedir)) < 80
        assert keyring.own_fingerprint() == fingerprint
    keyring.homedir.unlink()


def test_a_hung_gpg_is_stopped(tmp_path: Path) -> None:
    fake = tmp_path / "gpg"
    fake.write_text('#!/bin/sh\ncase "$*" in *--list-config*) exec gpg "$@";; esac\nexec sleep 60\n')
    fake.chmod(0o755)
    keyring = Keyring(tmp_path / "gnupg", timeout=0.5, gpg_binary=str(fake))
    started = time.monotonic()
    with pytest.raises(GpgError, match="did not finish"):
        keyring.own_fingerprint()
    assert time.monotonic() - started < 4


# Round trips


def test_round_trip(parties: dict[str, Party]) -> None:
    sender, receiver = codecs(parties["alice"], parties["bob"])
    for text in ('{"a":1}', "Grüße, 日本語 ✓", PAYLOAD_2KB):
        sealed = sender.seal(text)
        assert sealed.startswith(b"-----BEGIN PGP MESSAGE-----")
        assert receiver.open(sealed) == text
    back_sender, back_receiver = codecs(parties["bob"], parties["alice"])
    assert back_receiver.open(back_sender.seal("reply")) == "reply"


def test_bundle_round_trip(parties: dict[str, Party]) -> None:
    sender, receiver = codecs(parties["alice"], parties["bob"])
    texts = [f'{{"n":{n},"text":"ü \\" x"}}' for n in range(100)]
    assert split_bundle(receiver.open(sender.seal_many(texts))) == texts
    assert split_bundle('{"format":1}') == ['{"format":1}']
    with pytest.raises(RejectedError):
        split_bundle('{"bundle":[{"format":1}]}')


def test_threads_share_key_rings(parties: dict[str, Party]) -> None:
    sender, receiver = codecs(parties["alice"], parties["bob"])
    failures: list[BaseException] = []
    opened: list[str] = []

    def work(thread: int) -> None:
        try:
            for n in range(10):
                text = f"thread {thread} message {n}"
                opened.append(receiver.open(sender.seal(text)))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures
    assert sorted(opened) == sorted(f"thread {t} message {n}" for t in range(4) for n in range(10))


def test_timings(parties: dict[str, Party], capsys: pytest.CaptureFixture[str]) -> None:
    sender, receiver = codecs(parties["alice"], parties["bob"])
    rounds = 10
    bundle = [PAYLOAD_2KB] * 100
    lines = []
    seal: Callable[[], bytes]
    for label, seal in (
        ("2 KB", lambda: sender.seal(PAYLOAD_2KB)),
        ("bundle of 100 x 2 KB", lambda: sender.seal_many(bundle)),
    ):
        started = time.perf_counter()
        sealed = [seal() for _ in range(rounds)]
        seal_ms = (time.perf_counter() - started) / rounds * 1000
        started = time.perf_counter()
        for data in sealed:
            receiver.open(data)
        open_ms = (time.perf_counter() - started) / rounds * 1000
        lines.append(f"{label}: seal {seal_ms:.1f} ms, open {open_ms:.1f} ms per call")
    with capsys.disabled():
        print("\n[crypto timings] " + "; ".join(lines))


def test_passphrase_protected_key(make_party: MakeParty) -> None:
    erin = make_party("erin", passphrase="pässwört ✓")
    frank = make_party("frank")
    erin.keyring.import_partner_key(frank.export(), frank.fingerprint)
    frank.keyring.import_partner_key(erin.export(), erin.fingerprint)
    erin_codec, frank_codec = codecs(erin, frank)
    assert frank_codec.open(erin_codec.seal("signed with a passphrase")) == "signed with a passphrase"
    to_erin = GpgCodec(frank.keyring, frank.fingerprint, erin.fingerprint).seal("to erin")
    assert GpgCodec(erin.keyring, erin.fingerprint, frank.fingerprint).open(to_erin) == "to erin"
    wrong = Keyring(erin.keyring.folder, passphrase="wrong")
    with pytest.raises(GpgError):
        GpgCodec(wrong, erin.fingerprint, frank.fingerprint).seal("x")


# Rejections (rule 8)


def test_unsigned_message_is_rejected(parties: dict[str, Party]) -> None:
    alice, bob = parties["alice"], parties["bob"]
    _, receiver = codecs(alice, bob)
    unsigned = alice.raw().encrypt(b'{"a":1}', bob.fingerprint, always_trust=True, armor=True)
    assert unsigned.ok
    assert rejected(receiver, unsigned.data) == "SIG_MISSING"


def test_message_signed_by_another_key_is_rejected(make_party: MakeParty, parties: dict[str, Party]) -> None:
    alice, bob, carol = parties["alice"], parties["bob"], parties["carol"]
    _, receiver = codecs(alice, bob)
    by_carol = GpgCodec(carol.keyring, carol.fingerprint, bob.fingerprint).seal('{"a":1}')
    assert rejected(receiver, by_carol) == "SIG_WRONG_KEY"
    # The same when the receiver holds carol's public key (gpg then calls the signature good).
    grace = make_party("grace")
    grace.keyring.import_partner_key(alice.export(), alice.fingerprint)
    grace.keyring.import_partner_key(carol.export(), carol.fingerprint)
    carol.keyring.import_partner_key(grace.export(), grace.fingerprint)
    to_grace = GpgCodec(carol.keyring, carol.fingerprint, grace.fingerprint).seal('{"a":1}')
    assert rejected(GpgCodec(grace.keyring, grace.fingerprint, alice.fingerprint), to_grace) == (
        "SIG_WRONG_KEY"
    )


def test_message_for_another_installation_is_rejected(parties: dict[str, Party]) -> None:
    alice, bob, carol = parties["alice"], parties["bob"], parties["carol"]
    _, receiver = codecs(alice, bob)
    to_carol = GpgCodec(alice.keyring, alice.fingerprint, carol.fingerprint).seal('{"a":1}')
    assert rejected(receiver, to_carol) == "DECRYPT_FAILED"


def test_truncated_and_bit_flipped_messages_are_rejected(parties: dict[str, Party]) -> None:
    sender, receiver = codecs(parties["alice"], parties["bob"])
    sealed = sender.seal(PAYLOAD_2KB)
    for cut in (10, len(sealed) // 2, len(sealed) - 40):
        assert rejected(receiver, sealed[:cut]) == "DECRYPT_FAILED"
    armored = bytearray(sealed)
    armored[len(armored) // 2] ^= 0x01
    assert rejected(receiver, bytes(armored)) == "DECRYPT_FAILED"
    binary = dearmor(sealed)
    assert receiver.open(binary) == PAYLOAD_2KB
    for position in (20, 80, len(binary) // 2, len(binary) - 3):
        flipped = bytearray(binary)
        flipped[position] ^= 0x10
        assert rejected(receiver, bytes(flipped)) == "DECRYPT_FAILED"
    assert rejected(receiver, binary[: len(binary) - 5]) == "DECRYPT_FAILED"


def test_garbage_is_rejected(parties: dict[str, Party]) -> None:
    _, receiver = codecs(parties["alice"], parties["bob"])
    for data in (b"", b"hello", os.urandom(512), b'{"format":1,"body":{}}'):
        assert rejected(receiver, data) == "DECRYPT_FAILED"


def test_signed_but_not_encrypted_is_rejected(parties: dict[str, Party]) -> None:
    alice, bob = parties["alice"], parties["bob"]
    _, receiver = codecs(alice, bob)
    signed = alice.raw().sign(b'{"a":1}', keyid=alice.fingerprint)
    assert rejected(receiver, signed.data) == "DECRYPT_FAILED"


def test_password_encrypted_is_rejected(parties: dict[str, Party]) -> None:
    alice, bob = parties["alice"], parties["bob"]
    _, receiver = codecs(alice, bob)
    symmetric = alice.raw().encrypt(
        b'{"a":1}', None, symmetric=True, passphrase="x", armor=True, extra_args=["--s2k-count", "1024"]
    )
    assert symmetric.ok
    assert rejected(receiver, symmetric.data) == "DECRYPT_FAILED"


def test_two_signatures_are_rejected(make_party: MakeParty, parties: dict[str, Party]) -> None:
    bob = parties["bob"]
    mallory = make_party("mallory")
    second = (
        mallory.raw()
        .gen_key(
            mallory.raw().gen_key_input(
                key_type="EDDSA",
                key_curve="ed25519",
                key_usage="sign",
                name_email="second@example.test",
                no_protection=True,
            )
        )
        .fingerprint
    )
    mallory.keyring.import_partner_key(bob.export(), bob.fingerprint)
    receiver = GpgCodec(bob.keyring, bob.fingerprint, mallory.fingerprint)
    for order in ([second, mallory.fingerprint], [mallory.fingerprint, second]):
        local_users = [arg for fingerprint in order for arg in ("--local-user", fingerprint)]
        double = mallory.raw().encrypt(
            b'{"a":1}',
            bob.fingerprint,
            sign=True,
            always_trust=True,
            armor=True,
            extra_args=local_users,
        )
        assert double.ok
        assert rejected(receiver, double.data) == "SIG_MULTIPLE"
    # Also when the receiver knows both keys, so that every signature is good.
    bob_view = make_party("bob2")
    bob_view.raw().import_keys(mallory.raw().export_keys([mallory.fingerprint, second]))
    mallory.keyring.import_partner_key(bob_view.export(), bob_view.fingerprint)
    double = mallory.raw().encrypt(
        b'{"a":1}',
        bob_view.fingerprint,
        sign=True,
        always_trust=True,
        armor=True,
        extra_args=["--local-user", second, "--local-user", mallory.fingerprint],
    )
    assert (
        rejected(GpgCodec(bob_view.keyring, bob_view.fingerprint, mallory.fingerprint), double.data)
        == "SIG_MULTIPLE"
    )


def test_expired_key_rejects_new_messages_but_keeps_the_backlog(make_party: MakeParty) -> None:
    alice, bob = make_party("alice"), make_party("bob")
    alice.keyring.import_partner_key(bob.export(), bob.fingerprint)
    alice.keyring.set_expiry(alice.fingerprint, timedelta(seconds=3))
    bob.keyring.import_partner_key(alice.export(), alice.fingerprint)
    sender, receiver = codecs(alice, bob)
    backlog = sender.seal("signed while valid")
    expiry = alice.keyring.key_expiry(alice.fingerprint)
    assert expiry is not None
    time.sleep(max(0.0, (expiry - datetime.now(UTC)).total_seconds()) + 1.1)
    # alice renews, but bob still holds the copy that has expired.
    alice.keyring.set_expiry(alice.fingerprint, timedelta(days=730))
    late = sender.seal("signed after the expiry bob knows")
    assert receiver.open(backlog) == "signed while valid"
    assert rejected(receiver, late) == "KEY_EXPIRED"
    bob.keyring.import_partner_key(alice.export(), alice.fingerprint)
    assert receiver.open(late) == "signed after the expiry bob knows"


def test_revoked_key_is_rejected(make_party: MakeParty) -> None:
    alice, bob = make_party("alice"), make_party("bob")
    alice.keyring.import_partner_key(bob.export(), bob.fingerprint)
    bob.keyring.import_partner_key(alice.export(), alice.fingerprint)
    sender, receiver = codecs(alice, bob)
    sealed = sender.seal("before the revocation")
    revocation = alice.keyring.folder / "openpgp-revocs.d" / f"{alice.fingerprint}.rev"
    certificate = revocation.read_text().replace(":-----BEGIN", "-----BEGIN")
    assert alice.raw().import_keys(certificate).returncode == 0
    bob.keyring.import_partner_key(alice.export(), alice.fingerprint)
    assert rejected(receiver, sealed) == "KEY_REVOKED"


def test_oversized_plaintext_is_rejected(parties: dict[str, Party]) -> None:
    alice, bob = parties["alice"], parties["bob"]
    sealed = GpgCodec(alice.keyring, alice.fingerprint, bob.fingerprint).seal("x" * 2_000_000)
    assert len(sealed) < 20_000
    receiver = GpgCodec(bob.keyring, bob.fingerprint, alice.fingerprint, max_plaintext_bytes=100_000)
    assert rejected(receiver, sealed) == "TOO_LARGE"
