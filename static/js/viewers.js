/* "Also viewing": who else has a session open right now, on any server process, so that two
 * people do not answer the same customer at once.
 *
 * A line asks GET /api/sessions/{name}/viewers every POLL_MS while its page shows a session
 * and the tab is visible (a hidden tab does not ask; it asks again as soon as it is shown).
 * It names the others, never the reader, and is empty (no room taken) when nobody else has the
 * session open. It is a polite live region, rewritten only when the names change, so a screen
 * reader hears an arrival or a departure once. Where the viewers come from: realtime/viewers.py.
 *
 * Used by the workbench's pane head (workbench.js: `follow` the session in the pane) and the
 * session page (session.js).
 */
(function () {
  "use strict";

  const { el, config } = Live;
  // Someone who opens or closes the session is seen within this much (plus the server's linger).
  const POLL_MS = 3000;

  class ViewersLine {
    constructor(node) {
      this.node = node;
      this.name = null; // the session followed
      this.timer = null;
      this.asked = 0; // numbers the requests: an answer for an older one is dropped
      this.text = "";
      document.addEventListener("visibilitychange", () => {
        if (!document.hidden && this.name) this.poll();
      });
    }

    /** Show the viewers of session `name` from now on (null: of none). */
    follow(name) {
      if ((name || null) === this.name) return;
      this.name = name || null;
      this.show([]);
      this.poll();
    }

    async poll() {
      clearTimeout(this.timer);
      this.timer = null;
      const name = this.name;
      if (!name || document.hidden) return;
      const ask = ++this.asked;
      let names = [];
      try {
        const answer = await Live.get(Live.sessionUrl(name, "viewers"));
        names = answer.viewers.map((viewer) => viewer.agent).filter((agent) => agent !== config.me);
      } catch {
        names = []; // not known now: say nothing rather than something stale
      }
      if (ask !== this.asked || name !== this.name) return; // followed elsewhere meanwhile
      this.show(names);
      this.timer = setTimeout(() => this.poll(), POLL_MS);
    }

    show(names) {
      const text = names.length ? "Also viewing: " + names.join(", ") : "";
      if (text === this.text) return;
      this.text = text;
      this.node.replaceChildren(...(text ? [el("span", {}, text)] : []));
    }
  }

  Live.ViewersLine = ViewersLine;
})();
