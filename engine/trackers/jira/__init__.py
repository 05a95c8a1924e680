"""The Jira connector (Server/Data Center REST v2, Cloud REST v3) behind the `Tracker` protocol."""

from engine.trackers.jira.tracker import JiraTracker

__all__ = ["JiraTracker"]
