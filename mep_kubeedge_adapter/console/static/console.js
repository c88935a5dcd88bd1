// mep-kubeedge-adapter device console.
//
// Plain JavaScript, no framework, no build. Every URL is relative to this page
// (".../console/"), so the console works behind a proxy that strips a path prefix.
// Device data comes from the REST API once, then from websocket notifications
// (SPEC §4): there is no polling of devices. Only the status strip (/readyz and
// /metrics, which have no notifications) is refreshed on a timer.
(() => {
  "use strict";

  const ROOT = new URL("../", document.baseURI);
  const API = new URL("kubeedge_devices/v1/", ROOT);
  const TOKEN_KEY = "mka-console-token";
  const SPARK_WINDOW_MS = 5 * 60 * 1000;
  const SPARK_MIN_SPAN_MS = 15 * 1000;
  const SPARK_W = 140;
  const SPARK_H = 30;
  const STRIP_EVERY_MS = 5000;
  const SUBSCRIPTION_LIFETIME_S = 3600;
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 30000;
  const ACTIVITY_MAX = 40;
  const NUMERIC = /^(int|integer|int32|int64|long|float|double|number)$/i;
  const SUBSCRIPTION_TYPES = [
    "DeviceTwinChangeSubscription",
    "DeviceStateChangeSubscription",
    "DeviceMembershipChangeSubscription",
  ];

  const $ = (id) => document.getElementById(id);

  const devices = new Map(); // "ns/name" -> device view
  let streams = [];
  let generation = 0;
  let stripTimer = null;
  let resyncTimer = null;
  let authWanted = false;
  let emptyNote = null; // the "no devices" paragraph, kept while detached
  let readyNode = ""; // the node EdgeCore answers for, from /readyz

  // ------------------------------------------------------------------ helpers

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("data-")) node.setAttribute(key, value);
      else node[key] = value;
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    return node;
  }

  function parseTime(text) {
    if (!text) return null;
    const ms = Date.parse(text);
    return Number.isFinite(ms) ? ms : null;
  }

  function ago(ms) {
    const seconds = Math.max(0, Math.round(ms / 1000));
    if (seconds < 60) return `${seconds} s`;
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) return `${minutes} min ${seconds % 60} s`;
    const hours = Math.floor(minutes / 60);
    if (hours < 48) return `${hours} h ${minutes % 60} min`;
    return `${Math.floor(hours / 24)} d`;
  }

  function clock(ms) {
    return new Date(ms).toLocaleTimeString([], { hour12: false });
  }

  function deviceId(ns, name) {
    return `${ns}/${name}`;
  }

  function devicePath(ns, name) {
    return `devices/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`;
  }

  // --------------------------------------------------------------------- HTTP

  function token() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || "";
    } catch (_) {
      return "";
    }
  }

  function authHeaders() {
    const value = token();
    return value ? { Authorization: `Bearer ${value}` } : {};
  }

  // One API call. Never throws for HTTP statuses; throws for network failures.
  async function call(method, path, options = {}) {
    const headers = Object.assign(
      { Accept: "application/json, application/problem+json" },
      authHeaders(),
      options.headers || {},
    );
    const init = { method, headers, cache: "no-store" };
    if (options.json !== undefined) {
      init.body = JSON.stringify(options.json);
      if (!headers["Content-Type"]) headers["Content-Type"] = "application/json";
    }
    if (options.keepalive) init.keepalive = true;
    const response = await fetch(new URL(path, options.base || API), init);
    const text = await response.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch (_) {
        data = text;
      }
    }
    if (response.status === 401 && !options.allow401) needToken(problemText(response.status, data));
    return { status: response.status, ok: response.ok, data, headers: response.headers };
  }

  function problemText(status, data) {
    if (data && typeof data === "object") {
      const detail = data.detail || data.title;
      if (detail) return String(detail);
    }
    if (typeof data === "string" && data.trim()) return data.trim().slice(0, 300);
    return `HTTP ${status}`;
  }

  // --------------------------------------------------------------------- auth

  function needToken(detail) {
    if (authWanted) {
      $("auth-detail").textContent = detail || "";
      return;
    }
    authWanted = true;
    stopAll(false);
    $("auth").hidden = false;
    $("auth-detail").textContent = token()
      ? `The adapter refused the token: ${detail}`
      : detail || "";
    setLive("bad", "not signed in");
    $("auth-token").focus();
  }

  function setupAuth() {
    $("auth-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("auth-token").value.trim().replace(/^Bearer\s+/i, "");
      if (!value) return;
      try {
        sessionStorage.setItem(TOKEN_KEY, value);
      } catch (_) {
        // Session storage unavailable: the token lives only as long as this page.
      }
      $("auth-token").value = "";
      $("auth").hidden = true;
      authWanted = false;
      updateForgetButton();
      start();
    });
    $("forget-token").addEventListener("click", () => {
      stopAll(true); // while the token still allows deleting the subscriptions
      try {
        sessionStorage.removeItem(TOKEN_KEY);
      } catch (_) {
        // nothing to forget
      }
      updateForgetButton();
      start();
    });
    updateForgetButton();
  }

  function updateForgetButton() {
    $("forget-token").hidden = !token();
  }

  // ------------------------------------------------------------------- banner

  function banner(text) {
    const node = $("banner");
    node.textContent = text || "";
    node.hidden = !text;
  }

  function activity(deviceKey, text, when) {
    const list = $("activity");
    list.prepend(
      el(
        "li",
        {},
        el("time", { text: clock(when || Date.now()) }),
        el("span", { class: "who", text: deviceKey }),
        el("span", { class: "what", text }),
      ),
    );
    while (list.childElementCount > ACTIVITY_MAX) list.lastElementChild.remove();
  }

  // ------------------------------------------------------------------ devices

  function propertyView(device, name) {
    let prop = device.props.get(name);
    if (prop) return prop;
    prop = {
      name,
      type: "string",
      reported: null,
      desired: null,
      history: [],
      mismatchSince: null,
      pending: null,
      row: null,
    };
    device.props.set(name, prop);
    return prop;
  }

  function isNumeric(prop) {
    return NUMERIC.test(prop.type || "");
  }

  function newer(current, incoming) {
    if (!current || !incoming) return true;
    const a = parseTime(current.timestamp);
    const b = parseTime(incoming.timestamp);
    return a === null || b === null || b >= a;
  }

  function record(prop, reported) {
    if (!isNumeric(prop) || !reported) return;
    const value = Number(reported.value);
    if (reported.value === "" || !Number.isFinite(value)) return;
    const t = parseTime(reported.timestamp) ?? Date.now();
    const last = prop.history[prop.history.length - 1];
    if (last && last.t === t && last.v === value) return;
    if (last && t < last.t) return;
    prop.history.push({ t, v: value });
    prune(prop);
  }

  function prune(prop) {
    const horizon = Date.now() - SPARK_WINDOW_MS;
    let drop = 0;
    // keep one point before the window so the line starts at its left edge
    while (drop + 1 < prop.history.length && prop.history[drop + 1].t < horizon) drop++;
    if (drop) prop.history.splice(0, drop);
  }

  // Set a property from a TwinInfo entry or a notification change.
  function setProperty(device, name, entry, when) {
    const prop = propertyView(device, name);
    if (entry.type) prop.type = entry.type;
    if ("reported" in entry && entry.reported !== undefined) {
      if (entry.reported === null) prop.reported = null;
      else if (newer(prop.reported, entry.reported)) {
        prop.reported = entry.reported;
        record(prop, entry.reported);
      }
    }
    if ("desired" in entry && entry.desired !== undefined) {
      if (entry.desired === null || newer(prop.desired, entry.desired)) prop.desired = entry.desired;
    }
    updateMismatch(prop, when);
    checkPending(device, prop);
    renderProperty(device, prop);
    return prop;
  }

  function updateMismatch(prop, when) {
    const desired = prop.desired && prop.desired.value;
    const differs =
      desired !== undefined && desired !== null && desired !== "" &&
      (!prop.reported || prop.reported.value !== desired);
    if (!differs) prop.mismatchSince = null;
    else if (prop.mismatchSince === null) prop.mismatchSince = when ?? Date.now();
  }

  function checkPending(device, prop) {
    const pending = prop.pending;
    if (!pending || !prop.row) return;
    if (prop.desired && prop.desired.value !== pending.value) {
      prop.pending = null;
      return;
    }
    if (prop.reported && prop.reported.value === pending.value) {
      prop.pending = null;
      const took = (performance.now() - pending.started) / 1000;
      showResult(
        prop,
        "ok",
        `converged: ${device.id} reports ${prop.name} = ${pending.value} (${took.toFixed(1)} s after the write)`,
      );
    }
  }

  function upsertDevice(info, when) {
    const key = deviceId(info.namespace, info.name);
    let device = devices.get(key);
    if (!device) {
      device = { id: key, namespace: info.namespace, name: info.name, props: new Map(), card: null };
      devices.set(key, device);
    }
    for (const field of ["model", "node", "labels", "state", "lastOnlineTime"]) {
      if (field in info) device[field] = info[field];
    }
    if (!device.card) buildCard(device);
    renderHeader(device);
    if (info.twin) applyTwin(device, info.twin, when, true);
    return device;
  }

  function applyTwin(device, twin, when, complete) {
    const properties = (twin && twin.properties) || {};
    for (const [name, entry] of Object.entries(properties)) {
      // A full TwinInfo says what is absent, too.
      const full = Object.assign({ reported: null, desired: null }, entry);
      setProperty(device, name, complete ? full : entry, when);
    }
    if (complete) {
      for (const name of [...device.props.keys()]) {
        if (!(name in properties)) removeProperty(device, name);
      }
    }
  }

  function removeProperty(device, name) {
    const prop = device.props.get(name);
    if (!prop) return;
    if (prop.row) prop.row.remove();
    device.props.delete(name);
  }

  function removeDevice(key) {
    const device = devices.get(key);
    if (!device) return;
    if (device.card) device.card.remove();
    devices.delete(key);
    renderEmpty();
  }

  async function loadDevices() {
    let response;
    try {
      response = await call("GET", "devices");
    } catch (error) {
      banner(`Cannot reach the adapter: ${error.message || error}`);
      return false;
    }
    if (response.status === 401) return false;
    if (!response.ok || !Array.isArray(response.data)) {
      banner(`GET devices failed: ${problemText(response.status, response.data)}`);
      return false;
    }
    banner("");
    const seen = new Set();
    for (const info of response.data) {
      seen.add(upsertDevice(info).id);
    }
    for (const key of [...devices.keys()]) if (!seen.has(key)) removeDevice(key);
    renderNode();
    renderEmpty();
    return true;
  }

  async function loadDevice(ns, name) {
    const response = await call("GET", devicePath(ns, name));
    if (response.ok && response.data) upsertDevice(response.data);
    else if (response.status === 404) removeDevice(deviceId(ns, name));
    renderNode();
    renderEmpty();
  }

  function scheduleResync(reason) {
    if (resyncTimer) return;
    resyncTimer = setTimeout(async () => {
      resyncTimer = null;
      if (reason) activity("console", `resynced (${reason})`);
      await loadDevices();
    }, 150);
  }

  // ---------------------------------------------------------------- rendering

  function renderNode() {
    const nodes = new Set([...devices.values()].map((d) => d.node).filter(Boolean));
    if (!nodes.size && readyNode) nodes.add(readyNode);
    $("node").textContent = nodes.size ? `node ${[...nodes].join(", ")}` : "";
  }

  function renderEmpty() {
    emptyNote ||= $("empty");
    const empty = emptyNote;
    if (devices.size) empty.remove();
    else {
      empty.textContent = "No devices on this node (yet).";
      if (!empty.isConnected) $("devices").append(empty);
    }
  }

  function buildCard(device) {
    const head = el("header", { class: "device-head" });
    const table = el(
      "table",
      { class: "props" },
      el(
        "thead",
        {},
        el(
          "tr",
          {},
          el("th", { text: "property" }),
          el("th", { text: "reported" }),
          el("th", { text: "desired" }),
          el("th", { text: "last 5 min" }),
          el("th", { text: "set desired" }),
        ),
      ),
      el("tbody"),
    );
    device.card = el("article", { class: "device", "data-device": device.id }, head, table);
    device.head = head;
    device.body = table.tBodies[0];
    // keep cards in id order
    const container = $("devices");
    const after = [...container.querySelectorAll("article.device")].find(
      (card) => card.dataset.device > device.id,
    );
    container.insertBefore(device.card, after || null);
  }

  function stateLevel(state) {
    const value = (state || "").toLowerCase();
    if (value === "online" || value === "ok") return "ok";
    if (value === "offline" || value === "unhealthy") return "bad";
    return value ? "warn" : "unknown";
  }

  function renderHeader(device) {
    const labels = Object.entries(device.labels || {}).map(([k, v]) =>
      el("span", { class: "label", text: `${k}=${v}` }),
    );
    const seen = device.lastOnlineTime
      ? el("span", { class: "seen", text: `last online ${device.lastOnlineTime}` })
      : null;
    device.head.replaceChildren(
      el(
        "h2",
        {},
        el("span", { class: "ns", text: `${device.namespace}/` }),
        el("span", { class: "name", text: device.name }),
      ),
      el("span", {
        class: "pill state",
        "data-level": stateLevel(device.state),
        text: device.state || "state unknown",
      }),
      el("span", { class: "model", text: device.model ? `model ${device.model}` : "no model" }),
      el("span", { class: "labels" }, ...labels),
      seen,
    );
  }

  function buildRow(device, prop) {
    const input = el("input", {
      type: "text",
      name: "value",
      autocomplete: "off",
      spellcheck: false,
      placeholder: prop.type,
      "data-role": "value",
    });
    const button = el("button", { type: "submit", text: "Set", "data-role": "set" });
    const form = el("form", { class: "write-form" }, input, button);
    const result = el("div", { class: "result", "data-role": "result" });
    const cells = {
      reportedValue: el("span", { class: "value", "data-role": "reported" }),
      reportedAge: el("span", { class: "age" }),
      desiredValue: el("span", { class: "value", "data-role": "desired" }),
      mismatch: el("span", { class: "mismatch", "data-role": "mismatch" }),
      spark: el("span", { class: "spark", "data-role": "spark" }),
      type: el("span", { class: "type" }),
      input,
      button,
      result,
    };
    const row = el(
      "tr",
      { "data-prop": prop.name },
      el("th", { class: "prop-name", scope: "row" }, el("span", { text: prop.name }), cells.type),
      el("td", { class: "reported" }, cells.reportedValue, cells.reportedAge),
      el("td", { class: "desired" }, cells.desiredValue, cells.mismatch),
      el("td", { class: "spark-cell" }, cells.spark),
      el("td", { class: "write" }, form, result),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      writeDesired(device, prop, input.value);
    });
    prop.row = row;
    prop.cells = cells;
    // keep rows in name order
    const after = [...device.body.rows].find((r) => r.dataset.prop > prop.name);
    device.body.insertBefore(row, after || null);
  }

  function renderProperty(device, prop) {
    if (!device.body) return;
    if (!prop.row) buildRow(device, prop);
    const c = prop.cells;
    c.type.textContent = prop.type;
    c.input.placeholder = prop.type;
    c.reportedValue.textContent = prop.reported ? prop.reported.value : "—";
    c.reportedValue.title = prop.reported && prop.reported.timestamp ? prop.reported.timestamp : "";
    c.desiredValue.textContent = prop.desired ? prop.desired.value : "—";
    c.desiredValue.title = prop.desired && prop.desired.timestamp ? prop.desired.timestamp : "";
    prop.row.classList.toggle("differs", prop.mismatchSince !== null);
    renderTimes(prop);
    renderSpark(prop);
  }

  function renderTimes(prop) {
    const c = prop.cells;
    if (!c) return;
    const now = Date.now();
    const at = prop.reported ? parseTime(prop.reported.timestamp) : null;
    if (at === null) c.reportedAge.textContent = "";
    else c.reportedAge.textContent = now - at < 1500 ? "just now" : `${ago(now - at)} ago`;
    if (prop.mismatchSince === null) {
      c.mismatch.hidden = true;
      c.mismatch.textContent = "";
    } else {
      c.mismatch.hidden = false;
      c.mismatch.textContent = `≠ reported for ${ago(now - prop.mismatchSince)}`;
      c.mismatch.title = `reported differs from desired since ${clock(prop.mismatchSince)}`;
    }
  }

  function renderSpark(prop) {
    const c = prop.cells;
    if (!c) return;
    if (!isNumeric(prop)) {
      c.spark.replaceChildren();
      return;
    }
    prune(prop);
    const now = Date.now();
    const points = prop.history;
    // the x axis spans what the page has seen, growing to the full window
    const seen = points.length ? now - points[0].t : 0;
    const span = Math.min(SPARK_WINDOW_MS, Math.max(SPARK_MIN_SPAN_MS, seen));
    const left = now - span;
    const chart = svg("svg", {
      width: SPARK_W,
      height: SPARK_H,
      viewBox: `0 0 ${SPARK_W} ${SPARK_H}`,
      class: "sparkline",
      role: "img",
    });
    if (points.length) {
      let lo = Math.min(...points.map((p) => p.v));
      let hi = Math.max(...points.map((p) => p.v));
      if (hi === lo) {
        hi += 1;
        lo -= 1;
      }
      const x = (t) => ((Math.max(t, left) - left) / span) * (SPARK_W - 4) + 1;
      const y = (v) => SPARK_H - 3 - (v - lo) / (hi - lo) * (SPARK_H - 6);
      // a step line: a value holds until the next report, and until now for the last one
      const coords = [];
      points.forEach((p, i) => {
        if (i > 0) coords.push(`${x(p.t).toFixed(1)},${y(points[i - 1].v).toFixed(1)}`);
        coords.push(`${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`);
      });
      const last = points[points.length - 1];
      coords.push(`${x(now).toFixed(1)},${y(last.v).toFixed(1)}`);
      chart.append(svg("polyline", { points: coords.join(" "), class: "line" }));
      chart.append(svg("circle", { cx: x(now).toFixed(1), cy: y(last.v).toFixed(1), r: 2, class: "dot" }));
      const values = points.map((p) => p.v);
      chart.setAttribute(
        "aria-label",
        `${prop.name}: ${values.length} values, min ${Math.min(...values)}, max ${Math.max(...values)}`,
      );
      const title = svg("title", {});
      title.textContent = chart.getAttribute("aria-label");
      chart.append(title);
    }
    chart.setAttribute("data-points", String(points.length));
    c.spark.replaceChildren(chart);
  }

  function tick() {
    for (const device of devices.values()) {
      for (const prop of device.props.values()) {
        renderTimes(prop);
        renderSpark(prop);
      }
    }
  }

  // ------------------------------------------------------------------- writes

  function showResult(prop, level, text) {
    const node = prop.cells && prop.cells.result;
    if (!node) return;
    node.dataset.level = level;
    node.textContent = text;
  }

  async function writeDesired(device, prop, raw) {
    const value = raw;
    const path = `${devicePath(device.namespace, device.name)}/twin`;
    const seenDesired = prop.desired ? prop.desired.value : null;
    prop.cells.button.disabled = true;
    showResult(prop, "busy", `writing ${prop.name} = ${value}…`);
    try {
      for (let attempt = 0; attempt < 3; attempt++) {
        const current = await call("GET", path);
        if (!current.ok) {
          showResult(prop, "error", `${current.status}: ${problemText(current.status, current.data)}`);
          return;
        }
        applyTwin(device, current.data, Date.now(), true);
        const now = current.data.properties && current.data.properties[prop.name];
        const desiredNow = now && now.desired ? now.desired.value : null;
        if (attempt > 0 && desiredNow !== seenDesired) {
          showResult(
            prop,
            "error",
            `not written: the desired value changed meanwhile (now ${desiredNow ?? "unset"})`,
          );
          return;
        }
        const started = performance.now();
        const answer = await call("PATCH", path, {
          json: { desired: { [prop.name]: value } },
          headers: {
            "Content-Type": "application/merge-patch+json",
            "If-Match": current.headers.get("ETag") || "*",
          },
        });
        if (answer.status === 412) continue; // only reported values moved: read again
        if (!answer.ok) {
          showResult(prop, "error", `${answer.status}: ${problemText(answer.status, answer.data)}`);
          activity(device.id, `write ${prop.name} = ${value} refused: ${problemText(answer.status, answer.data)}`);
          return;
        }
        prop.pending = { value, started };
        const took = Math.round(performance.now() - started);
        showResult(prop, "busy", `accepted in ${took} ms: desired ${prop.name} = ${value}; waiting for the device…`);
        activity(device.id, `desired ${prop.name} = ${value} accepted`);
        applyTwin(device, answer.data, Date.now(), true);
        prop.cells.input.value = "";
        return;
      }
      showResult(prop, "error", "412: the twin kept changing; try again");
    } catch (error) {
      showResult(prop, "error", `cannot reach the adapter: ${error.message || error}`);
    } finally {
      prop.cells.button.disabled = false;
    }
  }

  // ------------------------------------------------------------ notifications

  function noticeTime(message) {
    const ts = message.timeStamp;
    if (ts && Number.isFinite(ts.seconds)) return ts.seconds * 1000 + Math.floor((ts.nanoSeconds || 0) / 1e6);
    return Date.now();
  }

  function handleNotification(stream, message) {
    if (typeof message.sequence === "number") {
      if (stream.lastSeq !== null && message.sequence > stream.lastSeq + 1) {
        scheduleResync(`${message.sequence - stream.lastSeq - 1} notifications missed`);
      }
      stream.lastSeq = message.sequence;
    }
    const ref = message.device || {};
    const key = deviceId(ref.namespace, ref.name);
    const when = noticeTime(message);
    switch (message.notificationType) {
      case "DeviceTwinChangeNotification": {
        const device = devices.get(key);
        if (!device) {
          loadDevice(ref.namespace, ref.name);
          return;
        }
        const parts = [];
        for (const [name, change] of Object.entries(message.changes || {})) {
          if (change.deleted) {
            removeProperty(device, name);
            parts.push(`${name} removed`);
            continue;
          }
          const entry = {};
          if (change.reported !== undefined && change.reported !== null) {
            entry.reported = change.reported;
            const before = change.previous ? change.previous.value : "—";
            if (!change.previous || before !== change.reported.value) {
              parts.push(`${name} ${before} → ${change.reported.value}`);
            }
          }
          if ("desired" in change) {
            entry.desired = change.desired;
            const before = change.previousDesired ? change.previousDesired.value : "—";
            parts.push(`${name} desired ${before} → ${change.desired ? change.desired.value : "—"}`);
          }
          setProperty(device, name, entry, when);
        }
        if (parts.length) activity(key, parts.join(", "), when);
        return;
      }
      case "DeviceStateChangeNotification": {
        const device = devices.get(key);
        if (!device) {
          loadDevice(ref.namespace, ref.name);
          return;
        }
        device.state = message.state;
        if (message.lastOnlineTime) device.lastOnlineTime = message.lastOnlineTime;
        renderHeader(device);
        activity(key, `state ${message.previousState || "—"} → ${message.state || "—"}`, when);
        return;
      }
      case "DeviceMembershipChangeNotification": {
        activity(key, (message.changeType || "changed").toLowerCase(), when);
        if (message.changeType === "REMOVED") removeDevice(key);
        else loadDevice(ref.namespace, ref.name);
        return;
      }
      default:
        return;
    }
  }

  // ------------------------------------------------------------------ streams

  class Stream {
    constructor(type, gen) {
      this.type = type;
      this.gen = gen;
      this.id = null;
      this.ws = null;
      this.open = false;
      this.connects = 0;
      this.attempts = 0;
      this.timer = null;
      this.stopped = false;
      this.lastSeq = null;
      this.reason = "";
    }

    live() {
      return !this.stopped && this.gen === generation;
    }

    async ensure() {
      this.timer = null;
      if (!this.live()) return;
      try {
        if (this.id) {
          const known = await call("GET", `subscriptions/${encodeURIComponent(this.id)}`);
          if (!this.live()) return;
          if (known.status === 401) return;
          if (known.status === 404) this.id = null;
          else if (!known.ok) throw new Error(problemText(known.status, known.data));
        }
        if (!this.id) {
          const created = await call("POST", "subscriptions", {
            json: {
              subscriptionType: this.type,
              requestWebsocketUri: true,
              expiryDeadline: {
                seconds: Math.floor(Date.now() / 1000) + SUBSCRIPTION_LIFETIME_S,
                nanoSeconds: 0,
              },
            },
          });
          if (created.status === 401) return;
          if (!created.ok || !created.data || !created.data.id) {
            throw new Error(problemText(created.status, created.data));
          }
          if (!this.live()) {
            deleteSubscription(created.data.id);
            return;
          }
          this.id = created.data.id;
          this.lastSeq = null;
        }
        this.connect();
      } catch (error) {
        this.retry(error.message || String(error));
      }
    }

    connect() {
      const url = new URL(`subscriptions/${encodeURIComponent(this.id)}/websocket`, API);
      url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
      const bearer = token();
      const ws = bearer ? new WebSocket(url, ["bearer", bearer]) : new WebSocket(url);
      this.ws = ws;
      ws.addEventListener("open", () => {
        if (this.ws !== ws) return;
        this.open = true;
        this.connects += 1;
        this.attempts = 0;
        this.reason = "";
        updateLive();
        // whatever happened while no socket was attached: read the registry again
        scheduleResync(null);
      });
      ws.addEventListener("message", (event) => {
        if (this.ws !== ws) return;
        let message;
        try {
          message = JSON.parse(event.data);
        } catch (_) {
          return;
        }
        handleNotification(this, message);
      });
      ws.addEventListener("close", (event) => {
        if (this.ws !== ws) return;
        this.ws = null;
        this.open = false;
        if (this.live()) this.retry(event.code === 1006 ? "connection lost" : `closed (${event.code})`);
      });
    }

    retry(reason) {
      if (!this.live()) return;
      const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempts);
      const delay = Math.round(base * (0.75 + Math.random() * 0.5));
      this.attempts += 1;
      this.reason = `${reason}; retrying in ${(delay / 1000).toFixed(1)} s`;
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.ensure(), delay);
      updateLive();
    }

    stop(remove) {
      this.stopped = true;
      clearTimeout(this.timer);
      if (this.ws) {
        const ws = this.ws;
        this.ws = null;
        try {
          ws.close(1000, "console closed");
        } catch (_) {
          // already closing
        }
      }
      this.open = false;
      if (remove && this.id) deleteSubscription(this.id);
    }
  }

  function deleteSubscription(id) {
    // best effort; keepalive lets it outlive the page
    call("DELETE", `subscriptions/${encodeURIComponent(id)}`, { keepalive: true, allow401: true }).catch(
      () => {},
    );
  }

  function setLive(level, text, title) {
    const node = $("live");
    node.dataset.level = level;
    node.textContent = text;
    node.title = title || "websocket notifications";
  }

  function updateLive() {
    if (!streams.length) return;
    const open = streams.filter((s) => s.open).length;
    const reasons = streams.filter((s) => !s.open && s.reason).map((s) => s.reason);
    if (open === streams.length) setLive("ok", "live");
    else if (reasons.length) setLive("bad", `reconnecting (${open}/${streams.length})`, reasons.join("\n"));
    else setLive("warn", `connecting (${open}/${streams.length})`);
  }

  // Subscriptions left behind when the token was refused; removed once a token works again.
  const orphans = new Set();

  function stopAll(remove) {
    generation += 1;
    for (const stream of streams) {
      if (!remove && stream.id) orphans.add(stream.id);
      stream.stop(remove);
    }
    streams = [];
  }

  // -------------------------------------------------------------- status strip

  function pill(id, level, text, title) {
    const node = $(id);
    node.dataset.level = level;
    node.textContent = text;
    if (title !== undefined) node.title = title;
  }

  function renderReadiness(body, status) {
    if (!body || typeof body !== "object") {
      pill("st-ready", "bad", `readyz: HTTP ${status}`);
      return;
    }
    pill("st-ready", body.status === "ready" ? "ok" : "bad", body.status === "ready" ? "ready" : "not ready");
    const bus = body.eventbus || {};
    const connected = bus.mqtt === "connected";
    pill(
      "st-eventbus",
      connected ? (bus.synced ? "ok" : "warn") : "bad",
      `EventBus ${bus.mqtt || "unknown"}${connected && !bus.synced ? ", syncing" : ""}`,
      bus.lastError ? `last error: ${bus.lastError}` : "EdgeCore's MQTT EventBus",
    );
    if (bus.edgecoreNode && bus.edgecoreNode !== readyNode) {
      readyNode = String(bus.edgecoreNode);
      renderNode();
    }
    const edgecore = bus.edgecore || "unknown";
    pill(
      "st-edgecore",
      edgecore === "responsive" ? "ok" : edgecore === "silent" ? "bad" : "warn",
      `EdgeCore ${edgecore}`,
      bus.edgecoreNode ? `node ${bus.edgecoreNode}` : "",
    );
    const kube = body.kube || {};
    if (!kube.source || kube.source === "none") {
      pill("st-kube", "off", "kube: none", "no kube source configured");
    } else {
      const level = kube.connected && kube.synced ? "ok" : kube.connected ? "warn" : "bad";
      const how = kube.connected ? (kube.synced ? "synced" : "syncing") : "disconnected";
      pill(
        "st-kube",
        level,
        `kube ${kube.source}${kube.apiVersion ? ` ${kube.apiVersion}` : ""}: ${how}`,
        [kube.url, kube.lastError].filter(Boolean).join("\n"),
      );
    }
    const mep = body.mep || {};
    const state = mep.state || "unknown";
    const levels = { registered: "ok", degraded: "warn", connecting: "warn", disabled: "off", stopped: "off", locked: "bad" };
    const services = mep.services ? ` ${mep.services.registered}/${mep.services.wanted}` : "";
    pill(
      "st-mep",
      levels[state] || "unknown",
      `MEP ${state}${state === "disabled" ? "" : services}`,
      [mep.reason, mep.lastError].filter(Boolean).join("\n") || "MP1 registration with the MEP",
    );
  }

  function parseCounters(text) {
    const totals = {};
    for (const line of text.split("\n")) {
      const match = /^mka_notifications_total\{([^}]*)\}\s+(\S+)/.exec(line);
      if (!match) continue;
      const labels = {};
      for (const pair of match[1].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]] = pair[2];
      const channel = labels.channel || "?";
      const outcome = labels.outcome || "?";
      (totals[channel] ||= {})[outcome] = (totals[channel][outcome] || 0) + Number(match[2]);
    }
    return totals;
  }

  function renderCounters(totals) {
    const node = $("st-counters");
    const channels = Object.keys(totals).sort();
    if (!channels.length) {
      node.replaceChildren(el("span", { class: "muted", text: "no notifications yet" }));
      return;
    }
    node.replaceChildren(
      el("span", { class: "muted", text: "notifications" }),
      ...channels.map((channel) => {
        const parts = Object.entries(totals[channel])
          .sort()
          .map(([outcome, n]) =>
            el("span", { class: `count ${outcome}`, "data-outcome": outcome, text: `${outcome} ${n}` }),
          );
        return el("span", { class: "channel", "data-channel": channel }, el("b", { text: channel }), ...parts);
      }),
    );
  }

  async function refreshStrip() {
    try {
      const ready = await call("GET", "readyz", { base: ROOT, allow401: true });
      renderReadiness(ready.data, ready.status);
    } catch (error) {
      pill("st-ready", "bad", "adapter unreachable", String(error.message || error));
    }
    try {
      const response = await fetch(new URL("metrics", ROOT), { headers: authHeaders(), cache: "no-store" });
      if (response.ok) renderCounters(parseCounters(await response.text()));
    } catch (_) {
      // shown by the readiness pill
    }
  }

  // -------------------------------------------------------------------- start

  async function start() {
    stopAll(true);
    const gen = generation;
    setLive("warn", "connecting…");
    if (!(await loadDevices()) || gen !== generation || authWanted) return;
    for (const id of orphans) deleteSubscription(id);
    orphans.clear();
    streams = SUBSCRIPTION_TYPES.map((type) => new Stream(type, gen));
    updateLive();
    for (const stream of streams) stream.ensure();
  }

  function boot() {
    setupAuth();
    refreshStrip();
    stripTimer = setInterval(() => {
      if (!document.hidden) refreshStrip();
    }, STRIP_EVERY_MS);
    setInterval(tick, 1000);
    window.addEventListener("pagehide", () => stopAll(true));
    window.addEventListener("pageshow", (event) => {
      if (event.persisted) start();
    });
    start();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
  else boot();

  // exposed for tests and the curious
  window.mkaConsole = {
    streams: () =>
      streams.map((s) => ({ type: s.type, id: s.id, open: s.open, connects: s.connects, reason: s.reason })),
  };
})();
