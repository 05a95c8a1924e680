"""Shared fixtures: real installations in temporary folders, paired over a real exchange folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.runtime.demo import Demo, pair_installations, settle
from engine.runtime.engine import Engine
from engine.service.installation import Installation


@pytest.fixture
def paired(tmp_path: Path) -> Iterator[Demo]:
    """Acme (primary, ACME) and Globex (secondary, GLOBEX) paired, configured and RUNNING;
    encryption off, so tests can write envelopes by hand."""
    demo = pair_installations(tmp_path / "demo", encryption=False)
    yield demo
    demo.close()


@pytest.fixture
def paired_gpg(tmp_path: Path) -> Iterator[Demo]:
    """The same pair with OpenPGP on (each home has its own key ring and gpg-agent)."""
    demo = pair_installations(tmp_path / "demo", encryption=True)
    yield demo
    demo.close()


@pytest.fixture(params=["plain", "gpg"])
def pair(request: pytest.FixtureRequest) -> Demo:
    """Both kinds of pair, for tests that must hold with and without encryption."""
    return request.getfixturevalue("paired" if request.param == "plain" else "paired_gpg")  # type: ignore[no-any-return]


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Installation]:
    """One empty installation."""
    inst = Installation(tmp_path / "home")
    yield inst
    inst.close()


def cross_link(primary: Path, secondary: Path) -> None:
    """Make `secondary` an exchange folder whose SEND is `primary`'s RECEIVE and the other way round."""
    for name in ("SEND", "RECEIVE"):
        (primary / name).mkdir(parents=True, exist_ok=True)
    secondary.mkdir(parents=True, exist_ok=True)
    (secondary / "SEND").symlink_to(primary / "RECEIVE")
    (secondary / "RECEIVE").symlink_to(primary / "SEND")


def sync_all(demo: Demo, timeout: float = 30.0) -> float:
    """Run both engines' passes until neither has work left."""
    return settle((Engine(demo.acme), Engine(demo.globex)), timeout=timeout)


def issue_by_summary(inst: Installation, project: str, summary: str):  # type: ignore[no-untyped-def]
    matches = [i for i in inst.tracker.list_issues(project) if i.fields["summary"] == summary]
    assert len(matches) <= 1, f"duplicate issues named {summary!r}"
    return inst.tracker.read_issue(matches[0].id) if matches else None
