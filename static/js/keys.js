/* The keyboard on every page: one Tab stop per list with the arrow keys inside it, and "?" for
 * a dialog listing the page's shortcuts. templates/base.html loads it after the page's own
 * scripts, on every page, the sign-in page too (which has no live.js: nothing here needs Live).
 *
 * Lists: the workbench's `ul.list`, the dashboard's open sessions (#sessions) and any element
 * marked `data-keys="rows"`. Each child element is a row; the enabled links and buttons in it
 * are its controls. Only one control of a list is in the Tab order (tabindex 0, the others -1):
 * the last one used there, else the first row's first. In a list, ArrowDown and ArrowUp move to
 * the next and previous row (to the same control, or the row's last if it has fewer), Home and
 * End to the first and last row, ArrowRight and ArrowLeft between a row's controls (the name,
 * then Accept); Enter and Space press the control in focus, as always (the name opens the row).
 *
 * The lists are re-rendered often (rows arrive and leave live, My sessions is rebuilt on every
 * message), so the keys are handled by delegation on the document, and a MutationObserver puts
 * the one Tab stop back after each change: on the same row if it is still there (found by its
 * data-name), else on the row that took its place. If the control in focus was removed, the
 * focus moves to that replacement, instead of falling back to the top of the page.
 */
(function () {
  "use strict";

  const LISTS = 'ul.list, #sessions, [data-keys="rows"]';
  const CONTROLS = "a[href], button, input, select, textarea";
  const TEXT_INPUTS = /^(text|search|email|password|url|tel|number|date|datetime-local|month|time|week)$/;

  /** Per list: the control that is its Tab stop, where it was, and whether it had the focus. */
  const stops = new WeakMap(); // list -> {control, name, row, col, focused}

  const usable = (node) => !node.disabled && !node.hidden && !node.closest("[hidden]");

  function rowsOf(list) {
    return [...list.children].filter((row) => controlsOf(row).length > 0);
  }

  function controlsOf(row) {
    return [...row.querySelectorAll(CONTROLS)].filter(usable);
  }

  /** The row of `list` that holds `node`, or null. */
  function rowOf(list, node) {
    let row = node;
    while (row && row.parentElement !== list) row = row.parentElement;
    return row;
  }

  function remember(list, control, focused) {
    const row = rowOf(list, control);
    const rows = rowsOf(list);
    stops.set(list, {
      control, name: row.dataset.name || null, row: rows.indexOf(row),
      col: controlsOf(row).indexOf(control), focused,
    });
  }

  /** The control at (row, col), clamped to what the list has now. */
  function controlAt(rows, rowIndex, col) {
    const row = rows[Math.max(0, Math.min(rowIndex, rows.length - 1))];
    const controls = controlsOf(row);
    return controls[Math.max(0, Math.min(col, controls.length - 1))];
  }

  /**
   * Make exactly one control of `list` tabbable, and give back the focus a re-render took away
   * (`removed`: the nodes the re-render took out of the list, some perhaps put back since).
   */
  function settle(list, removed) {
    const rows = rowsOf(list);
    const memo = stops.get(list);
    let stop = memo && memo.control;
    const lost = memo && (!stop.isConnected || !list.contains(stop) || !usable(stop));
    if (rows.length === 0) {
      stop = null;
    } else if (!memo) {
      stop = controlAt(rows, 0, 0);
    } else if (lost) {
      const again = memo.name ? rows.find((row) => row.dataset.name === memo.name) : null;
      stop = again ? controlAt([again], 0, memo.col) : controlAt(rows, memo.row, memo.col);
    }
    for (const row of list.children) {
      for (const control of row.querySelectorAll(CONTROLS)) {
        // As an attribute, also the 0 a button has anyway: `[tabindex="0"]` finds a list's stop.
        const index = control === stop ? "0" : "-1";
        if (control.getAttribute("tabindex") !== index) control.setAttribute("tabindex", index);
      }
    }
    if (!stop) {
      if (memo) memo.focused = false;
      return;
    }
    // The focus was on a control that a re-render removed, or took out and put back: the page's
    // focus fell back to the body. Give it back.
    const taken = Boolean(memo && memo.focused && removed.some((node) => node.contains(memo.control)));
    const restore = taken && (document.activeElement === document.body || !document.activeElement);
    remember(list, stop, restore || Boolean(memo && memo.focused && stop === memo.control));
    if (restore) stop.focus();
  }

  function settleAll() {
    for (const list of document.querySelectorAll(LISTS)) settle(list, []);
  }

  const observer = new MutationObserver((records) => {
    const touched = new Map(); // list -> the nodes taken out of it
    const touch = (list) => touched.get(list) || touched.set(list, []).get(list);
    for (const record of records) {
      const target = record.target.nodeType === Node.ELEMENT_NODE ? record.target : record.target.parentElement;
      const list = target && target.closest(LISTS);
      if (list) touch(list).push(...record.removedNodes);
      // A list that arrived whole (a page that renders its lists late).
      for (const node of record.addedNodes) {
        if (node.nodeType !== Node.ELEMENT_NODE) continue;
        if (node.matches(LISTS)) touch(node);
        for (const inner of node.querySelectorAll(LISTS)) touch(inner);
      }
    }
    for (const [list, removed] of touched) if (list.isConnected) settle(list, removed);
  });
  observer.observe(document.body, {
    childList: true, subtree: true, attributes: true, attributeFilter: ["disabled", "hidden"],
  });
  settleAll();

  // A click or a script may focus any control of a list: that one becomes the list's Tab stop.
  document.addEventListener("focusin", (event) => {
    const list = event.target.closest && event.target.closest(LISTS);
    if (!list || !event.target.matches(CONTROLS) || !rowOf(list, event.target)) return;
    const memo = stops.get(list);
    if (memo && memo.control !== event.target) memo.control.setAttribute("tabindex", "-1");
    event.target.setAttribute("tabindex", "0");
    remember(list, event.target, true);
  });
  document.addEventListener("focusout", (event) => {
    const list = event.target.closest && event.target.closest(LISTS);
    const memo = list && stops.get(list);
    if (!memo || memo.control !== event.target) return;
    // Chromium also says focusout when it removes the control in focus (a re-render), before
    // the observer above sees the removal: decide once that has run. Focus on another element,
    // or on none (a click on the page's background), is the person's choice; the window losing
    // the focus keeps document.activeElement, and keeps `focused`.
    if (event.relatedTarget) memo.focused = false;
    else setTimeout(() => { if (document.activeElement !== memo.control) memo.focused = false; }, 0);
  });

  function moveInList(event, list) {
    const row = rowOf(list, event.target);
    if (!row || !event.target.matches(CONTROLS)) return false;
    const rows = rowsOf(list);
    const controls = controlsOf(row);
    const r = rows.indexOf(row);
    const c = Math.max(0, controls.indexOf(event.target));
    let next = null;
    switch (event.key) {
      case "ArrowDown": next = r < rows.length - 1 ? controlAt(rows, r + 1, c) : null; break;
      case "ArrowUp": next = r > 0 ? controlAt(rows, r - 1, c) : null; break;
      case "Home": next = controlAt(rows, 0, 0); break;
      case "End": next = controlAt(rows, rows.length - 1, 0); break;
      case "ArrowRight": next = controls[c + 1] || null; break;
      case "ArrowLeft": next = c > 0 ? controls[c - 1] : null; break;
      default: return false;
    }
    event.preventDefault(); // also at either end: the keys move the focus here, never the page
    if (next) {
      next.focus();
      next.scrollIntoView({ block: "nearest" });
    }
    return true;
  }

  // --- "?": the page's shortcuts ----------------------------------------------------------

  /** What the dialog lists: [title, shown when, [[keys, what they do], ...]]. */
  const GROUPS = [
    ["Anywhere", () => true, [
      [["?"], "Show this list (outside a text box)"],
      [["Tab", "Shift+Tab"], "Next and previous control"],
      [["Escape"], "Close this list, or a question the page asks"],
    ]],
    ["In a list", () => document.querySelector(LISTS), [
      [["Tab"], "Past the list: a list is one stop, on the row last used"],
      [["↓", "↑"], "Next and previous row"],
      [["Home", "End"], "First and last row"],
      [["→", "←"], "The row's other buttons (Accept in the queue) and back to its name"],
      [["Enter"], "Open the row, or press the button in focus"],
    ]],
    ["Narrow window", () => document.getElementById("view-tabs") && window.matchMedia("(max-width: 700px)").matches, [
      [["→", "←"], "On the Queue / Mine / Chat bar: show the next or previous view"],
    ]],
    ["The session pane", () => document.getElementById("composer-text"), [
      [["Enter"], "Send the reply"],
      [["Shift+Enter"], "A new line in the reply"],
      [["Escape"], "In the reply box: go to the transcript (the draft stays)"],
      [["Escape"], "Elsewhere: close the session pane"],
    ]],
    ["Canned replies", () => document.getElementById("canned"), [
      [["/"], "At the start of the reply or after a space: the team's prepared answers"],
      [["↓", "↑"], "Choose one"],
      [["Enter", "Tab"], "Insert it"],
      [["Escape"], "Close the list, staying in the reply box"],
    ]],
  ];

  /** Shortcuts other scripts declare on their controls, with aria-keyshortcuts. */
  function declared() {
    return [...document.querySelectorAll("[aria-keyshortcuts]")].filter(usable).map((node) => [
      node.getAttribute("aria-keyshortcuts").split(" "),
      node.dataset.shortcutLabel || node.getAttribute("aria-label") || node.title || node.textContent.trim(),
    ]);
  }

  function make(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
    node.append(...children);
    return node;
  }

  function keysCell(keys) {
    const cell = make("dt", {});
    keys.forEach((key, i) => {
      if (i) cell.append(" ");
      cell.append(make("kbd", {}, key));
    });
    return cell;
  }

  const dialog = make("dialog", { class: "confirm shortcuts", id: "shortcuts", "aria-labelledby": "shortcuts-title" });
  document.body.append(dialog);
  let opener = null;

  function openHelp() {
    const groups = GROUPS.filter(([, when]) => when()).map(([title, , keys]) => [title, keys]);
    const own = declared();
    if (own.length) groups.push(["On this page", own]);
    const close = make("button", { class: "btn btn-primary", type: "submit", value: "close" }, "Close");
    dialog.replaceChildren(
      make("h2", { id: "shortcuts-title" }, "Keyboard shortcuts"),
      ...groups.map(([title, keys]) => make("section", {},
        make("h3", {}, title),
        make("dl", { class: "keys" }, ...keys.flatMap(([combo, what]) => [keysCell(combo), make("dd", {}, what)])))),
      make("form", { method: "dialog", class: "confirm-actions" }, close));
    opener = document.activeElement;
    dialog.showModal();
    close.focus();
  }

  // Only where the focus was lost (on the body, or still in the closed dialog): the browser
  // may have put it back already, and the "close" event is a task of its own, which runs after
  // keys pressed meanwhile (input goes first on a busy page); moving it then undid them.
  dialog.addEventListener("close", () => {
    const active = document.activeElement;
    const lost = !active || active === document.body || dialog.contains(active);
    if (lost && opener && opener.isConnected && opener !== document.body) opener.focus();
    opener = null;
  });

  // A dialog's Escape is its own (it closes the dialog): the page behind must not act on it too
  // (the workbench closes its session pane on Escape).
  for (const node of document.querySelectorAll("dialog")) {
    node.addEventListener("keydown", (event) => {
      if (event.key === "Escape") event.stopPropagation();
    });
  }

  function typing(node) {
    if (!node || !node.closest) return false;
    if (node.isContentEditable || node.closest("textarea, select")) return true;
    return node.tagName === "INPUT" && TEXT_INPUTS.test(node.type || "text");
  }

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey || event.isComposing) return;
    const list = event.target.closest && event.target.closest(LISTS);
    if (list && moveInList(event, list)) return;
    if (event.key === "?" && !typing(event.target) && !document.querySelector("dialog[open]")) {
      event.preventDefault();
      openHelp();
    }
  });
})();
