"""A private, real Redmine 5 (Debian's `redmine` and `redmine-sqlite` under thin) for tests.

Its SQLite database lives in a temporary directory and it listens on a free loopback port; it is
migrated and seeded once per session (an admin, a non-admin sync user with the role "Backbone sync",
a sync user that is an administrator,
the two marker custom fields the connector needs and a few test custom fields). Attachments land
in the Debian instance's `files/` directory: the fixture deletes the ones it made when it stops.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.mailserver import HOST, free_port

REDMINE_ROOT = Path("/usr/share/redmine")
FILES_DIR = Path("/var/lib/redmine/default/files")
SYNC_LOGIN = "sync-bot"
SYNC_ADMIN_LOGIN = "sync-admin"  # a sync user that is an administrator (reads field definitions)
START_TIMEOUT = 90.0

# One runner: default data, REST on, trackers for new projects, the sync user and role, the fields.
SEED = r"""
Redmine::DefaultData::Loader.load("en")
Setting.rest_api_enabled = "1"
Setting.default_projects_tracker_ids = Tracker.pluck(:id).map(&:to_s)
Setting.text_formatting = "markdown"
Setting.parent_issue_priority = "independent"  # else Redmine derives a parent's priority, ignoring writes
admin = User.find_by_login("admin")
admin.update_columns(must_change_passwd: false)
role = Role.create!(name: "Backbone sync", assignable: true, users_visibility: "all",
  issues_visibility: "all", permissions: %i[view_issues add_issues edit_issues add_issue_notes
  manage_issue_relations manage_subtasks view_private_notes set_notes_private])
Role.find_by_name("Manager").tap { |r| r.update!(users_visibility: "all") }
WorkflowTransition.where(role_id: Role.find_by_name("Manager").id).each do |t|
  WorkflowTransition.create!(role_id: role.id, tracker_id: t.tracker_id, old_status_id: t.old_status_id,
    new_status_id: t.new_status_id)
end
sync = User.new(firstname: "Sync", lastname: "Bot", mail: "sync-bot@example.org")
sync.login = "SYNC_LOGIN"
sync.password = "sync-bot-password-1"
sync.save!
sync_admin = User.new(firstname: "Sync", lastname: "Admin", mail: "sync-admin@example.org")
sync_admin.login = "SYNC_ADMIN_LOGIN"
sync_admin.password = "sync-admin-password-1"
sync_admin.admin = true
sync_admin.save!
trackers = Tracker.all.to_a
marker = lambda do |name|
  IssueCustomField.create!(name: name, field_format: "string", is_for_all: true, trackers: trackers,
    visible: false, role_ids: [role.id], is_filter: true, searchable: false)
end
sync_marker = marker.call("Backbone sync marker")
write_marker = marker.call("Backbone write marker")
IssueCustomField.create!(name: "Severity", field_format: "list", possible_values: %w[Low High Critical],
  is_for_all: true, trackers: trackers)
IssueCustomField.create!(name: "Points", field_format: "int", is_for_all: true, trackers: trackers)
IssueCustomField.create!(name: "Customer", field_format: "string", is_for_all: true, trackers: trackers)
IssueCustomField.create!(name: "Reviewer", field_format: "user", is_for_all: true, trackers: trackers)
puts "ADMIN_KEY=#{admin.api_key}"
puts "SYNC_KEY=#{sync.api_key}"
puts "SYNC_ADMIN_KEY=#{sync_admin.api_key}"
puts "ROLE_ID=#{role.id}"
puts "SYNC_MARKER_ID=#{sync_marker.id}"
puts "WRITE_MARKER_ID=#{write_marker.id}"
""".replace("SYNC_ADMIN_LOGIN", SYNC_ADMIN_LOGIN).replace("SYNC_LOGIN", SYNC_LOGIN)


def redmine_available() -> bool:
    return REDMINE_ROOT.is_dir() and shutil.which("thin") is not None


@dataclass
class RedmineServer:
    """A running Redmine: its address, the admin's and the sync user's API keys, the sync role."""

    url: str
    admin_key: str
    sync_key: str
    sync_login: str
    role_id: int
    database: Path
    marker_field_ids: tuple[int, int]  # the sync and the write marker custom fields
    sync_admin_key: str = ""  # the API key of SYNC_ADMIN_LOGIN

    def admin(self) -> httpx.Client:
        """An HTTP client that acts as the administrator (test setup, "human" edits)."""
        return httpx.Client(base_url=self.url, headers={"X-Redmine-API-Key": self.admin_key}, timeout=30)

    @contextmanager
    def web(self) -> Iterator[httpx.Client]:
        """The administrator logged in to the web pages (to see what Redmine shows, change settings)."""
        with httpx.Client(base_url=self.url, timeout=30) as http:
            answer = http.post(
                "/login",
                data={
                    "authenticity_token": _form_token(http, "/login"),
                    "username": "admin",
                    "password": "admin",
                },
            )
            assert answer.status_code == 302 and "/login" not in answer.headers["location"], answer.text[
                -500:
            ]
            yield http

    def set_text_formatting(self, name: str) -> None:
        """Redmine's `text_formatting` setting (textile, markdown, common_mark or "" for none)."""
        with self.web() as http:
            answer = http.post(
                "/settings/edit?tab=general",
                data={
                    "authenticity_token": _form_token(http, "/settings?tab=general"),
                    "settings[text_formatting]": name,
                },
            )
            assert answer.status_code == 302, answer.text[-500:]

    def new_project(self, identifier: str) -> str:
        """Create a project with the sync user as a member; its identifier."""
        with self.admin() as http:
            answer = http.post(
                "/projects.json",
                json={"project": {"name": identifier, "identifier": identifier, "is_public": False}},
            )
            answer.raise_for_status()
            project_id = answer.json()["project"]["id"]
            sync_id = http.get("/users.json", params={"name": self.sync_login}).json()["users"][0]["id"]
            member = http.post(
                f"/projects/{project_id}/memberships.json",
                json={"membership": {"user_id": sync_id, "role_ids": [self.role_id]}},
            )
            member.raise_for_status()
        return identifier


def _form_token(http: httpx.Client, page: str) -> str:
    """The CSRF token of a web form."""
    found = re.search(r'name="authenticity_token" value="([^"]+)"', http.get(page).text)
    assert found is not None, f"no form on {page}"
    return found.group(1)


def _environment(directory: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("BUNDLE", "GEM", "RUBY"))}
    env.update(
        DATABASE_URL=f"sqlite3://{directory / 'redmine.sqlite3'}",
        RAILS_ENV="production",
        REDMINE_LANG="en",
        HOME=str(directory),
    )
    return env


def _run(args: list[str], directory: Path, user: str | None) -> str:
    result = subprocess.run(
        args,
        cwd=REDMINE_ROOT,
        env=_environment(directory),
        capture_output=True,
        text=True,
        timeout=300,
        user=user,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:3])} failed: {result.stdout[-1500:]}{result.stderr[-1500:]}")
    return result.stdout


def _wait_ready(url: str, key: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Redmine exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/users/current.json", headers={"X-Redmine-API-Key": key}).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"Redmine did not answer within {START_TIMEOUT:.0f} s: {log.read_text()[-2000:]}")


def _forget_attachments(database: Path) -> None:
    """Delete the files of the attachments this server stored in the shared `files/` directory."""
    try:
        with sqlite3.connect(database) as db:
            rows = db.execute("select disk_directory, disk_filename from attachments").fetchall()
    except sqlite3.Error:
        return
    for directory, name in rows:
        if name:
            (FILES_DIR / (directory or "") / name).unlink(missing_ok=True)


def start_redmine(directory: Path) -> tuple[RedmineServer, subprocess.Popen[bytes]]:
    """Migrate, seed and start a Redmine in `directory`; the server and its process."""
    user = None  # as the caller: root in ./test.sh (the instance's secret_key.txt is root's)
    _run(["bin/rake", "db:migrate"], directory, user)
    output = _run(["bin/rails", "runner", SEED], directory, user)
    values = dict(line.split("=", 1) for line in output.splitlines() if "=" in line)
    port = free_port()
    log = directory / "thin.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["thin", "-R", "config.ru", "-a", HOST, "-p", str(port), "start"],
            cwd=REDMINE_ROOT,
            env=_environment(directory),
            stdout=out,
            stderr=subprocess.STDOUT,
            user=user,
        )
    url = f"http://{HOST}:{port}"
    server = RedmineServer(
        url,
        values["ADMIN_KEY"],
        values["SYNC_KEY"],
        SYNC_LOGIN,
        int(values["ROLE_ID"]),
        directory / "redmine.sqlite3",
        (int(values["SYNC_MARKER_ID"]), int(values["WRITE_MARKER_ID"])),
        values["SYNC_ADMIN_KEY"],
    )
    try:
        _wait_ready(url, server.admin_key, process, log)
    except BaseException:
        stop_redmine(server, process)
        raise
    return server, process


def stop_redmine(server: RedmineServer, process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
    _forget_attachments(server.database)


@pytest.fixture(scope="session")
def redmine() -> Iterator[RedmineServer]:
    """One real Redmine for the session (about 20 s to start); skipped where it is not installed."""
    if not redmine_available():
        pytest.skip("Debian redmine not installed (./test.sh installs it)")
    directory = Path(tempfile.mkdtemp(prefix="backbone-redmine-"))
    try:
        server, process = start_redmine(directory)
        try:
            yield server
        finally:
            stop_redmine(server, process)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
