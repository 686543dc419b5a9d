/* The workbench's Available / Away switch (#availability): whether the signed-in person may be
 * given sessions (a transfer, round-robin assignment). The server remembers it
 * (POST /api/agents/{me}/availability); the page starts from the state in its config.
 *
 * Another tab, or a supervisor, may change it meanwhile: it is read again from
 * GET /api/presence (`available`) when the tab comes back into view and every REFRESH_MS.
 */
(function () {
  "use strict";

  const { $, config } = Live;
  const group = $("availability");
  if (!group || !config.availability) return;
  const REFRESH_MS = 30000;
  const LABEL = { available: "Available", away: "Away" };
  let current = config.availability.state;
  let saving = false;

  function show(state) {
    current = state;
    for (const input of group.querySelectorAll('input[name="availability"]')) input.checked = input.value === state;
    group.dataset.state = state;
  }

  group.addEventListener("change", async (event) => {
    const wanted = event.target.value;
    if (!LABEL[wanted] || wanted === current) return;
    const before = current;
    show(wanted); // at once; put back if the server refuses
    saving = true;
    try {
      const answer = await Live.post(config.availability.url, { state: wanted });
      show(answer.state);
      Live.toast(answer.state === "available" ? "You are available: you can be given sessions"
        : "You are away: nobody can give you sessions");
    } catch (err) {
      show(before);
      Live.toast("Could not change your availability: " + err.message, "error");
    } finally {
      saving = false;
    }
  });

  async function refresh() {
    if (saving || document.hidden) return;
    try {
      const presence = await Live.get(config.urls.presence);
      if (saving) return; // a change of the person's own since the question: theirs wins
      show(presence.available.includes(config.me) ? "available" : "away");
    } catch {
      /* the next round tries again; the switch keeps what it shows */
    }
  }

  show(current);
  document.addEventListener("visibilitychange", refresh);
  setInterval(refresh, REFRESH_MS);
})();
