"""The admin speaks the pages' language: their status labels, times the browser can show in the
viewer's zone, one readable line per event (transfers and the resolution note included), a link
"Back to the list" instead of a "Close" that reads as ending the session, and an action that says
"End". Supervisors are staff in the supervisors group, not superusers, and that is enough."""

import re
from datetime import UTC, datetime
from html import unescape

import pytest
from django.test import Client

from dashboard import services
from dashboard.accounts import save_account
from dashboard.admin import summarise
from dashboard.models import CannedReply, ChatSession, SessionEvent, Status
from realtime.auth import Principal
from realtime.bus import enqueue_sse_message_sync
from tests.support.procs import ROOT
from tests.support.sessions import fresh_bus, make_user, record_pending

pytestmark = pytest.mark.django_db(transaction=True)

BOT = Principal("service", "ai_chatbot")
ANA = Principal("agent", "ana")
SAM = Principal("supervisor", "sam")
CHANGELIST = "/admin/dashboard/chatsession/"


@pytest.fixture
def bus():
    yield fresh_bus()
    fresh_bus()


@pytest.fixture
def sam(bus):
    """A supervisor as the product makes one (manage.py create_agent --supervisor)."""
    user, _ = save_account("sam", "a-long-enough-password-42", supervisor=True)
    assert user.is_staff and not user.is_superuser
    client = Client()
    client.force_login(user)
    return client


def page_of(client: Client, name: str) -> str:
    session = ChatSession.objects.get(name=name)
    response = client.get(f"{CHANGELIST}{session.pk}/change/")
    assert response.status_code == 200
    return response.content.decode()


def timeline_lines(page: str) -> list[str]:
    return [unescape(line) for line in re.findall(r'<span class="timeline-summary">([^<]*)</span>', page)]


def say(name: str, text: str, sender: str = "customer") -> None:
    enqueue_sse_message_sync(
        f"sse:session:{name}",
        "new_message",
        {"session_name": name, "data": {"text": text, "sender": sender}},
        source="ai_chatbot",
    )
    record_pending()


def test_the_status_labels_are_the_pages_own():
    """Live.STATUS_LABELS in static/js/live.js and the model's choices say the same words."""
    script = (ROOT / "static" / "js" / "live.js").read_text()
    block = re.search(r"Live\.STATUS_LABELS = \{(.*?)\};", script, re.S)
    assert block, "Live.STATUS_LABELS is not in static/js/live.js any more"
    pages = dict(re.findall(r'(\w+): "([^"]+)"', block.group(1)))
    assert pages == {value: str(label) for value, label in Status.choices}


def test_a_whole_session_reads_as_the_pages_tell_it(sam, bus):
    """Escalation, accept, messages, a supervisor joining, a transfer, a leave and a close with a
    note: each event one line in words, no raw event names, the note with the close."""
    make_user("ana")
    make_user("ben")
    services.escalate("story", by=BOT, reason="refund above the bot's limit")
    say("story", "my parcel never came")
    services.accept("story", by=ANA)
    services.send_message("story", "Let me look", by=ANA)
    services.join("story", by=SAM)
    services.part("story", by=SAM)
    services.transfer("story", "ben", by=SAM)
    services.leave("story", by=Principal("agent", "ben"))
    services.accept("story", by=ANA)
    services.close("story", by=ANA, note="Refund sent;\ncustomer happy.")

    page = page_of(sam, "story")

    assert timeline_lines(page) == [
        "The bot asked for an agent: refund above the bot's limit",
        "Status: With the bot → Waiting",
        "Customer: my parcel never came",
        "ana joined",
        "Status: Waiting → With an agent (ana)",
        "ana: Let me look",
        "sam joined as a supervisor",
        "sam (supervisor) left",
        "ana left: transferred to ben by sam",
        "Transferred from ana to ben by sam",
        "Status: With an agent (now ben)",
        "ben left; back in the queue",
        "Status: With an agent → Waiting",
        "ana joined",
        "Status: Waiting → With an agent (ana)",
        "Status: With an agent → Closed",
    ]
    # The note comes once, with the close, as written (a line break kept, markup escaped).
    notes = re.findall(r'<p class="timeline-note">(.*?)</p>', page, re.S)
    assert notes == ["Resolution note: Refund sent;<br>customer happy."]
    # The agent is a name, not a link to the accounts, which a supervisor may not open.
    assert '<div class="readonly">ana</div>' in page
    assert "/admin/auth/user/" not in page
    # The raw event stays one click away, folded.
    assert page.count('<details class="timeline-details">') == 16
    assert "<code>transfer_request</code>" in page


def test_each_event_time_is_a_time_element_at_its_instant_in_utc(sam, bus):
    """The browser shows it in the viewer's zone (static/js/admin-local-times.js); without script
    it reads as UTC and says so."""
    services.escalate("clocked", by=BOT, reason="late parcel")
    stamps = list(
        SessionEvent.objects.filter(session__name="clocked")
        .order_by("timestamp", "pk")
        .values_list("timestamp", flat=True)
    )

    page = page_of(sam, "clocked")

    times = re.findall(
        r'<td class="timeline-when"><time class="local-time" datetime="([^"]+)"[^>]*>([^<]+)</time>', page
    )
    assert len(times) == len(stamps) == 2
    for (iso, text), stamp in zip(times, stamps, strict=True):
        at = datetime.fromisoformat(iso.replace("Z", "+00:00"))
        assert abs(at.timestamp() - stamp) < 0.001
        assert text == datetime.fromtimestamp(stamp, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    session = ChatSession.objects.get(name="clocked")
    escalated = session.escalated_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    assert re.search(rf'<div class="readonly"><time class="local-time" datetime="[^"]+"[^>]*>{escalated}</time>', page)
    # The script that moves them to the viewer's zone comes with every admin page.
    assert '<script src="/static/js/admin-local-times.js" defer></script>' in page
    assert "data-local-zone" in page


def test_the_list_shows_the_pages_labels_and_times_in_time_elements(sam, bus):
    services.escalate("listed", by=BOT, reason="wants a human", data={"customer": {"id": "c-7", "name": "Dana"}})

    page = sam.get(CHANGELIST).content.decode()

    row = re.search(r"<tr>.*?listed</a>.*?</tr>", page, re.S)
    assert row
    cells = [
        unescape(re.sub(r"<[^>]+>", "", c)).strip()
        for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row.group(0), re.S)
    ]
    assert "Waiting" in cells and "Dana (c-7)" in cells and "wants a human" in cells
    assert "waiting_agent" not in row.group(0)
    assert row.group(0).count('<time class="local-time"') == 1  # asked for an agent (not closed yet)
    # The filter says it in the same words.
    assert re.search(r'href="\?status__exact=waiting_agent"[^>]*>Waiting</a>', page)


def test_the_read_only_page_goes_back_to_the_list_and_the_action_says_end(sam, bus):
    services.escalate("worded", by=BOT)

    page = page_of(sam, "worded")
    assert re.search(r'<a href="/admin/dashboard/chatsession/[^"]*" class="closelink">Back to the list</a>', page)
    assert ">Close<" not in page
    assert 'href="/dashboard/sessions/worded/"' in page  # the session's own page, one click away
    assert "<title>worded | View chat session | Helpdesk admin</title>" in page
    assert "Django administration" not in page

    listing = sam.get(CHANGELIST).content.decode()
    assert '<option value="close_sessions">End the selected sessions</option>' in listing
    assert "Close the selected" not in listing


def test_a_supervisor_who_is_no_superuser_ends_a_session_from_the_admin(sam, bus):
    services.escalate("ending", by=BOT)
    pk = ChatSession.objects.get(name="ending").pk

    response = sam.post(CHANGELIST, {"action": "close_sessions", "_selected_action": [pk]}, follow=True)

    assert "1 session(s) ended: ending" in response.content.decode()
    assert ChatSession.objects.get(name="ending").status == Status.CLOSED


def test_a_supervisor_keeps_the_canned_replies_and_unlocks_sign_ins_but_not_accounts(sam, bus):
    assert sam.get("/admin/dashboard/cannedreply/add/").status_code == 200
    CannedReply.objects.create(shortcut="hello", title="Greeting", text="Hi {customer_name},")
    replies = sam.get("/admin/dashboard/cannedreply/").content.decode()
    assert re.search(r'<td class="field-updated"><time class="local-time" datetime="[^"]+Z"', replies)
    assert sam.get("/admin/axes/accessattempt/").status_code == 200
    assert sam.get("/admin/auth/user/").status_code == 403


@pytest.mark.parametrize(
    ("data", "line"),
    [
        ({"agent": "ben", "from": "ana", "to": "ben", "by": "sam"}, "Transferred from ana to ben by sam"),
        ({"agent": "ben", "from": "ana", "to": "ben"}, "Transferred from ana to ben"),
        # An agent who hands over their own session is not named twice.
        ({"agent": "ben", "from": "ana", "to": "ben", "by": "ana"}, "Transferred from ana to ben"),
        ({"agent": "ben", "by": "sam", "role": "agent"}, "Transferred to ben by sam"),
        ({"agent": "sam", "role": "supervisor"}, "sam joined as a supervisor"),
        ({"agent": "ana"}, "ana joined"),
        ({}, "Someone joined"),
    ],
)
def test_joined_lines(data, line):
    assert summarise({"type": "agent_joined", "payload": {"data": data}}) == line


@pytest.mark.parametrize(
    ("data", "status", "line"),
    [
        (
            {"agent": "ana", "from": "ana", "to": "ben", "by": "sam"},
            "agent_handling",
            "ana left: transferred to ben by sam",
        ),
        ({"agent": "ana", "from": "ana", "to": "ben"}, "agent_handling", "ana left: transferred to ben"),
        ({"agent": "ana", "reason": "r"}, "waiting_agent", "ana left; back in the queue"),
        ({"agent": "ana", "by": "sam"}, "waiting_agent", "ana left; back in the queue by sam"),
        ({"agent": "sam", "role": "supervisor"}, "agent_handling", "sam (supervisor) left"),
    ],
)
def test_left_lines(data, status, line):
    assert summarise({"type": "agent_left", "payload": {"status": status, "data": data}}) == line


def test_events_the_admin_does_not_know_or_cannot_read_still_get_a_line():
    """Any service that may publish on a session's channel is recorded: a payload of any shape
    must not break the page."""
    assert summarise({"type": "typing_started", "payload": {}}) == "Typing started"
    assert summarise({"type": "agent_joined", "payload": ["not", "an", "object"]}) == "Someone joined"
    assert summarise({"type": "agent_left", "payload": {"data": {"agent": {"x": 1}}}}) == "Someone left"
    assert summarise({"type": "status_change", "payload": {"status": "odd", "data": "x"}}) == "Status: ? → ?"
    assert summarise({"type": "transfer_request", "payload": {"data": {"reason": ""}}}) == (
        "The bot asked for an agent (no reason given)"
    )
    long = "x" * 500
    assert summarise({"type": "agent_joined", "payload": {"data": {"agent": long}}}) == "x" * 64 + "... joined"


def test_a_malformed_timestamp_shows_a_dash_not_an_error(sam, bus):
    services.escalate("odd_time", by=BOT)
    SessionEvent.objects.filter(session__name="odd_time").update(timestamp=1e300)

    page = page_of(sam, "odd_time")

    assert page.count('<td class="timeline-when">-</td>') == 2
