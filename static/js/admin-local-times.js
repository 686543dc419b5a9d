/* The admin in the viewer's own time zone and locale, as the pages are.
 *
 * The admin renders on the server, where every time is UTC: dashboard/admin.py writes each one as
 * <time class="local-time" datetime="...Z" data-precision="seconds|minutes">2026-12-04 11:08 UTC</time>,
 * true as it stands without script. This rewrites each in the browser's zone (Intl, the same
 * formats as Live in live.js: the `undefined` locale), keeps the UTC text as its title, and fills
 * every [data-local-zone] with the zone's name so the page says which zone it shows.
 * templates/admin/base_site.html loads it (deferred) on every admin page; no live.js there.
 */
(function () {
  "use strict";

  const FORMATS = {
    seconds: new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" }),
    minutes: new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" }),
  };
  const zone = FORMATS.seconds.resolvedOptions().timeZone;

  for (const node of document.querySelectorAll("time.local-time[datetime]")) {
    const date = new Date(node.getAttribute("datetime"));
    if (Number.isNaN(date.getTime())) continue; // left as the server wrote it (UTC, and says so)
    node.title = node.textContent;
    node.textContent = (FORMATS[node.dataset.precision] || FORMATS.minutes).format(date);
    node.dataset.localised = zone;
  }
  for (const node of document.querySelectorAll("[data-local-zone]")) node.textContent = zone;
})();
