/* Shared by every page: HTTP helpers, formatting, the transcript and the one live stream.
 *
 * A page loads a snapshot, then streams its channels from /api/events, resuming from the
 * snapshot's cursor, so nothing published in between is lost. All tabs of one person share
 * ONE EventSource, held by a leader tab ("the stream" below explains how).
 * A `reset` event (the server cannot resume us) is answered by reloading the snapshot.
 * A `bus_status` event says whether the server process we are connected to can reach the
 * other processes; while it cannot, a banner says that updates from elsewhere are paused.
 */
(function () {
  "use strict";

  const Live = {};
  window.Live = Live;

  Live.config = JSON.parse(document.getElementById("page-config").textContent);

  // --- DOM --------------------------------------------------------------------------

  /** el("li", {class: "row", dataset: {name}}, "text", child): never innerHTML, so no injection. */
  Live.el = function (tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (value === true) node.setAttribute(key, "");
      else node.setAttribute(key, value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  };

  Live.$ = (id) => document.getElementById(id);

  Live.toast = function (text, kind) {
    const box = Live.$("toasts");
    const item = Live.el("div", { class: "toast " + (kind || "") }, text);
    box.append(item);
    setTimeout(() => item.remove(), 4500);
  };

  // --- HTTP -------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.detail) || (status ? "HTTP " + status : "the server cannot be reached"));
      this.status = status;
      this.code = body && body.error;
    }
  }
  Live.ApiError = ApiError;

  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  async function request(method, url, body) {
    const headers = { Accept: "application/json" };
    if (method !== "GET") {
      headers["Content-Type"] = "application/json";
      headers["X-CSRFToken"] = csrfToken();
    }
    let response;
    try {
      response = await fetch(url, {
        method, headers, credentials: "same-origin", cache: "no-store",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      throw new ApiError(0, null);
    }
    let data = null;
    try { data = await response.json(); } catch { data = null; }
    if (response.status === 401) {
      // The login expired: go and sign in again, then come back here.
      // `why` lets the sign-in page say what happened; drafts wait in sessionStorage.
      const back = encodeURIComponent(location.pathname + location.hash);
      window.location.assign(Live.config.urls.login + "?why=expired&next=" + back);
    }
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }
  Live.get = (url) => request("GET", url);
  Live.post = (url, body) => request("POST", url, body === undefined ? {} : body);

  Live.sessionUrl = (name, action) =>
    Live.config.urls.session.replace("__name__", encodeURIComponent(name)) + (action ? "/" + action : "");
  Live.sessionPageUrl = (name) => Live.config.urls.session_page.replace("__name__", encodeURIComponent(name));

  // --- ids and time -----------------------------------------------------------------

  function parseId(id) {
    const [ms, seq] = String(id).split("-");
    return [Number(ms), Number(seq)];
  }

  /** Event ids are `<ms>-<seq>`, totally ordered across the channels of one bus. */
  Live.compareIds = function (a, b) {
    if (!a) return b ? -1 : 0;
    if (!b) return 1;
    const [am, as] = parseId(a);
    const [bm, bs] = parseId(b);
    return am !== bm ? am - bm : as - bs;
  };
  Live.minId = (a, b) => (!a ? b : !b ? a : Live.compareIds(a, b) <= 0 ? a : b);

  // The viewer's own locale and time zone (the `undefined` locale).
  const clockFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
  const secondsFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

  const dayFormat = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short" });
  const yearFormat = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", year: "numeric" });

  /** A <time> element for a Unix time in milliseconds, in the viewer's locale; with its date
   * when it is not today (a transcript from History), and the year when not this year. */
  Live.time = function (ms, withSeconds) {
    const date = new Date(ms);
    const now = new Date();
    const clock = (withSeconds ? secondsFormat : clockFormat).format(date);
    const day = date.toDateString() === now.toDateString() ? ""
      : (date.getFullYear() === now.getFullYear() ? dayFormat : yearFormat).format(date) + ", ";
    return Live.el("time", { datetime: date.toISOString(), title: fullFormat.format(date) }, day + clock);
  };

  /** 42 -> "0:42", 754 -> "12:34", 3720 -> "1:02:00". */
  Live.duration = function (seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const rest = String(s % 60).padStart(2, "0");
    return h ? h + ":" + String(m).padStart(2, "0") + ":" + rest : m + ":" + rest;
  };

  /* The server's clock may differ from the viewer's. The smallest (arrival - timestamp) seen
   * on live events estimates the offset, so "waiting since" timers count from the right moment. */
  let skew = null;
  Live.observeServerTime = function (serverMs) {
    const delta = Date.now() - serverMs;
    if (skew === null || delta < skew) skew = delta;
  };
  Live.toLocalMs = (serverMs) => serverMs + (skew === null ? 0 : skew);

  /** Milliseconds (viewer clock) at which a session started waiting, from a session object. */
  Live.waitingSince = function (session) {
    if (typeof session.waiting_seconds === "number") return Date.now() - session.waiting_seconds * 1000;
    if (session.escalated_at) return Live.toLocalMs(Date.parse(session.escalated_at));
    return Date.now();
  };

  /** The SLA stage of a wait: "" (fine), "warning" or "overdue"; `kind` is "queue" or "reply". */
  Live.slaStage = function (kind, seconds) {
    const [warning, overdue] = Live.config.sla[kind];
    return seconds >= overdue ? "overdue" : seconds >= warning ? "warning" : "";
  };

  const STAGE_TITLE = {
    queue: { "": "Waiting time", warning: "Waiting longer than {0} s", overdue: "Overdue: waiting longer than {1} s" },
    reply: { "": "Waiting for your reply", warning: "No reply for over {0} s", overdue: "Overdue: no reply for over {1} s" },
  };

  /** Show in a timer node how long it has been since `sinceMs`, coloured by its SLA stage. */
  Live.showWaited = function (node, sinceMs, now, kind = "queue") {
    const waited = now - sinceMs;
    const stage = Live.slaStage(kind, waited / 1000);
    node.textContent = Live.duration(waited / 1000);
    node.classList.toggle("sla-warning", stage === "warning");
    node.classList.toggle("sla-overdue", stage === "overdue");
    const [warning, overdue] = Live.config.sla[kind];
    node.title = STAGE_TITLE[kind][stage].replace("{0}", warning).replace("{1}", overdue);
    return waited;
  };

  /** The name to show for a customer: `data.customer` of an escalation or a session's `customer`. */
  Live.customerName = function (customer) {
    if (typeof customer === "string") return customer.trim();
    return (customer && typeof customer.name === "string" && customer.name.trim()) || "";
  };

  /**
   * Ask before a command that is hard to undo. Resolves to {ok, note}: `note` is the text of
   * the optional resolution note when `withNote` is set ("" when left empty).
   */
  Live.confirm = function ({ title, text, okLabel, withNote = false }) {
    const dialog = Live.$("confirm");
    Live.$("confirm-title").textContent = title;
    Live.$("confirm-text").textContent = text;
    Live.$("confirm-ok").textContent = okLabel;
    Live.$("confirm-note-field").hidden = !withNote;
    const note = Live.$("confirm-note");
    note.value = "";
    dialog.returnValue = "";
    return new Promise((resolve) => {
      dialog.addEventListener(
        "close",
        () => resolve({ ok: dialog.returnValue === "ok", note: withNote ? note.value.trim() : "" }),
        { once: true },
      );
      dialog.showModal();
      (withNote ? note : Live.$("confirm-ok")).focus();
    });
  };

  const baseTitle = document.title;
  const baseIcon = document.getElementById("favicon")?.getAttribute("href") || "";
  const baseIconType = document.getElementById("favicon")?.getAttribute("type") || "";

  /**
   * Tell a tab in the background how many customers wait: "(N) " before the page's title and
   * a badge on its icon (drawn here; the policy allows data: images).
   */
  Live.showCount = function (count) {
    document.title = count > 0 ? "(" + count + ") " + baseTitle : baseTitle;
    const icon = document.getElementById("favicon");
    if (!icon) return;
    if (count <= 0) {
      icon.setAttribute("type", baseIconType);
      icon.setAttribute("href", baseIcon);
      return;
    }
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = 32;
    const ctx = canvas.getContext("2d");
    if (!ctx) return;
    ctx.fillStyle = "#2563c9";
    ctx.fillRect(0, 0, 32, 32);
    ctx.fillStyle = "#b42318";
    ctx.beginPath();
    ctx.arc(21, 11, 11, 0, 2 * Math.PI);
    ctx.fill();
    ctx.fillStyle = "#ffffff";
    ctx.font = "bold 15px system-ui, sans-serif";
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.fillText(count > 9 ? "9+" : String(count), 21, 12);
    icon.setAttribute("type", "image/png");
    icon.setAttribute("href", canvas.toDataURL("image/png"));
  };

  Live.STATUS_LABELS = {
    ai_handling: "With the bot",
    waiting_agent: "Waiting",
    agent_handling: "With an agent",
    closed: "Closed",
  };

  Live.statusBadge = function (node, status) {
    node.className = "status status-" + status;
    node.textContent = Live.STATUS_LABELS[status] || status;
  };

  // --- transcript -------------------------------------------------------------------

  /**
   * Does an event say it is about the session whose channel it came on? An event on
   * `sse:session:x` must name session x in its payload: anyone who can publish on one session's
   * channel must not be able to make a page show something about another.
   */
  Live.belongs = function (event) {
    const payload = event && typeof event.payload === "object" && event.payload ? event.payload : null;
    if (!payload) return false;
    const channel = String(event.channel || "");
    if (!channel.startsWith("sse:session:")) return true;
    return payload.session_name === channel.slice("sse:session:".length);
  };

  /** A supervisor joining or parting (`data.role` "supervisor"): the session keeps its agent. */
  const bySupervisor = (event) => {
    const data = (event && event.payload && event.payload.data) || {};
    return (event.type === "agent_joined" || event.type === "agent_left") && data.role === "supervisor";
  };

  /**
   * What an event says about its session's state, the one reading every page uses, or null
   * when it says nothing about it: `{name, status, agent, reason, at}`. `agent` is undefined
   * when the event does not say (a status_change without data.agent), `reason` when it is not
   * an escalation; `at` is the event's time on this browser's clock (ms). A supervisor joining
   * or parting changes neither (Live.participantChange reads those); a transfer's `agent_left`
   * (status still agent_handling, `data.to`) says the session is now with the new agent.
   */
  Live.sessionChange = function (event) {
    const payload = event && event.payload ? event.payload : {};
    const data = payload.data || {};
    const name = payload.session_name;
    if (typeof name !== "string" || !name || bySupervisor(event)) return null;
    const at = Live.toLocalMs(event.timestamp * 1000);
    switch (event.type) {
      case "transfer_request":
        return { name, status: "waiting_agent", agent: null, reason: data.reason || "", at };
      case "status_change":
        if (typeof payload.status !== "string") return null;
        return { name, status: payload.status, agent: "agent" in data ? data.agent : undefined, reason: undefined, at };
      case "agent_joined":
        return { name, status: "agent_handling", agent: data.agent ?? null, reason: undefined, at };
      case "agent_left": {
        if (payload.status === "agent_handling") {
          // A transfer: the session went from one agent straight to another (never to the queue).
          return { name, status: "agent_handling", agent: typeof data.to === "string" ? data.to : undefined, reason: undefined, at };
        }
        // Back in the queue in its old place, with its reason: the event says both.
        const since = Date.parse(typeof data.escalated_at === "string" ? data.escalated_at : "");
        const reason = typeof data.reason === "string" ? data.reason : undefined;
        return { name, status: "waiting_agent", agent: null, reason, at: Number.isNaN(since) ? at : Live.toLocalMs(since) };
      }
      default:
        return null;
    }
  };

  /**
   * A supervisor joining or parting a session as its second participant, or null:
   * `{name, supervisor, who, joined}` (`supervisor` is who is joined now: `who`, or null).
   */
  Live.participantChange = function (event) {
    if (!bySupervisor(event)) return null;
    const payload = event.payload;
    const who = payload.data.agent;
    if (typeof payload.session_name !== "string" || typeof who !== "string") return null;
    const joined = event.type === "agent_joined";
    return { name: payload.session_name, supervisor: joined ? who : null, who, joined };
  };

  /** The stable id of the chat message an event carries (new_message only), or null. */
  Live.messageIdOf = function (event) {
    const id = event && event.type === "new_message" && event.payload ? event.payload.message_id : null;
    return typeof id === "string" && id ? id : null;
  };

  /** An agent's message only when the server says so: `source` is stamped from who is signed in. */
  const fromAgent = (event, data) => data.sender === "agent" && event.source === "agent_workbench";

  /** Who wrote a chat message, as shown: "agent" only from the workbench, else "bot" or "customer". */
  Live.senderOf = function (event) {
    const data = (event.payload && event.payload.data) || {};
    if (fromAgent(event, data)) return "agent";
    return data.sender === "bot" || data.sender === "agent" ? "bot" : "customer";
  };

  /**
   * Renders a session's events: customer, bot and agent messages told apart, plus system lines.
   *
   * One chat message can reach a page several times: in the snapshot, in the answer to the
   * page's own send, live on the stream, and again when a server replays what another process
   * missed (then with another event id, or first without an id and later with one). Events are
   * skipped by event id, and chat messages by their `message_id`, so each is shown once.
   */
  class Transcript {
    constructor(node, me) {
      this.node = node;
      this.me = me;
      this.ids = new Set(); // event ids shown
      this.messageIds = new Set(); // message_ids shown
      this.own = []; // this page's sends not yet tied to a message_id: {node, text, eventIds, messageId}
    }

    clear() {
      this.node.replaceChildren();
      this.ids.clear();
      this.messageIds.clear();
      this.own = [];
    }

    /** Show a session snapshot's events (GET /api/sessions/{name}) in place of what was there. */
    load(events) {
      this.clear();
      for (const event of events) this.add(event);
      this.node.scrollTop = this.node.scrollHeight;
    }

    /** Add one envelope; an event or chat message already shown is skipped. Returns true if shown. */
    add(event) {
      if (event.id) {
        if (this.ids.has(event.id)) return false;
        this.ids.add(event.id);
      }
      const messageId = Live.messageIdOf(event);
      if (messageId) {
        if (this.messageIds.has(messageId)) return false;
        this.messageIds.add(messageId);
      }
      if (this.claim(event, messageId)) return false;
      const item = this.render(event);
      if (!item) return false;
      if (messageId) item.dataset.messageId = messageId;
      const stick = this.node.scrollHeight - this.node.scrollTop - this.node.clientHeight < 60;
      this.node.append(item);
      if (stick) this.node.scrollTop = this.node.scrollHeight;
      return true;
    }

    /**
     * Is `event` a message this page sent and already shows? Matched by the event ids of the
     * send's answer, else (with a message_id) by the text of the oldest unmatched send of ours.
     */
    claim(event, messageId) {
      if (event.type !== "new_message") return false;
      const data = (event.payload || {}).data || {};
      if (!fromAgent(event, data) || data.agent !== this.me) return false;
      let index = event.id ? this.own.findIndex((sent) => sent.eventIds.includes(event.id)) : -1;
      if (index < 0 && messageId) {
        const text = String(data.text ?? "");
        index = this.own.findIndex((sent) => !sent.messageId && sent.text === text);
      }
      if (index < 0) return false;
      const [sent] = this.own.splice(index, 1);
      sent.node.classList.remove("pending");
      if (messageId) sent.node.dataset.messageId = messageId;
      return true;
    }

    /** A message being sent: shown at once, tied to its event when that arrives. */
    pending(text) {
      const item = this.message("agent", this.me, text, Date.now());
      item.classList.add("pending");
      this.node.append(item);
      this.node.scrollTop = this.node.scrollHeight;
      const sent = { node: item, text, eventIds: [], messageId: null };
      this.own.push(sent);
      return sent;
    }

    /**
     * The server accepted a send: its answer's event ids (and message_id, when it carries one)
     * let the event be recognised when it arrives. The bubble stays unless the message is
     * already shown by an event that came first.
     */
    confirm(sent, answer) {
      const eventIds = (answer && answer.event_ids) || [];
      const messageId = answerMessageId(answer);
      const waiting = this.own.includes(sent);
      if (waiting && (eventIds.some((id) => this.ids.has(id)) || (messageId && this.messageIds.has(messageId)))) {
        // The stream was faster and showed it without knowing it was ours.
        this.own.splice(this.own.indexOf(sent), 1);
        sent.node.remove();
        return;
      }
      sent.node.classList.remove("pending");
      if (!waiting) return; // already tied to its event
      sent.eventIds = eventIds;
      if (messageId) {
        sent.messageId = messageId;
        sent.node.dataset.messageId = messageId;
        this.messageIds.add(messageId);
        // From now on the message_id alone recognises it.
        this.own.splice(this.own.indexOf(sent), 1);
      }
      for (const id of eventIds) this.ids.add(id);
    }

    /** The send failed: take the bubble away (unless an event already showed it as sent). */
    fail(sent) {
      const index = this.own.indexOf(sent);
      if (index < 0) return false;
      this.own.splice(index, 1);
      sent.node.remove();
      return true;
    }

    message(sender, agent, text, ms) {
      const who = sender === "agent" ? (agent === this.me ? "You" : agent || "Agent") : sender === "bot" ? "Bot" : "Customer";
      const cls = "msg msg-" + (sender === "agent" || sender === "bot" ? sender : "customer") +
        (sender === "agent" && agent !== this.me ? " other" : "");
      return Live.el("div", { class: cls },
        Live.el("div", { class: "msg-body" }, text),
        Live.el("div", { class: "msg-meta" }, Live.el("span", { class: "who" }, who), Live.time(ms)));
    }

    /** "You" for the reader, else the name (or `fallback` when the event names nobody). */
    who(name, fallback) {
      return name === this.me ? "You" : typeof name === "string" && name ? name : fallback;
    }

    render(event) {
      const payload = event.payload || {};
      const data = payload.data || {};
      const ms = Live.toLocalMs(event.timestamp * 1000);
      const line = (text) => Live.el("div", { class: "sys" }, text, Live.time(ms));
      switch (event.type) {
        case "new_message": {
          // A line that says it is an agent's but does not come from the workbench is the bot's.
          const sender = Live.senderOf(event);
          return this.message(sender, data.agent, String(data.text ?? ""), ms);
        }
        case "transfer_request":
          return line("The bot asked for an agent" + (data.reason ? ": " + data.reason : ""));
        case "agent_joined":
          if (data.role === "supervisor") return line(this.who(data.agent, "A supervisor") + " joined as supervisor");
          if (typeof data.from === "string") return null; // a transfer: its agent_left tells it
          return line(this.who(data.agent, "An agent") + " joined");
        case "agent_left":
          if (data.role === "supervisor") return line(this.who(data.agent, "The supervisor") + " left");
          if (typeof data.to === "string") {
            // One line per transfer: who gave it, from whom, to whom.
            const to = data.to === this.me ? "you" : data.to;
            return line(data.by && data.by !== data.from
              ? this.who(data.by, "A supervisor") + " transferred the session from " +
                (data.from === this.me ? "you" : data.from || "its agent") + " to " + to
              : this.who(data.from, "The agent") + " transferred the session to " + to);
          }
          return line(this.who(data.agent, "The agent") + " left · back in the queue");
        case "status_change":
          if (payload.status === "closed") return line("Session closed" + (data.agent ? " by " + data.agent : ""));
          if (payload.status === "ai_handling") return line("Back with the bot");
          return null; // waiting/handling are already told by transfer_request and joined/left
        default:
          return null;
      }
    }
  }

  /** A command's answer may name the message it stored: `message_id`, or in its events' payloads. */
  function answerMessageId(answer) {
    if (!answer) return null;
    if (typeof answer.message_id === "string" && answer.message_id) return answer.message_id;
    for (const event of Array.isArray(answer.events) ? answer.events : []) {
      const id = Live.messageIdOf(event);
      if (id) return id;
    }
    return null;
  }
  Live.Transcript = Transcript;

  // --- the stream -------------------------------------------------------------------

  /*
   * One stream per browser. Every tab of one person shares ONE EventSource, so a person may keep
   * many tabs open on HTTP/1.1, where a browser opens at most six connections to a host (and the
   * server allows SSE_MAX_STREAMS_PER_USER streams a person).
   *
   * - A Web Lock, "helpdesk-stream:<username>", elects the leader: the tab holding it opens the
   *   stream; every other tab waits in the lock's queue. When the leader closes (or crashes),
   *   the browser frees the lock and hands it to the next tab at once.
   * - A BroadcastChannel of the same name carries the rest. A follower says which channels it
   *   needs and from which id (`need`); the leader opens the stream on the union of every tab's
   *   channels and relays each event, each state change and each opening to all tabs (`event`,
   *   `state`, `opened`). A tab applies only the events of its own channels, newer than the
   *   cursor it asked from, each id once.
   * - When the union changes, or a tab needs events older than the stream has carried (its
   *   snapshot's cursor is behind the stream, or it was not receiving meanwhile), the leader
   *   reconnects from the earliest cursor still needed: replays are skipped by id in each tab,
   *   so nothing is lost and nothing is shown twice. `carry` tells the tabs which of them the
   *   stream now carries.
   * - Each tab keeps, per channel, the id up to which it has every event (`pos`). A tab that takes
   *   over opens the stream from the earliest of those it knows, then calls the roll (`leader`):
   *   every tab answers with its `need`, and one that is behind gets a reconnect from its id. A
   *   tab that does not answer within ROLL_CALL_MS closed without a word; its channels go.
   * - The server caps the channels of one stream (SSE_MAX_CHANNELS_PER_CONNECTION, else 429):
   *   a tab whose channels no longer fit is told so and keeps a stream of its own ("overflow")
   *   until it next changes channels and fits again.
   * - Where Web Locks or BroadcastChannel are missing (Web Locks need a secure context: HTTPS or
   *   localhost), every tab keeps its own stream ("alone"), as before.
   */

  const EVENT_TYPES = [
    "status_change", "transfer_request", "new_message", "agent_joined", "agent_left", "heartbeat", "reset", "bus_status",
  ];
  // After this long without a working stream, "reconnecting" becomes "offline".
  const OFFLINE_AFTER_MS = 10000;
  // Back-off when the browser has given up on a stream (an HTTP error such as 503).
  const RETRY_DELAYS_MS = [1000, 2000, 4000, 8000, 15000];
  const SEEN_MAX = 2000;
  // A tab that has taken over the stream waits this long for the others to answer its roll call.
  const ROLL_CALL_MS = 3000;
  // The server's cap on the channels of one stream (SSE_MAX_CHANNELS_PER_CONNECTION).
  const MAX_CHANNELS = Number(Live.config.stream_max_channels) || 20;

  // A calm banner while not live: what is shown may be out of date, and it will catch up.
  const BANNER_TEXT = {
    reconnecting: "Connection lost. Reconnecting… anything you miss meanwhile will appear once it is back.",
    offline: "The server cannot be reached. Still trying; this page catches up by itself when it is back.",
  };
  // While the process this page is connected to cannot reach the others (its Redis link is down).
  const BUS_TEXT = {
    lead: "Live updates from other servers are paused.",
    rest: "This page still shows what happens on this server; the rest follows when the link is back.",
    back: "Live updates from other servers are back.",
  };
  // A stream that opens on a degraded process is told so at once; a healthy one says nothing. After a
  // reconnect (a workbench does one for every session it opens) the banner waits this long for the word
  // before it goes, so it does not blink off and on, nor get read out again, on every reconnect.
  const BUS_CONFIRM_MS = 1500;
  const STATE_TEXT = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…", offline: "Offline" };

  const maxId = (a, b) => (!a ? b : !b ? a : Live.compareIds(a, b) >= 0 ? a : b);
  const sameSet = (a, b) => a.length === b.length && a.every((item) => b.includes(item));
  const isId = (value) => typeof value === "string" && /^\d+-\d+$/.test(value);

  /**
   * One EventSource on a set of channels, and its retries. It tells `sink` each state (`state`),
   * each opening (`opened`) and each event but heartbeats (`event`). `lastId` is the newest id it
   * has delivered, or the cursor it was opened from: a retry of ours resumes from it.
   */
  class Source {
    constructor(sink) {
      this.sink = sink;
      this.channels = [];
      this.from = null; // the cursor it was opened from
      this.lastId = null;
      this.stale = false; // a `reset` came: the position before it means nothing any more
      this.es = null;
      this.failures = 0;
      this.downSince = null;
      this.retryTimer = null;
      this.offlineTimer = null;
      this.state = null;
      window.addEventListener("offline", () => { if (this.channels.length) this.setState("offline"); });
      window.addEventListener("online", () => { if (this.channels.length && !this.es) this.open(); });
    }

    /** Carry `channels` from the id `from` (null: from now on), instead of what it carried. */
    connect(channels, from) {
      this.close();
      this.channels = [...channels];
      this.from = from || null;
      this.lastId = this.from;
      this.stale = false;
      if (this.channels.length) this.open();
    }

    url() {
      const params = new URLSearchParams();
      for (const channel of this.channels) params.append("channel", channel);
      if (this.lastId) params.set("last_event_id", this.lastId);
      return Live.config.urls.streams + "?" + params.toString();
    }

    open() {
      clearTimeout(this.retryTimer);
      const es = new EventSource(this.url(), { withCredentials: true });
      this.es = es;
      es.onopen = () => {
        if (es !== this.es) return;
        this.failures = 0;
        this.downSince = null;
        this.sink.opened();
        this.setState("live");
      };
      es.onerror = () => {
        if (es !== this.es) return;
        this.markDown();
        if (es.readyState === EventSource.CLOSED) {
          // The browser gave up (an HTTP error): we retry ourselves, resuming from lastId.
          this.es = null;
          this.scheduleRetry(() => this.probeAndOpen());
        }
        // Otherwise the browser reconnects by itself, sending Last-Event-ID.
      };
      for (const type of EVENT_TYPES) es.addEventListener(type, (message) => this.receive(es, message));
    }

    async probeAndOpen() {
      if (!this.channels.length || this.es) return;
      // A stream cannot tell us its HTTP status; a plain request can (401 -> sign in again).
      try {
        await Live.get(Live.config.urls.probe);
      } catch (err) {
        if (err.status === 0 || err.status >= 500) {
          this.scheduleRetry(() => this.probeAndOpen());
          return;
        }
      }
      if (this.channels.length && !this.es) this.open();
    }

    receive(es, message) {
      if (es !== this.es) return;
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        console.warn("unreadable event", message.data);
        return;
      }
      if (!event || typeof event !== "object" || event.type === "heartbeat") return;
      if (event.type === "reset") this.stale = true;
      if (event.id && Live.compareIds(event.id, this.lastId) > 0) this.lastId = event.id;
      this.sink.event(event);
    }

    scheduleRetry(action) {
      const delay = RETRY_DELAYS_MS[Math.min(this.failures, RETRY_DELAYS_MS.length - 1)];
      this.failures += 1;
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(action, delay);
    }

    markDown() {
      if (this.downSince === null) this.downSince = Date.now();
      const down = Date.now() - this.downSince;
      this.setState(down >= OFFLINE_AFTER_MS || !navigator.onLine ? "offline" : "reconnecting");
      clearTimeout(this.offlineTimer);
      if (down < OFFLINE_AFTER_MS) {
        this.offlineTimer = setTimeout(() => {
          if (this.state === "reconnecting") this.setState("offline");
        }, OFFLINE_AFTER_MS - down);
      }
    }

    close() {
      clearTimeout(this.retryTimer);
      if (this.es) this.es.close();
      this.es = null;
    }

    /** For good: nothing left to carry, so not even coming back online reopens it. */
    stop() {
      this.close();
      this.channels = [];
    }

    setState(state) {
      if (state === this.state) return;
      this.state = state;
      if (state === "live") clearTimeout(this.offlineTimer);
      this.sink.state(state);
    }
  }

  /**
   * The live stream of a page (shared by the person's tabs, see above).
   *   channels(): the channels to carry now
   *   snapshot(): loads the page's state; resolves to its cursor (last_event_id)
   *   onEvent(envelope): applies one event; each is also announced as a `live:event` DOM event
   * start() loads the snapshot and starts; reconnect(from) says the channels changed, `from`
   * being the cursor of a snapshot just loaded for a new channel.
   */
  class LiveStream {
    constructor({ channels, snapshot, onEvent, stateNode }) {
      this.channels = channels;
      this.snapshot = snapshot;
      this.onEvent = onEvent;
      this.stateNode = stateNode;
      this.seen = new Set();
      this.floors = new Map(); // channel -> the cursor it was asked from: older events are in the snapshot
      this.pos = new Map(); // channel -> the id up to which this tab has every event of it
      this.loading = false;
      this.snapshotFailures = 0;
      this.snapshotTimer = null;
      this.snapshotDown = null; // since when this tab's snapshot fails while the stream is another's
      this.state = null;
      this.streamState = null;
      this.leaderState = null; // the last state the leader told
      this.bus = "ok"; // the last bus_status of this connection: "ok" or "degraded"
      this.busReason = "";
      this.busTimer = null;
      // Sharing (see the top of this section).
      this.tab = Math.random().toString(36).slice(2) + "-" + Date.now().toString(36);
      this.bc = null; // the BroadcastChannel of this person's tabs
      this.members = new Map(); // tab -> {channels, from, continuous, fresh, heard, listedAt}
      this.leaderTab = null;
      this.listed = false; // the stream carries this tab, and it has missed nothing relayed since
      this.relayedMax = null; // the newest id relayed to this tab
      this.streamFrom = undefined; // the cursor the shared stream started from (undefined: not known yet)
      this.takenAt = 0;
      this.source = null;
      this.sink = {
        state: (state) => {
          if (this.mode === "leader") this.post({ kind: "state", state, bus: this.bus, reason: this.busReason });
          this.showStream(state);
        },
        opened: () => {
          if (this.mode === "leader") this.post({ kind: "opened" });
          this.busOpened();
        },
        event: (event) => {
          if (this.mode === "leader") this.post({ kind: "event", event });
          this.take(event, this.mode !== "leader" || this.listed);
        },
      };
      const shareable = Boolean(Live.config.me) && typeof BroadcastChannel === "function" &&
        Boolean(navigator.locks) && typeof navigator.locks.request === "function";
      this.setMode(shareable ? "follower" : "alone");
    }

    async start() {
      this.setState("connecting");
      if (this.mode !== "alone") this.join();
      await this.reload();
    }

    /** Load the snapshot, then stream from its cursor. Also the answer to a `reset`. */
    async reload() {
      clearTimeout(this.snapshotTimer);
      if (this.ownsSource()) this.source.close();
      this.loading = true;
      this.listed = false; // what is relayed while the snapshot loads is not applied
      let cursor;
      try {
        cursor = await this.snapshot();
      } catch (err) {
        console.warn("snapshot failed", err);
        this.snapshotFailed();
        return;
      }
      this.loading = false;
      this.snapshotFailures = 0;
      const from = cursor || this.resumePoint();
      this.seen.clear();
      this.floors = new Map(this.channels().map((channel) => [channel, from]));
      this.pos = new Map(this.floors);
      if (this.snapshotDown !== null) {
        this.snapshotDown = null;
        this.showStream();
      }
      if (this.ownsSource()) this.source.connect([...this.floors.keys()], from);
      if (this.mode !== "alone") this.sendNeed(false);
    }

    /**
     * The channel set changed (a session was opened or closed): reconnect from the last id, or
     * from `from` if that is earlier (the cursor of a snapshot just loaded for a new channel:
     * what came after it on that channel is replayed; repeats on the others are skipped).
     */
    reconnect(from) {
      const channels = this.channels();
      const start = from || this.resumePoint();
      const floors = new Map();
      const pos = new Map();
      for (const channel of channels) {
        floors.set(channel, this.floors.has(channel) ? this.floors.get(channel) : start);
        pos.set(channel, this.pos.has(channel) ? this.pos.get(channel) : start);
      }
      const added = channels.some((channel) => !this.floors.has(channel));
      this.floors = floors;
      this.pos = pos;
      if (this.ownsSource()) this.source.connect(channels, Live.minId(this.source.lastId, from));
      if (this.mode !== "alone" && !this.loading) this.sendNeed(!added && this.listed);
    }

    /** The earliest id this tab may lack an event after: where a stream for it must start. */
    resumePoint() {
      let point = null;
      for (const at of this.pos.values()) point = Live.minId(point, at);
      return point;
    }

    ownsSource() {
      return this.mode === "alone" || this.mode === "overflow";
    }

    setMode(mode) {
      this.mode = mode;
      document.documentElement.dataset.stream = mode;
      if ((mode === "alone" || mode === "overflow" || mode === "leader") && !this.source) {
        this.source = new Source(this.sink);
      }
    }

    snapshotFailed() {
      if (this.ownsSource()) {
        this.source.markDown();
      } else {
        // The shared stream may be fine; this tab still shows that it is not up to date.
        if (this.snapshotDown === null) this.snapshotDown = Date.now();
        this.showStream();
      }
      const delay = RETRY_DELAYS_MS[Math.min(this.snapshotFailures, RETRY_DELAYS_MS.length - 1)];
      this.snapshotFailures += 1;
      this.snapshotTimer = setTimeout(() => this.reload(), delay);
    }

    /** One event from the stream (ours or relayed); `complete`: the stream carries all of this tab. */
    take(event, complete) {
      if (event.type === "bus_status") {
        const payload = event.payload || {};
        this.setBus(payload.state === "degraded" ? "degraded" : "ok", String(payload.reason || ""));
        return;
      }
      if (event.type === "reset") {
        this.reload();
        return;
      }
      if (this.loading) return; // the snapshot being loaded covers it, or the stream replays it
      // The stream delivers in id order: an id seen means every channel it carries is complete up to it.
      if (complete && event.id) for (const [channel, at] of this.pos) this.pos.set(channel, maxId(at, event.id));
      const shared = !this.ownsSource();
      if (shared && !this.floors.has(event.channel)) return; // another tab's channel
      if (event.id) {
        // A stream started before this tab's cursor replays what its snapshot already holds.
        const floor = shared ? this.floors.get(event.channel) : null;
        const replays = this.streamFrom === undefined || (this.streamFrom && Live.compareIds(this.streamFrom, floor) < 0);
        if (floor && replays && Live.compareIds(event.id, floor) <= 0) return;
        if (this.seen.has(event.id)) return;
        this.seen.add(event.id);
        if (this.seen.size > SEEN_MAX) this.seen.delete(this.seen.values().next().value);
      }
      if (typeof event.timestamp === "number") Live.observeServerTime(event.timestamp * 1000);
      if (!Live.belongs(event)) {
        console.warn("ignored an event whose session is not its channel's", event);
        return;
      }
      try {
        this.onEvent(event);
      } catch (err) {
        console.error("could not apply event", event, err);
      }
      document.dispatchEvent(new CustomEvent("live:event", { detail: event }));
    }

    // --- sharing the stream between tabs --------------------------------------------------

    join() {
      const name = "helpdesk-stream:" + Live.config.me;
      this.bc = new BroadcastChannel(name);
      this.bc.onmessage = (message) => this.hear(message.data);
      window.addEventListener("pagehide", () => this.post({ kind: "bye" }));
      // Back from the back-forward cache: this tab said goodbye; load again and say what it needs.
      window.addEventListener("pageshow", (e) => { if (e.persisted && this.mode !== "alone") this.reload(); });
      // Held until the page goes: the callback's promise never settles.
      navigator.locks.request(name, () => {
        this.lead();
        return new Promise(() => {});
      }).catch((err) => {
        console.warn("no leader election here: this tab keeps a stream of its own", err);
        this.bc.close();
        this.bc = null;
        this.setMode("alone");
        if (!this.loading) this.source.connect([...this.floors.keys()], this.resumePoint());
      });
    }

    post(message) {
      if (!this.bc) return;
      try {
        this.bc.postMessage({ ...message, tab: this.tab });
      } catch (err) {
        console.warn("could not tell the other tabs", err);
      }
    }

    /**
     * Say which channels this tab needs and from which id (the leader plans at once).
     * `continuous`: the stream carried this tab and it applied all that was relayed since,
     * so only a change of channels can call for a reconnect.
     */
    sendNeed(continuous) {
      if (!continuous) this.listed = false;
      const need = { channels: [...this.floors.keys()], from: this.resumePoint(), continuous: Boolean(continuous) };
      this.remember(this.tab, need);
      if (this.mode === "leader") this.plan();
      else this.post({ kind: "need", ...need });
    }

    /** Every tab keeps every tab's last `need`: the one that takes over knows what to carry. */
    remember(tab, need) {
      const known = this.members.get(tab);
      this.members.set(tab, {
        channels: need.channels,
        from: need.from,
        continuous: need.continuous,
        fresh: true, // not yet planned for
        heard: Date.now(),
        listedAt: known ? known.listedAt : undefined, // the stream position when it was first carried
      });
    }

    /** A message from another tab of this person (same origin: BroadcastChannel goes no further). */
    hear(message) {
      if (!message || typeof message !== "object" || typeof message.tab !== "string" || message.tab === this.tab) return;
      const tab = message.tab;
      switch (message.kind) {
        case "need": {
          if (!Array.isArray(message.channels)) return;
          const channels = message.channels.filter((channel) => typeof channel === "string");
          this.remember(tab, { channels, from: isId(message.from) ? message.from : null, continuous: message.continuous === true });
          if (this.mode === "leader") {
            this.plan();
            this.tellState();
          }
          return;
        }
        case "bye":
          this.members.delete(tab);
          if (this.mode === "leader") this.plan();
          return;
        case "leader":
          // A new leader calls the roll: answer with what this tab needs (unless its snapshot is
          // still loading: it asks once that is done).
          if (this.leaderTab && this.leaderTab !== tab) this.members.delete(this.leaderTab);
          this.leaderTab = tab;
          if (this.mode !== "leader" && !this.loading && this.floors.size) this.sendNeed(this.listed);
          return;
        case "carry":
          if (this.mode === "leader" || !Array.isArray(message.tabs) || !Array.isArray(message.excluded)) return;
          this.leaderTab = tab;
          this.streamFrom = isId(message.from) ? message.from : null;
          for (const gone of message.excluded) this.members.delete(gone);
          for (const carried of message.tabs) {
            const member = this.members.get(carried);
            if (member) member.fresh = false;
          }
          if (message.excluded.includes(this.tab)) {
            // The stream has no room for this tab's channels: it keeps its own until it fits again
            // (already on its own, its stream carries its channels since its last reconnect).
            this.listed = false;
            if (this.mode !== "overflow") {
              this.setMode("overflow");
              this.source.connect([...this.floors.keys()], this.resumePoint());
            }
          } else if (message.tabs.includes(this.tab)) {
            if (this.mode === "overflow") {
              this.source.stop();
              this.source = null;
              this.setMode("follower");
              if (this.leaderState) this.showStream(this.leaderState);
            }
            this.listed = true;
          } else {
            this.listed = false; // not (yet) carried: what comes proves nothing about this tab's channels
          }
          return;
        case "event":
          if (this.mode !== "follower" || !message.event || typeof message.event !== "object") return;
          if (message.event.id) this.relayedMax = maxId(this.relayedMax, message.event.id);
          this.take(message.event, this.listed);
          return;
        case "state":
          if (!STATE_TEXT[message.state]) return;
          this.leaderState = message.state;
          if (this.mode !== "follower") return;
          this.showStream(message.state);
          if (message.bus === "degraded" && this.bus !== "degraded") this.setBus("degraded", String(message.reason || ""));
          return;
        case "opened":
          if (this.mode === "follower") this.busOpened();
          return;
        default:
          return;
      }
    }

    /** This tab got the lock: it opens the stream for every tab it knows of, then calls the roll. */
    lead() {
      this.setMode("leader");
      if (this.leaderTab && this.leaderTab !== this.tab) this.members.delete(this.leaderTab);
      this.leaderTab = this.tab;
      this.takenAt = Date.now();
      if (!this.loading && this.floors.size) this.remember(this.tab, { channels: [...this.floors.keys()], from: this.resumePoint() });
      // What each tab has is known from its last need, and from the ids relayed since to every
      // carried tab; the roll call corrects any tab that is behind that.
      for (const [tab, member] of this.members) {
        if (tab !== this.tab && !member.fresh) member.from = maxId(member.from, this.relayedMax);
        member.fresh = true;
        member.continuous = false;
        member.listedAt = undefined;
      }
      this.post({ kind: "leader" });
      this.plan();
      setTimeout(() => this.prune(), ROLL_CALL_MS);
    }

    /** After the roll call: forget the tabs that did not answer (closed without a goodbye). */
    prune() {
      let gone = false;
      for (const [tab, member] of this.members) {
        if (tab !== this.tab && member.heard < this.takenAt) {
          this.members.delete(tab);
          gone = true;
        }
      }
      if (gone) this.plan();
    }

    /**
     * The leader: carry the union of every tab's channels (this tab's first, then in the order
     * they came, while they fit), reconnecting only when the union changed or a tab needs older
     * events than the stream has carried for it.
     */
    plan() {
      const source = this.source;
      const union = [];
      const carried = [];
      const excluded = [];
      const order = [...this.members.keys()].sort((a, b) => (a === this.tab ? -1 : b === this.tab ? 1 : 0));
      for (const tab of order) {
        const extra = this.members.get(tab).channels.filter((channel) => !union.includes(channel));
        if (tab !== this.tab && union.length + extra.length > MAX_CHANNELS) {
          excluded.push(tab);
          continue;
        }
        union.push(...extra);
        carried.push(tab);
      }
      for (const tab of excluded) this.members.delete(tab);
      // A stream that carries nothing yet (or was reset) has no position: every cursor counts.
      const blank = !source.channels.length || source.stale;
      let again = blank || !sameSet(union, source.channels);
      let from = blank ? null : source.lastId;
      for (const tab of carried) {
        const member = this.members.get(tab);
        if (!member.fresh || !member.from) continue;
        // What the stream has already given this tab: all relayed since it was carried, if it
        // kept up; else nothing after the stream's position.
        const given = member.continuous && member.listedAt !== undefined ? member.listedAt : source.lastId;
        if (blank || !given || Live.compareIds(member.from, given) < 0) {
          again = true;
          from = Live.minId(from, member.from);
        }
      }
      if (again) {
        source.connect(union, from);
        for (const tab of carried) this.members.get(tab).listedAt = from;
      }
      for (const tab of carried) {
        const member = this.members.get(tab);
        if (member.fresh && (member.listedAt === undefined || !member.continuous)) member.listedAt = source.lastId;
        member.fresh = false;
      }
      this.listed = carried.includes(this.tab);
      this.streamFrom = source.from;
      this.post({ kind: "carry", tabs: carried, excluded, channels: union, from: source.from });
    }

    /** Tell the other tabs what the stream is (a tab that just asked learns it at once). */
    tellState() {
      if (this.source.state) this.post({ kind: "state", state: this.source.state, bus: this.bus, reason: this.busReason });
    }

    // --- what the page shows -------------------------------------------------------------------

    /** Show the stream's state (`state`, or the last one); a snapshot that keeps failing shows as down. */
    showStream(state) {
      if (state) this.streamState = state;
      if (this.snapshotDown !== null) {
        const long = !navigator.onLine || Date.now() - this.snapshotDown >= OFFLINE_AFTER_MS;
        this.setState(long ? "offline" : "reconnecting");
      } else if (this.streamState) {
        this.setState(this.streamState);
      }
    }

    /** A new connection is open: what the last one said about the bus no longer holds. */
    busOpened() {
      clearTimeout(this.busTimer);
      if (this.bus !== "degraded") return;
      if (!busBannerShown()) {
        this.bus = "ok"; // nothing on screen (the page was not live): nothing to wait for
        return;
      }
      this.busTimer = setTimeout(() => this.setBus("ok", "", { quiet: true }), BUS_CONFIRM_MS);
    }

    setBus(state, reason, { quiet } = {}) {
      clearTimeout(this.busTimer);
      const was = this.bus;
      this.bus = state;
      this.busReason = reason;
      if (state === "degraded" && was !== "degraded") console.info("bus degraded:", reason);
      this.renderBus(state === "ok" && was === "degraded" && !quiet);
    }

    /** The bus banner: shown while the stream is live and its process says it is degraded. */
    renderBus(announceBack) {
      const degraded = this.bus === "degraded" && this.state === "live";
      document.documentElement.dataset.bus = degraded ? "degraded" : "ok";
      const region = Live.$("bus-status");
      if (!region) return;
      if (degraded) {
        if (!busBannerShown()) region.replaceChildren(busBanner());
      } else if (announceBack && busBannerShown()) {
        region.replaceChildren(Live.el("span", { class: "visually-hidden" }, BUS_TEXT.back));
      } else if (busBannerShown()) {
        region.replaceChildren();
      }
    }

    setState(state) {
      if (state === this.state) return;
      this.state = state;
      if (this.stateNode) {
        this.stateNode.dataset.state = state;
        this.stateNode.textContent = STATE_TEXT[state];
        this.stateNode.title = state === "live" ? "Receiving updates as they happen" :
          state === "offline" ? "No connection to the server; still trying" : "Trying to reach the server";
      }
      document.documentElement.dataset.connection = state;
      const banner = Live.$("conn-banner");
      if (banner) {
        banner.hidden = !BANNER_TEXT[state];
        banner.dataset.state = state;
        banner.textContent = BANNER_TEXT[state] || "";
      }
      this.renderBus(false);
    }
  }

  Live.LiveStream = LiveStream;

  function busBannerShown() {
    const region = Live.$("bus-status");
    return Boolean(region && region.querySelector(".bus-banner"));
  }

  function busBanner() {
    return Live.el("div", { class: "bus-banner" },
      Live.el("span", { class: "bus-icon", "aria-hidden": "true" }),
      Live.el("p", {}, Live.el("strong", {}, BUS_TEXT.lead), " ", BUS_TEXT.rest));
  }
})();
