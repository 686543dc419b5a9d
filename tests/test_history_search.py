"""The history search, GET /api/sessions?status=closed&q=...&mine=1 (dashboard/history.py): what
matches, in which order, whose sessions, the snippet, and every kind of bad input answered 400.

The suite runs on SQLite; the last test runs the same query on PostgreSQL (a scratch database
of its own on the local server) and checks it reads the full-text index."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from itertools import count
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.utils import timezone

from dashboard import history, services
from dashboard.models import ChatSession, SessionEvent, Status
from realtime.auth import Principal
from realtime.bus import enqueue_sse_message_sync
from tests.support.databases import run_on_scratch_postgres
from tests.support.sessions import TEST_TOKENS, browser, make_user, record_pending, unique

pytestmark = pytest.mark.django_db(transaction=True)

BOT = Principal("service", "ai_chatbot")
_ids = count()


@pytest.fixture
def bob(bus: Any) -> Any:
    return browser(make_user("bob"))


def closed(
    name: str,
    *messages: str,
    agent: str | None = None,
    customer: str = "",
    minutes_ago: float = 10,
    note: str = "",
) -> ChatSession:
    """A closed session with customer messages, written straight to the record."""
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.get(username=agent) if agent else None
    session = ChatSession.objects.create(
        name=name,
        status=Status.CLOSED,
        agent=user,
        reason="wants a human",
        customer={"name": customer} if customer else {},
        customer_name=customer,
        closed_at=timezone.now() - timedelta(minutes=minutes_ago),
        resolution_note=note,
    )
    for i, text in enumerate(messages):
        message_id = f"msg-{next(_ids)}"
        SessionEvent.objects.create(
            session=session,
            type="new_message",
            source="ai_chatbot",
            payload={"session_name": name, "message_id": message_id, "data": {"text": text, "sender": "customer"}},
            timestamp=session.closed_at.timestamp() - 100 + i,
            message_id=message_id,
            sender="customer",
            text=text,
        )
    return session


def search(client: Client, q: str | None = None, **params: str) -> Any:
    query = {"status": "closed", **({"q": q} if q is not None else {}), **params}
    return client.get("/api/sessions?" + urlencode(query))


def found(client: Client, q: str | None = None, **params: str) -> list[str]:
    response = search(client, q, **params)
    assert response.status_code == 200, response.content
    return [s["name"] for s in response.json()["sessions"]]


def test_a_word_said_in_a_closed_session_finds_it_with_the_message_around_it(alice: Any) -> None:
    """Through the product's own path: the bot escalates naming the customer, the customer's line
    is recorded from the bus, the agent replies and closes."""
    name = unique("hist")
    alice_p = Principal("agent", "alice")
    text = "My parcel never arrived and I would like a refund for the blue kettle, please."
    enqueue_sse_message_sync(
        f"sse:session:{name}",
        "new_message",
        {"session_name": name, "message_id": f"{name}-1", "data": {"text": text, "sender": "customer"}},
        source="ai_chatbot",
    )
    record_pending()
    services.escalate(name, by=BOT, reason="refund", data={"customer": {"id": "c-77", "name": "Zoë Quist"}})
    services.accept(name, by=alice_p)
    services.send_message(name, "Sorry to hear that, I will look into it.", by=alice_p)
    services.close(name, by=alice_p, note="Refund sent.")

    response = search(alice, "kettle")

    assert response.status_code == 200
    [hit] = response.json()["sessions"]
    assert hit["name"] == name
    assert hit["status"] == "closed"
    assert hit["agent"] == "alice"
    assert hit["resolution_note"] == "Refund sent."
    assert hit["customer"]["name"] == "Zoë Quist"
    match = hit["match"]
    assert match["message_id"] == f"{name}-1"
    assert match["sender"] == "customer"
    assert match["text"] == text
    assert [match["text"][a:b] for a, b in match["highlights"]] == ["kettle"]
    # The agent's own words and the customer's name find it too; the name match has no snippet.
    assert found(alice, "look into") == [name]
    assert found(alice, "zoë quist") == [name]
    assert search(alice, "Zoë").json()["sessions"][0]["match"] is None


def test_the_start_of_a_word_is_enough(alice: Any) -> None:
    closed("pre_1", "I want a refund")
    closed("pre_2", "Where is my parcel?")

    assert found(alice, "refun") == ["pre_1"]
    assert found(alice, "REFUND") == ["pre_1"]


def test_every_word_must_be_in_one_message(alice: Any) -> None:
    closed("both_1", "the blue kettle leaks", "the red toaster is fine")
    closed("both_2", "the blue toaster is fine")

    assert found(alice, "blue kettle") == ["both_1"]
    assert found(alice, "kettle toaster") == []  # in two different messages
    assert sorted(found(alice, "blue")) == ["both_1", "both_2"]


def test_customer_name_and_session_name_match_whole_and_in_any_case(alice: Any) -> None:
    closed("acme_order_17", customer="Priya Nakamura")
    closed("other_1", customer="Ben Berg")

    assert found(alice, "nakamura") == ["acme_order_17"]
    assert found(alice, "Priya Nakamura") == ["acme_order_17"]
    assert found(alice, "ACME_order") == ["acme_order_17"]
    assert found(alice, "  priya   nakamura  ") == ["acme_order_17"]  # spaces as typed do not matter


def test_only_closed_sessions_are_found_the_latest_closed_first_up_to_the_limit(alice: Any) -> None:
    closed("order_old", "refund please", minutes_ago=300)
    closed("order_new", "refund please", minutes_ago=5)
    closed("order_mid", "refund please", minutes_ago=60)
    services.escalate("order_open", by=BOT, reason="refund please")

    assert found(alice, "refund") == ["order_new", "order_mid", "order_old"]
    assert found(alice, "order") == ["order_new", "order_mid", "order_old"]
    assert found(alice, "refund", limit="2") == ["order_new", "order_mid"]


def test_sql_wildcards_are_taken_literally(alice: Any) -> None:
    closed("wild_a", "it was 100% broken", customer="100% Bob")
    closed("wildb", "nothing special here", customer="Plain Jane")
    closed("wildc", "a 50 percent discount", customer="Rob")

    assert found(alice, "%") == ["wild_a"]  # not every session
    assert found(alice, "_") == ["wild_a"]  # only the name with an underscore
    assert found(alice, "100%") == ["wild_a"]
    assert found(alice, "wild_") == ["wild_a"]  # "_" is not "any one character": wildb does not match
    assert found(alice, "% Bob") == ["wild_a"]
    assert found(alice, "P%Jane") == []  # as a LIKE pattern it would match "Plain Jane"
    assert found(alice, "J_ne") == []


def test_odd_characters_are_searched_for_not_run(alice: Any) -> None:
    closed("odd_1", "don't worry, it's \"fine\" (really)", customer="O'Brien")

    assert found(alice, "O'Brien") == ["odd_1"]
    assert found(alice, "it's") == ["odd_1"]
    assert found(alice, '"fine" (really)') == ["odd_1"]
    assert found(alice, "fine:*") == ["odd_1"]  # the word; ":*" is not passed on as full-text syntax
    assert found(alice, "'") == ["odd_1"]  # in O'Brien
    for q in ["'; DROP TABLE dashboard_chatsession; --", "a & b | !c", "\\", "🙂", "<script>", "(", ")"]:
        assert found(alice, q) == [], q
    assert ChatSession.objects.filter(name="odd_1").exists()


def test_a_query_of_only_spaces_is_the_plain_listing(alice: Any) -> None:
    closed("blank_1", "hello")

    response = search(alice, "   ")

    assert [s["name"] for s in response.json()["sessions"]] == ["blank_1"]
    assert "match" not in response.json()["sessions"][0]


def test_mine_is_the_sessions_the_caller_handled(alice: Any, bob: Any) -> None:
    closed("m_alice", "refund please", agent="alice", minutes_ago=3)
    closed("m_bob", "refund please", agent="bob", minutes_ago=2)
    closed("m_nobody", "refund please", minutes_ago=1)

    assert found(alice, "refund", mine="1") == ["m_alice"]
    assert found(bob, "refund", mine="1") == ["m_bob"]
    assert found(alice, "refund") == ["m_nobody", "m_bob", "m_alice"]  # everyone's
    assert found(alice, "refund", mine="0") == ["m_nobody", "m_bob", "m_alice"]
    assert found(alice, mine="1") == ["m_alice"]  # without a search too


def test_a_supervisor_searches_like_an_agent(bus: Any) -> None:
    sam = browser(make_user("sam", staff=True))
    closed("sup_1", "invoice missing", agent="sam")

    assert found(sam, "invoice", mine="1") == ["sup_1"]


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"status": "closed", "q": "x" * 201}, "q is at most 200 characters"),
        ({"status": "closed", "q": "refund\x00"}, "q must not contain control characters"),
        ({"status": "closed", "q": "a\x1bb"}, "q must not contain control characters"),
        ({"status": "closed", "q": "one two three four five six seven eight nine"}, "q has at most 8 words"),
        ({"q": "refund"}, "q searches closed sessions: use it with status=closed"),
        ({"status": "waiting_agent", "q": "refund"}, "q searches closed sessions: use it with status=closed"),
        ({"status": "closed", "mine": "yes"}, "mine must be 1 (or 0, or left out)"),
        ({"status": "closed", "mine": "true"}, "mine must be 1 (or 0, or left out)"),
        ({"status": "closed", "mine": "1", "agent": "bob"}, "use mine or agent, not both"),
        ({"status": "closed", "q": "refund", "limit": "0"}, "limit must be a whole number from 1 to 1000"),
        ({"status": "closed", "q": "refund", "limit": "%"}, "limit must be a whole number from 1 to 1000"),
    ],
)
def test_bad_input_is_a_400_that_says_what_is_wrong(alice: Any, params: dict[str, str], detail: str) -> None:
    response = alice.get("/api/sessions?" + urlencode(params))

    assert response.status_code == 400, response.content
    assert response.json() == {"error": "invalid_input", "detail": detail}


def test_the_longest_query_allowed_is_searched(alice: Any) -> None:
    closed("long_1", "x" * 200)

    assert found(alice, "x" * 200) == ["long_1"]


def test_mine_without_a_user_is_a_400(bus: Any) -> None:
    token = next(iter(TEST_TOKENS))
    service = Client(HTTP_AUTHORIZATION=f"Bearer {token}")

    response = search(service, "refund", mine="1")

    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_input",
        "detail": "mine needs a signed-in agent: a service token handles no sessions",
    }
    assert search(service, "refund").status_code == 200  # a service may search everyone's


def test_nobody_signed_in_gets_401(db: Any) -> None:
    assert search(Client(), "refund").status_code == 401


def test_the_snippet_is_cut_around_the_match_with_the_words_marked() -> None:
    text = "Hello there. " * 10 + "The Refund for order 17 went out today; refunds take three days. " + "Bye. " * 40
    found_words = history.parse("refun order")
    assert found_words is not None

    part = history.snippet(
        {"message_id": "m", "sender": "bot", "timestamp": 1.0, "text": text}, found_words, prefixes=True
    )

    assert part["text"].startswith("…") and part["text"].endswith("…")
    assert len(part["text"]) <= history.SNIPPET_CHARS + 2
    assert [part["text"][a:b] for a, b in part["highlights"]] == ["Refund", "order", "refunds"]
    # As a prefix only at the start of a word (PostgreSQL); anywhere in one with LIKE (SQLite).
    inside = {"message_id": "m", "sender": "bot", "timestamp": 1.0, "text": "a nonrefundable fare"}
    assert history.snippet(inside, found_words, prefixes=True)["highlights"] == []
    assert history.snippet(inside, found_words, prefixes=False)["highlights"] == [[5, 10]]


def test_the_query_becomes_prefix_terms_with_nothing_of_the_query_language_left() -> None:
    parsed = history.parse("  Refun! user_123 & (ZOË) refun  ")

    assert parsed is not None
    assert parsed.text == "Refun! user_123 & (ZOË) refun"
    assert parsed.words == ("refun", "user", "123", "zoë")
    assert parsed.tsquery() == "refun:* & user:* & 123:* & zoë:*"
    assert history.parse("") is None
    assert history.parse(None) is None
    assert history.parse("%_%").words == ()  # type: ignore[union-attr]


# --- the page --------------------------------------------------------------------------------


def test_the_history_page_is_for_everyone_signed_in_with_the_search_from_its_url(client: Client) -> None:
    assert client.get("/history/")["Location"] == "/accounts/login/?next=/history/"
    client.force_login(make_user("ana"))

    response = client.get("/history/?" + urlencode({"q": '<b>"refund"</b>', "scope": "all"}))

    assert response.status_code == 200
    content = response.content.decode()
    assert 'value="&lt;b&gt;&quot;refund&quot;&lt;/b&gt;"' in content  # the query, escaped
    assert '<input type="radio" name="scope" value="all" checked>' in content
    assert '<a href="/history/" aria-current="page">History</a>' in content
    assert 'id="conn"' not in content  # no live stream on this page, so no connection state
    sources = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', content)
    assert {"/static/css/app.css", "/static/js/live.js", "/static/js/history.js"} <= set(sources)
    assert all(source.startswith("/static/") for source in sources)  # nothing from elsewhere
    config = json.loads(re.search(r'<script id="page-config" type="application/json">(.*?)</script>', content, re.S)[1])
    assert config["history"] == {"page_size": 50, "max_query": history.MAX_QUERY_CHARS}
    assert client.get("/workbench/").content.decode().count('href="/history/"') == 1  # in the top bar


def test_an_agent_opens_a_closed_session_read_only(bus: Any) -> None:
    ana = make_user("ana")
    closed("read_only_1", "where is my parcel?", agent="ana")
    client = browser(ana)

    page = client.get("/dashboard/sessions/read_only_1/")
    detail = client.get("/api/sessions/read_only_1").json()

    assert page.status_code == 200
    assert b'id="pane-close"' not in page.content and b'id="composer' not in page.content
    assert [e["payload"]["data"]["text"] for e in detail["events"]] == ["where is my parcel?"]
    assert detail["session"]["status"] == "closed"


# --- PostgreSQL ----------------------------------------------------------------------------


EXPLAIN = r"""
import json
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from dashboard import history
from dashboard.models import ChatSession, SessionEvent, Status
from django.utils import timezone
user = get_user_model().objects.create_user("pgana")
for i in range(300):
    s = ChatSession.objects.create(name=f"pg_{i}", status=Status.CLOSED, closed_at=timezone.now(), agent=user,
                                   customer_name=f"Customer {i}")
    SessionEvent.objects.create(session=s, type="new_message", source="ai_chatbot", payload={}, timestamp=i,
                                message_id=f"pg-m{i}", sender="customer",
                                text="I would like a refund" if i == 7 else f"order {i} is late")
client = Client(SERVER_NAME="127.0.0.1")
client.force_login(user)
found = client.get("/api/sessions?status=closed&mine=1&q=refun").json()["sessions"]
search = history.parse("refun")
query = (ChatSession.objects.filter(status=Status.CLOSED).filter(history._matching_sessions(search))
         .order_by("-closed_at")[:50])
sql, params = query.query.sql_with_params()
with connection.cursor() as cursor:
    cursor.execute("SET enable_seqscan = off")  # a tiny table: make the planner show whether it CAN use the index
    cursor.execute("EXPLAIN " + sql, params)
    plan = "\n".join(row[0] for row in cursor.fetchall())
print(json.dumps({"vendor": connection.vendor, "found": [(s["name"], s["match"]["text"]) for s in found],
                  "plan": plan}))
"""


def test_postgresql_searches_by_prefix_with_the_full_text_index() -> None:
    """The query's expression must be the index's, or PostgreSQL computes to_tsvector on every row."""
    result = run_on_scratch_postgres("history", EXPLAIN, timeout=60)
    assert result["vendor"] == "postgresql"
    assert result["found"] == [["pg_7", "I would like a refund"]]
    assert "sessionevent_text_fts" in result["plan"], result["plan"]
