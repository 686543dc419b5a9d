/* Transfer a session: the dialog of templates/dashboard/_transfer.html, then
 * POST /api/sessions/{name}/transfer {"to": <agent> | null}.
 *
 * The dialog lists who is available right now (GET /api/presence `available`), those with a
 * workbench open first and marked so, leaving out the session's own agent; "Back to the queue"
 * is always there. Nothing is chosen at first: Transfer waits for a choice, so a stray Enter
 * hands no customer to anyone. Used by the workbench, the session page and the dashboard.
 */
(function () {
  "use strict";

  const { el, $, config } = Live;

  function chosen() {
    const checked = $("transfer").querySelector('input[name="transfer-to"]:checked');
    return checked ? checked.value : null; // "" is the queue
  }

  function showChoice() {
    const to = chosen();
    const ok = $("transfer-ok");
    ok.disabled = to === null;
    ok.textContent = to === null ? "Transfer" : to === "" ? "Back to the queue" : "Transfer to " + to;
  }

  function option(agent, online) {
    return el("label", { class: "transfer-option" + (online ? " is-online" : "") },
      el("input", { type: "radio", name: "transfer-to", value: agent }),
      el("span", { class: "transfer-name" }, agent === config.me ? agent + " (you)" : agent),
      el("span", { class: "transfer-meta" }, online ? "workbench open" : "no workbench open"));
  }

  /** List who may be given the session (everyone available but its agent), online first. */
  async function fillChoices(current, ask) {
    const list = $("transfer-agents");
    const note = $("transfer-note");
    try {
      const presence = await Live.get(config.urls.presence);
      if (ask !== asked) return; // the dialog was opened again meanwhile
      const online = new Set(presence.agents.map((row) => row.agent));
      const names = presence.available.filter((agent) => agent !== current)
        .sort((a, b) => Number(online.has(b)) - Number(online.has(a)) || a.localeCompare(b));
      list.replaceChildren(...names.map((agent) => option(agent, online.has(agent))));
      note.textContent = names.length ? "" : "No other agent is available right now.";
    } catch (err) {
      if (ask !== asked) return;
      note.textContent = "Could not load who is available (" + err.message + "); the queue is still there.";
    }
  }

  let asked = 0;

  /**
   * Ask where session `name` (with agent `agent`) goes, and transfer it. Resolves to the
   * command's answer, or null when cancelled or refused (a toast says why).
   */
  Live.transfer = async function ({ name, agent }) {
    const dialog = $("transfer");
    if (!dialog || dialog.open) return null;
    const ask = ++asked;
    $("transfer-title").textContent = "Transfer " + name;
    $("transfer-text").textContent = (agent ? "Now with " + (agent === config.me ? "you" : agent) + ". " : "") +
      "Give the customer to an available agent, or back to the queue in their old place.";
    $("transfer-agents").replaceChildren();
    $("transfer-queue").checked = false;
    $("transfer-note").textContent = "Loading who is available…";
    showChoice();
    dialog.returnValue = "";
    const closed = new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    });
    dialog.showModal();
    $("transfer-queue").focus();
    await fillChoices(agent, ask);
    if (!(await closed)) return null;
    const to = chosen();
    if (to === null) return null;
    try {
      const result = await Live.post(Live.sessionUrl(name, "transfer"), { to: to || null });
      Live.toast(to ? name + " was transferred to " + to : name + " is back in the queue");
      return result;
    } catch (err) {
      Live.toast("Could not transfer " + name + ": " + err.message, "error");
      return null;
    }
  };

  const dialog = $("transfer");
  if (dialog) {
    dialog.addEventListener("change", showChoice);
    // Enter on a choice transfers (a form's implicit submit would press its first button, Cancel).
    dialog.addEventListener("keydown", (event) => {
      if (event.key !== "Enter" || !(event.target instanceof HTMLInputElement) || event.target.type !== "radio") return;
      event.preventDefault();
      if (!$("transfer-ok").disabled) dialog.close("ok");
    });
  }
})();
