// The frictionwatch operator console: one EventSource, hand-drawn SVG, no dependencies.
// Everything from the server is set as text (textContent), never parsed as HTML.
(() => {
  "use strict";
  const WINDOW = 300;          // seconds of per-second points kept (the server's window)
  const MAX_LIST = 50;         // interventions shown
  const BARS = 30;             // bars of a detector's chart
  const MIN_SPAN = 120;        // a chart spans at least 2 minutes, up to the whole window
  const SVG = "http://www.w3.org/2000/svg";

  const token = new URLSearchParams(location.search).get("token");
  const query = token ? "?token=" + encodeURIComponent(token) : "";
  const auth = token ? {Authorization: "Bearer " + token} : {};

  const state = {
    t: [], events: [], nudges: [], handoffs: [], signals: {},
    totals: {events: 0, signals: 0, nudges: 0, handoffs: 0},
    interventions: [], incidents: new Map(), closed: [], streams: 0,
    snapshots: 0, ticks: 0, connected: false,
  };
  window.fwConsole = state;  // for tests and curious operators

  const $ = (id) => document.getElementById(id);
  const el = (tag, props, ...children) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === "class") node.className = v;
      else if (k.startsWith("data-")) node.setAttribute(k, v);
      else node[k] = v;
    }
    for (const c of children) node.append(c instanceof Node ? c : String(c ?? ""));
    return node;
  };
  const fmt = new Intl.NumberFormat();
  const clock = (ms) => ms ? new Date(ms).toLocaleTimeString([], {hour12: false}) : "–";
  const sum = (xs) => xs.reduce((a, b) => a + b, 0);
  const last = (xs, n) => xs.slice(Math.max(0, xs.length - n));

  // -- charts --------------------------------------------------------------------------
  function spark(svg, values) {
    svg.replaceChildren();
    if (values.length < 2) return;
    const span = Math.max(values.length, MIN_SPAN);
    const max = Math.max(1, ...values), w = 300, h = 48, step = w / (span - 1);
    const x0 = w - (values.length - 1) * step;
    const pts = values.map((v, i) => [x0 + i * step, h - 2 - (v / max) * (h - 6)]);
    const line = "M" + pts.map(([x, y]) => x.toFixed(1) + "," + y.toFixed(1)).join("L");
    const area = line + "L" + w + "," + h + "L" + x0.toFixed(1) + "," + h + "Z";
    for (const [cls, d] of [["area", area], ["line", line]]) {
      const p = document.createElementNS(SVG, "path");
      p.setAttribute("class", cls);
      p.setAttribute("d", d);
      svg.append(p);
    }
  }

  function bars(values) {
    const span = Math.max(values.length, MIN_SPAN), per = span / BARS;
    const buckets = new Array(BARS).fill(0), offset = span - values.length;
    values.forEach((v, i) => { buckets[Math.min(BARS - 1, Math.floor((offset + i) / per))] += v; });
    const max = Math.max(1, ...buckets);
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 " + BARS * 4 + " 18");
    svg.setAttribute("preserveAspectRatio", "none");
    buckets.forEach((v, i) => {
      if (!v) return;
      const r = document.createElementNS(SVG, "rect"), hgt = Math.max(1.5, (v / max) * 18);
      r.setAttribute("x", i * 4 + 0.5);
      r.setAttribute("width", 3);
      r.setAttribute("y", 18 - hgt);
      r.setAttribute("height", hgt);
      svg.append(r);
    });
    return svg;
  }

  // -- rendering ----------------------------------------------------------------------
  function kpi(id, value, total, series) {
    const card = $(id);
    card.querySelector("[data-value]").textContent = value;
    card.querySelector("[data-total]").textContent = fmt.format(total);
    spark(card.querySelector("svg"), series);
  }

  function perSecond(values, n) {
    const xs = last(values, n), ts = last(state.t, n + 1);
    const span = ts.length > 1 ? ts[ts.length - 1] - ts[0] : xs.length;
    return span > 0 ? sum(xs) / span : 0;
  }

  function renderCharts() {
    const signals = state.t.map((_, i) => sum(Object.values(state.signals).map((s) => s[i] || 0)));
    kpi("kpi-events", perSecond(state.events, 10).toFixed(1), state.totals.events, state.events);
    kpi("kpi-signals", fmt.format(sum(last(signals, 60))), state.totals.signals, signals);
    kpi("kpi-nudges", fmt.format(sum(last(state.nudges, 60))), state.totals.nudges, state.nudges);
    kpi("kpi-handoffs", fmt.format(sum(last(state.handoffs, 60))), state.totals.handoffs, state.handoffs);
    const rows = Object.entries(state.signals)
      .map(([name, values]) => [name, sum(values), values])
      .filter(([, n]) => n > 0)
      .sort((a, b) => b[1] - a[1]);
    $("detectors").replaceChildren(...(rows.length ? rows.map(([name, n, values]) =>
      el("li", {"data-detector": name}, el("span", {class: "name"}, name),
         el("span", {class: "n"}, fmt.format(n)), bars(values)))
      : [el("li", {class: "empty"}, "No signal in the last 5 minutes.")]));
    $("foot").textContent = "Counts of events and signals are this worker's own; interventions " +
      "and incidents are the whole fleet's, read from Kafka. " + state.streams +
      " console stream(s) open on this worker.";
  }

  function renderIncidents() {
    const open = [...state.incidents.values()].sort((a, b) => (b.ts || 0) - (a.ts || 0));
    $("open-count").textContent = open.length;
    $("open-count").classList.toggle("hot", open.length > 0);
    $("incidents").replaceChildren(...(open.length ? open.map((i) =>
      el("li", {class: "incident", "data-key": i.key},
         el("p", {class: "what"}, el("code", {}, i.failure), " on ", el("code", {}, i.route)),
         el("p", {class: "how"}, "opened " + clock(i.ts) + " by the " + (i.rule || "?") + " rule: " +
            (i.count ?? "?") + " affected sessions against a usual " + (i.baseline ?? "?"))))
      : [el("li", {class: "empty"}, "No open incident.")]));
    $("closed").replaceChildren(...(state.closed.length ? state.closed.map((i) =>
      el("li", {}, clock(i.opened_ts) + "–" + clock(i.ts) + "  " + i.failure + " on " + i.route))
      : [el("li", {class: "empty"}, "None.")]));
  }

  function interventionRow(v, fresh) {
    const badge = el("span", {class: "badge badge-" + v.kind}, v.kind);
    const kind = el("td", {}, badge);
    if (!v.delivered) kind.append(" ", el("span", {class: "badge badge-held", title: "holdout: decided, not shown"}, "held out"));
    const why = el("td", {class: "why"}, ...v.reasons.map((r) => el("code", {}, r.detector)));
    const text = v.kind === "handoff" ? (v.summary || v.message) : v.message;
    const row = el("tr", {"data-kind": v.kind, "data-id": v.id, class: fresh ? "new" : ""},
      el("td", {class: "time"}, clock(v.at || v.ts)), kind,
      el("td", {class: "session", title: v.session_id || ""}, v.session_id || "–"), why,
      el("td", {class: "text"}, text || ""), el("td", {class: "risk"}, v.risk == null ? "–" : v.risk.toFixed(2)));
    if (v.kind === "handoff") {
      row.tabIndex = 0;
      row.title = "Open the handoff as the agent reads it";
      row.addEventListener("click", () => openHandoff(v.id));
      row.addEventListener("keydown", (e) => { if (e.key === "Enter") openHandoff(v.id); });
    }
    return row;
  }

  function renderInterventions(freshId) {
    const body = $("interventions");
    body.replaceChildren(...(state.interventions.length
      ? state.interventions.map((v) => interventionRow(v, v.id === freshId))
      : [el("tr", {class: "empty"}, el("td", {colSpan: 6}, "Nothing yet."))]));
  }

  // -- a handoff, as the person taking it over reads it --------------------------------
  async function openHandoff(id) {
    const panel = $("handoff"), body = $("handoff-body");
    body.replaceChildren(el("p", {}, "Loading…"));
    panel.hidden = false;
    panel.focus();
    let data;
    try {
      const resp = await fetch("/console/api/handoffs/" + encodeURIComponent(id), {headers: auth});
      data = await resp.json();
      if (!resp.ok) throw new Error(data.detail || data.error);
    } catch (err) {
      body.replaceChildren(el("p", {class: "refused"}, "Could not load it: " + err.message));
      return;
    }
    const c = data.context || {};
    const facts = el("dl", {});
    const fact = (k, v) => { if (v !== undefined && v !== null && v !== "") facts.append(el("dt", {}, k), el("dd", {}, v)); };
    fact("session", data.session_id);
    fact("now on", c.current_page);
    fact("handed off", clock(data.at || data.ts));
    fact("in session for", c.duration_s != null ? Math.round(c.duration_s) + " s" : null);
    fact("events seen", c.events_seen);
    fact("risk of leaving", data.risk != null ? Math.round(data.risk * 100) + " %" : null);
    fact("customer was told", data.message);
    fact("shown", data.delivered ? "yes" : "no (holdout)");
    const parts = [el("p", {class: "summary"}, c.summary || data.summary || "customer asked for help"), facts];
    if (Array.isArray(c.pages) && c.pages.length) {
      parts.push(el("h3", {}, "Journey"), el("ol", {class: "journey"}, ...c.pages.map((p) => el("li", {}, el("span", {}, p)))));
    }
    const co = c.checkout;
    if (co && typeof co === "object" && Object.keys(co).length) {
      const bits = [];
      if (co.attempts != null) bits.push(co.attempts + " attempt(s)");
      if (co.failures != null) bits.push(co.failures + " failure(s)");
      if (Array.isArray(co.reasons) && co.reasons.length) bits.push("reasons: " + co.reasons.join(", "));
      if (Array.isArray(co.codes) && co.codes.length) bits.push("codes: " + co.codes.join(", "));
      if (co.purchased) bits.push("purchased");
      parts.push(el("h3", {}, "Checkout"), el("p", {}, bits.join(" · ")));
    }
    if (Array.isArray(c.errors) && c.errors.length) {
      parts.push(el("h3", {}, "Errors"), el("ul", {}, ...c.errors.map((e) => el("li", {},
        [e.type, e.page, e.status, e.url, e.field, e.message].filter((x) => x != null && x !== "").join(" · ")))));
    }
    const signals = Array.isArray(c.signals) ? c.signals : [];
    const reasons = signals.length ? signals : data.reasons;
    if (reasons && reasons.length) {
      parts.push(el("h3", {}, "What the detectors saw"), el("ul", {}, ...reasons.map((s) => el("li", {},
        (s.detector || "?") + (s.strength != null ? " (strength " + s.strength + ")" : "")))));
    }
    parts.push(el("h3", {}, "Everything the handoff carries"), el("pre", {}, JSON.stringify(c, null, 1)));
    $("handoff-title").textContent = "Handoff " + data.id;
    body.replaceChildren(...parts);
  }

  $("handoff-close").addEventListener("click", () => { $("handoff").hidden = true; });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") $("handoff").hidden = true; });

  // -- the stream ---------------------------------------------------------------------
  function setStatus(s, text) {
    const node = $("status");
    node.dataset.state = s;
    node.textContent = text;
  }

  function trim() {
    const extra = state.t.length - WINDOW;
    if (extra > 0) {
      for (const xs of [state.t, state.events, state.nudges, state.handoffs, ...Object.values(state.signals)]) {
        xs.splice(0, extra);
      }
    }
    for (const [name, xs] of Object.entries(state.signals)) if (!sum(xs)) delete state.signals[name];
  }

  function status(d) {
    state.totals = d.totals;
    state.streams = d.streams;
  }

  // EventSource reconnects by itself after a dropped stream, but gives up on an answer
  // that is not a stream (a refusal, or no room for another console): then ask why with
  // fetch (an EventSource cannot read it), and try again in a while unless refused.
  async function gaveUp() {
    try {
      const resp = await fetch("/console/api/snapshot" + query, {headers: auth});
      if (resp.status === 401 || resp.status === 403) {
        const why = await resp.json();
        setStatus("refused", "refused");
        const box = $("refused");
        box.hidden = false;
        box.textContent = resp.status + " " + why.error + ": " + why.detail;
        return;
      }
    } catch (_) { /* the worker is away */ }
    setStatus("down", "retrying in 5 s…");
    setTimeout(connect, 5000);
  }

  const handlers = {};
  function connect() {
    const es = new EventSource("/console/stream" + query);
    es.addEventListener("open", () => { state.connected = true; setStatus("live", "live"); });
    es.addEventListener("error", () => {
      state.connected = false;
      if (es.readyState === EventSource.CLOSED) gaveUp();
      else setStatus("down", "reconnecting…");
    });
    for (const [event, handler] of Object.entries(handlers)) es.addEventListener(event, handler);
  }

  handlers.snapshot = (e) => {
    const d = JSON.parse(e.data);
    state.snapshots += 1;
    state.t = d.series.t; state.events = d.series.events;
    state.nudges = d.series.nudges; state.handoffs = d.series.handoffs;
    state.signals = d.series.signals;
    state.interventions = d.interventions;
    state.incidents = new Map(d.incidents.map((i) => [i.key, i]));
    state.closed = d.closed_incidents;
    status(d);
    renderCharts(); renderIncidents(); renderInterventions(null);
  };
  handlers.tick = (e) => {
    const d = JSON.parse(e.data), n = state.t.length;
    state.ticks += 1;
    state.t.push(d.t); state.events.push(d.events);
    state.nudges.push(d.nudges); state.handoffs.push(d.handoffs);
    for (const xs of Object.values(state.signals)) xs.push(0);
    for (const [name, count] of Object.entries(d.signals)) {
      if (!state.signals[name]) state.signals[name] = new Array(n).fill(0).concat([0]);
      state.signals[name][n] = count;
    }
    status(d);
    trim();
    renderCharts();
  };
  handlers.intervention = (e) => {
    const v = JSON.parse(e.data);
    if (state.interventions.some((x) => x.id === v.id)) return;
    state.interventions.unshift(v);
    state.interventions.length = Math.min(state.interventions.length, MAX_LIST);
    renderInterventions(v.id);
  };
  handlers.incident = (e) => {
    const i = JSON.parse(e.data);
    if (i.change === "open") state.incidents.set(i.key, i);
    else {
      if (state.incidents.get(i.key)?.incident_id === i.incident_id) state.incidents.delete(i.key);
      state.closed.unshift(i);
      state.closed.length = Math.min(state.closed.length, 10);
    }
    renderIncidents();
  };
  connect();
})();
