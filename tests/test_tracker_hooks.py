"""A tracker's webhook through the REST API: a Redmine polled once an hour is looked at as soon as
`POST /api/1/hooks/redmine` says it changed (a real Redmine, a real engine and API server)."""

from __future__ import annotations

from sqlmodel import select

from engine.runtime.engine import wait_until
from engine.service.installation import Installation
from engine.store.models import RemoteCursor
from tests.redmine_server import RedmineServer, redmine  # noqa: F401 - the session fixture
from tests.test_api import serving
from tests.test_tracker_sync import linked  # noqa: F401 - a local sync embedded <-> Redmine


def _polled(home: Installation) -> bool:
    with home.db.session() as s:
        return s.exec(select(RemoteCursor).where(RemoteCursor.tracker == "redmine")).first() is not None


def test_a_webhook_has_the_tracker_looked_at_at_once(
    linked: tuple[Installation, str, str],  # noqa: F811
    redmine: RedmineServer,  # noqa: F811
) -> None:
    home, _key, project = linked
    home.trackers.update("redmine", poll_interval=3600)  # without a hook: an hour to wait
    with serving(home) as served:
        assert wait_until(lambda: _polled(home), 30)  # the engine's first look, at its start
        with redmine.admin() as http:
            made = http.post("/issues.json", json={"issue": {"project_id": project, "subject": "Hooked"}})
            assert made.status_code == 201
        response = served.post("/hooks/redmine")
        assert response.status_code == 200 and response.json() == {"tracker": "redmine", "polled_soon": True}
        assert wait_until(
            lambda: any(i.fields["summary"] == "Hooked" for i in home.tracker.list_issues("ACME")), 30
        )
        assert served.post("/hooks/nope").status_code == 404
        embedded = served.post("/hooks/embedded")
        assert embedded.status_code == 404 and "needs no webhook" in embedded.text
        assert served.client.post("/api/1/hooks/redmine").status_code == 401  # a token is needed
