"""Atlassian Document Format (Jira Cloud's rich text) to and from the plain text an envelope carries.

The published OpenAPI leaves ADF untyped, so `to_text` checks the structure itself and raises
`AdfError` for a document it cannot read; formatting that plain text cannot hold (marks, tables,
panels) degrades to its text."""

from __future__ import annotations

from typing import Any

DOC_VERSION = 1
_BLOCK_SEPARATOR = "\n\n"


class AdfError(ValueError):
    """A value that is not a well-formed ADF document."""


def from_text(text: str) -> dict[str, Any]:
    """An ADF document for `text`: blank lines separate paragraphs, a single newline is a hard break."""
    paragraphs: list[dict[str, Any]] = []
    for block in text.replace("\r\n", "\n").split(_BLOCK_SEPARATOR):
        if not block:
            continue
        content: list[dict[str, Any]] = []
        for number, line in enumerate(block.split("\n")):
            if number:
                content.append({"type": "hardBreak"})
            if line:
                content.append({"type": "text", "text": line})
        paragraphs.append({"type": "paragraph", "content": content})
    return {"type": "doc", "version": DOC_VERSION, "content": paragraphs}


def to_text(doc: Any) -> str:
    """The plain text of an ADF document (None reads as ""); `AdfError` when it is malformed."""
    if doc is None:
        return ""
    if not isinstance(doc, dict) or doc.get("type") != "doc":
        raise AdfError("an ADF document is an object of type 'doc'")
    if doc.get("version") != DOC_VERSION:
        raise AdfError(f"ADF version {doc.get('version')!r}: expected {DOC_VERSION}")
    return _BLOCK_SEPARATOR.join(_blocks(_children(doc)))


def _children(node: dict[str, Any]) -> list[dict[str, Any]]:
    content = node.get("content", [])
    if not isinstance(content, list):
        raise AdfError(f"'content' of a {node.get('type')!r} node must be a list")
    for child in content:
        if not isinstance(child, dict) or not isinstance(child.get("type"), str):
            raise AdfError(f"a child of a {node.get('type')!r} node is not a node with a type")
    return content


def _blocks(nodes: list[dict[str, Any]]) -> list[str]:
    """The text of each block node (paragraph, heading, list, code block, quote, rule)."""
    blocks: list[str] = []
    for node in nodes:
        kind = node["type"]
        if kind in ("bulletList", "orderedList"):
            start = node.get("attrs", {}).get("order", 1) if isinstance(node.get("attrs"), dict) else 1
            lines = []
            for number, item in enumerate(_children(node), start=int(start) if kind == "orderedList" else 0):
                bullet = f"{number}. " if kind == "orderedList" else "- "
                text = "\n".join(_blocks(_children(item)))
                lines.append(bullet + text.replace("\n", "\n  "))
            blocks.append("\n".join(lines))
        elif kind == "blockquote":
            blocks.append("\n".join("> " + line for line in "\n".join(_blocks(_children(node))).split("\n")))
        elif kind == "rule":
            blocks.append("---")
        elif kind in ("paragraph", "heading", "codeBlock"):
            blocks.append(_inline(_children(node)))
        elif "text" in node or kind in _INLINE:
            blocks.append(_inline([node]))
        else:  # panels, tables, media, expand and the like: their text, block by block
            blocks.extend(block for block in _blocks(_children(node)) if block)
    return blocks


_INLINE = {"text", "hardBreak", "mention", "emoji", "inlineCard", "date", "status"}


def _inline(nodes: list[dict[str, Any]]) -> str:
    """The text of inline nodes; a hard break is a newline."""
    parts: list[str] = []
    for node in nodes:
        kind = node["type"]
        attrs: dict[str, Any] = node["attrs"] if isinstance(node.get("attrs"), dict) else {}
        if kind == "text":
            text = node.get("text")
            if not isinstance(text, str):
                raise AdfError("a text node needs a string 'text'")
            parts.append(text)
        elif kind == "hardBreak":
            parts.append("\n")
        elif kind in ("mention", "emoji", "status"):
            parts.append(str(attrs.get("text") or attrs.get("shortName") or ""))
        elif kind == "inlineCard":
            parts.append(str(attrs.get("url", "")))
        elif kind == "date":
            parts.append(str(attrs.get("timestamp", "")))
        else:
            parts.append(_inline(_children(node)))
    return "".join(parts)
