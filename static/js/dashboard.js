/* The supervisor dashboard: totals, open sessions, agents online and the live event feed. */
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
    agents: [],
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
      name: session.name, status: session.status, agent: session.agent, reason: session.reason,
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
      return el("tr", { dataset: { name: row.name } },
        el("td", { class: "name" }, sessionLink(row.name), row.customer ? el("div", { class: "sub" }, row.customer) : null),
        el("td", {}, badge),
        el("td", {}, row.agent || "–"),
        el("td", { class: "opt" }, row.reason || "–"),
        el("td", { class: "when" }, when));
    }));
    $("sessions-count").textContent = String(rows.length);
    $("sessions-table").hidden = rows.length === 0;
    $("sessions-empty").hidden = rows.length > 0;
    renderTotals();
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

  // --- agents online ---------------------------------------------------------------------------

  function renderAgents() {
    const handling = new Map();
    for (const s of state.sessions.values()) {
      if (s.status === "agent_handling" && s.agent) handling.set(s.agent, (handling.get(s.agent) || 0) + 1);
    }
    $("agents").replaceChildren(...state.agents.map((row) => {
      const n = handling.get(row.agent) || 0;
      return el("li", { dataset: { agent: row.agent } },
        el("span", { class: "avatar", "aria-hidden": "true" }, row.agent.slice(0, 2).toUpperCase()),
        el("span", { class: "name" }, row.agent),
        el("span", { class: "meta" }, n === 1 ? "1 session" : n + " sessions", el("br"),
          "online since ", Live.time(Date.parse(row.since))));
    }));
    $("agents-count").textContent = String(state.agents.length);
    $("stat-online").textContent = String(state.agents.length);
    $("agents-empty").hidden = state.agents.length > 0;
  }

  async function pollPresence() {
    try {
      const body = await Live.get(config.urls.presence);
      state.agents = body.agents.slice().sort((a, b) => a.agent.localeCompare(b.agent));
      renderAgents();
    } catch (err) {
      console.warn("presence unavailable", err);
    }
  }

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
        return [d.agent || "an agent", " joined ", link];
      case "agent_left":
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
      // An accept starts the reply clock, as on the server; a leave stops it.
      upsert(name, { status, agent: change.agent ?? null, since: at, replySince: status === "agent_handling" ? at : null });
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
