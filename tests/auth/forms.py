"""Reading the authorization server's HTML forms the way a browser would (stdlib parser)."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class Form:
    method: str
    action: str
    fields: list[tuple[str, str]] = field(default_factory=list)  # hidden + checked + text
    checkboxes: list[tuple[str, str, bool]] = field(default_factory=list)
    radios: list[tuple[str, str]] = field(default_factory=list)
    buttons: list[tuple[str, str]] = field(default_factory=list)

    def hidden(self, name: str) -> str:
        return next(v for n, v in self.fields if n == name)


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self._current: Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._current = Form(a.get("method", "get").lower(), a.get("action", ""))
            self.forms.append(self._current)
        elif self._current is not None and tag == "input":
            kind = a.get("type", "text")
            name, value = a.get("name", ""), a.get("value", "")
            if kind == "checkbox":
                self._current.checkboxes.append((name, value, "checked" in a))
            elif kind == "radio":
                self._current.radios.append((name, value))
            elif name:
                self._current.fields.append((name, value))
        elif self._current is not None and tag == "button" and a.get("name"):
            self._current.buttons.append((a["name"], a.get("value", "")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None


def forms(html: str) -> list[Form]:
    parser = _Parser()
    parser.feed(html)
    return parser.forms


def form(html: str, action: str, method: str = "post") -> Form:
    return next(f for f in forms(html) if f.action == action and f.method == method)
