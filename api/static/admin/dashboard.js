// Trellis admin dashboard: asks GET /v1/admin/analytics/summary with the admin's token and
// draws the charts as inline SVG. No libraries, nothing from another origin (see the CSP).
"use strict";

(function () {
  const TOKEN_KEY = "trellis.admin.token";
  const SUMMARY_URL = "/v1/admin/analytics/summary";
  const numbers = new Intl.NumberFormat("en-US");

  const $ = (id) => document.getElementById(id);

  function setState(state) {
    document.body.dataset.state = state;
  }

  // --- the token: this tab's sessionStorage only --------------------------------------

  let pageToken = ""; // only if sessionStorage is unavailable: lives as long as the page

  function storedToken() {
    try {
      return window.sessionStorage.getItem(TOKEN_KEY) || "";
    } catch (e) {
      return pageToken;
    }
  }

  function storeToken(token) {
    try {
      if (token) window.sessionStorage.setItem(TOKEN_KEY, token);
      else window.sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) {
      pageToken = token;
    }
    showTokenState();
  }

  function showTokenState() {
    $("token").placeholder = storedToken() ? "(token kept for this tab)" : "Cognito ID or access token";
  }

  // --- errors ----------------------------------------------------------------------------

  function showError(title, detail, fields, requestId) {
    const box = $("error");
    box.replaceChildren();
    const heading = document.createElement("h2");
    heading.textContent = title;
    box.appendChild(heading);
    if (detail) {
      const p = document.createElement("p");
      p.className = "detail";
      p.textContent = detail;
      box.appendChild(p);
    }
    if (fields && fields.length) {
      const list = document.createElement("ul");
      for (const f of fields) {
        const item = document.createElement("li");
        item.textContent = (f.field ? f.field + ": " : "") + (f.message || "");
        list.appendChild(item);
      }
      box.appendChild(list);
    }
    if (requestId) {
      const p = document.createElement("p");
      p.className = "request-id";
      p.textContent = "Request id: " + requestId;
      box.appendChild(p);
    }
    box.hidden = false;
    $("dashboard").hidden = true; // no stale charts under an error
    setState("error");
  }

  function clearError() {
    const box = $("error");
    box.hidden = true;
    box.replaceChildren();
  }

  async function showProblem(response) {
    let problem = null;
    try {
      problem = await response.json();
    } catch (e) {
      problem = null;
    }
    const status = response.status;
    const title = (problem && problem.title) || response.statusText || "Error";
    let detail = problem && problem.detail ? problem.detail : "";
    // A refused token is of no further use here: forget it.
    if (status === 401) {
      storeToken("");
      detail += (detail ? " " : "") + "Enter a fresh admin token.";
    } else if (status === 403) {
      storeToken("");
      detail += (detail ? " " : "") + "This token's user is not an admin: enter an admin's token.";
    }
    showError(
      title + " (" + status + ")",
      detail,
      problem && Array.isArray(problem.errors) ? problem.errors : [],
      problem && problem.request_id
    );
  }

  // --- SVG helpers -----------------------------------------------------------------------

  // The <svg> elements are in the page, so their namespace comes from the HTML parser.
  function el(parent, tag, attributes, text) {
    const node = document.createElementNS(parent.namespaceURI, tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      node.setAttribute(name, String(value));
    }
    if (text !== undefined) node.textContent = String(text);
    parent.appendChild(node);
    return node;
  }

  function empty(svg, width, height, message) {
    svg.replaceChildren();
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    el(svg, "text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "empty" }, message);
  }

  // The top of a count axis with four steps of a round whole size (1, 2, 5, 10, 20, ...).
  function niceMax(value) {
    const raw = Math.max(value, 1) / 4;
    const magnitude = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const step of [1, 2, 5, 10]) {
      const size = Math.max(1, step * magnitude);
      if (size >= raw) return size * 4;
    }
    return 40 * magnitude;
  }

  // --- charts ----------------------------------------------------------------------------

  // One polyline per series over the days; a circle per day carries its date and value.
  function lineChart(svg, days, series) {
    const width = 720, height = 240;
    const left = 48, right = 16, top = series.length > 1 ? 30 : 12, bottom = 36;
    svg.replaceChildren();
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    const plotW = width - left - right, plotH = height - top - bottom;
    let max = 0;
    for (const s of series) for (const d of days) max = Math.max(max, d[s.key]);
    const yMax = niceMax(max);
    const x = (i) => left + (days.length > 1 ? (plotW * i) / (days.length - 1) : plotW / 2);
    const y = (v) => top + plotH - (plotH * v) / yMax;

    for (let i = 0; i <= 4; i++) {
      const value = (yMax * i) / 4;
      el(svg, "line", { x1: left, x2: width - right, y1: y(value), y2: y(value), class: "axis" });
      el(svg, "text", { x: left - 6, y: y(value) + 4, "text-anchor": "end", class: "axis-label" },
        numbers.format(value));
    }
    const last = days.length - 1;
    for (const i of new Set([0, Math.floor(last / 2), last])) {
      const anchor = i === 0 && last > 0 ? "start" : i === last && last > 0 ? "end" : "middle";
      el(svg, "text", { x: x(i), y: height - 12, "text-anchor": anchor, class: "axis-label" },
        days[i].date);
    }
    series.forEach((s, n) => {
      const points = days.map((d, i) => x(i).toFixed(1) + "," + y(d[s.key]).toFixed(1));
      el(svg, "polyline", { points: points.join(" "), class: "series series-" + n,
        "data-series": s.key });
      const dots = el(svg, "g", { class: "points", "data-series": s.key });
      days.forEach((d, i) => {
        const dot = el(dots, "circle", {
          cx: x(i).toFixed(1), cy: y(d[s.key]).toFixed(1), r: 3.5,
          class: "point point-" + n, "data-date": d.date, "data-value": d[s.key],
        });
        el(dot, "title", {}, d.date + ": " + numbers.format(d[s.key]) + " " + s.label);
      });
      if (series.length > 1) {
        const lx = left + n * 140;
        el(svg, "rect", { x: lx, y: 4, width: 10, height: 10, class: "legend-" + n });
        el(svg, "text", { x: lx + 14, y: 13 }, s.label);
      }
    });
  }

  // Horizontal bars, one per event name, longest first.
  function barChart(svg, names) {
    const width = 720, row = 28, top = 8, labelW = 220, countW = 70;
    if (!names.length) {
      empty(svg, width, 60, "No events in this range");
      return;
    }
    const height = top * 2 + row * names.length;
    svg.replaceChildren();
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    const max = Math.max(...names.map((n) => n.total));
    const barW = width - labelW - countW;
    names.forEach((n, i) => {
      const yTop = top + i * row;
      const bar = el(svg, "g", { class: "bar", "data-name": n.name, "data-count": n.total });
      el(bar, "title", {}, n.name + ": " + numbers.format(n.total));
      el(bar, "text", { x: labelW - 8, y: yTop + row / 2 + 4, "text-anchor": "end" },
        n.name.length > 32 ? n.name.slice(0, 31) + "…" : n.name);
      el(bar, "rect", { x: labelW, y: yTop + 4, height: row - 8, rx: 3,
        width: Math.max(2, (barW * n.total) / max).toFixed(1) });
      el(bar, "text", { x: labelW + (barW * n.total) / max + 6, y: yTop + row / 2 + 4,
        class: "count" }, numbers.format(n.total));
    });
  }

  function percent(rate) {
    return rate === null || rate === undefined ? "–" : Math.round(rate * 1000) / 10 + "%";
  }

  // Three centred bars, each as wide as its share of the requests.
  function funnelChart(svg, funnel) {
    const width = 720, row = 60, top = 10, labelW = 110, maxW = 360;
    const stages = [
      { key: "requested", label: "Requested", count: funnel.requested, rate: null },
      { key: "accepted", label: "Accepted", count: funnel.accepted, rate: funnel.accept_rate,
        of: "of requested" },
      { key: "completed", label: "Completed", count: funnel.completed,
        rate: funnel.completion_rate, of: "of accepted" },
    ];
    svg.replaceChildren();
    svg.setAttribute("viewBox", "0 0 " + width + " " + (top * 2 + row * stages.length));
    const base = Math.max(funnel.requested, 1);
    stages.forEach((s, i) => {
      const yTop = top + i * row;
      const w = Math.max(2, (maxW * s.count) / base);
      const g = el(svg, "g", { class: "stage", "data-stage": s.key, "data-count": s.count });
      el(g, "text", { x: 12, y: yTop + row / 2 + 4 }, s.label);
      el(g, "rect", { x: labelW + (maxW - w) / 2, y: yTop + 8, width: w.toFixed(1),
        height: row - 16, rx: 4 });
      let text = numbers.format(s.count);
      if (s.of) text += " · " + percent(s.rate) + " " + s.of;
      el(g, "text", { x: labelW + maxW + 16, y: yTop + row / 2 + 4, class: "value" }, text);
    });
    const overall = el(svg, "text", { x: width - 8, y: 16, "text-anchor": "end",
      class: "axis-label", "data-overall-rate": funnel.overall_rate === null ? "" : funnel.overall_rate });
    overall.textContent = "overall: " + percent(funnel.overall_rate);
  }

  // --- the page --------------------------------------------------------------------------

  function render(summary) {
    const sum = (key) => summary.days.reduce((total, d) => total + d[key], 0);
    $("range").textContent = summary.from + " to " + summary.to + " (UTC)";
    $("tile-mau").textContent = numbers.format(summary.monthly_active_users);
    $("tile-active").textContent = numbers.format(summary.active_users);
    $("tile-sessions").textContent = numbers.format(sum("sessions"));
    $("tile-events").textContent = numbers.format(sum("events"));
    $("tile-new-users").textContent = numbers.format(sum("new_users"));
    $("tile-providers").textContent = numbers.format(summary.providers.active);
    $("tile-booked").textContent = numbers.format(summary.providers.booked);
    $("dashboard").hidden = false;
    lineChart($("dau-chart"), summary.days, [{ key: "active_users", label: "active users" }]);
    lineChart($("sessions-chart"), summary.days, [
      { key: "sessions", label: "sessions" },
      { key: "new_users", label: "new users" },
    ]);
    barChart($("events-chart"), summary.events_by_name);
    funnelChart($("funnel-chart"), summary.funnel);
  }

  async function load() {
    const token = storedToken();
    if (!token) {
      showError("Token needed", "Paste an admin's Cognito token, then press Show.");
      setState("signed-out");
      $("token").focus();
      return;
    }
    const params = new URLSearchParams();
    if ($("from").value) params.set("from", $("from").value);
    if ($("to").value) params.set("to", $("to").value);
    const query = params.toString();
    setState("loading");
    let response;
    try {
      response = await fetch(SUMMARY_URL + (query ? "?" + query : ""), {
        headers: { Authorization: "Bearer " + token, Accept: "application/json" },
        credentials: "omit",
        cache: "no-store",
      });
    } catch (e) {
      showError("The server did not answer", String(e && e.message ? e.message : e));
      return;
    }
    if (!response.ok) {
      await showProblem(response);
      return;
    }
    let summary;
    try {
      summary = await response.json();
    } catch (e) {
      showError("The answer was not JSON", "");
      return;
    }
    clearError();
    render(summary);
    setState("ready");
  }

  // --- reports: the open ones, each with its target, resolved with an action ---------

  const REPORTS_URL = "/v1/admin/reports";
  const ACTIONS = [
    ["dismiss", "Dismiss (no action)"],
    ["remove_content", "Remove content"],
    ["suspend_user", "Suspend user"],
  ];

  function node(tag, attributes, text) {
    const element = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) element.setAttribute(name, value);
    if (text !== undefined && text !== null) element.textContent = String(text);
    return element;
  }

  async function api(method, url, body) {
    const options = {
      method,
      headers: { Authorization: "Bearer " + storedToken(), Accept: "application/json" },
      credentials: "omit",
      cache: "no-store",
    };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return fetch(url, options);
  }

  // A problem+json answer as one readable line, plus the fields it names.
  async function problemText(response) {
    let problem = null;
    try {
      problem = await response.json();
    } catch (e) {
      problem = null;
    }
    const title = (problem && problem.title) || response.statusText || "Error";
    let text = title + " (" + response.status + ")";
    if (problem && problem.detail) text += ": " + problem.detail;
    if (problem && Array.isArray(problem.errors)) {
      for (const f of problem.errors) text += " " + (f.field ? f.field + ": " : "") + (f.message || "");
    }
    return text;
  }

  function describeTarget(item) {
    const t = item.target;
    const box = node("div", { class: "target" });
    const who = t.display_name ? t.display_name : t.owner_id ? "user " + t.owner_id : "unknown";
    box.appendChild(node("p", { class: "meta" },
      item.target_type.replace("_", " ") + " by " + who + (t.rating ? " · rating " + t.rating : "")));
    if (!t.exists) {
      box.appendChild(node("p", { class: "removed" }, "It no longer exists."));
    } else if (t.removed) {
      box.appendChild(node("p", { class: "removed" }, "Removed."));
    } else if (t.text) {
      box.appendChild(node("blockquote", { class: "text" }, t.text));
    }
    if (t.content_type) box.appendChild(node("p", { class: "meta" }, "File: " + t.content_type));
    if (t.download_url) {
      // Another origin: the CSP keeps it out of the page, so it opens in a tab of its own.
      box.appendChild(node("a", { href: t.download_url, target: "_blank", rel: "noopener noreferrer",
        class: "download" }, "Open the image (link valid a few minutes)"));
    }
    return box;
  }

  function reportCard(item) {
    const card = node("li", { class: "report", "data-report-id": item.id, "data-status": item.status });
    const reporter = item.reporter
      ? (item.reporter.display_name || "user " + item.reporter.id)
      : "system (content filter)";
    card.appendChild(node("p", { class: "meta" },
      item.reason + " · reported by " + reporter + " · " + item.created_at.replace("T", " ").slice(0, 16) + " UTC"));
    if (item.details) card.appendChild(node("blockquote", { class: "details" }, item.details));
    card.appendChild(describeTarget(item));

    const form = node("form", { class: "resolve" });
    const select = node("select", { class: "action", "aria-label": "Action" });
    for (const [value, label] of ACTIONS) select.appendChild(node("option", { value }, label));
    const note = node("textarea", { class: "note", rows: "2", maxlength: "2000",
      placeholder: "Note for the record (not shown to the reporter)", "aria-label": "Note" });
    const button = node("button", { type: "submit", class: "resolve-button" }, "Resolve");
    const problem = node("p", { class: "problem", role: "alert" });
    problem.hidden = true;
    form.append(select, note, button);
    card.append(form, problem);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      button.disabled = true;
      problem.hidden = true;
      let response;
      try {
        response = await api("POST", REPORTS_URL + "/" + item.id + "/resolve",
          { action: select.value, note: note.value.trim() });
      } catch (e) {
        response = null;
        problem.textContent = "The server did not answer: " + String(e && e.message ? e.message : e);
      }
      if (response && response.ok) {
        const resolved = await response.json();
        card.dataset.status = resolved.status;
        card.dataset.action = resolved.action;
        form.replaceWith(node("p", { class: "meta resolved" }, "Resolved: " + resolved.action));
        return;
      }
      if (response) problem.textContent = await problemText(response);
      problem.hidden = false;
      button.disabled = false;
    });
    return card;
  }

  async function loadReports() {
    clearError();
    if (!storedToken()) {
      showError("Token needed", "Paste an admin's Cognito token, then press Reports.");
      setState("signed-out");
      return;
    }
    document.body.dataset.reports = "loading";
    let response;
    try {
      response = await api("GET", REPORTS_URL + "?status=open&limit=100");
    } catch (e) {
      showError("The server did not answer", String(e && e.message ? e.message : e));
      document.body.dataset.reports = "error";
      return;
    }
    if (!response.ok) {
      await showProblem(response);
      document.body.dataset.reports = "error";
      return;
    }
    const page = await response.json();
    const list = $("report-list");
    list.replaceChildren(...page.items.map(reportCard));
    $("reports-count").textContent = "(" + page.items.length + (page.next_cursor ? "+" : "") + ")";
    $("reports-empty").hidden = page.items.length > 0;
    $("reports").hidden = false;
    document.body.dataset.reports = "ready";
    setState("ready");
  }

  function init() {
    $("controls").addEventListener("submit", (event) => {
      event.preventDefault();
      const typed = $("token").value.trim();
      if (typed) {
        storeToken(typed);
        $("token").value = "";
      }
      load();
    });
    $("forget").addEventListener("click", () => {
      storeToken("");
      $("token").value = "";
      $("dashboard").hidden = true;
      $("reports").hidden = true;
      clearError();
      setState("signed-out");
    });
    $("load-reports").addEventListener("click", () => {
      const typed = $("token").value.trim();
      if (typed) {
        storeToken(typed);
        $("token").value = "";
      }
      loadReports();
    });
    showTokenState();
    if (storedToken()) load();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
