// criteo-proxy console. Reads /_proxy/status and /_proxy/requests only (any tool can);
// every value is inserted as text (textContent), never as HTML.
"use strict";

const POLL_MS = 1000; // at most once a second, and not at all while the tab is hidden
const MAX_ROWS = 1000;
// Two estimates of when the proxy started (now minus its uptime) differ by the latency of
// two polls; one that started more than this much later is another process.
const RESTART_SLACK_MS = 1000;

const state = {
  lastSeq: 0,
  requests: [], // newest first
  status: null,
  statusAt: 0, // performance.now() when status arrived
  startedAt: null, // performance.now() when the proxy started, by its uptime
  statusClass: "all",
  search: "",
  selected: null, // seq of the request shown in the detail panel
  timer: null,
  polling: false, // a poll is in flight: never start a second one (both would show new rows)
  loaded: false, // the request list has been answered once: "no requests yet" may be true
  failures: 0,
};

function el(tag, options, ...children) {
  const node = document.createElement(tag);
  if (options) {
    if (options.className) node.className = options.className;
    if (options.title) node.title = options.title;
    if (options.dataset) Object.assign(node.dataset, options.dataset);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function text(id, value) {
  document.getElementById(id).textContent = value;
}

function dash(value) {
  return value === null || value === undefined || value === "" ? "–" : String(value);
}

function seconds(value) {
  if (value === null || value === undefined) return "–";
  const s = Math.max(0, Math.round(value));
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function localTime(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleTimeString();
}

function ms(value) {
  return value === null || value === undefined ? "–" : `${value} ms`;
}

// --- status ------------------------------------------------------------------------------

function sinceStatus() {
  return (performance.now() - state.statusAt) / 1000;
}

function renderStatus() {
  const status = state.status;
  if (!status) return;
  const elapsed = sinceStatus();
  text("fact-version", status.version);
  text("fact-uptime", seconds(status.uptime_seconds + elapsed));
  text("fact-upstream", status.upstream);
  text("fact-listen", status.profiles.map((p) => p.listen).filter(Boolean).join(", ") || "–");
  document.body.classList.toggle("single-profile", status.profiles.length < 2);
  const container = document.getElementById("profiles");
  container.replaceChildren(...status.profiles.map((p) => renderProfile(p, elapsed, status.profiles.length)));
}

function renderProfile(profile, elapsed, count) {
  const title = el("h2", null, count > 1 ? `profile ${profile.name}` : "Token", el("span", { className: "listen muted" }, profile.listen || ""));
  return el(
    "article",
    { className: "profile", dataset: { profile: profile.name } },
    title,
    count > 1 ? el("h3", null, "Token") : null,
    renderToken(profile.token, elapsed),
    renderCoordination(profile.coordination),
    el("h3", null, "Rate limits"),
    renderRateLimits(profile.rate_limits, elapsed),
    el("h3", null, "API versions"),
    renderVersions(profile.versions),
  );
}

function row(term, ...value) {
  return [el("dt", null, term), el("dd", null, ...value)];
}

function renderToken(token, elapsed) {
  const left = token.expires_in_seconds === null ? null : token.expires_in_seconds - elapsed;
  const backoff = Math.max(0, token.backoff_seconds - elapsed);
  const items = [
    ...row("state", el("span", { className: `badge state-${token.state}` }, token.state.replace("_", " "))),
    ...row("grant type", token.grant_type),
    ...row("client id", token.client_id),
    ...row("seconds left", left === null ? "–" : seconds(left)),
    ...row("fetched", localTime(token.fetched_at)),
    ...row("recent errors", renderRecentErrors(token)),
    ...row("back-off left", backoff > 0 ? seconds(backoff) : "–"),
  ];
  if (token.grant_type === "authorization_code") {
    items.push(...row("token store", dash(token.token_store)));
    items.push(...row("refresh token stored", localTime(token.refresh_token_stored_at)));
  }
  return el("dl", { className: "grid token" }, ...items);
}

// The last five distinct token errors, newest first: the helpful first one (check
// CRITEO_CLIENT_SECRET) stays in sight when a timeout follows it.
// Several proxies sharing one app on Redis (DESIGN 11): shown only when configured.
function renderCoordination(coordination) {
  if (!coordination || coordination.state === "off") return null;
  const state = coordination.state === "up" ? "valid" : "failing";
  return el(
    "dl",
    { className: "grid coordination" },
    ...row("fleet", el("span", { className: `badge state-${state}` }, coordination.state === "up" ? "shared" : "acting alone")),
    ...row("redis", dash(coordination.redis)),
    ...row("members", dash(coordination.members)),
    ...(coordination.last_error ? row("last error", el("span", { className: "error-text" }, coordination.last_error)) : []),
  );
}

function renderRecentErrors(token) {
  const recent = token.recent_errors || [];
  if (!recent.length) return token.last_error ? el("span", { className: "error-text" }, token.last_error) : "none";
  const items = recent.map((e) =>
    el("li", null, el("span", { className: "muted", title: e.time }, localTime(e.time)), " ", el("span", { className: "error-text" }, e.error)),
  );
  return el("ol", { className: "recent-errors" }, ...items);
}

function renderRateLimits(windows, elapsed) {
  if (!windows.length) return el("p", { className: "empty" }, "No window known yet: Criteo says with its first answer.");
  if (windows.every((w) => !w.metered)) return el("p", { className: "empty" }, "Not metered: the upstream sends no rate-limit headers.");
  const head = el(
    "tr",
    null,
    el("th", null, "bucket"),
    el("th", { className: "num" }, "limit"),
    el("th", { className: "num" }, "remaining"),
    el("th", null, "reset"),
    el("th", { className: "num" }, "waiting"),
    el("th", null, "429 seen / retried / refused"),
  );
  const rows = windows.map((w) =>
    el(
      "tr",
      null,
      el("td", null, w.bucket),
      el("td", { className: "num" }, dash(w.limit)),
      el("td", { className: "num" }, dash(w.remaining)),
      el("td", null, w.reset_in_seconds === null ? "–" : `${localTime(w.reset_at)} (in ${seconds(w.reset_in_seconds - elapsed)})`),
      el("td", { className: "num" }, String(w.waiting)),
      el("td", null, `${w.seen_429} / ${w.retried_429} / ${w.refused}`),
    ),
  );
  return el("table", { className: "mini" }, el("thead", null, head), el("tbody", null, ...rows));
}

function versionMark(v) {
  if (v.retired) return el("span", { className: "badge sunset" }, "retired: Criteo answers 410");
  if (v.deprecated) return el("span", { className: "badge sunset" }, v.sunset ? `deprecated: sunset ${v.sunset}` : "deprecated");
  return "";
}

function renderVersions(versions) {
  if (!versions.length) return el("p", { className: "empty" }, "No versioned path seen yet.");
  const head = el("tr", null, el("th", null, "version"), el("th", { className: "num" }, "requests"), el("th", null, ""));
  const rows = versions.map((v) =>
    el(
      "tr",
      null,
      el("td", null, v.version),
      el("td", { className: "num" }, String(v.requests)),
      el("td", null, versionMark(v)),
    ),
  );
  return el("table", { className: "mini" }, el("thead", null, head), el("tbody", null, ...rows));
}

// --- requests ----------------------------------------------------------------------------

function isFailed(r) {
  return r.status >= 400 || r.proxy_error !== null;
}

function matches(r) {
  const c = state.statusClass;
  if (c === "failed" && !isFailed(r)) return false;
  if (c !== "all" && c !== "failed" && String(r.status)[0] !== c) return false;
  if (!state.search) return true;
  const haystack = [r.method, r.path, r.status, r.request_id, r.criteo_trace_id, r.proxy_error, r.profile, r.retried, r.who, r.advice, r.error_body]
    .filter((v) => v !== null && v !== undefined)
    .join(" ")
    .toLowerCase();
  return haystack.includes(state.search);
}

function renderRequests() {
  const shown = state.requests.filter(matches);
  const rows = shown.map((r) => {
    const tr = el(
      "tr",
      { dataset: { seq: String(r.seq) } },
      el("td", { title: r.time }, localTime(r.time)),
      el("td", { className: "col-profile" }, r.profile),
      el("td", null, r.method),
      el("td", { className: "path" }, r.path),
      el("td", { className: `status status-${String(r.status)[0]}` }, String(r.status)),
      el("td", { className: "num", title: timings(r) }, ms(r.duration_ms)),
      el("td", null, dash(r.retried)),
      // Ids are cut to the cell's width on screen (hover for all of it); search finds them.
      el("td", { className: "id request-id", title: r.request_id }, r.request_id),
      el("td", { className: "id trace-id", title: r.criteo_trace_id || "" }, dash(r.criteo_trace_id)),
      el("td", { className: `who${r.who ? ` who-${r.who}` : ""}` }, r.who || ""),
      el("td", { className: "advice" }, r.proxy_error ? el("code", null, r.proxy_error) : null, r.proxy_error && r.advice ? " " : null, r.advice || ""),
    );
    if (r.seq === state.selected) tr.classList.add("selected");
    return tr;
  });
  document.getElementById("request-rows").replaceChildren(...rows);
  // Nothing to say before the first answer: "no requests yet" may well be false.
  document.getElementById("no-requests").hidden = !state.loaded || state.requests.length > 0;
  text("count", state.requests.length ? `${shown.length} of ${state.requests.length} shown` : "");
}

function timings(r) {
  const wait = r.rate_limit_wait_ms ? `, rate-limit wait ${ms(r.rate_limit_wait_ms)}` : "";
  return `upstream ${ms(r.upstream_ms)}${wait}`;
}

function listenFor(profileName) {
  const profiles = state.status ? state.status.profiles : [];
  const profile = profiles.find((p) => p.name === profileName);
  const listen = profile && profile.listen ? profile.listen : window.location.origin;
  return listen.startsWith("unix:") ? null : listen;
}

// Quoted for a POSIX shell: inside '...' nothing is special but ' itself, written '\''.
function shellQuote(value) {
  return `'${String(value).replace(/'/g, "'\\''")}'`;
}

// The target to ask the proxy for: the path and query of an absolute-form request
// (GET http://127.0.0.1:8080/x) as the proxy sent it on; null for anything else (*).
function originForm(path) {
  if (path.startsWith("/")) return path;
  const absolute = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/.exec(path);
  if (absolute === null) return null;
  const rest = path.slice(absolute[0].length);
  return rest.startsWith("/") ? rest : `/${rest}`;
}

// Every word that comes from a request (its method, path, the socket) is quoted: pasted
// into a shell, the line runs curl with these words as they are, and nothing else.
function curlFor(r) {
  const words = ["curl"];
  const listen = listenFor(r.profile);
  let base = listen;
  if (listen === null) {
    const socket = state.status.profiles.find((p) => p.name === r.profile).listen.slice(5);
    words.push("--unix-socket", shellQuote(socket));
    base = "http://localhost";
  }
  // HEAD as --head: with -X HEAD, curl waits for the body the headers announce, forever.
  if (r.method === "HEAD") words.push("--head");
  else if (r.method !== "GET") words.push("-X", shellQuote(r.method));
  const target = originForm(r.path);
  if (target === null) words.push("--request-target", shellQuote(r.path), shellQuote(`${base}/`));
  else words.push(shellQuote(base + target));
  // Bodies are never kept: a request that had one needs it given again.
  if (!["GET", "HEAD", "DELETE", "OPTIONS"].includes(r.method)) words.push("--data-binary", "@body");
  return words.join(" ");
}

function prettyBody(body) {
  if (body === null || body === undefined) return "(no body kept: kept only for failed JSON answers up to 8 KiB, and only while console.error_bodies is true)";
  try {
    return JSON.stringify(JSON.parse(body), null, 2);
  } catch (_) {
    return body;
  }
}

function showDetail(seq) {
  const r = state.requests.find((x) => x.seq === seq);
  const panel = document.getElementById("detail");
  if (!r) {
    panel.hidden = true;
    state.selected = null;
    return;
  }
  state.selected = seq;
  text("detail-id", r.request_id);
  const facts = [
    ["time", r.time],
    ["profile", r.profile],
    ["request", `${r.method} ${r.path}`],
    ["status", String(r.status)],
    ["duration", `${ms(r.duration_ms)} (${timings(r)})`],
    ["retried", dash(r.retried)],
    ["Criteo traceId", dash(r.criteo_trace_id)],
    ["proxy error", dash(r.proxy_error)],
    ["whose side", dash(r.who)],
    ["what to do", dash(r.advice)],
  ].map(([term, value]) => el("div", null, el("dt", null, term), el("dd", null, value)));
  document.getElementById("detail-facts").replaceChildren(...facts);
  text("detail-curl", curlFor(r));
  text("copy-done", "");
  text("detail-body", prettyBody(r.error_body));
  panel.hidden = false;
  renderRequests();
}

async function copyCurl() {
  const command = document.getElementById("detail-curl").textContent;
  try {
    await navigator.clipboard.writeText(command);
    text("copy-done", "copied");
  } catch (_) {
    const range = document.createRange();
    range.selectNodeContents(document.getElementById("detail-curl"));
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    text("copy-done", "selected: press Ctrl-C");
  }
}

// --- polling -----------------------------------------------------------------------------

async function getJson(path) {
  const response = await fetch(path, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } });
  if (response.status === 401 && response.headers.get("X-Criteo-Proxy-Error") === "proxy_key_required") {
    // The session cookie is gone or stale (a restart of the proxy ends every session).
    const ended = new Error("this console's session has ended (a restart of the proxy ends them): open /_proxy/?key=<your key> again");
    ended.sessionEnded = true;
    throw ended;
  }
  if (!response.ok) throw new Error(`${path} answered ${response.status}`);
  return response.json();
}

function hasRestarted(status, now) {
  if (status.console && status.console.last_seq < state.lastSeq) return true; // seq started again
  if (state.startedAt === null) return false;
  // Started later than the process seen last: another one, even if its seq has caught up
  // (a tab hidden, or backing off, while the proxy restarted and served). The slack grows
  // a little with the time between polls: the two clocks may drift apart.
  const startedAt = now - status.uptime_seconds * 1000;
  return startedAt - state.startedAt > RESTART_SLACK_MS + 0.01 * (now - state.statusAt);
}

async function poll() {
  state.timer = null;
  if (document.visibilityState === "hidden") return; // resumed by visibilitychange
  state.polling = true;
  let restarted = false;
  let more = false;
  try {
    const [status, page] = await Promise.all([getJson("/_proxy/status"), getJson(`/_proxy/requests?after=${state.lastSeq}`)]);
    const now = performance.now();
    restarted = hasRestarted(status, now);
    state.status = status;
    state.statusAt = now;
    state.startedAt = now - status.uptime_seconds * 1000;
    if (restarted) {
      // Another process: the old one's rows go, and what ?after= returned skipped the new
      // one's first requests (its seq started again): ask it from the start, at once.
      state.requests = [];
      state.lastSeq = 0;
      state.loaded = false; // until the new process's list has answered
      state.selected = null;
      document.getElementById("detail").hidden = true;
      renderRequests();
    } else {
      for (const r of page.requests) {
        state.requests.unshift(r);
        state.lastSeq = Math.max(state.lastSeq, r.seq);
      }
      state.requests.length = Math.min(state.requests.length, MAX_ROWS);
      const first = !state.loaded;
      state.loaded = true;
      if (page.requests.length || first) renderRequests();
      // An answer stops at a byte bound: while the proxy has newer requests than the
      // ones shown, ask again at once instead of a second later.
      more = page.requests.length > 0 && status.console && state.lastSeq < status.console.last_seq;
    }
    state.failures = 0;
    const live = document.getElementById("live");
    live.classList.remove("down");
    live.textContent = `live · updated ${new Date().toLocaleTimeString()}`;
    renderStatus();
  } catch (error) {
    state.failures += 1;
    const live = document.getElementById("live");
    live.classList.add("down");
    live.textContent = error.sessionEnded ? error.message : `the proxy does not answer (${error.message}); retrying`;
  } finally {
    state.polling = false;
  }
  schedule(restarted || more);
}

function schedule(now = false) {
  if (state.timer === null && document.visibilityState !== "hidden") {
    const delay = state.failures ? Math.min(10000, POLL_MS * 2 ** state.failures) : POLL_MS;
    state.timer = window.setTimeout(poll, now ? 0 : delay);
  }
}

function tick() {
  // Between two polls, the countdowns move on their own.
  if (document.visibilityState !== "hidden") renderStatus();
}

function start() {
  document.querySelectorAll(".filters button").forEach((button) => {
    button.addEventListener("click", () => {
      document.querySelectorAll(".filters button").forEach((b) => b.classList.toggle("on", b === button));
      state.statusClass = button.dataset.class;
      renderRequests();
    });
  });
  document.getElementById("search").addEventListener("input", (event) => {
    state.search = event.target.value.trim().toLowerCase();
    renderRequests();
  });
  document.getElementById("request-rows").addEventListener("click", (event) => {
    const tr = event.target.closest("tr");
    if (tr) showDetail(Number(tr.dataset.seq));
  });
  document.getElementById("detail-close").addEventListener("click", () => {
    document.getElementById("detail").hidden = true;
    state.selected = null;
    renderRequests();
  });
  document.getElementById("copy-curl").addEventListener("click", copyCurl);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && state.timer === null && !state.polling) poll();
  });
  window.setInterval(tick, 1000);
  renderRequests();
  poll();
}

start();
