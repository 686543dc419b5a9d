/* Shared by every page: HTTP helpers, formatting, the transcript and the one live stream.
 *
 * A page loads a snapshot, then opens ONE EventSource on /api/events carrying all of its
 * channels, resuming from the snapshot's cursor, so nothing published in between is lost.
 * A `reset` event (the server cannot resume us) is answered by reloading the snapshot.
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
    } catch (err) {
      throw new ApiError(0, null);
    }
    let data = null;
    try { data = await response.json(); } catch (err) { data = null; }
    if (response.status === 401) {
      // The login expired: go and sign in again, then come back here.
      window.location.assign(Live.config.urls.login + "?next=" + encodeURIComponent(location.pathname + location.hash));
    }
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }
  Live.get = (url) => request("GET", url);
  Live.post = (url, body) => request("POST", url, body === undefined ? {} : body);

  Live.sessionUrl = (name, action) =>
    "/api/sessions/" + encodeURIComponent(name) + (action ? "/" + action : "");

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

  /** A <time> element for a Unix time in milliseconds, in the viewer's locale. */
  Live.time = function (ms, withSeconds) {
    const date = new Date(ms);
    return Live.el("time", { datetime: date.toISOString(), title: fullFormat.format(date) },
      (withSeconds ? secondsFormat : clockFormat).format(date));
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

  /** Renders a session's events: customer, bot and agent messages told apart, plus system lines. */
  class Transcript {
    constructor(node, me) {
      this.node = node;
      this.me = me;
      this.ids = new Set();
    }

    clear() {
      this.node.replaceChildren();
      this.ids.clear();
    }

    /** Add one envelope; events already shown (same id) are skipped. Returns true if shown. */
    add(event, pendingNode) {
      if (event.id) {
        if (this.ids.has(event.id)) return false;
        this.ids.add(event.id);
      }
      const item = this.render(event);
      if (!item) return false;
      const stick = this.node.scrollHeight - this.node.scrollTop - this.node.clientHeight < 60;
      if (pendingNode && pendingNode.isConnected) pendingNode.replaceWith(item);
      else this.node.append(item);
      if (stick) this.node.scrollTop = this.node.scrollHeight;
      return true;
    }

    /** A message being sent: shown at once, confirmed (replaced) when its event arrives. */
    pending(text) {
      const item = this.message("agent", this.me, text, Date.now());
      item.classList.add("pending");
      this.node.append(item);
      this.node.scrollTop = this.node.scrollHeight;
      return item;
    }

    /** Mark event ids as shown (a message this page sent, confirmed by the server's answer). */
    remember(ids) {
      for (const id of ids || []) this.ids.add(id);
    }

    message(sender, agent, text, ms) {
      const who = sender === "agent" ? (agent === this.me ? "You" : agent || "Agent") : sender === "bot" ? "Bot" : "Customer";
      const cls = "msg msg-" + (sender === "agent" || sender === "bot" ? sender : "customer") +
        (sender === "agent" && agent !== this.me ? " other" : "");
      return Live.el("div", { class: cls },
        Live.el("div", { class: "msg-body" }, text),
        Live.el("div", { class: "msg-meta" }, Live.el("span", { class: "who" }, who), Live.time(ms)));
    }

    render(event) {
      const payload = event.payload || {};
      const data = payload.data || {};
      const ms = Live.toLocalMs(event.timestamp * 1000);
      const line = (text) => Live.el("div", { class: "sys" }, text, Live.time(ms));
      switch (event.type) {
        case "new_message":
          return this.message(data.sender || "customer", data.agent, String(data.text ?? ""), ms);
        case "transfer_request":
          return line("The bot asked for an agent" + (data.reason ? ": " + data.reason : ""));
        case "agent_joined":
          return line((data.agent === this.me ? "You" : data.agent || "An agent") + " joined");
        case "agent_left":
          return line((data.agent === this.me ? "You" : data.agent || "The agent") + " left · back in the queue");
        case "status_change":
          if (payload.status === "closed") return line("Session closed" + (data.agent ? " by " + data.agent : ""));
          if (payload.status === "ai_handling") return line("Back with the bot");
          return null; // waiting/handling are already told by transfer_request and joined/left
        default:
          return null;
      }
    }
  }
  Live.Transcript = Transcript;

  // --- the stream -------------------------------------------------------------------

  const EVENT_TYPES = ["status_change", "transfer_request", "new_message", "agent_joined", "agent_left", "heartbeat", "reset"];
  // After this long without a working stream, "reconnecting" becomes "offline".
  const OFFLINE_AFTER_MS = 10000;
  // Back-off when the browser has given up on a stream (an HTTP error such as 503).
  const RETRY_DELAYS_MS = [1000, 2000, 4000, 8000, 15000];
  const SEEN_MAX = 2000;

  // A calm banner while not live: what is shown may be out of date, and it will catch up.
  const BANNER_TEXT = {
    reconnecting: "Connection lost. Reconnecting… anything you miss meanwhile will appear once it is back.",
    offline: "The server cannot be reached. Still trying; this page catches up by itself when it is back.",
  };
  const STATE_TEXT = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…", offline: "Offline" };

  /**
   * One EventSource for a page.
   *   channels(): the channels to carry now
   *   snapshot(): loads the page's state; resolves to its cursor (last_event_id)
   *   onEvent(envelope): applies one event
   */
  class LiveStream {
    constructor({ channels, snapshot, onEvent, stateNode }) {
      this.channels = channels;
      this.snapshot = snapshot;
      this.onEvent = onEvent;
      this.stateNode = stateNode;
      this.source = null;
      this.lastId = null;
      this.seen = new Set();
      this.failures = 0;
      this.state = null;
      this.downSince = null;
      this.retryTimer = null;
      this.offlineTimer = null;
      window.addEventListener("offline", () => this.setState("offline"));
      window.addEventListener("online", () => { if (!this.source) this.reconnect(); });
    }

    async start() {
      this.setState("connecting");
      await this.reload();
    }

    /** Load the snapshot, then stream from its cursor. Also the answer to a `reset`. */
    async reload() {
      this.close();
      try {
        const cursor = await this.snapshot();
        this.lastId = cursor || this.lastId;
        this.seen.clear();
        this.open();
      } catch (err) {
        console.warn("snapshot failed", err);
        this.markDown();
        this.scheduleRetry(() => this.reload());
      }
    }

    /** The channel set changed (a session was opened or closed): reconnect from the last id. */
    reconnect() {
      this.close();
      this.open();
    }

    url() {
      const params = new URLSearchParams();
      for (const channel of this.channels()) params.append("channel", channel);
      if (this.lastId) params.set("last_event_id", this.lastId);
      return "/api/events?" + params.toString();
    }

    open() {
      clearTimeout(this.retryTimer);
      const source = new EventSource(this.url(), { withCredentials: true });
      this.source = source;
      source.onopen = () => {
        if (source !== this.source) return;
        this.failures = 0;
        this.downSince = null;
        this.setState("live");
      };
      source.onerror = () => {
        if (source !== this.source) return;
        this.markDown();
        if (source.readyState === EventSource.CLOSED) {
          // The browser gave up (an HTTP error): we retry ourselves, resuming from lastId.
          this.source = null;
          this.scheduleRetry(() => this.probeAndOpen());
        }
        // Otherwise the browser reconnects by itself, sending Last-Event-ID.
      };
      for (const type of EVENT_TYPES) source.addEventListener(type, (message) => this.receive(source, message));
    }

    async probeAndOpen() {
      // A stream cannot tell us its HTTP status; a plain request can (401 -> sign in again).
      try {
        await Live.get(Live.config.urls.probe);
      } catch (err) {
        if (err.status === 0 || err.status >= 500) {
          this.scheduleRetry(() => this.probeAndOpen());
          return;
        }
      }
      this.open();
    }

    receive(source, message) {
      if (source !== this.source) return;
      let event;
      try {
        event = JSON.parse(message.data);
      } catch (err) {
        console.warn("unreadable event", message.data);
        return;
      }
      if (event.type === "heartbeat") return;
      if (event.type === "reset") {
        this.reload();
        return;
      }
      if (event.id) {
        if (this.seen.has(event.id)) return;
        this.seen.add(event.id);
        if (this.seen.size > SEEN_MAX) this.seen.delete(this.seen.values().next().value);
        if (Live.compareIds(event.id, this.lastId) > 0) this.lastId = event.id;
      }
      if (typeof event.timestamp === "number") Live.observeServerTime(event.timestamp * 1000);
      try {
        this.onEvent(event);
      } catch (err) {
        console.error("could not apply event", event, err);
      }
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
      if (this.source) this.source.close();
      this.source = null;
    }

    setState(state) {
      if (state === this.state) return;
      this.state = state;
      if (state === "live") clearTimeout(this.offlineTimer);
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
    }
  }
  Live.LiveStream = LiveStream;
})();
