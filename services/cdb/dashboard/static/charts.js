// Chart options of the overview page, apart from the page so they can be checked alone:
// times in UTC and 24-hour, as the tables show them (uPlot's default is the browser's
// local time, 12-hour in some locales), and the daily P&L as two bar series by sign, a
// gain green and a loss red (one series has one colour).
"use strict";
(function (root) {
  const DAY = 86400;
  function iso(ts) { return new Date(ts * 1000).toISOString(); }
  // axis labels for the ticks uPlot chose: dates (MM-DD) over two days or more, else HH:MM
  function timeLabels(splits) {
    const ok = splits.filter(t => t !== null && t !== undefined);
    const span = ok.length > 1 ? ok[ok.length - 1] - ok[0] : 0;
    return splits.map(t => (t === null || t === undefined) ? "" :
      span >= 2 * DAY ? iso(t).slice(5, 10) : iso(t).slice(11, 16));
  }
  // the legend's time: "YYYY-MM-DD HH:MM:SS UTC"
  function timeValue(ts) { return ts === null || ts === undefined ? "–" : iso(ts).replace("T", " ").slice(0, 19) + " UTC"; }
  // [gains, losses]: each day's value in the series of its sign, null in the other
  function splitBySign(values) {
    return [values.map(v => v >= 0 ? v : null), values.map(v => v < 0 ? v : null)];
  }
  const GAIN = "#137333", LOSS = "#c5221f";
  root.cdbCharts = {
    timeLabels: timeLabels,
    timeValue: timeValue,
    splitBySign: splitBySign,
    GAIN: GAIN,
    LOSS: LOSS,
    // uPlot options shared by both charts: UTC ticks, 24-hour labels and legend
    timeOptions: function () {
      return {
        tzDate: ts => root.uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
        axes: [{ values: (u, splits) => timeLabels(splits) }, { size: 70 }],
      };
    },
  };
})(typeof window !== "undefined" ? window : globalThis);
