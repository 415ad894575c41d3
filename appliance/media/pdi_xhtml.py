"""A tiny XHTML 1.0 Strict writer: elements as values, escaping in exactly one place.

Every text and attribute value passes through `_escape`, which also drops characters XML 1.0
forbids (a DICOM string may hold control bytes), so a page is well-formed whatever the DICOM
strings contain. Tag and attribute names are ours, never data, and are checked anyway.

Serialisation follows XHTML 1.0 Appendix C so that HTML parsers read the pages too: void elements
as `<br />`, every other element with an explicit end tag (never `<td />`), no XML declaration
(UTF-8 is the default) and a Content-Type meta.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

XHTML_NS = "http://www.w3.org/1999/xhtml"
DOCTYPE = (
    '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" '
    '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">'
)
_VOID = frozenset({"br", "hr", "img", "meta"})
_NAME = re.compile(r"[a-z][a-z0-9:-]*")
# Outside XML 1.0's Char production, plus C1 controls (legal in XML, but meaningless on a page).
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\x7e\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

_STYLE = (
    "body{font-family:sans-serif;margin:1em;color:#000;background:#fff}"
    "table{border-collapse:collapse}th,td{border:1px solid #888;padding:0.2em 0.5em;"
    "text-align:left;vertical-align:top}.note{border:1px solid #a60;padding:0.5em}"
    ".image{display:inline-block;margin:0.5em;vertical-align:top}img{border:0}"
)


@dataclass(frozen=True, slots=True)
class Element:
    """One element: tag, attributes in order, children (elements or text)."""

    tag: str
    attrs: tuple[tuple[str, str], ...] = ()
    children: tuple[Element | str, ...] = ()


def el(tag: str, *children: Element | str, **attrs: str) -> Element:
    """Build an element; `class_` is written `class` (a keyword), `http_equiv` `http-equiv`."""
    pairs = tuple((key.rstrip("_").replace("_", "-"), value) for key, value in attrs.items())
    return Element(tag, pairs, children)


def _escape(text: str, *, attribute: bool = False) -> str:
    text = _NOT_XML_CHAR.sub("\ufffd", text)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if attribute:
        text = text.replace('"', "&quot;").replace("\t", "&#9;").replace("\n", "&#10;")
        text = text.replace("\r", "&#13;")
    return text


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"not an XHTML name: {name!r}")
    return name


def serialize(node: Element | str) -> str:
    """The markup of one node and its descendants."""
    if isinstance(node, str):
        return _escape(node)
    tag = _check_name(node.tag)
    attrs = "".join(
        f' {_check_name(key)}="{_escape(value, attribute=True)}"' for key, value in node.attrs
    )
    if tag in _VOID:
        if node.children:
            raise ValueError(f"<{tag}> cannot have content")
        return f"<{tag}{attrs} />"
    inner = "".join(serialize(child) for child in node.children)
    return f"<{tag}{attrs}>{inner}</{tag}>"


def document(title: str, body: list[Element], *, lang: str = "en") -> bytes:
    """A complete XHTML 1.0 Strict page, UTF-8 encoded."""
    head = el(
        "head",
        el("meta", http_equiv="Content-Type", content="text/html; charset=UTF-8"),
        el("title", title),
        el("style", _STYLE, type="text/css"),
    )
    html = Element(
        "html",
        (("xmlns", XHTML_NS), ("xml:lang", lang), ("lang", lang)),
        (head, el("body", *body)),
    )
    return (DOCTYPE + "\n" + serialize(html) + "\n").encode("utf-8")
