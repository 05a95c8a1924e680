"""Redmine behind the `Tracker` protocol: a typed httpx client (`client`), the cached schema
lookups (`schema`), history read as changes (`changes`), bodies to and from Redmine's markup
(`text`) and the connector (`tracker`).

Markers (idempotent writes, RELIABILITY rule 5) are two issue custom fields an administrator
creates once: "Backbone sync marker" and "Backbone write marker", format string, for all projects
and trackers, "used as a filter", visible only to the sync user's role (so people do not see them).
`create_issue` sets the sync marker with the issue (one request: a crash cannot leave an unmarked
copy) and `find_by_marker` filters on it. `add_comment` and `add_attachment` set the write marker
to the message id in the same update as the note or upload, so Redmine records it in that very
journal; a repeated write finds the journal and returns what it made (attachments are also matched
by name and size). Relations are unique per issue pair in Redmine, so a link is looked up first.
The connector hides both fields when it reads issues and history. Where the sync user may not read
custom field definitions (no administrator), their ids come from `options.sync_marker_field_id`
and `options.write_marker_field_id` or from an issue of the project.

Change detection asks for one page of issues with `updated_on>=` the cursor minus a few seconds
(Redmine keeps seconds), reads each changed issue with its journals, and records creations,
journal detail rows (fields, status as a transition, notes as comments), attachments and relations
in the change mirror under stable keys, so the overlap reads nothing twice. Authors are logins.
Writes are made as the API key's user (`as_user` is not switched).

Descriptions and notes are plain text in the envelope and Redmine markup in Redmine: the account's
`options.text_formatting` names the instance's setting (textile, Redmine's default; markdown;
common_mark; none), which REST does not show; `text` writes plain text so Redmine shows it as
written and reads markup back to the text it stands for."""

from engine.trackers.redmine.client import RedmineClient
from engine.trackers.redmine.tracker import RedmineTracker

__all__ = ["RedmineClient", "RedmineTracker"]
