/* Alerts while the workbench is in a background tab: a short chime and a desktop notification
 * when a customer joins the queue or writes in one of my sessions (workbench.js announces both).
 *
 * Each agent's choice is kept in this browser's localStorage under "alerts:<me>". Browsers let
 * a page make sound, and ask for notifications, only on a click: the AudioContext is made and
 * the permission asked on the click that turns them on, never on load.
 */
(function () {
  "use strict";

  const { $, config } = Live;
  const STORE_KEY = "alerts:" + config.me;
  // A burst of events (several escalations at once) chimes once.
  const CHIME_GAP_MS = 2000;
  // A notification shows the start of a message; the workbench shows the rest.
  const TEXT_MAX = 120;
  // Enough to recognise any message replayed after an outage; the oldest are forgotten first.
  const SEEN_MAX = 2000;

  // Notifications need a secure context (https, or this machine); elsewhere the box stays off.
  const canNotify = "Notification" in window && window.isSecureContext;
  const AudioCtor = window.AudioContext || window.webkitAudioContext;

  const prefs = loadPrefs();
  let audio = null; // made on a click, so the browser lets it play
  let lastChime = 0;
  const seen = new Set(); // keys of customer messages already handled
  const shown = new Map(); // tag -> a notification still on screen

  // --- the choice -----------------------------------------------------------------------

  function loadPrefs() {
    try {
      const stored = JSON.parse(localStorage.getItem(STORE_KEY) || "{}");
      return { sound: stored.sound === true, desktop: stored.desktop === true };
    } catch {
      return { sound: false, desktop: false };
    }
  }

  function savePrefs() {
    try {
      localStorage.setItem(STORE_KEY, JSON.stringify(prefs));
    } catch {
      /* storage is off: the choice lasts until the page is closed */
    }
  }

  /** Desktop notifications are on when the agent wants them and the browser allows them. */
  function desktopOn() {
    return prefs.desktop && canNotify && Notification.permission === "granted";
  }

  function explain() {
    if (!canNotify) return "This browser cannot show notifications for this page.";
    if (Notification.permission === "denied") {
      return "Notifications are blocked for this site. Allow them in the browser's site settings, then turn them on here.";
    }
    // Wanted, but the browser has forgotten the permission: it is asked again only on a click.
    if (prefs.desktop && Notification.permission === "default") return "Turn desktop notifications on again to allow them.";
    return "";
  }

  function render(note) {
    const desktop = desktopOn();
    $("alerts-sound").checked = prefs.sound;
    $("alerts-desktop").checked = desktop;
    $("alerts-desktop").disabled = !canNotify;
    const on = [prefs.sound && "sound", desktop && "desktop notifications"].filter(Boolean);
    $("alerts-state").textContent = "Alerts: " + (on.length ? on.join(" and ") + " on" : "off");
    $("alerts-button").classList.toggle("is-on", on.length > 0);
    $("alerts-note").textContent = note ?? explain();
  }

  $("alerts-sound").addEventListener("change", (event) => {
    prefs.sound = event.currentTarget.checked;
    savePrefs();
    if (prefs.sound) {
      wakeAudio();
      chime(true); // what it will sound like
    }
    render();
  });

  $("alerts-desktop").addEventListener("change", async (event) => {
    prefs.desktop = event.currentTarget.checked;
    savePrefs();
    if (!prefs.desktop || !canNotify) {
      render();
      return;
    }
    let permission = Notification.permission;
    if (permission === "default") {
      render("Your browser asks whether to allow notifications…");
      try {
        permission = await Notification.requestPermission();
      } catch {
        permission = Notification.permission;
      }
    }
    if (permission !== "granted") {
      prefs.desktop = false;
      savePrefs();
      render(permission === "denied" ? explain() : "Notifications were not allowed; they stay off.");
      return;
    }
    render();
  });

  // Escape closes the panel (the browser does that), not also the open session.
  $("alerts-panel").addEventListener("keydown", (event) => {
    if (event.key === "Escape") event.stopPropagation();
  });

  // --- sound --------------------------------------------------------------------------------

  /** Make (or resume) the AudioContext; called on a click or key, when the browser allows it. */
  function wakeAudio() {
    if (!AudioCtor) return;
    try {
      audio = audio || new AudioCtor();
      if (audio.state === "suspended") audio.resume().catch(() => {});
    } catch (err) {
      audio = null;
      console.warn("no sound for alerts", err);
    }
  }

  // A sound kept on from an earlier visit wakes on the first click or key on this page.
  function wakeOnGesture() {
    if (!prefs.sound) return;
    wakeAudio();
    if (audio) {
      document.removeEventListener("pointerdown", wakeOnGesture, true);
      document.removeEventListener("keydown", wakeOnGesture, true);
    }
  }
  document.addEventListener("pointerdown", wakeOnGesture, true);
  document.addEventListener("keydown", wakeOnGesture, true);

  /** Two soft rising notes (A5, E6) from one oscillator, under a second long. */
  function chime(preview) {
    if (!prefs.sound || !audio) return; // no click on this page yet: the browser would refuse
    if (!preview) {
      const now = Date.now();
      if (now - lastChime < CHIME_GAP_MS) return;
      lastChime = now;
    }
    try {
      if (audio.state === "suspended") audio.resume().catch(() => {});
      const t = audio.currentTime + 0.02;
      const tone = audio.createOscillator();
      const gain = audio.createGain();
      tone.type = "sine";
      tone.frequency.setValueAtTime(880, t);
      tone.frequency.setValueAtTime(1318.5, t + 0.16);
      // Quiet between the notes, so the change of pitch does not click.
      gain.gain.setValueAtTime(0.0001, t);
      gain.gain.exponentialRampToValueAtTime(0.16, t + 0.015);
      gain.gain.exponentialRampToValueAtTime(0.004, t + 0.155);
      gain.gain.exponentialRampToValueAtTime(0.14, t + 0.175);
      gain.gain.exponentialRampToValueAtTime(0.0001, t + 0.9);
      tone.connect(gain).connect(audio.destination);
      tone.start(t);
      tone.stop(t + 0.95);
    } catch (err) {
      console.warn("could not play the alert sound", err);
    }
  }

  // --- notifications ------------------------------------------------------------------------

  /** Alert from this tab? Only while it is hidden, and of the person's tabs sharing one stream
   * only the one holding it (live.js): eight hidden tabs make one chime, not eight. */
  function mayAlert() {
    return document.hidden && document.documentElement.dataset.stream !== "follower";
  }

  function clip(text) {
    const flat = String(text ?? "").replace(/\s+/g, " ").trim();
    return flat.length > TEXT_MAX ? flat.slice(0, TEXT_MAX - 1) + "…" : flat;
  }

  /** One notification per session (its tag): a newer one replaces it instead of piling up. */
  function notify(name, title, body) {
    if (!desktopOn() || !mayAlert()) return;
    const tag = "helpdesk:" + name;
    try {
      const note = new Notification(title, { body, tag, lang: "en" });
      shown.set(tag, note);
      note.addEventListener("click", () => {
        window.focus();
        note.close();
        document.dispatchEvent(new CustomEvent("workbench:request-open", { detail: { name } }));
      });
      note.addEventListener("close", () => {
        if (shown.get(tag) === note) shown.delete(tag);
      });
    } catch (err) {
      // Some browsers (Chrome on Android) show notifications only from a service worker.
      console.warn("could not show a notification", err);
    }
  }

  // Back in the tab: the page itself now shows what the notifications said.
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) return;
    for (const note of shown.values()) note.close();
    shown.clear();
  });

  // --- what the workbench announces -----------------------------------------------------------

  document.addEventListener("workbench:queued", (event) => {
    const { name, reason, customer } = event.detail || {};
    if (typeof name !== "string" || !mayAlert()) return;
    chime(false);
    const who = typeof customer === "string" ? customer : "";
    notify(name, "Waiting: " + clip(reason || "asked for an agent"), (who ? who + " (" + name + ")" : name) + " is in the queue");
  });

  document.addEventListener("workbench:customer-message", (event) => {
    const { name, text, key, customer } = event.detail || {};
    if (typeof name !== "string") return;
    // Remembered also while the tab is visible: a message replayed later is not news.
    if (key) {
      if (seen.has(key)) return;
      seen.add(key);
      if (seen.size > SEEN_MAX) seen.delete(seen.values().next().value);
    }
    if (!mayAlert()) return;
    chime(false);
    notify(name, (typeof customer === "string" && customer) || name, clip(text) || "New message");
  });

  render();
})();
