/* The workbench on a narrow window (700 px or less, the breakpoint in static/css/app.css): one
 * view at a time, the queue, my sessions or the chat, each filling the window, switched by the
 * tab bar above them (#view-tabs). The CSS shows the view named by `data-view` on .workbench;
 * this script keeps that attribute, the tabs and their counts in step.
 *
 * Opening a session shows the chat ("workbench:open" from static/js/workbench.js); closing it
 * goes back to the list it was opened from ("workbench:close"). When the focus was in what
 * just went out of sight, it follows: to the reply box or the transcript, or back to the
 * session's row (on a wide window too, where closing the pane hides what had the focus).
 * The tab bar is one Tab stop: ArrowLeft/ArrowRight (Home/End) move between the tabs and show
 * their view, as tabs do. On a wide window the attribute still follows along but hides nothing.
 */
(function () {
  "use strict";

  const { $ } = Live;
  const NARROW = window.matchMedia("(max-width: 700px)");
  const root = document.querySelector(".workbench");
  const bar = $("view-tabs");
  if (!root || !bar) return;
  const tabs = [...bar.querySelectorAll('[role="tab"]')];
  let lastList = "queue"; // where "close" goes back to
  let lastOpen = null; // the session in the pane, or the one last there

  function show(view) {
    root.dataset.view = view;
    if (view !== "chat") lastList = view;
    for (const tab of tabs) {
      const selected = tab.dataset.view === view;
      tab.setAttribute("aria-selected", String(selected));
      tab.tabIndex = selected ? 0 : -1;
    }
  }

  const shown = (node) => Boolean(node) && node.getClientRects().length > 0;

  /** Where the focus goes when what held it has just been hidden (the view, or the closed pane). */
  function refocus(view) {
    const active = document.activeElement;
    if (active && active !== document.body && shown(active)) return;
    const candidates = view === "chat"
      ? [$("composer-text"), $("transcript")]
      // Back from a session: its row if it is still listed, else the list's one Tab stop (keys.js).
      : [...document.querySelectorAll(".list li")].filter((row) => row.dataset.name === lastOpen)
        .map((row) => row.querySelector("button"))
        .concat([$(view).querySelector('[tabindex="0"]'), $("queue").querySelector('[tabindex="0"]')]);
    const target = candidates.find(shown) || (NARROW.matches ? bar.querySelector('[aria-selected="true"]') : null);
    if (target) target.focus();
  }

  for (const tab of tabs) tab.addEventListener("click", () => show(tab.dataset.view));

  bar.addEventListener("keydown", (event) => {
    const at = tabs.indexOf(document.activeElement);
    if (at < 0 || event.altKey || event.ctrlKey || event.metaKey) return;
    const to = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: tabs.length - 1 }[event.key];
    if (to === undefined) return;
    event.preventDefault();
    const tab = tabs[(to + tabs.length) % tabs.length];
    show(tab.dataset.view);
    tab.focus();
  });

  // The counts beside Queue and Mine are the sections' own, copied as they change.
  for (const [from, to] of [["queue-count", "view-count-queue"], ["mine-count", "view-count-mine"]]) {
    const copy = () => { $(to).textContent = $(from).textContent; };
    new MutationObserver(copy).observe($(from), { childList: true, characterData: true, subtree: true });
    copy();
  }

  document.addEventListener("workbench:open", (event) => {
    lastOpen = event.detail.name;
    show("chat");
    // After workbench.js has shown the pane (it does so right after announcing the open).
    setTimeout(() => refocus("chat"), 0);
  });
  document.addEventListener("workbench:close", () => {
    show(lastList);
    setTimeout(() => refocus(lastList), 0);
  });

  // A session from the address (#name) is open from the start: workbench.js ran before this.
  if ($("pane-empty").hidden) lastOpen = decodeURIComponent(location.hash.slice(1));
  show($("pane-empty").hidden ? "chat" : "queue");
})();
