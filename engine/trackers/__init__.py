"""Issue trackers behind one protocol (`base.Tracker`): the embedded one now, Jira and Redmine next."""
