/* The Reports page: the period's figures as charts (uPlot, static/vendor/uplot), beside tables
 * of the same numbers that the server rendered (dashboard/reports.py).
 *
 * The days and hours of a report are those of a time zone, `tz` in the URL: the viewer's. A
 * page opened without one (the Reports link) was made in the server's zone, so it is asked for
 * again once, in the browser's zone, and the period form carries that zone from then on.
 */
/* global uPlot */
(function () {
  "use strict";

  const { $, config } = Live;
  const report = config.report;
  const HEIGHT = 240;
  // Colours of the page (static/css/app.css), each 4.5:1 or better on white; the 90th
  // percentiles are dashed, so no line is told apart by its colour alone.
  const BLUE = "#2563c9";
  const GREEN = "#1d7a46";
  const PURPLE = "#6b5aa8";
  const BROWN = "#a35a00";
  const PALE_BLUE = "#dbe7fa"; // a bar's inside: its outline is BLUE
  const AXIS = "#5d6875";
  const GRID = "#e6e9ee";

  /** The browser's time zone (an IANA name), or "" when it does not say. */
  function browserZone() {
    try {
      return Intl.DateTimeFormat().resolvedOptions().timeZone || "";
    } catch {
      return "";
    }
  }

  const zone = browserZone();
  const params = new URLSearchParams(location.search);
  if (report && zone && !params.has("tz") && zone !== report.tz) {
    params.set("tz", zone);
    location.replace(location.pathname + "?" + params.toString());
    return;
  }
  // The form asks in the browser's zone, unless the server has just refused that zone (a name
  // its time zone database lacks): then it goes without, in the server's.
  const zoneInput = $("report-tz");
  if (zoneInput && !zoneInput.value && params.get("tz") !== zone) zoneInput.value = zone;
  if (!report) return; // the page that says what was wrong with the request

  // "2026-12-04" is a day of the report's zone: shown as it is, whatever the viewer's clock says.
  const dayFormat = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", timeZone: "UTC" });
  const longDayFormat = new Intl.DateTimeFormat(undefined, {
    weekday: "short", day: "numeric", month: "short", year: "numeric", timeZone: "UTC",
  });
  const dayLabels = report.days.map((day) => dayFormat.format(new Date(day + "T00:00:00Z")));
  const longDayLabels = report.days.map((day) => longDayFormat.format(new Date(day + "T00:00:00Z")));
  const indices = report.days.map((_, i) => i);

  /** The categories' positions to label: every one, or every k-th when they would not fit. */
  function everyFew(count, width, room) {
    const step = Math.max(1, Math.ceil(count / Math.max(1, Math.floor(width / room))));
    const out = [];
    for (let i = 0; i < count; i += step) out.push(i);
    return out;
  }

  const clock = (seconds) => (seconds == null ? "–" : Live.duration(seconds));
  const count = (value) => (value == null ? "–" : String(value));

  function axes(xValues, xSplits, yValues) {
    const style = { stroke: AXIS, grid: { stroke: GRID, width: 1 }, ticks: { stroke: GRID, width: 1 } };
    return [
      { ...style, grid: { show: false }, splits: xSplits, values: xValues },
      { ...style, values: yValues, size: 56 },
    ];
  }

  /** Days on the x axis: positions 0..n-1, labelled with their dates. */
  function dayAxis(u) {
    return everyFew(report.days.length, u.bbox.width / devicePixelRatio, 64);
  }

  function line(label, stroke, value, dash) {
    return {
      label, stroke, value, width: 2, spanGaps: false,
      dash: dash ? [6, 4] : undefined,
      points: { show: true, size: 6, fill: "#fff" },
    };
  }

  const charts = [];

  function chart(id, options, data) {
    const box = $(id);
    if (!box) return;
    const plot = new uPlot({ width: Math.max(240, box.clientWidth), height: HEIGHT, ...options }, data, box);
    charts.push([plot, box]);
  }

  const xScale = (n) => ({ time: false, range: () => [-0.5, n - 0.5] });
  const fromZero = (fallback) => ({ range: (_u, _min, max) => [0, max == null || max <= 0 ? fallback : max * 1.1] });
  const dayValue = (_u, i) => (i == null ? "–" : longDayLabels[i]);

  chart("chart-counts", {
    scales: { x: xScale(report.days.length), y: fromZero(1) },
    axes: axes((_u, splits) => splits.map((i) => dayLabels[i]), dayAxis,
      (_u, splits) => splits.map((v) => (Number.isInteger(v) ? String(v) : ""))),
    // The day's escalations as bars, and what became of them as lines within them: accepted
    // and closed often coincide, so closed is dashed.
    series: [
      { label: "Day", value: dayValue },
      {
        label: "Escalated", stroke: BLUE, fill: PALE_BLUE, width: 1, value: (_u, v) => count(v),
        paths: uPlot.paths.bars({ size: [0.6, 56] }), points: { show: false },
      },
      line("Accepted", GREEN, (_u, v) => count(v)),
      line("Closed", PURPLE, (_u, v) => count(v), true),
    ],
  }, [indices, report.escalated, report.accepted, report.closed]);

  chart("chart-times", {
    scales: { x: xScale(report.days.length), y: fromZero(60) },
    axes: axes((_u, splits) => splits.map((i) => dayLabels[i]), dayAxis,
      (_u, splits) => splits.map((v) => Live.duration(v))),
    series: [
      { label: "Day", value: dayValue },
      line("Median wait", BROWN, (_u, v) => clock(v)),
      line("90th percentile wait", BROWN, (_u, v) => clock(v), true),
      line("Median first response", BLUE, (_u, v) => clock(v)),
      line("90th percentile first response", BLUE, (_u, v) => clock(v), true),
    ],
  }, [indices, report.wait_p50, report.wait_p90, report.response_p50, report.response_p90]);

  const hours = report.hours.map((_, h) => h);
  const hourLabel = (h) => String(h).padStart(2, "0") + ":00";
  chart("chart-hours", {
    scales: { x: xScale(24), y: fromZero(1) },
    axes: axes((_u, splits) => splits.map((h) => String(h).padStart(2, "0")),
      (u) => everyFew(24, u.bbox.width / devicePixelRatio, 36),
      (_u, splits) => splits.map((v) => (Number.isInteger(v) ? String(v) : ""))),
    series: [
      { label: "Hour", value: (_u, h) => (h == null ? "–" : hourLabel(h)) },
      {
        label: "Escalated", stroke: BLUE, fill: BLUE, width: 0, value: (_u, v) => count(v),
        paths: uPlot.paths.bars({ size: [0.7, 48] }), points: { show: false },
      },
    ],
  }, [hours, report.hours]);

  // The charts follow their card's width (the window, a narrow layout).
  const resized = new ResizeObserver(() => {
    for (const [plot, box] of charts) {
      const width = Math.max(240, box.clientWidth);
      if (width !== plot.width) plot.setSize({ width, height: HEIGHT });
    }
  });
  for (const [, box] of charts) resized.observe(box);
})();
