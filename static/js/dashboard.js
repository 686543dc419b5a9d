/* The supervisor dashboard: totals, open sessions, the agents and the live event feed.
 *
 * The agents come from GET /api/presence (polled): who has a workbench open (`agents`) and who is
 * available (`available`). A session with an agent whose workbench is gone (past the presence
 * grace period) is flagged "agent offline" and offers Transfer (static/js/transfer.js). */
(function () {
  "use strict";

  const { el, $, config } = Live;
  // Customer messages are not on sse:broadcast (the contract keeps chat on the session's
  // channels), so the reply clocks of ongoing sessions are re-read this often; agents' replies
  // and accepts, which are on the broadcast, update them at once.
  const REPLY_CLOCKS_POLL_MS = 15000;
  const FEED_MAX = 200;
  const FEED_TYPES = ["transfer_request", "status_change", "agent_joined", "agent_left", "new_message"];
  const TYPE_LABELS = {
    transfer_request: "escalation", status_change: "status", agent_joined: "joined",
    agent_left: "left", new_message: "message",
  };
  // Presence has no events of its own (a stream opening is not an event): ask every few seconds.
  const PRESENCE_POLL_MS = 5000;

  const state = {
    sessions: new Map(), // name -> {name, status, agent, reason, since}
    closed: 0,
    feed: [], // newest first
    inFeed: new Set(), // keys (message_id or event id) of the events in the feed, so none shows twice
    // From GET /api/presence: `online` agent -> {agent, since, state}; `available` names. Until the
    // first answer, and while it is not complete (a process did not answer), nobody is flagged.
    presence: { known: false, complete: false, online: new Map(), available: new Set() },
    shown: new Set(loadFilter()),
  };

  function loadFilter() {
    try {
      const saved = JSON.parse(localStorage.getItem("dashboard.feedTypes"));
      if (Array.isArray(saved)) return saved.filter((t) => FEED_TYPES.includes(t));
    } catch { /* fall through */ }
    // Chat messages are many and mostly routine: off until the supervisor asks for them.
    return FEED_TYPES.filter((t) => t !== "new_message");
  }

  const sessionLink = (name) =>
    el("a", { href: config.urls.session_page.replace("__name__", encodeURIComponent(name)) }, name);

  // --- sessions and totals -------------------------------------------------------------------

  function fromSession(session) {
    return {
      name: session.name, status: session.status, agent: session.agent, supervisor: session.supervisor || null,
      reason: session.reason,
      customer: Live.customerName(session.customer),
      since: session.status === "waiting_agent" ? Live.waitingSince(session)
        : Date.parse(session.accepted_at || session.escalated_at || session.created_at),
      replySince: replyClock(session),
    };
  }

  function replyClock(session) {
    if (session.status !== "agent_handling" || !session.awaiting_reply_since) return null;
    return Live.toLocalMs(Date.parse(session.awaiting_reply_since));
  }

  function upsert(name, changes) {
    const row = state.sessions.get(name) || { name, status: "ai_handling", agent: null, reason: "", since: Date.now() };
    Object.assign(row, changes);
    state.sessions.set(name, row);
  }

  const ORDER = { waiting_agent: 0, agent_handling: 1, ai_handling: 2 };

  function renderSessions() {
    const rows = [...state.sessions.values()].sort((a, b) =>
      (ORDER[a.status] ?? 3) - (ORDER[b.status] ?? 3) ||
      (a.status === "waiting_agent" ? a.since - b.since : b.since - a.since));
    $("sessions").replaceChildren(...rows.map((row) => {
      const badge = el("span", {});
      Live.statusBadge(badge, row.status);
      const when = row.status === "waiting_agent"
        ? el("span", { class: "timer num", dataset: { since: String(row.since), kind: "queue" } }, "0:00")
        : row.replySince
          ? el("span", {},
            el("span", { class: "num" }, Live.time(row.since)), " · reply ",
            el("span", { class: "timer num", dataset: { since: String(row.replySince), kind: "reply" } }, "0:00"))
          : el("span", { class: "num" }, Live.time(row.since));
      const offline = agentOffline(row);
      return el("tr", { class: offline ? "is-flagged" : null, dataset: { name: row.name } },
        el("td", { class: "name" }, sessionLink(row.name), row.customer ? el("div", { class: "sub" }, row.customer) : null),
        el("td", {}, badge),
        el("td", { class: "agent" }, row.agent || "–",
          row.supervisor && row.status === "agent_handling" ? el("div", { class: "sub" }, row.supervisor + " joined") : null,
          offline ? el("div", { class: "offline" },
            el("span", { class: "flag", title: "No workbench of " + row.agent + " has been open for a while" }, "agent offline"),
            el("button", {
              class: "btn btn-small", type: "button", "aria-label": "Transfer " + row.name,
              onclick: () => transfer(row.name, row.agent),
            }, "Transfer")) : null),
        el("td", { class: "opt" }, row.reason || "–"),
        el("td", { class: "when" }, when));
    }));
    $("sessions-count").textContent = String(rows.length);
    $("sessions-table").hidden = rows.length === 0;
    $("sessions-empty").hidden = rows.length > 0;
    renderTotals();
  }

  /** A session with an agent whose workbench is not open (past the grace period), as far as presence knows. */
  function agentOffline(row) {
    const presence = state.presence;
    return row.status === "agent_handling" && Boolean(row.agent) && presence.known && presence.complete &&
      !presence.online.has(row.agent);
  }

  async function transfer(name, agent) {
    const result = await Live.transfer({ name, agent });
    if (!result || !result.session) return;
    const session = result.session;
    if (session.status === "closed") state.sessions.delete(name);
    else upsert(name, fromSession(session));
    renderSessions();
    renderAgents();
  }

  function renderTotals() {
    const count = (status) => [...state.sessions.values()].filter((s) => s.status === status).length;
    $("stat-waiting").textContent = String(count("waiting_agent"));
    $("stat-agent").textContent = String(count("agent_handling"));
    $("stat-ai").textContent = String(count("ai_handling"));
    $("stat-closed").textContent = String(state.closed);
    tick();
  }

  function tick() {
    const now = Date.now();
    const waiting = [...state.sessions.values()].filter((s) => s.status === "waiting_agent");
    const longest = waiting.length ? now - Math.min(...waiting.map((s) => s.since)) : null;
    $("stat-longest").textContent = longest === null ? "–" : Live.duration(longest / 1000);
    $("stat-wait-card").classList.toggle("late", longest !== null && Live.slaStage("queue", longest / 1000) !== "");
    for (const timer of document.querySelectorAll("#sessions .timer")) {
      Live.showWaited(timer, Number(timer.dataset.since), now, timer.dataset.kind);
    }
    // The SLA counts: queue waits and reply waits past each stage.
    const stages = (kind, starts) => {
      const found = { warning: 0, overdue: 0 };
      for (const since of starts) {
        const stage = Live.slaStage(kind, (now - since) / 1000);
        if (stage) found[stage] += 1;
      }
      return found;
    };
    const sessions = [...state.sessions.values()];
    showStages("queue", stages("queue", waiting.map((s) => s.since)));
    showStages("reply", stages("reply", sessions.filter((s) => s.replySince).map((s) => s.replySince)));
  }

  function showStages(kind, found) {
    $("stat-" + kind + "-overdue").textContent = String(found.overdue);
    $("stat-" + kind + "-warning").textContent = String(found.warning);
    $("stat-" + kind + "-card").classList.toggle("late", found.warning > 0 && found.overdue === 0);
    $("stat-" + kind + "-card").classList.toggle("overdue", found.overdue > 0);
  }

  async function refreshReplyClocks() {
    try {
      const answer = await Live.get(config.urls.sessions + "?status=agent_handling");
      for (const session of answer.sessions) {
        const row = state.sessions.get(session.name);
        if (row && row.status === "agent_handling") row.replySince = replyClock(session);
      }
      renderSessions();
    } catch {
      /* the next poll, or the stream's snapshot, tries again */
    }
  }

  // --- the agents ------------------------------------------------------------------------------

  /**
   * Everyone with a workbench open and everyone available, each with Available / Away and whether
   * a workbench is open: available and online first (they can take sessions now), then away and
   * online, then available without a workbench. "Agents online" counts the first group only
   * (supervisors are away until they make themselves available, so they count only then).
   */
  function renderAgents() {
    const handling = new Map();
    for (const s of state.sessions.values()) {
      if (s.status === "agent_handling" && s.agent) handling.set(s.agent, (handling.get(s.agent) || 0) + 1);
    }
    const { online, available } = state.presence;
    const rank = (agent) => (online.has(agent) ? 0 : 2) + (available.has(agent) ? 0 : 1);
    const names = [...new Set([...online.keys(), ...available])]
      .sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
    $("agents").replaceChildren(...names.map((agent) => {
      const row = online.get(agent);
      const ready = available.has(agent);
      const n = handling.get(agent) || 0;
      return el("li", {
        class: row ? "is-online" : "is-offline",
        dataset: { agent, state: ready ? "available" : "away", workbench: row ? "open" : "closed" },
      },
        el("span", { class: "avatar", "aria-hidden": "true" }, agent.slice(0, 2).toUpperCase()),
        el("span", { class: "who" },
          el("span", { class: "name" }, agent),
          el("span", { class: "state state-" + (ready ? "available" : "away") }, ready ? "Available" : "Away")),
        el("span", { class: "meta" }, n === 1 ? "1 session" : n + " sessions", el("br"),
          // "online": a workbench of theirs is open (the word the page has always used for it).
          row ? ["online since ", Live.time(Date.parse(row.since))] : "offline"));
    }));
    const ready = names.filter((agent) => online.has(agent) && available.has(agent)).length;
    $("agents-count").textContent = String(names.length);
    $("stat-online").textContent = state.presence.known ? String(ready) : "–";
    $("agents-empty").hidden = names.length > 0;
  }

  async function pollPresence() {
    try {
      const body = await Live.get(config.urls.presence);
      const before = flagged();
      state.presence = {
        known: true,
        complete: body.complete !== false,
        online: new Map(body.agents.map((row) => [row.agent, row])),
        available: new Set(body.available),
      };
      renderAgents();
      if (flagged() !== before) renderSessions(); // only when a flag comes or goes: rows keep their focus
    } catch (err) {
      console.warn("presence unavailable", err);
    }
  }

  /** Which sessions are flagged now, as one string to compare. */
  const flagged = () => [...state.sessions.values()].filter(agentOffline).map((row) => row.name).sort().join(" ");

  // --- the feed ----------------------------------------------------------------------------------

  function describe(event) {
    const p = event.payload || {};
    const d = p.data || {};
    const name = p.session_name;
    const link = name ? sessionLink(name) : "–";
    switch (event.type) {
      case "transfer_request":
        return [link, " asked for an agent", d.reason ? ": " + d.reason : ""];
      case "status_change":
        return [link, " ", Live.STATUS_LABELS[d.previous] || d.previous || "new", " → ",
          Live.STATUS_LABELS[p.status] || p.status, d.agent ? " (" + d.agent + ")" : ""];
      case "agent_joined":
        if (d.role === "supervisor") return [d.agent || "a supervisor", " joined ", link, " as supervisor"];
        if (typeof d.from === "string") return [d.agent || "an agent", " took over ", link, " from ", d.from];
        return [d.agent || "an agent", " joined ", link];
      case "agent_left":
        if (d.role === "supervisor") return [d.agent || "the supervisor", " left ", link];
        if (typeof d.to === "string") {
          return [d.agent || "the agent", " handed ", link, " to ", d.to, d.by && d.by !== d.agent ? " (by " + d.by + ")" : ""];
        }
        return [d.agent || "the agent", " left ", link];
      case "new_message": {
        const text = String(d.text ?? "");
        // An agent's line only when the workbench sent it (`source` is stamped by the server).
        const who = d.sender === "agent" && event.source === "agent_workbench" ? d.agent || "agent"
          : d.sender === "agent" ? "bot" : d.sender || "customer";
        return [link, " · ", who, ": ",
          text.length > 90 ? text.slice(0, 90) + "…" : text];
      }
      default:
        return [event.type];
    }
  }

  function feedItem(event) {
    return el("li", { dataset: { type: event.type, id: event.id || "" } },
      Live.time(Live.toLocalMs(event.timestamp * 1000), true),
      el("span", { class: "type type-" + event.type }, TYPE_LABELS[event.type] || event.type),
      el("span", { class: "text" }, describe(event)));
  }

  function renderFeed() {
    const visible = state.feed.filter((e) => state.shown.has(e.type));
    $("feed").replaceChildren(...visible.map(feedItem));
    $("feed-empty").hidden = visible.length > 0;
  }

  /** What makes an event the same as one already in the feed: its chat message, else its id. */
  const feedKey = (event) => Live.messageIdOf(event) || event.id || null;

  /** Newest first, without repeats (a message replayed after an outage comes with another id). */
  function feedFrom(events) {
    state.inFeed.clear();
    const kept = [];
    for (const event of events) {
      const key = feedKey(event);
      if (key && state.inFeed.has(key)) continue;
      if (key) state.inFeed.add(key);
      kept.push(event);
    }
    return kept;
  }

  function feedAdd(event) {
    if (!FEED_TYPES.includes(event.type)) return;
    const key = feedKey(event);
    if (key && state.inFeed.has(key)) return;
    if (key) state.inFeed.add(key);
    state.feed.unshift(event);
    if (state.feed.length > FEED_MAX) {
      for (const gone of state.feed.splice(FEED_MAX)) state.inFeed.delete(feedKey(gone));
    }
    if (state.shown.has(event.type)) {
      $("feed").prepend(feedItem(event));
      const items = $("feed").children;
      if (items.length > FEED_MAX) items[items.length - 1].remove();
      $("feed-empty").hidden = true;
    }
  }

  function renderFilters() {
    $("filters").replaceChildren(...FEED_TYPES.map((type) => el("button", {
      class: "chip", type: "button", "aria-pressed": String(state.shown.has(type)), dataset: { type },
      onclick: () => {
        if (state.shown.has(type)) state.shown.delete(type);
        else state.shown.add(type);
        localStorage.setItem("dashboard.feedTypes", JSON.stringify([...state.shown]));
        renderFilters();
        renderFeed();
      },
    }, TYPE_LABELS[type])));
  }

  // --- events -----------------------------------------------------------------------------------------

  function onEvent(event) {
    feedAdd(event);
    const replied = event.type === "new_message" && Live.senderOf(event) === "agent" && state.sessions.get(event.payload?.session_name);
    if (replied && replied.replySince) {
      replied.replySince = null; // the agent answered
      renderSessions();
    }
    const participant = Live.participantChange(event);
    if (participant && state.sessions.has(participant.name)) {
      upsert(participant.name, { supervisor: participant.supervisor });
      renderSessions();
      return;
    }
    const change = Live.sessionChange(event);
    if (!change) return;
    const { name, status, at } = change;
    const known = state.sessions.get(name);
    if (event.type === "transfer_request") {
      const customer = Live.customerName(event.payload?.data?.customer) || known?.customer || "";
      upsert(name, { status, agent: null, reason: change.reason, since: at, replySince: null, customer });
    } else if (status === "closed") {
      // Counted only when it was open here: a close the snapshot already counted is not.
      if (state.sessions.delete(name)) state.closed += 1;
    } else if (known?.status !== status) {
      // An accept starts the reply clock, as on the server; a leave stops it (and lets a joined supervisor go).
      upsert(name, {
        status, agent: change.agent ?? null, since: at, replySince: status === "agent_handling" ? at : null, supervisor: null,
      });
    } else if (status === "agent_handling" && change.agent && known.agent !== change.agent) {
      // A transfer: still with an agent, another one (the customer's reply clock runs on).
      upsert(name, { agent: change.agent, since: at, supervisor: known.supervisor === change.agent ? null : known.supervisor });
    } else {
      return;
    }
    renderSessions();
    renderAgents();
  }

  async function snapshot() {
    const [feed, sessions] = await Promise.all([Live.get(config.urls.feed), Live.get(config.urls.sessions)]);
    state.sessions.clear();
    for (const session of sessions.sessions) {
      if (session.status !== "closed") state.sessions.set(session.name, fromSession(session));
    }
    state.closed = feed.counts.closed || 0;
    state.feed = feedFrom(feed.events.filter((e) => FEED_TYPES.includes(e.type)).reverse().slice(0, FEED_MAX));
    renderSessions();
    renderFeed();
    pollPresence();
    return Live.minId(feed.last_event_id, sessions.last_event_id);
  }

  renderFilters();
  new Live.LiveStream({ channels: () => ["sse:broadcast"], snapshot, onEvent, stateNode: $("conn") }).start();
  setInterval(tick, 1000);
  setInterval(pollPresence, PRESENCE_POLL_MS);
  setInterval(refreshReplyClocks, REPLY_CLOCKS_POLL_MS);
})();
