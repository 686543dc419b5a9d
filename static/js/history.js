/* The History page: closed sessions, mine or everyone's, searched as you type.
 *
 * The query and the scope live in the URL (?q=...&scope=all), so a search can be shared and
 * reloaded. Each result links to the session's own page, which shows its transcript read-only.
 */
(function () {
  "use strict";

  const { el, $, config } = Live;
  const PAGE = config.history.page_size;
  const MAX_LIST = 1000; // the API's most (dashboard/api.py MAX_LIST)
  const DEBOUNCE_MS = 250;

  const input = $("history-q");
  const form = $("history-form");
  const list = $("results");
  const status = $("history-status");
  const more = $("results-more");

  const whenFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "medium" });
  const SENDERS = { customer: "Customer", bot: "Bot", agent: "Agent" };

  let limit = PAGE;
  let asked = 0; // the number of the latest request: an older answer arriving later is dropped
  let timer = null;

  function scope() {
    const checked = form.querySelector('input[name="scope"]:checked');
    return checked && checked.value === "all" ? "all" : "mine";
  }

  function query() {
    return input.value.trim();
  }

  /** The page's own URL for the current search, without what is the default. */
  function remember() {
    const params = new URLSearchParams();
    if (query()) params.set("q", query());
    if (scope() === "all") params.set("scope", "all");
    const search = params.toString();
    history.replaceState(null, "", location.pathname + (search ? "?" + search : ""));
  }

  function apiUrl() {
    const params = new URLSearchParams({ status: "closed", limit: String(limit) });
    if (scope() === "mine") params.set("mine", "1");
    if (query()) params.set("q", query());
    return config.urls.sessions + "?" + params.toString();
  }

  function when(iso) {
    const date = new Date(iso);
    return el("time", { class: "result-when", datetime: date.toISOString(), title: fullFormat.format(date) },
      whenFormat.format(date));
  }

  /** The snippet's text with the server's matches marked (offsets into `text`), never as HTML. */
  function marked(text, highlights) {
    const parts = [];
    let at = 0;
    for (const [start, end] of Array.isArray(highlights) ? highlights : []) {
      if (!Number.isInteger(start) || !Number.isInteger(end) || start < at || end <= start || end > text.length) continue;
      if (start > at) parts.push(text.slice(at, start));
      parts.push(el("mark", {}, text.slice(start, end)));
      at = end;
    }
    if (at < text.length) parts.push(text.slice(at));
    return parts;
  }

  function row(session) {
    const customer = session.customer && typeof session.customer.name === "string" ? session.customer.name : "";
    const href = Live.sessionPageUrl(session.name) + "?from=history"; // its breadcrumb leads back here
    const fact = (label, value) => (value ? el("span", {}, label + " ", el("b", {}, value)) : null);
    const match = session.match;
    return el("li", { class: "result", dataset: { name: session.name } },
      el("div", { class: "result-head" },
        el("a", { class: "result-title" + (customer ? "" : " mono"), href }, customer || session.name),
        customer ? el("span", { class: "result-name" }, session.name) : null,
        session.closed_at ? when(session.closed_at) : null),
      el("div", { class: "result-meta" },
        fact("Agent:", session.agent || "none"),
        fact("Reason:", session.reason)),
      session.resolution_note ? el("p", { class: "result-note" }, el("span", { class: "label" }, "Note: "),
        session.resolution_note) : null,
      match && typeof match.text === "string"
        ? el("blockquote", { class: "result-snippet" },
          el("span", { class: "who" }, (SENDERS[match.sender] || "Message") + ":"), " ",
          marked(match.text, match.highlights))
        : null);
  }

  /** What the list shows, in words (read out by screen readers: the status is a live region). */
  function describe(count, full) {
    const all = scope() === "all";
    const plural = (n) => n + " closed session" + (n === 1 ? "" : "s");
    const q = query();
    if (!q) {
      if (!count) return all ? "No session has been closed yet." : "You have no closed sessions yet.";
      if (full) return (all ? "The latest " : "Your latest ") + plural(count) + ".";
      return (all ? "All " : "Your ") + plural(count) + ".";
    }
    const whose = all ? "" : " of yours";
    if (!count) {
      return "No closed session" + whose + " matches “" + q + "”." +
        (all ? " Try fewer or shorter words." : " Try Everyone's, or fewer words.");
    }
    if (full) return "The latest " + plural(count) + whose + " that match “" + q + "”.";
    return plural(count) + whose + (count === 1 ? " matches" : " match") + " “" + q + "”.";
  }

  async function load({ focusFrom = -1 } = {}) {
    clearTimeout(timer);
    const mine = ++asked;
    list.setAttribute("aria-busy", "true");
    let body;
    try {
      body = await Live.get(apiUrl());
    } catch (err) {
      if (mine !== asked) return;
      list.removeAttribute("aria-busy");
      status.classList.add("error");
      status.textContent = err.status === 400 ? err.message : "Could not search: " + err.message;
      return;
    }
    if (mine !== asked) return; // the query changed meanwhile; its own answer follows
    list.removeAttribute("aria-busy");
    const sessions = Array.isArray(body.sessions) ? body.sessions : [];
    list.replaceChildren(...sessions.map(row));
    const full = sessions.length >= limit;
    status.classList.remove("error");
    status.textContent = describe(sessions.length, full);
    more.hidden = !full || limit >= MAX_LIST;
    if (focusFrom >= 0) {
      const first = list.children[focusFrom];
      if (first) first.querySelector("a").focus();
    }
  }

  /** A new search starts from the first page again. */
  function restart() {
    limit = PAGE;
    remember();
    return load();
  }

  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(restart, DEBOUNCE_MS);
  });
  form.addEventListener("change", (event) => {
    if (event.target.name === "scope") restart();
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault(); // Enter searches at once, without a page load
    restart();
  });
  more.addEventListener("click", () => {
    const shown = list.children.length;
    limit = Math.min(MAX_LIST, limit + PAGE);
    load({ focusFrom: shown });
  });

  load();
})();
