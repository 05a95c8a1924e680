"""The service layer the CLI, the TUI and (later) the REST API use: `Installation` and its views."""
