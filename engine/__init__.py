"""The headless sync engine of Backbone TUI: no Textual import, runs in a service too."""

__version__ = "0.1.0"
