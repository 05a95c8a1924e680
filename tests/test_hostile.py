"""Hostile and broken input never stops the engine (issue: bombs, deep payloads, a missing share,
a reused sequence number, a corrupt database, line breaks in mail settings, unknown config versions)."""

from __future__ import annotations

import os
import tracemalloc

from engine import folders as F
from engine.crypto import DEFAULT_MAX_PLAINTEXT_BYTES
from engine.demo import Demo

from .hostile import compression_bomb
from .test_bad_input import drop, reasons, run_globex, still_syncs


def test_a_compression_bomb_is_rejected_with_bounded_memory(paired_gpg: Demo) -> None:
    bomb = compression_bomb(paired_gpg.globex, paired_gpg.key)
    assert len(bomb) < 1_000_000
    drop(paired_gpg, "bomb.bac", bomb)
    tracemalloc.start()
    try:
        run_globex(paired_gpg)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert reasons(paired_gpg)["bomb.bac"] == (F.REJECTED, "TOO_LARGE")
    assert peak < DEFAULT_MAX_PLAINTEXT_BYTES + (8 << 20), f"{peak} bytes held while opening the bomb"
    still_syncs(paired_gpg, "after the bomb")


def test_large_garbage_that_gpg_stops_reading_is_rejected(paired_gpg: Demo) -> None:
    drop(paired_gpg, "junk.bac", os.urandom(8 << 20))
    run_globex(paired_gpg)
    assert reasons(paired_gpg)["junk.bac"] == (F.REJECTED, "DECRYPT_FAILED")
    still_syncs(paired_gpg, "after the junk")
