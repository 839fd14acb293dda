"""Positions in a TOML text: the line (and column) of a key path, for definition errors.

tomllib keeps no positions, so `Locator` scans the text again; `toml_error_position` reads
the position out of a tomllib syntax error.
"""

from __future__ import annotations

import re
import tomllib
from bisect import bisect_right

KeyPath = tuple[str | int, ...]  # a place in the parsed document: table keys and array indexes (0-based)
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)$")
_SCALAR = re.compile(r"[^,\]}\n#]*")
_STRING = re.compile(r"""
    "{3} (?: \\. | [^\\"] | "(?!"") )* (?: "{3} | \Z ) "{0,2}  # multi-line basic; 2 more quotes are its own
  | '{3} .*? (?: '{3} | \Z ) '{0,2}                         # multi-line literal
  | " (?: \\. | [^\\"\n] )* "?                               # basic
  | ' [^'\n]* '?                                             # literal
""", re.VERBOSE | re.DOTALL)


class Locator:
    """Where each key of a TOML text is: the line (and column) of a key path, for error messages.

    tomllib keeps no positions, so this scans the text again (it parsed, so it is valid TOML):
    table headers (`[nodes."My Node"]`, `[[edges]]`, `[edges.meta]` meaning the last edge),
    dotted and quoted keys, inline tables and arrays (the Nth item of `edges = [{...}, ...]` is
    ("edges", N)), skipping strings and comments. A key path's place is its key, its header or
    its array item; a table only named as the prefix of a header (`[nodes.N.options]` with no
    `[nodes.N]`) gets that header. Deterministic, and never raises: a place it cannot find
    falls back to the nearest enclosing one, and to no position at all.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.places: dict[KeyPath, int] = {}  # key path -> offset of its key, header or array item
        self.implied: dict[KeyPath, int] = {}  # tables named only as a header's prefix -> that header
        self.values: dict[KeyPath, int] = {}  # key path -> offset of its value
        self.arrays: dict[KeyPath, int] = {}  # array of tables ([[x]]) -> its tables so far
        self.line_starts = [0] + [i + 1 for i, char in enumerate(text) if char == "\n"]
        try:
            self.scan()
        except Exception:  # noqa: BLE001 - a position is a courtesy: never hide the error being reported
            pass  # keep the places found so far

    def position(self, path: KeyPath, within: int | None = None) -> tuple[int | None, int | None]:
        """(line, column) of `path`, or of the nearest enclosing place found; (None, None) if none.

        With `within` (a 0-based index into the string value at `path`), the column of that
        character when the value is a one-line string that maps to the text one to one (the
        column is None otherwise, and the line is the key's).
        """
        for n in range(len(path), 0, -1):
            offset = self.places.get(path[:n], self.implied.get(path[:n]))
            if offset is not None:
                line = bisect_right(self.line_starts, offset)
                exact = self.character(path, within) if n == len(path) and within is not None else None
                if exact is not None and bisect_right(self.line_starts, exact) == line:
                    return line, exact - self.line_starts[line - 1] + 1
                return line, None
        return None, None

    def character(self, path: KeyPath, within: int) -> int | None:
        """The offset of character `within` of the one-line string value at `path`, if plain."""
        start = self.values.get(path)
        if start is None or within < 0:
            return None
        quote = self.text[start:start + 1]
        if quote not in ("'", '"') or self.text.startswith(quote * 3, start):
            return None
        body = self.text[start + 1:start + 1 + within]
        if len(body) < within or quote in body or "\n" in body or (quote == '"' and "\\" in body):  # escapes
            return None
        return start + 1 + within

    # -- the scanner -------------------------------------------------------------------------
    def scan(self) -> None:
        table: KeyPath = ()
        while True:
            self.skip_blank(newlines=True)
            start = self.pos
            if start >= len(self.text):
                return
            if self.text[start] != "[":
                self.key_value(table)
                self.pos = max(self.pos, start + 1)
                continue
            double = self.text.startswith("[[", start)  # [[x]]: the next table of array x
            self.pos += 1 + double
            keys = [key for key, _ in self.key()]
            if keys:
                table = (*self.resolve(keys[:-1]), keys[-1])
                for n in range(1, len(table)):
                    self.implied.setdefault(table[:n], start)
                self.places.setdefault(table, start)
                if double:
                    self.arrays[table] = self.arrays.get(table, 0) + 1
                    table = (*table, self.arrays[table] - 1)
                    self.places.setdefault(table, start)
            end = self.text.find("\n", self.pos)  # the rest of the header line: `]`, a comment
            self.pos = len(self.text) if end < 0 else end

    def resolve(self, keys: list[str]) -> KeyPath:
        """The key path of a header's keys: a key naming an array of tables means its last table."""
        path: KeyPath = ()
        for key in keys:
            path = (*path, key)
            if path in self.arrays:
                path = (*path, self.arrays[path] - 1)
        return path

    def key_value(self, table: KeyPath) -> None:
        """`a."b".c = value` in `table` (or an inline table): each dotted part is placed at its own key."""
        path = table
        for key, offset in self.key():
            path = (*path, key)
            self.places.setdefault(path, offset)
        self.skip_blank()
        if path != table and self.text.startswith("=", self.pos):
            self.pos += 1
            self.skip_blank()
            self.value(path)

    def key(self) -> list[tuple[str, int]]:
        """A (dotted) key: [(part, offset)], possibly empty."""
        keys = []
        while True:
            self.skip_blank()
            offset = self.pos
            if self.text[offset:offset + 1] in ("'", '"'):
                keys.append((self.quoted_key(self.string()), offset))
            else:
                match = _BARE_KEY.match(self.text, offset)
                if match is None:
                    return keys
                keys.append((match.group(), offset))
                self.pos = match.end()
            self.skip_blank()
            if not self.text.startswith(".", self.pos):
                return keys
            self.pos += 1

    def value(self, path: KeyPath) -> None:
        self.values.setdefault(path, self.pos)
        char = self.text[self.pos:self.pos + 1]
        if char == "[":
            self.items(path, "]")
        elif char == "{":
            self.items(path, "}")
        elif char in ("'", '"'):
            self.string()
        else:  # a number, boolean or date: up to the next delimiter
            self.pos = _SCALAR.match(self.text, self.pos + 1).end()  # type: ignore[union-attr]  # may be empty

    def items(self, path: KeyPath, close: str) -> None:
        """An array (`close` "]": items placed at their index) or an inline table (`close` "}")."""
        self.pos += 1
        index = 0
        while True:
            self.skip_blank(newlines=True)
            start = self.pos
            char = self.text[start:start + 1]
            if char in ("", close):
                self.pos += 1
                return
            if char == ",":
                self.pos += 1
                continue
            if close == "]":
                self.places.setdefault((*path, index), start)
                self.value((*path, index))
                index += 1
            else:
                self.key_value(path)
            self.pos = max(self.pos, start + 1)

    def string(self) -> str:
        """Skip the string at `pos` (any of the four kinds); its text as written, quotes included."""
        start = self.pos
        self.pos = _STRING.match(self.text, start).end()  # type: ignore[union-attr]  # a quote always matches
        return self.text[start:self.pos]

    @staticmethod
    def quoted_key(raw: str) -> str:
        if raw.startswith("'"):
            return raw[1:-1]
        try:
            return tomllib.loads(f"k = {raw}")["k"]  # escapes, exactly as tomllib reads them
        except tomllib.TOMLDecodeError:
            return raw[1:-1]

    def skip_blank(self, *, newlines: bool = False) -> None:
        """Skip spaces, tabs and comments, and line breaks if `newlines`."""
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char in " \t" or (newlines and char in "\r\n"):
                self.pos += 1
            elif char == "#":
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
            else:
                return


def toml_error_position(exc: BaseException, text: str) -> tuple[int | None, int | None]:
    """(line, column) of a tomllib error: its "(at line X, column Y)", or the end of the document."""
    found = _TOML_POSITION.search(str(exc))
    if found:
        return int(found[1]), int(found[2])
    if str(exc).endswith("(at end of document)"):
        last = text.rfind("\n")
        return text.count("\n") + 1, len(text) - last
    return None, None
