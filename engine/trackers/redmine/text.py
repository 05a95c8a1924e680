"""Plain text (what the envelope carries) to and from Redmine's text formatting.

Redmine renders descriptions and notes with the instance's `text_formatting`: "textile" (its
default), "markdown" (Redcarpet), "common_mark" or "" (none: plain text). Its own link syntax
(`#12`, `@login`, `[[Page]]`, `{{macro}}`, `commit:abc`, `r12`) is parsed on top of any of them.

`to_redmine` writes plain text so that Redmine shows it as written: under Textile and Markdown
every character the formatter or the link parser could take as markup becomes a character
reference (`&#42;`), which both pass through untouched; CommonMark decodes references before
Redmine parses links, so there such characters are backslash-escaped and a link trigger is broken
with an empty `<span></span>`. A line's leading blanks are references too (no code blocks).
`to_plain` reads markup back to the text it stands for: it undoes those escapes exactly (so a
round trip is stable: nothing grows on each sync) and strips what a person typed (emphasis, code,
headings, links as "text (url)", Redmine's `!` link escapes)."""

from __future__ import annotations

import html
import re

from engine.errors import FieldError

FORMATS = ("textile", "markdown", "common_mark", "")
DEFAULT_FORMAT = "textile"  # Redmine's own default
BREAK = "<span></span>"  # an empty element: CommonMark keeps it, Redmine's link parser stops at it
PUNCTUATION = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
#: punctuation that no formatter takes as markup wherever it stands
SAFE = {"textile": frozenset(",;/"), "markdown": frozenset(",;/?'\"%"), "common_mark": frozenset(",;/?%")}
_REFERENCE = re.compile(r"&(#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|amp|lt|gt|quot|apos|nbsp);")
_LINE_START_WORD = re.compile(r"^[A-Za-z0-9]*$")  # "1." lists, "h1." "p." "bq." blocks


def check_format(value: object) -> str:
    """The formatting named by an account's `text_formatting` option; `FieldError` otherwise."""
    if value is None:
        return DEFAULT_FORMAT
    if value == "none":
        return ""
    if not isinstance(value, str) or value not in FORMATS:
        raise FieldError(
            "text_formatting",
            f"{value!r}: expected textile, markdown, common_mark or none (Redmine's setting)",
        )
    return value


def _escaped(char: str, formatting: str) -> str:
    if formatting == "common_mark":
        return "\\" + char
    return f"&#{ord(char)};"


def _literal(char: str, before: str, after: str, safe: frozenset[str]) -> bool:
    """Whether `char` can stand as it is: no markup, a sentence's full stop, a colon before a blank."""
    if char not in PUNCTUATION or char in safe:
        return True
    if char == ".":
        return not _LINE_START_WORD.match(before)
    return char == ":" and (not after or after.isspace())


def to_redmine(text: str, formatting: str) -> str:
    """`text` written so that Redmine under `formatting` shows it as it is."""
    if not formatting or not text:
        return text
    safe = SAFE[formatting]
    lines = []
    for line in text.split("\n"):
        out: list[str] = []
        body = line.lstrip(" \t")
        out.extend(f"&#{ord(c)};" for c in line[: len(line) - len(body)])
        for index, char in enumerate(body):
            after = body[index + 1 : index + 2]
            if char == "r" and after.isdigit() and (index == 0 or not body[index - 1].isalnum()):
                out.append("r" + BREAK if formatting == "common_mark" else "&#114;")  # a revision
            elif _literal(char, body[:index], after, safe):
                out.append(char)
            elif formatting == "common_mark" and char in "#@[:":
                out.append("\\" + char + BREAK)  # decoded before Redmine looks for its links
            else:
                out.append(_escaped(char, formatting))
        lines.append("".join(out))
    return "\n".join(lines)


# -- reading markup ------------------------------------------------------------------------------

_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_PLACEHOLDER = "\x00{}\x00"
_MD_RULES = [
    (re.compile(r"^ {0,3}(`{3,}|~{3,})[^\n]*\n?", re.M), ""),  # fences
    (re.compile(r"!\[([^\]\n]*)\]\([^)\n]*\)"), r"\1"),  # images
    (re.compile(r"\[([^\]\n]+)\]\(([^)\s]+)\)"), r"\1 (\2)"),  # links
    (re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)[ \t#]*$", re.M), r"\1"),  # headings
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),
    (re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])"), r"\1"),
    (re.compile(r"(?<![\w_])_(?=\S)(.+?)(?<=\S)_(?![\w_])"), r"\1"),
    (re.compile(r"~~(?=\S)(.+?)(?<=\S)~~"), r"\1"),
    (re.compile(r"`([^`\n]+)`"), r"\1"),
]
_TEXTILE_RULES = [
    (re.compile(r"</?(pre|code|notextile)>"), ""),
    (re.compile(r"^(h[1-6]|p|bq)(\([^)\n]*\))?\.[ \t]+", re.M), ""),  # block signatures
    (re.compile(r"\"([^\"\n]+)\":(\S+?)(?=[,.;:!?]?(\s|$))"), r"\1 (\2)"),  # links
    (re.compile(r"!(\S+?\.\w+)!"), r"\1"),  # images
    (re.compile(r"==(.+?)=="), r"\1"),
    (re.compile(r"(\*\*|__|\?\?)(?=\S)(.+?)(?<=\S)\1"), r"\2"),
    (re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?!\w)"), r"\1"),
    (re.compile(r"(?<![\w_])_(?=\S)(.+?)(?<=\S)_(?!\w)"), r"\1"),
    (re.compile(r"(?<![\w+])\+(?=\S)(.+?)(?<=\S)\+(?!\w)"), r"\1"),
    (re.compile(r"(?<![\w-])-(?=\S)(.+?)(?<=\S)-(?![\w-])"), r"\1"),
    (re.compile(r"(?<![\w@])@(?=\S)([^@\n]+?)(?<=\S)@(?!\w)"), r"\1"),
]
_REDMINE_ESCAPES = re.compile(r"(?<![\w!])!(?=#\d|@\w|\[\[|\{\{|r\d|\w+:\S)")


def _reference(match: re.Match[str]) -> str:
    return html.unescape(match.group(0))


def to_plain(markup: str | None, formatting: str) -> str:
    """The plain text that Redmine markup under `formatting` stands for."""
    if not markup:
        return ""
    text = markup.replace("\r\n", "\n")  # Redmine stores every line break as CRLF
    if not formatting:
        return text
    text = text.replace(BREAK, "")
    kept: list[str] = []
    if formatting in ("markdown", "common_mark"):

        def keep(match: re.Match[str]) -> str:
            kept.append(match.group(1))
            return _PLACEHOLDER.format(len(kept) - 1)

        text = _ESCAPE.sub(keep, text)  # escaped characters are text, never markup
    rules = _TEXTILE_RULES if formatting == "textile" else _MD_RULES
    for pattern, replacement in rules:
        text = pattern.sub(replacement, text)
    text = _REFERENCE.sub(_reference, _REDMINE_ESCAPES.sub("", text))
    return re.sub("\x00(\\d+)\x00", lambda m: kept[int(m.group(1))], text)
