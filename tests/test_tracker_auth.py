"""A tracker that refuses the credentials (a real Redmine given a wrong API key): the
synchronization shows TRACKER_AUTH_FAILED, nothing more is sent there, nothing is lost, and
`tracker update --secret` with the right key lets everything through."""

from __future__ import annotations

import json
from typing import Any

import pytest

from backbone_tui.cli import main
from engine.errors import FieldError, TrackerAuthFailed
from engine.service.installation import Installation
from engine.vocab import Reason
from tests.redmine_server import RedmineServer, redmine  # noqa: F401 - the session fixture
from tests.test_tracker_sync import _until, linked  # noqa: F401 - a local sync embedded <-> Redmine

SECRET = "BACKBONE_TRACKER_REDMINE_SECRET"


def _remote_subjects(redmine: RedmineServer, project: str) -> list[str]:  # noqa: F811
    with redmine.admin() as http:
        found = http.get("/issues.json", params={"project_id": project, "status_id": "*"}).json()
    return [issue["subject"] for issue in found["issues"]]


def test_refused_credentials_stop_sending_until_the_account_is_updated(
    linked: tuple[Installation, str, str],  # noqa: F811
    redmine: RedmineServer,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    home, key, project = linked
    root = str(home.paths.root)
    monkeypatch.setenv(SECRET, "0" * 40)  # a key Redmine does not know
    assert main(["--home", root, "tracker", "update", "redmine", "--secret"]) == 0
    home.tracker.create_issue("ACME", "Bug", {"summary": "Made while locked out"}, as_user="alice")

    def offline() -> list[Any]:
        return [m for m in home.messages(key) if m.folder == "OFFLINE"]

    _until(home, lambda: bool(offline()))
    assert [m.reason_code for m in offline()] == [Reason.TRACKER_AUTH_FAILED]
    info = home.queries.sync_info(key)
    assert info.tracker_error.startswith("tracker redmine: ") and "401" in info.tracker_error
    with pytest.raises(TrackerAuthFailed, match="backbone tracker update redmine --secret"):
        home.trackers.working("redmine")  # the pipeline does not ask Redmine again
    capsys.readouterr()
    assert main(["--home", root, "tracker", "list", "--json"]) == 0
    listed = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert listed["redmine"]["problem"] and listed["redmine"]["problem_since"]
    assert main(["--home", root, "sync", "analyze", key, "--no-check", "--json"]) in (0, 1)
    findings = json.loads(capsys.readouterr().out)["findings"]
    refused = [f for f in findings if f["reason"] == Reason.TRACKER_AUTH_FAILED]
    assert refused and refused[0]["fixes"][0]["command"] == "backbone tracker update redmine --secret"
    assert _remote_subjects(redmine, project) == []

    # a wrong value changes nothing
    with pytest.raises(FieldError, match="url"):
        home.trackers.update("redmine", url="ftp://nowhere")
    assert home.trackers.info("redmine").url == redmine.url

    monkeypatch.setenv(SECRET, redmine.sync_key)
    assert main(["--home", root, "tracker", "update", "redmine", "--secret"]) == 0
    assert home.queries.sync_info(key).tracker_error == ""
    _until(home, lambda: _remote_subjects(redmine, project) == ["Made while locked out"])
    assert [m for m in home.messages(key) if m.folder in ("OFFLINE", "ERROR", "REJECTED")] == []
