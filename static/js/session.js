/* One session's page: its facts and live transcript; supervisors may close it. */
(function () {
  "use strict";

  const { el, $, config } = Live;
  const name = config.session_name;
  const transcript = new Live.Transcript($("transcript"), config.me);
  let session = null;

  function renderFacts() {
    Live.statusBadge($("pane-status"), session.status);
    const fact = (label, value) => (value ? el("span", {}, label + " ", el("b", {}, value)) : null);
    const at = (iso) => (iso ? Live.time(Date.parse(iso)) : null);
    $("facts").replaceChildren(...[
      fact("Customer:", Live.customerName(session.customer)),
      fact("Reason:", session.reason),
      fact("Agent:", session.agent),
      session.escalated_at ? el("span", {}, "Escalated ", at(session.escalated_at)) : null,
      session.accepted_at ? el("span", {}, "Accepted ", at(session.accepted_at)) : null,
      session.closed_at ? el("span", {}, "Closed ", at(session.closed_at)) : null,
      fact("Note:", session.resolution_note),
    ].filter(Boolean));
    const close = $("pane-close");
    if (close) close.hidden = session.status === "closed";
  }

  async function snapshot() {
    const detail = await Live.get(Live.sessionUrl(name));
    session = detail.session;
    transcript.load(detail.events);
    renderFacts();
    return detail.last_event_id;
  }

  function onEvent(event) {
    transcript.add(event);
    const change = Live.sessionChange(event);
    if (!session || !change || change.name !== session.name) return;
    const now = new Date(change.at).toISOString();
    if (event.type === "transfer_request") {
      if (!change.reason) return;
      session.reason = change.reason;
    } else {
      session.status = change.status;
      if (change.status === "closed") session.closed_at = now;
      if (change.status === "waiting_agent" && event.type === "status_change") session.escalated_at = now;
      if (event.type === "agent_joined") session.accepted_at = now;
      if (change.agent !== undefined) session.agent = change.agent;
    }
    renderFacts();
  }

  const close = $("pane-close");
  if (close) {
    close.addEventListener("click", async () => {
      const answer = await Live.confirm({
        title: "Close " + name + "?",
        text: "The conversation ends for the customer. It stays in the record.",
        okLabel: "Close session",
        withNote: true,
      });
      if (!answer.ok) return;
      close.disabled = true;
      try {
        const result = await Live.post(Live.sessionUrl(name, "close"), answer.note ? { note: answer.note } : {});
        session = result.session;
        renderFacts();
        Live.toast(name + " is closed");
      } catch (err) {
        Live.toast("Could not close " + name + ": " + err.message, "error");
      } finally {
        close.disabled = false;
      }
    });
  }

  new Live.LiveStream({ channels: () => ["sse:session:" + name], snapshot, onEvent, stateNode: $("conn") }).start();
  new Live.ViewersLine($("viewers")).follow(name);
})();
