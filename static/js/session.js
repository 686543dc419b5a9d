/* One session's page: its facts and live transcript; supervisors may close it, transfer it, and
 * join it as a second participant (who then writes from the workbench) or part again. */
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
      fact("Supervisor joined:", session.supervisor),
      session.escalated_at ? el("span", {}, "Escalated ", at(session.escalated_at)) : null,
      session.accepted_at ? el("span", {}, "Accepted ", at(session.accepted_at)) : null,
      session.closed_at ? el("span", {}, "Closed ", at(session.closed_at)) : null,
      fact("Note:", session.resolution_note),
    ].filter(Boolean));
    const close = $("pane-close");
    if (close) close.hidden = session.status === "closed";
    if (!$("pane-transfer")) return; // the buttons below are a supervisor's
    const handling = session.status === "agent_handling";
    const joined = handling && session.supervisor === config.me;
    $("pane-transfer").hidden = !handling;
    $("pane-join").hidden = !handling || Boolean(session.supervisor) || session.agent === config.me;
    $("pane-part").hidden = !joined;
    $("pane-write").hidden = !(joined || (handling && session.agent === config.me));
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
    const participant = Live.participantChange(event);
    if (session && participant && participant.name === session.name) {
      session.supervisor = participant.supervisor;
      renderFacts();
      return;
    }
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
      // A leave or close lets the joined supervisor go too; so does giving them the session.
      if (change.status !== "agent_handling" || session.agent === session.supervisor) session.supervisor = null;
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

  /** A command of the pane's (join, part, transfer): its answer is the session as it is now. */
  async function command(button, run, done) {
    button.disabled = true;
    try {
      const result = await run();
      if (result && result.session) {
        session = result.session;
        renderFacts();
        if (done) Live.toast(done(session));
      }
    } catch (err) {
      Live.toast("Could not " + button.textContent.toLowerCase() + " " + name + ": " + err.message, "error");
    } finally {
      button.disabled = false;
    }
  }

  if ($("pane-transfer")) {
    $("pane-transfer").addEventListener("click", (e) =>
      command(e.currentTarget, () => Live.transfer({ name, agent: session && session.agent })));
    $("pane-join").addEventListener("click", (e) => command(e.currentTarget,
      () => Live.post(Live.sessionUrl(name, "join")), () => "You joined " + name + ": write to the customer from your workbench"));
    $("pane-part").addEventListener("click", (e) => command(e.currentTarget,
      () => Live.post(Live.sessionUrl(name, "part")), (now) => "You left " + name + "; " + (now.agent || "its agent") + " keeps it"));
  }

  new Live.LiveStream({ channels: () => ["sse:session:" + name], snapshot, onEvent, stateNode: $("conn") }).start();
  new Live.ViewersLine($("viewers")).follow(name);
})();
