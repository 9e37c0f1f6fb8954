// The overview page: polls /api/overview every 2 s and redraws; no data is put into the
// page as HTML (textContent only), so a hostile reason or message cannot inject markup.
"use strict";
(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  let equityPlot = null, pnlPlot = null, quote = "USDT";

  function fmt(v, digits) {
    if (v === null || v === undefined) return "–";
    if (typeof v !== "number") return String(v);
    return v.toLocaleString("en-US", { maximumFractionDigits: digits === undefined ? 2 : digits });
  }
  function time(ts) { return ts ? new Date(ts * 1000).toISOString().slice(11, 19) : "–"; }
  function age(s) { return s < 120 ? s + " s" : Math.round(s / 60) + " min"; }

  function table(id, headers, rows) {
    const t = document.getElementById(id);
    if (!t) return;
    t.replaceChildren();
    if (headers) {
      const tr = t.insertRow();
      headers.forEach(h => { const th = document.createElement("th"); th.textContent = h; tr.appendChild(th); });
    }
    rows.forEach(cells => {
      const tr = t.insertRow();
      cells.forEach(c => {
        const td = tr.insertCell();
        if (c && typeof c === "object" && !(c instanceof Node)) {
          if (c.href) { const a = document.createElement("a"); a.href = c.href; a.textContent = c.text; td.appendChild(a); }
          else td.textContent = c.text;
          if (c.cls) td.className = c.cls;
        } else { td.textContent = c === null || c === undefined ? "–" : c; }
      });
    });
    if (!rows.length) { const td = t.insertRow().insertCell(); td.colSpan = (headers || [1]).length; td.className = "muted"; td.textContent = "none yet"; }
  }

  function renderBreaker(b) {
    const el = document.getElementById("breaker-state");
    const detail = document.getElementById("breaker-detail");
    if (!b) { el.textContent = "not reported by the risk manager yet"; el.className = "state"; detail.textContent = ""; return; }
    const by = [b.manual && "manual", b.kill_switch && "kill switch", b.drawdown && "daily loss limit"].filter(Boolean);
    el.textContent = b.engaged ? "ENGAGED (" + by.join(", ") + ")" : "released – trading allowed";
    el.className = "state " + (b.engaged ? "engaged" : "released");
    detail.textContent = b.updated_at
      ? "reason: " + (b.reason || "–") + " · confirmed by the risk manager at " +
        new Date(b.updated_at * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC" +
        (b.control_id ? " · control " + b.control_id : "")
      : "never engaged (as reported by the risk manager)";
  }

  function chart(id, opts, data, existing) {
    const el = document.getElementById(id);
    const width = Math.max(300, el.clientWidth - 10);
    if (existing) { existing.setData(data); existing.setSize({ width: width, height: 240 }); return existing; }
    return new uPlot(Object.assign({ width: width, height: 240 }, opts), data, el);
  }

  function render(d) {
    quote = d.quote;
    renderBreaker(d.breaker);
    const a = d.account;
    table("account", null, [
      ["equity", { text: fmt(a.equity), cls: "num" }],
      ["cash", { text: fmt(a.cash), cls: "num" }],
      ["positions", { text: fmt(a.positions_value), cls: "num" }],
      ["unrealized P&L", { text: fmt(a.unrealized_pnl), cls: "num" }],
      ["exposure", { text: fmt(a.exposure_pct, 2) + " %", cls: "num" }],
      ["day's drawdown", { text: fmt(a.drawdown_pct, 3) + " % of limit " + fmt(a.drawdown_limit_pct) + " %", cls: "num " + (a.drawdown_pct >= a.drawdown_limit_pct ? "bad" : a.drawdown_pct > a.drawdown_limit_pct / 2 ? "warn" : "ok") }],
      ["day start equity", { text: fmt(a.day_start_equity), cls: "num" }],
    ]);
    table("services", ["service", "status", "last heartbeat"], d.services.map(s =>
      [s.service, { text: s.status + (s.details && s.details.problems ? ": " + s.details.problems : ""), cls: s.status === "ok" ? "ok" : "bad" },
       age(s.age_s) + " ago"]));
    table("markets", ["symbol", "price", "age"], d.markets.map(m =>
      [m.symbol, { text: fmt(m.price, 6), cls: "num" }, { text: age(m.age_s), cls: m.age_s > 120 ? "bad" : "" }]));
    table("positions", ["symbol", "quantity", "entry", "stop", "price", "value", "unrealized P&L"], d.positions.map(p =>
      [p.symbol, { text: fmt(p.quantity, 8), cls: "num" }, { text: fmt(p.avg_price, 6), cls: "num" },
       { text: fmt(p.stop_loss, 6), cls: "num" }, { text: p.priced ? fmt(p.price, 6) : "unknown", cls: "num" },
       { text: fmt(p.value), cls: "num" }, { text: fmt(p.unrealized_pnl), cls: "num " + (p.unrealized_pnl < 0 ? "bad" : "ok") }]));
    const L = d.latest;
    const why = cid => cid ? { text: cid, href: "/explain/" + encodeURIComponent(cid) } : "–";
    table("orders", ["time", "order (why?)", "symbol", "side", "quantity", "status", "avg price", "fee", "reason"], L.orders.map(o =>
      [time(o.ts), why(o.client_id), o.symbol, o.side, { text: fmt(o.quantity, 8), cls: "num" }, o.status,
       { text: fmt(o.avg_price, 6), cls: "num" }, { text: fmt(o.fee, 6), cls: "num" }, o.reason]));
    table("fills", ["time", "order", "symbol", "side", "quantity", "price", "fee", "P&L"], L.fills.map(f =>
      [time(f.ts), why(f.client_id), f.symbol, f.side, { text: fmt(f.quantity, 8), cls: "num" }, { text: fmt(f.price, 6), cls: "num" },
       { text: fmt(f.fee, 6), cls: "num" }, { text: fmt(f.realized_pnl), cls: "num" }]));
    table("signals", ["time", "symbol", "side", "conf", "reason"], L.signals.map(s =>
      [{ text: time(s.ts), href: "/explain/signal/" + encodeURIComponent(s.signal_id) }, s.symbol, s.side, fmt(s.confidence), s.reason]));
    table("risk_events", ["time", "decision", "rule", "description"], L.risk_events.map(r =>
      [time(r.ts), r.client_id ? { text: r.decision, href: "/explain/" + encodeURIComponent(r.client_id) }
        : r.signal_id ? { text: r.decision, href: "/explain/signal/" + encodeURIComponent(r.signal_id) } : r.decision,
       r.rule, { text: r.description, cls: r.severity === "INFO" ? "" : "bad" }]));
    table("alerts", ["time", "level", "code", "message"], L.alerts.map(x =>
      [time(x.ts), { text: x.level, cls: x.level === "INFO" ? "" : "bad" }, x.code, x.message]));

    const eq = d.equity_curve;
    const C = window.cdbCharts;
    equityPlot = chart("equity-chart", Object.assign(C.timeOptions(), {
      series: [{ value: (u, v) => C.timeValue(v) },
        { label: "equity " + quote, stroke: "#1a73e8", width: 2, value: (u, v) => fmt(v) }],
    }), [eq.map(p => p[0]), eq.map(p => p[1])], equityPlot);
    // the last 14 UTC days, days without fills at 0, so one day still draws as one bar
    const byDay = new Map(d.daily_pnl.map(x => [x.day, x.realized_pnl]));
    const today = Math.floor(d.now / 86400) * 86400;
    const days = [];
    for (let t = today - 13 * 86400; t <= today; t += 86400) days.push({ day: t, realized_pnl: byDay.get(t) || 0 });
    const bars = (label, color, fill) => ({ label: label, stroke: color, fill: fill,
      paths: uPlot.paths.bars({ size: [0.6, 60] }), points: { show: false }, value: (u, v) => fmt(v) });
    pnlPlot = chart("pnl-chart", Object.assign(C.timeOptions(), {
      scales: { x: { time: true, range: (u, min, max) => [min - 43200, max + 43200] } },
      series: [{ value: (u, v) => C.timeValue(v).slice(0, 10) },
        bars("realized gain " + quote, C.GAIN, "rgba(19,115,51,.3)"),
        bars("realized loss " + quote, C.LOSS, "rgba(197,34,31,.3)")],
    }), [days.map(x => x.day), ...C.splitBySign(days.map(x => x.realized_pnl))], pnlPlot);
    document.getElementById("updated").textContent = "updated " + new Date(d.now * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC (every 2 s)";
  }

  async function refresh() {
    try {
      const resp = await fetch("/api/overview", { cache: "no-store" });
      const body = await resp.json();
      if (!resp.ok) throw new Error(body.error || resp.status);
      render(body);
    } catch (e) {
      document.getElementById("updated").textContent = "cannot load: " + e.message + " (retrying)";
    }
  }

  async function post(url, body) {
    const resp = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf }, body: JSON.stringify(body) });
    const out = await resp.json();
    if (!resp.ok) throw new Error(out.error || resp.status);
    return out;
  }

  let pending = null;
  function setStatus(text) { document.getElementById("control-status").textContent = text; }

  async function ask(ev) {
    const btn = ev.currentTarget;
    const reason = document.getElementById("control-reason").value.trim();
    if (!reason) { setStatus("type a reason first"); return; }
    try {
      pending = await post("/api/control", { verb: btn.dataset.verb, kill_switch: btn.dataset.kill === "1", reason: reason });
      document.getElementById("confirm-text").textContent = "Really " + pending.summary + "?";
      document.getElementById("confirm").hidden = false;
    } catch (e) { setStatus("refused: " + e.message); }
  }

  async function confirmControl() {
    document.getElementById("confirm").hidden = true;
    if (!pending) return;
    try {
      const sent = await post("/api/control/confirm", { confirm_id: pending.confirm_id });
      pending = null;
      setStatus("sent " + sent.action + " (control " + sent.control_id + "), waiting for the risk manager…");
      const started = Date.now();
      const poll = async () => {
        const r = await (await fetch("/api/control/" + encodeURIComponent(sent.control_id))).json();
        if (r.confirmed) {
          setStatus("confirmed by the risk manager at " + new Date(r.breaker.updated_at * 1000).toISOString().slice(11, 19) + " UTC: " + sent.action + " (control " + sent.control_id + ")");
          renderBreaker(r.breaker);
        } else if (Date.now() - started < 60000) { setTimeout(poll, 500); }
        else { setStatus("not confirmed within 60 s: is the risk manager running? The control waits in the stream."); }
      };
      poll();
    } catch (e) { setStatus("refused: " + e.message); }
  }

  document.querySelectorAll("#controls button").forEach(b => b.addEventListener("click", ask));
  const yes = document.getElementById("confirm-yes");
  if (yes) {
    yes.addEventListener("click", confirmControl);
    document.getElementById("confirm-no").addEventListener("click", () => { pending = null; document.getElementById("confirm").hidden = true; setStatus("cancelled"); });
  }
  refresh();
  setInterval(refresh, 2000);
})();
