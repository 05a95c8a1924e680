"""Textual screens of Backbone TUI."""
