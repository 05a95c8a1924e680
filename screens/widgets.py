"""Stock widgets drawn with ASCII only, so that SSH terminals without good fonts show them right."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.content import Content
from textual.widgets import Checkbox, RadioButton, Select, Static


class AsciiCheckbox(Checkbox):
    """A checkbox drawn as `[x]` / `[ ]`, readable without colour."""

    BUTTON_LEFT = "["
    BUTTON_RIGHT = "]"

    @property
    def _button(self) -> Content:
        style = self.get_visual_style("toggle--button")
        return Content.assemble(("[", style), ("x" if self.value else " ", style), ("]", style))


class AsciiRadioButton(RadioButton):
    """A radio button drawn as `(*)` / `( )`."""

    @property
    def _button(self) -> Content:
        style = self.get_visual_style("toggle--button")
        return Content.assemble(("(", style), ("*" if self.value else " ", style), (")", style))


class AsciiSelect(Select[str]):
    """A dropdown whose arrows are `v` / `^` instead of triangles."""

    def on_mount(self) -> None:
        for selector, arrow in ((".down-arrow", "v"), (".up-arrow", "^")):
            for static in self.query(selector).results(Static):
                static.update(arrow)


def literal(value: Any) -> Text:
    """User data as text that is never parsed as markup, with control characters made visible."""
    text = str(value)
    if not text.isprintable():
        text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return Text(text)
