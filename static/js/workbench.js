/* The agent workbench: the waiting queue, my sessions, and one open session with a composer.
 *
 * State lives in three maps rebuilt from the snapshot and kept current by events. Handlers
 * are idempotent (the same change may arrive on sse:broadcast and on sse:agent:{me}).
 */
(function () {
  "use strict";

  const { el, $, config } = Live;
  const me = config.me;
  // Enough to recognise any message replayed after an outage; the oldest are forgotten first.
  const COUNTED_MAX = 5000;

  const state = {
    queue: new Map(), // name -> {name, reason, since, customer}
    mine: new Map(), // name -> session object, plus replySince (ms, viewer clock, or null)
    unread: new Map(), // name -> count of customer messages not yet seen
    counted: new Set(), // message_ids (and event ids) already counted as unread
    open: null, // name of the session in the pane
    openSession: null, // its session object (status, agent, ...)
    // Bumped each time an event or a command's answer changes the open session's status or
    // people: a read of the session sent before then may answer with what it was before.
    openChanges: 0,
  };

  const transcript = new Live.Transcript($("transcript"), me);
  // "Also viewing: ..." in the pane head: who else has the open session open (static/js/viewers.js).
  const viewers = new Live.ViewersLine($("pane-viewers"));

  /** Tell the page's other scripts (alerts, layout, canned replies) what happened here. */
  function announce(what, detail) {
    document.dispatchEvent(new CustomEvent("workbench:" + what, { detail }));
  }

  // --- rendering ----------------------------------------------------------------------

  function sortedQueue() {
    return [...state.queue.values()].sort((a, b) => a.since - b.since || (a.name < b.name ? -1 : 1));
  }

  function renderQueue() {
    const list = $("queue");
    const rows = sortedQueue().map((item) => {
      const existing = list.querySelector(`li[data-name="${CSS.escape(item.name)}"]`);
      return existing || queueRow(item);
    });
    // Re-inserting a node restarts its animation: touch the list only when the order changed.
    const current = [...list.children];
    if (current.length !== rows.length || rows.some((row, i) => current[i] !== row)) list.replaceChildren(...rows);
    for (const row of rows) row.classList.toggle("is-open", row.dataset.name === state.open);
    $("queue-count").textContent = String(rows.length);
    $("queue-empty").hidden = rows.length > 0;
    Live.showCount(rows.length);
    tickTimers();
  }

  /** The row's title: the customer's name when the bot gave one (the session's name beside it). */
  function rowTitle(name, customer, title) {
    const person = Live.customerName(customer);
    return el("button", {
      class: "row-title btn-link" + (person ? " is-person" : ""), type: "button", title,
      onclick: () => openSession(name),
    }, person || name, person ? el("span", { class: "row-session" }, " " + name) : null);
  }

  function queueRow(item) {
    const acceptButton = el("button", {
      class: "btn btn-primary btn-small", type: "button", "aria-label": "Accept " + item.name,
      onclick: (e) => accept(item.name, e.currentTarget),
    }, "Accept");
    return el("li", {
      class: "row" + (item.fresh ? " row-new" : ""), dataset: { name: item.name, since: String(item.since) },
      onanimationend: (e) => e.currentTarget.classList.remove("row-new"),
    },
      rowTitle(item.name, item.customer, "Read the conversation"),
      el("div", { class: "row-meta" }, item.reason || "Asked for an agent"),
      el("div", { class: "row-side" },
        el("span", { class: "timer", role: "timer", "aria-label": "waiting time" }, "0:00"),
        acceptButton));
  }

  function renderMine() {
    const list = $("mine");
    const sessions = [...state.mine.values()].sort((a, b) => (a.accepted_at || "").localeCompare(b.accepted_at || ""));
    list.replaceChildren(...sessions.map((session) => {
      const unread = state.unread.get(session.name) || 0;
      const last = session.last_message;
      // Another person's line (the supervisor who joined, the agent of a joined session) is theirs, not "You".
      const writer = last && last.sender === "agent" ? (last.agent && last.agent !== me ? last.agent + ": " : "You: ") : "";
      const preview = last ? (writer || (last.sender === "bot" ? "Bot: " : "")) + last.text : "";
      // A supervisor's joined session (another agent has it): marked, with whose it is.
      const joined = session.agent !== me;
      return el("li", { class: "row" + (session.name === state.open ? " is-open" : ""), dataset: { name: session.name } },
        rowTitle(session.name, session.customer, "Open the conversation"),
        el("div", { class: "row-meta" }, joined ? el("span", { class: "tag" }, "joined") : null,
          joined ? "with " + (session.agent || "its agent") : session.reason || "In conversation"),
        el("div", { class: "row-preview", title: preview }, preview || "No messages yet"),
        el("div", { class: "row-side tall" },
          unread ? el("span", { class: "unread", "aria-label": unread + " new messages" }, String(unread)) : null,
          session.replySince ? el("span", {
            class: "timer reply-timer", role: "timer", "aria-label": "waiting for your reply",
            dataset: { since: String(session.replySince) },
          }, "0:00") : null));
    }));
    $("mine-count").textContent = String(sessions.length);
    $("mine-empty").hidden = sessions.length > 0;
    tickReplyTimers(Date.now());
  }

  /** A session object from the server, with its reply clock on the viewer's clock. */
  function mineEntry(session) {
    const since = session.awaiting_reply_since ? Live.toLocalMs(Date.parse(session.awaiting_reply_since)) : null;
    return { ...session, replySince: since };
  }

  function tickReplyTimers(now) {
    for (const timer of $("mine").querySelectorAll(".reply-timer")) {
      Live.showWaited(timer, Number(timer.dataset.since), now, "reply");
    }
  }

  function tickTimers() {
    const now = Date.now();
    for (const row of $("queue").children) Live.showWaited(row.querySelector(".timer"), Number(row.dataset.since), now);
    tickReplyTimers(now);
    if (state.openSession && state.openSession.status === "waiting_agent") renderPaneHead();
  }

  function renderPane() {
    const open = state.open !== null;
    viewers.follow(state.open);
    $("pane-empty").hidden = open;
    $("pane-head").hidden = !open;
    $("pane-main").hidden = !open;
    $("transcript").hidden = !open;
    if (!open) {
      $("composer").hidden = $("composer-note").hidden = $("composer-hint").hidden = true;
      return;
    }
    renderPaneHead();
    const session = state.openSession;
    const mineNow = canWrite(session);
    $("composer").hidden = !mineNow;
    $("composer-hint").hidden = !mineNow;
    $("composer-note").hidden = mineNow;
    if (!mineNow) {
      $("composer-note").textContent = !session ? "Loading…" :
        session.status === "waiting_agent" ? "Accept this session to reply to the customer." :
        session.status === "closed" ? "This session is closed." :
        session.status === "agent_handling" ? (session.agent || "Another agent") + " is handling this session." +
          (config.is_supervisor && !session.supervisor ? " Join it to write to the customer too." : "") :
        "The bot is handling this session.";
    }
  }

  /** The agent on the session, or the supervisor who joined it, writes to the customer. */
  function canWrite(session) {
    return Boolean(session) && session.status === "agent_handling" && (session.agent === me || session.supervisor === me);
  }

  function renderPaneHead() {
    const session = state.openSession;
    const person = session && Live.customerName(session.customer);
    $("pane-title").textContent = person || state.open;
    $("pane-title").classList.toggle("is-person", Boolean(person));
    if (!session) return;
    Live.statusBadge($("pane-status"), session.status);
    const sub = $("pane-sub");
    if (session.status === "waiting_agent") {
      const item = state.queue.get(session.name);
      const since = item ? item.since : Live.waitingSince(session);
      sub.textContent = (session.reason || "Asked for an agent") + " · waiting " + Live.duration((Date.now() - since) / 1000);
    } else if (session.status === "agent_handling") {
      sub.textContent = (session.reason ? session.reason + " · " : "") + (session.agent === me ? "with you" : "with " + session.agent) +
        (session.supervisor ? " · " + (session.supervisor === me ? "you" : session.supervisor) + " joined" : "");
    } else {
      sub.textContent = session.reason || "";
    }
    if (Live.customerName(session.customer)) sub.textContent = state.open + " · " + sub.textContent;
    const handling = session.status === "agent_handling";
    const mineNow = handling && session.agent === me;
    $("pane-accept").hidden = session.status !== "waiting_agent";
    $("pane-leave").hidden = !mineNow;
    $("pane-close").hidden = !mineNow;
    // Supervisors: Join (a second participant who may write) and Part, and Transfer any session.
    $("pane-transfer").hidden = !(mineNow || (handling && config.is_supervisor));
    $("pane-join").hidden = !(handling && config.is_supervisor && !mineNow && !session.supervisor);
    $("pane-part").hidden = !(handling && !mineNow && session.supervisor === me);
  }

  // --- state changes ---------------------------------------------------------------------

  function queueAdd(name, reason, since, fresh, customer) {
    const existing = state.queue.get(name);
    if (existing) {
      if (reason && !existing.reason) existing.reason = reason;
      return;
    }
    state.queue.set(name, { name, reason: reason || "", since, fresh, customer: customer || null });
    renderQueue();
    if (fresh) announce("queued", { name, reason: reason || "", customer: Live.customerName(customer) });
  }

  function queueRemove(name) {
    if (state.queue.delete(name)) renderQueue();
  }

  /** A session's status (and agent) changed; keep queue, my sessions and the pane in step. */
  /** `change`: what an event said (Live.sessionChange), for where and why it waits; null for a command's answer. */
  function applyStatus(name, status, agent, change) {
    if (state.open === name) state.openChanges += 1;
    const queued = state.queue.get(name); // before it leaves the queue: who the customer is
    if (status === "waiting_agent") {
      queueAdd(name, change?.reason || null, change ? change.at : Date.now(), true);
    } else {
      queueRemove(name);
    }
    const entry = state.mine.get(name);
    if (status === "agent_handling" && agent === me) {
      if (!entry) {
        state.mine.set(name, {
          name, status, agent, reason: queued ? queued.reason : reasonOf(name), accepted_at: new Date().toISOString(),
          customer: queued ? queued.customer : state.openSession?.name === name ? state.openSession.customer : null,
          replySince: Date.now(), // the reply clock starts with the accept (as on the server)
        });
        renderMine();
        // Given by a transfer, not taken from the queue: its reason, customer and clocks are the server's.
        if (change && !queued) refreshMine(name);
      } else if (entry.agent !== me) {
        entry.agent = me; // the supervisor who had joined was given it: theirs now, no longer joined
        entry.supervisor = null;
        renderMine();
      }
    } else if (entry && status === "agent_handling" && entry.supervisor === me && entry.agent !== me) {
      if (agent && entry.agent !== agent) {
        entry.agent = agent; // joined, and transferred to another agent: still joined
        renderMine();
      }
    } else if (state.mine.delete(name)) {
      state.unread.delete(name);
      renderMine();
    }
    if (state.open === name && state.openSession) {
      const session = state.openSession;
      session.status = status;
      session.agent = status === "agent_handling" ? agent : null;
      // A leave or close lets the joined supervisor go too; so does giving them the session.
      if (status !== "agent_handling" || (agent && agent === session.supervisor)) session.supervisor = null;
      renderPane();
    }
  }

  /** A supervisor joined or parted (`Live.participantChange`): My sessions and the pane follow. */
  function applySupervisor(name, supervisor) {
    if (state.open === name) state.openChanges += 1;
    const entry = state.mine.get(name);
    if (entry) {
      entry.supervisor = supervisor;
      if (entry.agent !== me && supervisor !== me) {
        state.mine.delete(name); // parted (in another tab, or on the session's page)
        state.unread.delete(name);
      }
      renderMine();
    } else if (supervisor === me) {
      // Joined elsewhere (the session's page, another tab): it is one of mine now.
      const open = state.openSession && state.openSession.name === name ? state.openSession : null;
      state.mine.set(name, mineEntry({ ...(open || { name, status: "agent_handling" }), supervisor }));
      renderMine();
      refreshMine(name);
    }
    if (state.open === name && state.openSession) {
      state.openSession.supervisor = supervisor;
      renderPane();
    }
  }

  /** Fill in a session that came to My sessions by an event (a transfer, a join elsewhere). */
  async function refreshMine(name) {
    let detail;
    try {
      detail = await Live.get(Live.sessionUrl(name));
    } catch {
      return; // it shows what the event said; the next snapshot has the rest
    }
    const session = detail.session;
    const known = state.mine.get(name);
    // Changed meanwhile (transferred on, parted): the events that said so have done their part.
    if (!known || !canWrite(session)) return;
    state.mine.set(name, { ...mineEntry(session), last_message: known.last_message || session.last_message });
    if (detail.unread && name !== state.open && !state.unread.has(name)) state.unread.set(name, detail.unread);
    renderMine();
  }

  function reasonOf(name) {
    const item = state.queue.get(name);
    if (item) return item.reason;
    if (state.openSession && state.openSession.name === name) return state.openSession.reason;
    return "";
  }

  function onEvent(event) {
    const payload = event.payload || {};
    const data = payload.data || {};
    const name = payload.session_name;
    if (state.open && event.channel === "sse:session:" + state.open) transcript.add(event);
    if (!name) return;
    const change = Live.sessionChange(event);
    if (change && event.type === "transfer_request") {
      queueAdd(name, change.reason, change.at, true, data.customer);
      if (state.open === name && state.openSession && change.reason) state.openSession.reason = change.reason;
    } else if (change) {
      applyStatus(name, change.status, change.agent ?? null, change);
    }
    const participant = Live.participantChange(event);
    if (participant) applySupervisor(name, participant.supervisor);
    // Each command reaches my own channel once: the notices are told from there only.
    if (event.channel === "sse:agent:" + me) notice(event, name, data);
    switch (event.type) {
      case "new_message":
        if (state.mine.has(name) && event.channel !== "sse:broadcast") noteMessage(name, event, data);
        if (state.mine.has(name) && Live.senderOf(event) === "customer" && event.channel !== "sse:broadcast") {
          announce("customer-message", {
            name, text: String(data.text ?? ""), key: Live.messageIdOf(event) || event.id,
            customer: Live.customerName(state.mine.get(name).customer),
          });
        }
        if (name === state.open && event.channel === "sse:session:" + name) markRead(name, Live.messageIdOf(event));
        if (name !== state.open && state.mine.has(name) && data.sender !== "agent" && event.channel !== "sse:broadcast") {
          // A message replayed after an outage (another event id, or first none) counts once.
          const key = Live.messageIdOf(event) || event.id;
          if (key && state.counted.has(key)) break;
          if (key) state.counted.add(key);
          if (state.counted.size > COUNTED_MAX) state.counted.delete(state.counted.values().next().value);
          state.unread.set(name, (state.unread.get(name) || 0) + 1);
          renderMine();
        }
        break;
    }
  }

  /** Say what someone else did to one of my sessions: a transfer to me or away from me, a join. */
  function notice(event, name, data) {
    const label = Live.customerName(state.mine.get(name)?.customer) || name;
    if (data.by === me || (data.role === "supervisor" && data.agent === me)) return; // my own doing
    if (event.type === "agent_joined" && typeof data.from === "string" && data.to === me) {
      Live.toast((data.by || data.from) + " gave you " + label);
    } else if (event.type === "agent_left" && typeof data.to === "string" && data.from === me) {
      Live.toast(name + " was transferred to " + data.to + " by " + (data.by || "a supervisor"), "warn");
    } else if (data.role === "supervisor" && state.mine.has(name)) {
      Live.toast(data.agent + (event.type === "agent_joined" ? " joined " : " left ") + label);
    }
  }

  /** A message in one of my sessions: its preview, and the reply clock (customer starts it, I stop it). */
  function noteMessage(name, event, data) {
    const session = state.mine.get(name);
    const sender = Live.senderOf(event);
    const at = Live.toLocalMs((event.timestamp || Date.now() / 1000) * 1000);
    const last = session.last_message;
    if (last && last.atMs && last.atMs > at) return; // an older message replayed after an outage
    session.last_message = { text: String(data.text ?? ""), sender, agent: sender === "agent" ? data.agent : null, atMs: at };
    if (sender === "customer" && !session.replySince) session.replySince = at;
    if (sender === "agent") session.replySince = null;
    renderMine();
  }

  // Read markers live on the server (POST .../read): unread counts survive reloads and follow
  // the agent to other devices. The open session is read while this tab is visible.
  let readPending = null; // {name, upTo}
  let readTimer = null;
  function markRead(name, upTo) {
    if (!upTo || !state.mine.has(name)) return;
    readPending = { name, upTo };
    if (document.visibilityState !== "visible" || readTimer) return;
    readTimer = setTimeout(flushRead, 800); // one request for a burst of messages
  }

  async function flushRead() {
    readTimer = null;
    const pending = readPending;
    if (!pending || document.visibilityState !== "visible") return;
    readPending = null;
    try {
      await Live.post(Live.sessionUrl(pending.name, "read"), { up_to: pending.upTo });
    } catch (err) {
      // 404: the record has not stored that message yet (the bot's come through the recorder);
      // the next message, or the next open, moves the marker past it.
      if (err.status !== 404 && err.status !== 403 && err.status !== 409) console.warn("read marker not saved", err);
    }
  }

  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && readPending && !readTimer) readTimer = setTimeout(flushRead, 300);
  });

  // --- the customer panel ---------------------------------------------------------------------

  // The customer panel is folded on narrow windows (above the transcript) and open on wide ones.
  const widePanel = window.matchMedia("(min-width: 1101px)");
  widePanel.addEventListener("change", () => { $("customer-details").open = widePanel.matches; });
  $("customer-details").open = widePanel.matches;
  $("customer-details").querySelector("summary").addEventListener("click", (event) => {
    if (widePanel.matches) event.preventDefault(); // beside the transcript it stays open
  });

  function renderCustomer(detail) {
    const body = $("customer-body");
    const customer = detail.customer || {};
    $("customer-summary").textContent = Live.customerName(customer);
    const facts = [];
    const fact = (label, value) => facts.push(el("dt", {}, label), el("dd", {}, value));
    if (customer.email) fact("Email", el("a", { href: "mailto:" + customer.email }, customer.email));
    if (customer.id) fact("Customer id", customer.id);
    for (const [key, value] of Object.entries(customer.fields || {})) {
      fact(key.charAt(0).toUpperCase() + key.slice(1), value === null ? "–" : String(value));
    }
    const earlier = detail.customer_sessions || [];
    body.replaceChildren(...[
      el("div", { class: "customer-name" }, Live.customerName(customer) || "Unknown customer"),
      facts.length ? el("dl", { class: "customer-facts" }, ...facts)
        : el("p", { class: "none" }, "The bot did not say who this is."),
      customer.id ? el("h3", {}, "Earlier sessions") : null,
      customer.id ? (earlier.length
        ? el("ul", { class: "customer-history" }, ...earlier.map((other) => el("li", {},
          el("a", { href: Live.sessionPageUrl(other.name) }, other.name),
          el("div", { class: "meta" },
            (Live.STATUS_LABELS[other.status] || other.status) + " · " + Live.time(Date.parse(other.created_at)) +
            (other.reason ? " · " + other.reason : "")),
          other.resolution_note ? el("div", {}, other.resolution_note) : null)))
        : el("p", { class: "none" }, "None: this is their first.")) : null,
    ].filter(Boolean)); // replaceChildren would show a null as the text "null"
  }

  // --- snapshot and stream ------------------------------------------------------------------

  async function snapshot() {
    const [queue, mine] = await Promise.all([
      Live.get(config.urls.sessions + "?status=waiting_agent"),
      // A supervisor's My sessions also holds those they joined: read them among all being handled.
      Live.get(config.urls.sessions + "?status=agent_handling" + (config.is_supervisor ? "" : "&agent=" + encodeURIComponent(me))),
    ]);
    state.queue.clear();
    $("queue").replaceChildren();
    for (const session of queue.sessions) {
      state.queue.set(session.name, {
        name: session.name, reason: session.reason, since: Live.waitingSince(session), customer: session.customer,
      });
    }
    state.mine.clear();
    state.unread.clear();
    for (const session of mine.sessions) {
      if (session.agent !== me && session.supervisor !== me) continue;
      state.mine.set(session.name, mineEntry(session));
      if (session.unread && session.name !== state.open) state.unread.set(session.name, session.unread);
    }
    renderQueue();
    renderMine();
    let paneCursor = null;
    if (state.open) {
      try {
        paneCursor = await loadSession(state.open);
      } catch (err) {
        if (err.status !== 404 && err.status !== 400) throw err;
        state.open = state.openSession = null; // a stale link: show the empty pane
        history.replaceState(null, "", location.pathname);
        renderPane();
      }
    }
    // Every cursor was taken before its query; resuming from the earliest loses nothing.
    return Live.minId(Live.minId(queue.last_event_id, mine.last_event_id), paneCursor);
  }

  const stream = new Live.LiveStream({
    channels: () => ["sse:broadcast", "sse:agent:" + me].concat(state.open ? ["sse:session:" + state.open] : []),
    snapshot,
    onEvent,
    stateNode: $("conn"),
  });

  /** Load a session into the pane; resolves to its snapshot's cursor (null if it moved on). */
  async function loadSession(name) {
    let detail;
    for (let reads = 1; ; reads += 1) {
      const changes = state.openChanges;
      detail = await Live.get(Live.sessionUrl(name));
      if (state.open !== name) return null;
      // The session changed while it was read (accepted here, taken by another agent): the
      // answer may be from before, and applied it would put the row back in the queue and hide
      // the composer (taking the focus from it); the stream skips the events already applied,
      // so nothing would correct it. Read again; a few times at most.
      if (state.openChanges === changes || reads >= 3) break;
    }
    state.openSession = detail.session;
    renderCustomer(detail);
    const lastMessage = detail.messages && detail.messages[detail.messages.length - 1];
    if (lastMessage) markRead(name, lastMessage.message_id);
    // For the composer's helpers (canned replies fill in the customer's name).
    $("composer-text").dataset.session = name;
    $("composer-text").dataset.customerName = (detail.customer && detail.customer.name) || "";
    transcript.load(detail.events);
    if (detail.session.status === "waiting_agent") {
      queueAdd(name, detail.session.reason, Live.waitingSince(detail.session), false, detail.session.customer);
    }
    renderPane();
    return detail.last_event_id;
  }

  async function openSession(name) {
    if (state.open === name) {
      focusComposer();
      return;
    }
    state.open = name;
    state.openSession = null;
    state.unread.delete(name);
    history.replaceState(null, "", "#" + encodeURIComponent(name));
    announce("open", { name });
    $("composer-text").value = drafts.load(name);
    autosize();
    transcript.clear();
    renderPane();
    renderQueue();
    renderMine();
    let cursor;
    try {
      cursor = await loadSession(name);
    } catch (err) {
      Live.toast(err.status === 404 ? name + " no longer exists" : "Could not load " + name + ": " + err.message, "error");
      if (err.status === 404) closePane();
      return;
    }
    stream.reconnect(cursor);
    focusComposer();
  }

  function closePane() {
    state.open = null;
    state.openSession = null;
    history.replaceState(null, "", location.pathname);
    announce("close", {});
    renderPane();
    renderQueue();
    renderMine();
    stream.reconnect();
  }

  function focusComposer() {
    if (!$("composer").hidden) $("composer-text").focus();
  }

  // --- commands ------------------------------------------------------------------------------

  async function accept(name, button) {
    if (button) button.disabled = true;
    try {
      const result = await Live.post(Live.sessionUrl(name, "accept"));
      if (state.open === name) state.openChanges += 1;
      queueRemove(name);
      state.mine.set(name, mineEntry(result.session));
      renderMine();
      if (state.open === name) {
        state.openSession = result.session;
        renderPane();
        focusComposer();
      } else {
        await openSession(name);
      }
    } catch (err) {
      if (err.status === 409) {
        Live.toast(name + " was taken by someone else", "warn");
        queueRemove(name);
        if (state.open === name) loadSession(name).catch(() => {});
      } else {
        Live.toast("Could not accept " + name + ": " + err.message, "error");
      }
      if (button && button.isConnected) button.disabled = false;
    }
  }

  async function sessionCommand(action, doneText, body) {
    const name = state.open;
    if (!name) return;
    try {
      const result = await Live.post(Live.sessionUrl(name, action), body);
      if (result && result.session) {
        state.openSession = result.session;
        applyStatus(name, result.session.status, result.session.agent, null);
      }
      Live.toast(doneText.replace("{name}", name));
    } catch (err) {
      Live.toast("Could not " + action + " " + name + ": " + err.message, "error");
    }
  }

  /** A supervisor joins the open session (it joins My sessions and they may write) or parts from it. */
  async function participate(action) {
    const name = state.open;
    if (!name) return;
    try {
      const result = await Live.post(Live.sessionUrl(name, action));
      if (state.open === name) state.openSession = result.session;
      applySupervisor(name, result.session.supervisor);
      Live.toast(action === "join" ? "You joined " + name + ": you can write to the customer" : "You left " + name + "; " +
        (result.session.agent || "its agent") + " keeps it");
      if (action === "join") focusComposer();
    } catch (err) {
      Live.toast("Could not " + action + " " + name + ": " + err.message, "error");
      if (state.open === name) loadSession(name).catch(() => {});
    }
  }

  async function send(event) {
    event.preventDefault();
    const box = $("composer-text");
    const text = box.value.trim();
    const name = state.open;
    if (!text || !name) return;
    const sent = transcript.pending(text);
    box.value = "";
    drafts.save(name, "");
    autosize();
    try {
      const result = await Live.post(Live.sessionUrl(name, "messages"), { text });
      if (state.open !== name) return;
      // Shown now, from the answer (also while the server cannot reach the others); when the
      // stream brings the message, now or after an outage, it is recognised and not shown again.
      transcript.confirm(sent, result);
      const session = state.mine.get(name);
      if (session) {
        session.last_message = { text, sender: "agent", atMs: Date.now() };
        session.replySince = null;
        renderMine();
      }
    } catch (err) {
      const here = state.open === name;
      if (here && !transcript.fail(sent)) return; // the stream already showed it: it was sent
      if (here && !box.value) {
        box.value = text;
        drafts.save(name, text);
      }
      Live.toast("Not sent: " + err.message, "error");
    }
  }

  // Drafts per session, in this tab's sessionStorage: they survive a reload, a server restart
  // and a trip through the sign-in page, and switching between sessions.
  const drafts = {
    load(name) {
      try {
        return sessionStorage.getItem("draft:" + name) || "";
      } catch {
        return "";
      }
    },
    save(name, text) {
      try {
        if (text) sessionStorage.setItem("draft:" + name, text);
        else sessionStorage.removeItem("draft:" + name);
      } catch {
        /* storage is off: the draft lives in the box only */
      }
    },
  };

  function autosize() {
    const box = $("composer-text");
    box.style.height = "auto";
    box.style.height = Math.min(box.scrollHeight + 2, 160) + "px";
  }

  $("composer").addEventListener("submit", send);
  $("composer-text").addEventListener("input", () => {
    autosize();
    if (state.open) drafts.save(state.open, $("composer-text").value);
  });
  $("composer-text").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) send(event);
    // Escape leaves the composer for the transcript (the draft stays); a second one closes the pane.
    if (event.key === "Escape") {
      event.stopPropagation(); // not also the page's Escape, which closes the pane
      $("transcript").focus();
    }
  });
  $("pane-accept").addEventListener("click", (e) => accept(state.open, e.currentTarget));
  $("pane-leave").addEventListener("click", async () => {
    const answer = await Live.confirm({
      title: "Leave " + state.open + "?",
      text: "The customer goes back to the queue in their old place, for any agent to take.",
      okLabel: "Leave",
    });
    if (answer.ok) sessionCommand("leave", "You left {name}; it is back in the queue");
  });
  $("pane-transfer").addEventListener("click", async () => {
    const name = state.open;
    const session = state.openSession;
    if (!name || !session) return;
    const result = await Live.transfer({ name, agent: session.agent });
    if (!result || !result.session) return;
    if (state.open === name) state.openSession = result.session;
    applyStatus(name, result.session.status, result.session.agent, null);
  });
  $("pane-join").addEventListener("click", () => participate("join"));
  $("pane-part").addEventListener("click", () => participate("part"));
  $("pane-close").addEventListener("click", async () => {
    const answer = await Live.confirm({
      title: "Close " + state.open + "?",
      text: "The conversation ends for the customer. It stays in the record.",
      okLabel: "Close session",
      withNote: true,
    });
    if (answer.ok) sessionCommand("close", "{name} is closed", answer.note ? { note: answer.note } : {});
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && state.open && document.activeElement !== $("composer-text")) closePane();
  });
  // Another script of the page (alerts.js: a notification clicked) asks to show a session.
  document.addEventListener("workbench:request-open", (event) => {
    const name = event.detail && event.detail.name;
    if (typeof name === "string" && new RegExp(config.name_pattern).test(name)) openSession(name);
  });

  setInterval(tickTimers, 1000);

  const fromHash = decodeURIComponent(location.hash.slice(1));
  if (new RegExp(config.name_pattern).test(fromHash)) {
    state.open = fromHash;
    $("composer-text").value = drafts.load(fromHash);
    autosize();
  }
  renderPane();
  stream.start();
})();
