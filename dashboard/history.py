"""The history search: closed sessions whose customer name, session name or message text matches.

`GET /api/sessions?status=closed&q=<text>` (dashboard.api.session_list) calls `parse` on `q` and
`closed_matching` with the listing's queryset; docs/sessions.md ("History search") describes
the rules and why they are fast:

- A session matches when its customer name or its session name contains the query (whole,
  case-insensitive, `%` and `_` taken literally), or when one of its chat messages contains
  every word of the query. Words are runs of letters and digits; everything else separates them.
- The sessions come from `chatsession_history` (status, closed_at), newest closed first, and the
  query stops at `limit`: a common word costs one short walk down that index.
- On PostgreSQL a word matches the start of a word in a message (`refun` finds "refund"), with
  full-text search on the GIN index `sessionevent_text_fts` (migration 0004). The condition
  repeats the index's expression exactly, `to_tsvector('simple'::regconfig, COALESCE(text, ''))`,
  or PostgreSQL would compute it for every row instead of reading the index.
- Elsewhere (SQLite) a word matches anywhere in a message, with LIKE '%word%' (escaped): no index
  helps a leading wildcard, so a rare word reads the messages of every closed session in scope.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import BooleanField, Exists, F, Func, OuterRef, Q, Value, Window
from django.db.models.functions import RowNumber
from django.db.models.sql.compiler import SQLCompiler

from dashboard.models import ChatSession, ChatSessionQuerySet, SessionEvent, Status

# Longer than any customer name or phrase anyone types into a search box.
MAX_QUERY_CHARS = 200
# Each word is one more condition on every message read; eight is a long sentence.
MAX_WORDS = 8
# A snippet: the matching message around its first match, at most this many characters.
SNIPPET_CHARS = 160
# ... starting this many characters before the match, so it reads in context.
SNIPPET_LEAD = 40

# A word: letters and digits (any script). `_` separates words, as PostgreSQL's parser does
# ("user_123" is "user" and "123"), so both databases split a query the same way.
_WORD = re.compile(r"[^\W_]+")


class InvalidSearch(ValueError):
    """A query the search refuses (the API answers 400 with this text)."""


@dataclass(frozen=True)
class Search:
    """A parsed query: the text for the names, the words for the messages."""

    text: str  # whitespace collapsed, NFC
    words: tuple[str, ...]  # lower-cased, each once, in the order typed

    def tsquery(self) -> str:
        """`word1:* & word2:*`: every word, each as a prefix. Words are letters and digits only,
        so nothing in them is an operator of to_tsquery's syntax."""
        return " & ".join(f"{word}:*" for word in self.words)


def parse(raw: str | None) -> Search | None:
    """The query `q` as given in the URL; None when there is nothing to search for."""
    if raw is None:
        return None
    if len(raw) > MAX_QUERY_CHARS:
        raise InvalidSearch(f"q is at most {MAX_QUERY_CHARS} characters")
    # PostgreSQL refuses NUL in text, and no one searches for a control character.
    if any(unicodedata.category(char) == "Cc" for char in raw if char not in "\t\n\r"):
        raise InvalidSearch("q must not contain control characters")
    text = " ".join(unicodedata.normalize("NFC", raw).split())
    if not text:
        return None
    words = tuple(dict.fromkeys(word.lower() for word in _WORD.findall(text)))
    if len(words) > MAX_WORDS:
        raise InvalidSearch(f"q has at most {MAX_WORDS} words")
    return Search(text, words)


class _TextMatches(Func):
    """PostgreSQL: `to_tsvector('simple'::regconfig, COALESCE(<text>, '')) @@ to_tsquery(...)`.

    Written out rather than built from django.contrib.postgres.search, so the left side is
    exactly the expression of the index `sessionevent_text_fts`, with no parameter in it."""

    output_field = BooleanField()

    def __init__(self, text: F, tsquery: str) -> None:
        super().__init__(text, Value(tsquery))

    def as_sql(self, compiler: SQLCompiler, connection: Any, **extra: Any) -> tuple[str, tuple[Any, ...]]:  # type: ignore[override]
        text, query = self.get_source_expressions()
        text_sql, text_params = compiler.compile(text)
        query_sql, query_params = compiler.compile(query)
        sql = (
            f"to_tsvector('simple'::regconfig, COALESCE({text_sql}, '')) "
            f"@@ to_tsquery('simple'::regconfig, {query_sql})"
        )
        return sql, (*text_params, *query_params)


def _full_text() -> bool:
    return connection.vendor == "postgresql"


def _messages_matching(search: Search) -> Any:
    """The chat messages that contain every word of the query (a SessionEvent queryset)."""
    messages = SessionEvent.objects.filter(type="new_message")
    if _full_text():
        return messages.filter(_TextMatches(F("text"), search.tsquery()))
    # icontains escapes % and _ (ESCAPE '\'), so a word is matched as typed.
    return messages.filter(*(Q(text__icontains=word) for word in search.words))


def _matching_sessions(search: Search) -> Q:
    found = Q(customer_name__icontains=search.text) | Q(name__icontains=search.text)
    if not search.words:
        return found  # only punctuation: nothing to look for in the messages
    messages = _messages_matching(search)
    if _full_text():
        # One read of the GIN index for the whole query: PostgreSQL keeps the sessions it finds
        # in a hash and checks each closed session against it while walking them newest first.
        return found | Q(pk__in=messages.values("session_id"))
    # SQLite: checked per closed session, newest first (sessionevent_transcript finds its
    # messages), so a common word stops after `limit` sessions instead of reading every message.
    return found | Q(Exists(messages.filter(session_id=OuterRef("pk"))))


@dataclass(frozen=True)
class Hit:
    """A closed session that matched, and its latest matching message when the match was in one."""

    session: ChatSession
    match: dict[str, Any] | None


def closed_matching(sessions: ChatSessionQuerySet, search: Search, limit: int) -> list[Hit]:
    """The closed sessions among `sessions` that match `search`, newest closed first, at most `limit`."""
    found = list(
        sessions.select_related("agent", "supervisor")
        .filter(status=Status.CLOSED)
        .filter(_matching_sessions(search))
        .order_by("-closed_at", "-pk")[:limit]
    )
    matches = _latest_matches([s.pk for s in found], search) if search.words else {}
    return [Hit(session, matches.get(session.pk)) for session in found]


def _latest_matches(session_pks: list[int], search: Search) -> dict[int, dict[str, Any]]:
    """{session pk: the snippet of its latest matching message}, for the sessions found."""
    if not session_pks:
        return {}
    latest = Window(RowNumber(), partition_by=[F("session_id")], order_by=[F("timestamp").desc(), F("pk").desc()])
    rows = (
        _messages_matching(search)
        .filter(session_id__in=session_pks)
        .annotate(rank=latest)
        .filter(rank=1)
        .values("session_id", "message_id", "sender", "text", "timestamp")
    )
    return {row["session_id"]: snippet(row, search, prefixes=_full_text()) for row in rows}


def snippet(message: dict[str, Any], search: Search, *, prefixes: bool) -> dict[str, Any]:
    """The part of a message around its first match, with the matched words' positions in it.

    `highlights` are [start, end) offsets into `text`, for the page to mark. With `prefixes`
    (full-text search) a word matches at the start of a word, as PostgreSQL matched it, and the
    whole word is marked ("refun" marks "refund"); without, the part that matched.
    """
    full = str(message["text"])
    before, after = (r"(?<![^\W_])", r"[^\W_]*") if prefixes else ("", "")
    words = sorted(search.words, key=len, reverse=True)  # the longest first, so it is marked whole
    pattern = re.compile("|".join(before + re.escape(word) + after for word in words), re.IGNORECASE)
    first = pattern.search(full)
    start = 0
    if first is not None and len(full) > SNIPPET_CHARS:
        # A little before the match, but never so late that the snippet comes out short.
        start = max(0, min(first.start() - SNIPPET_LEAD, len(full) - SNIPPET_CHARS))
        space = full.find(" ", start, first.start())
        start = space + 1 if start > 0 and space >= 0 else start  # begin at a word, not inside one
    end = min(len(full), start + SNIPPET_CHARS)
    text = ("…" if start > 0 else "") + full[start:end] + ("…" if end < len(full) else "")
    shift = (1 if start > 0 else 0) - start  # from offsets in `full` to offsets in `text`
    highlights = [[m.start() + shift, m.end() + shift] for m in pattern.finditer(full, start, end)]
    return {
        "message_id": message["message_id"],
        "sender": message["sender"],
        "timestamp": message["timestamp"],
        "text": text,
        "highlights": highlights,
    }
