"""The store's SQL as PostgreSQL reads it.

The store's SQL functions are written once, in the dialect the two databases share, against a
DB-API connection (``execute``, ``executemany``, ``fetchone``, ``rowcount``). ``translate``
turns the few SQLite spellings they use into PostgreSQL's, once per statement text (cached):

- ``?`` placeholders become ``%s`` (outside string literals), and every ``%`` becomes ``%%``
  (psycopg reads the whole text for its placeholders); numbered ones (``?1``, used twice) become one ``%s`` each, with the order of the arguments;
- ``INSERT OR IGNORE INTO ...`` becomes ``INSERT INTO ... ON CONFLICT DO NOTHING``;
- the scalar ``max(a, b)`` / ``min(a, b)`` become ``greatest`` / ``least`` (the aggregates with
  one argument are the same in both);
- ``IN ()`` (an empty list, which SQLite allows) becomes an empty subquery;
- ``CAST(... AS INTEGER)`` becomes ``BIGINT`` (the store's times are nanoseconds);
- ``INDEXED BY name`` (SQLite's planner told which index to walk) is dropped: PostgreSQL's
  planner chooses by its statistics;
- ``BEGIN`` / ``COMMIT`` written by a read function are dropped: on PostgreSQL every read runs in
  one read-only REPEATABLE READ transaction the backend opens (``store.PgStore.read``);
- the comment ``/* FOR UPDATE SKIP LOCKED */`` becomes that clause: SQLite has no row locks
  (its one writer holds the whole database, which is what the clause asks for there), so the
  shared text carries PostgreSQL's clause where SQLite reads a comment.

``json_valid`` and ``json_extract`` (SQLite's JSON functions the store calls on TEXT columns)
are SQL functions the PostgreSQL schema defines (``schema.py``). What cannot be written in the
shared dialect (the search index, the triggers) has a PostgreSQL module of its own. Some of the
dialect is simply written so that both read it: an upsert names the stored row's columns with
their table (``alerts.starts_at``: PostgreSQL calls a bare one ambiguous beside ``excluded``).
"""

from __future__ import annotations

import functools
import re

_TRANSACTION = re.compile(r"^\s*(BEGIN(\s+(IMMEDIATE|DEFERRED))?|COMMIT|END)\s*;?\s*$", re.I)
_OR_IGNORE = re.compile(r"^\s*INSERT\s+OR\s+IGNORE\s+INTO\b", re.I)
_SCALAR = re.compile(r"\b(max|min)\s*\(", re.I)
_CAST_INTEGER = re.compile(r"\bAS\s+INTEGER\s*\)", re.I)
_RETURNING = re.compile(r"\bRETURNING\b", re.I)
_NUMBERED = re.compile(r"\?(\d+)")
_EMPTY_IN = re.compile(r"\bIN\s*\(\s*\)", re.I)
_INDEXED_BY = re.compile(r"\s+INDEXED\s+BY\s+\w+", re.I)
_ROW_LOCK = re.compile(r"/\*\s*(FOR\s+UPDATE\s+SKIP\s+LOCKED)\s*\*/", re.I)


def is_transaction_control(sql: str) -> bool:
    return _TRANSACTION.match(sql) is not None


def _outside_strings(sql: str) -> list[tuple[bool, str]]:
    """``sql`` cut into (is_code, text) pieces: string literals and quoted names are not code."""
    pieces: list[tuple[bool, str]] = []
    i, start = 0, 0
    while i < len(sql):
        ch = sql[i]
        if ch in "'\"":
            if i > start:
                pieces.append((True, sql[start:i]))
            j = i + 1
            while j < len(sql):
                if sql[j] == ch:
                    if j + 1 < len(sql) and sql[j + 1] == ch:  # '' inside a literal
                        j += 2
                        continue
                    break
                j += 1
            pieces.append((False, sql[i : j + 1]))
            i = start = j + 1
            continue
        i += 1
    if start < len(sql):
        pieces.append((True, sql[start:]))
    return pieces


def _scalar_minmax(code: str) -> str:
    """``max(a, b)`` -> ``greatest(a, b)`` when the parentheses hold a top-level comma."""
    out: list[str] = []
    pos = 0
    for m in _SCALAR.finditer(code):
        if m.start() < pos:
            continue
        depth, j, comma = 1, m.end(), False
        while j < len(code) and depth:
            if code[j] == "(":
                depth += 1
            elif code[j] == ")":
                depth -= 1
            elif code[j] == "," and depth == 1:
                comma = True
            j += 1
        if comma:
            out.append(code[pos : m.start()])
            out.append("greatest(" if m.group(1).lower() == "max" else "least(")
            pos = m.end()
    out.append(code[pos:])
    return "".join(out)


@functools.lru_cache(maxsize=4096)
def translate(sql: str) -> tuple[str, tuple[int, ...] | None]:
    """``sql`` (the shared dialect, SQLite's placeholders) as PostgreSQL runs it, and for
    numbered placeholders the indexes of the arguments in the order PostgreSQL takes them."""
    ignore = _OR_IGNORE.match(sql) is not None
    if ignore:
        sql = _OR_IGNORE.sub("INSERT INTO", sql, count=1)
    pieces = []
    order: list[int] = []
    for is_code, text in _outside_strings(sql):
        text = text.replace("%", "%%")
        if is_code:
            if _NUMBERED.search(text):
                order.extend(int(m.group(1)) - 1 for m in _NUMBERED.finditer(text))
                text = _NUMBERED.sub("%s", text)
            text = text.replace("?", "%s")
            text = _CAST_INTEGER.sub("AS BIGINT)", _scalar_minmax(text))
            text = _EMPTY_IN.sub("IN (SELECT NULL WHERE false)", text)
            text = _INDEXED_BY.sub("", text)
            text = _ROW_LOCK.sub(r"\1", text)
        pieces.append(text)
    out = "".join(pieces)
    if ignore:
        returning = _RETURNING.search(out)
        if returning is None:
            out = out.rstrip().rstrip(";") + " ON CONFLICT DO NOTHING"
        else:
            out = out[: returning.start()] + "ON CONFLICT DO NOTHING " + out[returning.start() :]
    return out, tuple(order) if order else None
