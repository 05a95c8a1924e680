"""Backbone TUI: the application shell and command-line entry point."""
