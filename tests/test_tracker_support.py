"""The support ZIP of a synchronization whose side lives in a remote tracker: the account is named
(kind, address, user) so support can see where the issues live, and its secret is not there."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from backbone_tui.cli import main
from engine.service.installation import Installation
from tests.redmine_server import RedmineServer, redmine  # noqa: F401 - the session fixture
from tests.test_tracker_sync import linked  # noqa: F401 - a local sync embedded <-> Redmine


def test_support_zip_names_the_tracker_account_and_keeps_its_secret_out(
    linked: tuple[Installation, str, str],  # noqa: F811
    redmine: RedmineServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    home, key, _project = linked
    out = tmp_path / "support.zip"
    assert main(["--home", str(home.paths.root), "sync", "support-zip", key, "-o", str(out)]) == 0
    with zipfile.ZipFile(out) as archive:
        blob = b"".join(archive.read(name) for name in archive.namelist())
        sides = json.loads(archive.read(f"{key}/synchronization.json"))["sides"]
    assert redmine.sync_key.encode() not in blob
    trackers = {side["tracker"]["name"]: side["tracker"] for side in sides}
    assert trackers["redmine"]["kind"] == "redmine" and trackers["redmine"]["url"] == redmine.url
    assert trackers["redmine"]["secret_set"] is True and "secret" not in trackers["redmine"]
    assert trackers["embedded"]["kind"] == "embedded"
