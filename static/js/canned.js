/* Canned replies in the workbench's composer (docs/pages.md).
 *
 * "/" at the start of the box or after a space opens a list of the team's prepared answers
 * (kept in the admin), filtered by shortcut and title as the agent types on. Enter, Tab or a
 * click inserts the highlighted one in place of the "/word", its variables filled in; Up and
 * Down move the highlight; Escape closes the list and stays in the box. While the list is
 * open, Enter never sends: a mistyped shortcut must not reach the customer as "/refnd".
 *
 * The replies are fetched once (GET /api/canned-replies, at the first "/") and filtered here:
 * each keystroke answers at once, with no request per key and no answers arriving out of
 * order. A copy older than a minute is fetched again when the list next opens, so what a
 * supervisor changes in the admin shows without a reload.
 *
 * Accessibility: the textarea keeps its own role (a multi-line text box; ARIA in HTML allows
 * no combobox role on a textarea), and points at the list as the combobox pattern does:
 * aria-autocomplete="list", aria-controls and aria-activedescendant on the highlighted
 * option of a role="listbox". A polite status says how many match and which keys to use.
 */
(function () {
  "use strict";

  const { el, $, config } = Live;
  const box = $("composer-text");
  if (!box || !box.form) return;

  const URL = "/api/canned-replies"; // sse_project/urls.py, "canned-replies"
  const FRESH_MS = 60000;
  const PREVIEW_CHARS = 110;
  // {customer_name} when the bot did not name the customer: "Hi there," still reads well.
  const NO_NAME = "there";
  // A "/" at the start or after whitespace, then the shortcut typed so far, up to the caret.
  const TRIGGER = /(^|\s)\/(\S*)$/;
  const VARIABLE = /\{([a-z_]+)\}/g;

  const list = el("ul", { id: "canned-list", class: "canned-list", role: "listbox", "aria-label": "Canned replies" });
  const note = el("p", { class: "canned-note", hidden: true });
  // The keys, for sighted users (the status below tells a screen reader); "choose" and
  // "inserts" only while there is something to insert.
  const pickKeys = el("span", {},
    el("kbd", {}, "↑"), el("kbd", {}, "↓"), " choose · ", el("kbd", {}, "Enter"), " or ", el("kbd", {}, "Tab"), " inserts · ");
  const help = el("p", { class: "canned-help", "aria-hidden": "true" }, pickKeys, el("kbd", {}, "Esc"), " closes");
  const popup = el("div", { id: "canned", class: "canned", hidden: true }, list, note, help);
  const status = el("div", { class: "visually-hidden", role: "status", "aria-live": "polite" });
  box.form.append(popup, status);
  box.setAttribute("aria-autocomplete", "list");
  box.setAttribute("aria-controls", "canned-list");
  const hint = $("composer-hint");
  if (hint) hint.append(" · / inserts a canned reply");

  const cache = { replies: null, at: 0, loading: null, failed: false };
  const state = {
    open: false,
    query: "",
    matches: [],
    active: 0,
    dismissed: -1, // where the "/" was whose list Escape closed: it stays closed for that word
    inserting: false,
  };
  let statusTimer = null;

  // --- the replies -------------------------------------------------------------------

  function valid(reply) {
    return reply && typeof reply.shortcut === "string" && typeof reply.title === "string" && typeof reply.text === "string";
  }

  /** Fetch the replies unless the copy is fresh; the open list follows when they arrive. */
  function load() {
    if (cache.loading || (cache.replies && Date.now() - cache.at < FRESH_MS)) return;
    cache.loading = Live.get(URL)
      .then((answer) => {
        cache.replies = Array.isArray(answer && answer.replies) ? answer.replies.filter(valid) : [];
        cache.at = Date.now();
        cache.failed = false;
      })
      .catch((err) => {
        console.warn("canned replies could not be loaded", err);
        cache.failed = true;
      })
      .finally(() => {
        cache.loading = null;
        if (state.open) render();
      });
  }

  /** The replies whose shortcut or title contains `query`: shortcuts that start with it first,
   * then titles with a word that does, then the rest, each in shortcut order (the server's). */
  function filter(query) {
    const q = query.toLowerCase();
    const ranked = [];
    for (const reply of cache.replies || []) {
      const shortcut = reply.shortcut.toLowerCase();
      const title = reply.title.toLowerCase();
      const rank = shortcut.startsWith(q) ? 0
        : title.split(/\s+/).some((word) => word.startsWith(q)) ? 1
        : shortcut.includes(q) || title.includes(q) ? 2 : -1;
      if (rank >= 0) ranked.push({ reply, rank });
    }
    return ranked.sort((a, b) => a.rank - b.rank).map((item) => item.reply);
  }

  /** The reply's text with {customer_name}, {agent_name} and {session_name} filled in; any
   * other {word} stays as written, so a typo shows instead of vanishing. */
  function fill(text) {
    const values = {
      customer_name: (box.dataset.customerName || "").trim() || NO_NAME,
      agent_name: config.me,
      session_name: box.dataset.session || "",
    };
    return text.replace(VARIABLE, (whole, key) => (Object.hasOwn(values, key) ? values[key] : whole));
  }

  function preview(text) {
    const line = text.replace(/\s+/g, " ").trim();
    return line.length > PREVIEW_CHARS ? line.slice(0, PREVIEW_CHARS - 1).trimEnd() + "…" : line;
  }

  // --- where the caret is ----------------------------------------------------------------

  /** The "/word" being typed: {start, query}, or null when the caret is not right after one. */
  function token() {
    if (box.selectionStart !== box.selectionEnd) return null;
    const before = box.value.slice(0, box.selectionStart);
    const match = TRIGGER.exec(before);
    return match ? { start: before.length - match[2].length - 1, query: match[2] } : null;
  }

  /** After the text or the caret moved: open (only when typing), filter or close the list. */
  function update(typing) {
    if (state.inserting) return;
    const found = document.activeElement === box ? token() : null;
    if (!found || found.start === state.dismissed) {
      if (!found) state.dismissed = -1;
      close();
      return;
    }
    state.dismissed = -1;
    if (!state.open && !typing) return;
    if (!state.open || found.query !== state.query) state.active = 0;
    state.query = found.query;
    if (!state.open) {
      state.open = true;
      popup.hidden = false;
      load();
    }
    render();
  }

  // --- the list --------------------------------------------------------------------------

  function render() {
    state.matches = filter(state.query);
    if (state.active >= state.matches.length) state.active = 0;
    list.replaceChildren(...state.matches.map(option));
    list.hidden = pickKeys.hidden = state.matches.length === 0;
    note.textContent = noteText();
    note.hidden = !note.textContent;
    highlight();
    say(state.matches.length
      ? state.matches.length + (state.matches.length === 1 ? " canned reply" : " canned replies") +
        ": up and down arrows to choose, Enter to insert, Escape to close."
      : note.textContent);
  }

  function noteText() {
    if (state.matches.length) return "";
    if (!cache.replies) return cache.failed ? "Canned replies could not be loaded. Type / again to retry." : "Loading canned replies…";
    if (!cache.replies.length) return "No canned replies yet: supervisors add them in the admin.";
    return "No canned reply matches “/" + state.query + "”. To send it as written: Esc, then Enter.";
  }

  function option(reply, index) {
    return el("li", {
      id: "canned-opt-" + index, class: "canned-option", role: "option", "aria-selected": "false",
      onclick: () => insert(reply),
    },
      el("span", { class: "canned-shortcut" }, "/" + reply.shortcut),
      el("span", { class: "canned-title" }, reply.title),
      el("span", { class: "canned-preview" }, preview(fill(reply.text))));
  }

  function highlight() {
    const current = state.matches.length ? list.children[state.active] : null;
    for (const node of list.children) node.setAttribute("aria-selected", String(node === current));
    if (!current) {
      box.removeAttribute("aria-activedescendant");
      return;
    }
    box.setAttribute("aria-activedescendant", current.id);
    // Scroll the list only (scrollIntoView would also move the page on a narrow window).
    const top = current.offsetTop;
    const bottom = top + current.offsetHeight;
    if (top < list.scrollTop) list.scrollTop = top;
    else if (bottom > list.scrollTop + list.clientHeight) list.scrollTop = bottom - list.clientHeight;
  }

  function move(step) {
    const count = state.matches.length;
    state.active = (state.active + step + count) % count;
    highlight();
  }

  function close() {
    if (!state.open) return;
    state.open = false;
    state.matches = [];
    popup.hidden = true;
    list.replaceChildren();
    box.removeAttribute("aria-activedescendant");
    say("");
  }

  /** Tell a screen reader, once the typing pauses (not once per key). */
  function say(text) {
    clearTimeout(statusTimer);
    if (!text) {
      status.textContent = "";
      return;
    }
    statusTimer = setTimeout(() => { status.textContent = text; }, 350);
  }

  /** Put the reply in place of the "/word" (the rest of the word after the caret goes too). */
  function insert(reply) {
    const found = token();
    if (!found) {
      close();
      return;
    }
    let end = box.selectionStart;
    while (end < box.value.length && !/\s/.test(box.value[end])) end += 1;
    const text = fill(reply.text);
    close();
    state.inserting = true;
    try {
      box.focus();
      box.setSelectionRange(found.start, end);
      // insertText keeps the browser's undo (Ctrl+Z brings the "/word" back) and fires the
      // input event the workbench listens to (the box's height, the saved draft).
      if (!document.execCommand("insertText", false, text)) {
        box.setRangeText(text, found.start, end, "end");
        box.dispatchEvent(new Event("input", { bubbles: true }));
      }
    } finally {
      state.inserting = false;
    }
  }

  // --- events ------------------------------------------------------------------------------

  // Capture phase: this runs before the workbench's own keydown on the box (Enter sends,
  // Escape goes to the transcript), and stops the event when the list takes the key.
  box.addEventListener("keydown", (event) => {
    if (!state.open || event.isComposing) return;
    const plain = !event.shiftKey && !event.altKey && !event.ctrlKey && !event.metaKey;
    const some = state.matches.length > 0;
    let handled = true;
    if ((event.key === "ArrowDown" || event.key === "ArrowUp") && some) {
      move(event.key === "ArrowDown" ? 1 : -1);
    } else if (event.key === "Enter" && plain) {
      if (some) insert(state.matches[state.active]); // with nothing to insert, Enter does nothing
    } else if (event.key === "Tab" && plain && some) {
      insert(state.matches[state.active]);
    } else if (event.key === "Escape") {
      const found = token();
      state.dismissed = found ? found.start : -1;
      close();
    } else {
      handled = false;
    }
    if (handled) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);

  box.addEventListener("input", () => update(true));
  box.addEventListener("click", () => update(false));
  box.addEventListener("keyup", (event) => {
    if (["ArrowLeft", "ArrowRight", "Home", "End", "PageUp", "PageDown"].includes(event.key)) update(false);
  });
  box.addEventListener("blur", close);
  // A press in the list must not take the focus (and the caret) from the box.
  popup.addEventListener("mousedown", (event) => event.preventDefault());
  // Another session in the pane: its draft replaces the text, and its customer the name.
  for (const what of ["workbench:open", "workbench:close"]) {
    document.addEventListener(what, () => {
      state.dismissed = -1;
      close();
    });
  }
})();
