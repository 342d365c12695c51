// The openscws remote administration console: a plain ES module over the REST API, no build
// step. Values from the API reach the DOM as text only (never innerHTML).

const API = "/api/v1";
const POLL_MS = 1000;
const HEALTH_MS = 10000;
// Progress bar order: finished work first, then what is still moving.
const STATES = ["done", "failed", "in_session", "triggered", "pending"];
const STATE_LABEL = {
  pending: "pending",
  triggered: "triggered",
  in_session: "in session",
  done: "done",
  failed: "failed",
};

// -- DOM ------------------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

// replaceChildren with h()'s rules: arrays flatten, null / false are skipped.
function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

function pageHeader(title, subtitle, ...actions) {
  return h(
    "div",
    { class: "page-header" },
    h("div", null, h("h1", null, title), subtitle ? h("p", { class: "subtitle" }, subtitle) : null),
    h("div", { class: "actions" }, actions),
  );
}

function panel(title, body, ...actions) {
  return h(
    "section",
    { class: "panel" },
    title ? h("div", { class: "panel-head" }, h("h2", null, title), h("div", { class: "actions" }, actions)) : null,
    body,
  );
}

function table(columns, tbody) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "grid" },
      h("thead", null, h("tr", null, columns.map((c) => h("th", { class: c.class ?? null }, c.label ?? c)))),
      tbody,
    ),
  );
}

function emptyRow(columns, text) {
  return h("tr", { class: "empty-row" }, h("td", { colspan: columns }, text));
}

function badge(state) {
  return h("span", { class: `badge state-${state}`, dataset: { state } }, STATE_LABEL[state] ?? state);
}

function pill(text, kind) {
  return h("span", { class: `pill pill-${kind}` }, text);
}

function mono(text, title) {
  return h("span", { class: "mono", title: title ?? null }, text);
}

function when(iso) {
  if (!iso) return h("span", { class: "muted" }, "—");
  const date = new Date(iso);
  return h("time", { datetime: iso, title: date.toLocaleString() }, relative(date));
}

function relative(date) {
  const seconds = Math.round((Date.now() - date.getTime()) / 1000);
  if (seconds < -60) return date.toISOString().slice(0, 16).replace("T", " ");
  if (seconds < 5) return "just now";
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return date.toISOString().slice(0, 16).replace("T", " ");
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function hexByte(n) {
  return "0x" + n.toString(16).toUpperCase().padStart(2, "0");
}

function field(label, input, hint) {
  return h("label", { class: "field" }, h("span", { class: "field-label" }, label), input, hint ? h("span", { class: "hint" }, hint) : null);
}

// -- API ------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

// The logged-in user ({user, role, csrf_token}), from /auth/me before the first view.
let me = null;
const ROLES = ["viewer", "operator", "admin"];

function can(role) {
  return me !== null && ROLES.indexOf(me.role) >= ROLES.indexOf(role);
}

function toLogin() {
  location.assign("/login.html");
}

// Every state-changing request carries the session's CSRF token; the cookie goes by itself
// (same origin), and the server also checks the Origin header the browser adds.
async function request(path, options = {}) {
  const method = (options.method ?? "GET").toUpperCase();
  const csrf = method === "GET" || method === "HEAD" || me === null ? {} : { "X-CSRF-Token": me.csrf_token };
  const response = await fetch(API + path, {
    ...options,
    credentials: "same-origin",
    headers: { Accept: "application/json", ...csrf, ...(options.headers ?? {}) },
  });
  if (response.status === 401 && path !== "/auth/me") {
    toLogin();
  }
  if (!response.ok) {
    let problem = { title: response.statusText, detail: "" };
    try {
      problem = await response.json();
    } catch {
      // Not a problem document (a proxy's error page): keep the status text.
    }
    throw new ApiError(response.status, problem);
  }
  return response;
}

async function api(path, options) {
  const response = await request(path, options);
  return response.status === 204 ? null : response.json();
}

function send(method, path, body) {
  return api(path, { method, headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}

// Repository paths go into the URL segment by segment.
function encodePath(path) {
  return path.split("/").map(encodeURIComponent).join("/");
}

// -- toasts and health ----------------------------------------------------------------------

function toast(message, kind = "info", title = null) {
  const box = document.getElementById("toasts");
  const item = h("div", { class: `toast toast-${kind}` }, title ? h("strong", null, title) : null, h("span", null, message));
  box.append(item);
  setTimeout(() => item.classList.add("leaving"), 5000);
  setTimeout(() => item.remove(), 5400);
}

function failed(error) {
  if (error instanceof ApiError) toast(error.message, "error", error.problem.title ?? "Error");
  else toast(String(error.message ?? error), "error", "Error");
}

function setHealth(state, text) {
  const el = document.getElementById("health");
  el.dataset.state = state;
  el.textContent = text;
}

async function checkHealth() {
  try {
    const health = await api("/health");
    setHealth("ok", `API ${health.version}`);
  } catch {
    setHealth("down", "API unreachable");
  }
}

// A view's live data: `fn` runs now and then `ms` after each run ends (never two at once),
// and not while the tab is hidden.
function poller(fn, ms = POLL_MS) {
  let stopped = false;
  let timer = null;
  let failing = false;
  async function tick() {
    if (stopped) return;
    if (!document.hidden) {
      try {
        await fn();
        if (failing) checkHealth();
        failing = false;
      } catch (error) {
        if (!failing) failed(error);
        failing = true;
        setHealth("down", "API unreachable");
      }
    }
    if (!stopped) timer = setTimeout(tick, ms);
  }
  tick();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

// -- progress -------------------------------------------------------------------------------

function progressBar(large = false) {
  const bar = h("div", { class: large ? "progress progress-lg" : "progress", role: "progressbar", "aria-valuemin": 0 });
  for (const state of STATES) bar.append(h("span", { class: `seg seg-${state}`, dataset: { state } }));
  return bar;
}

function setProgress(bar, progress, total) {
  for (const seg of bar.children) {
    const n = progress[seg.dataset.state] ?? 0;
    seg.style.width = total ? `${(100 * n) / total}%` : "0%";
    seg.title = `${n} ${STATE_LABEL[seg.dataset.state]}`;
  }
  const finished = progress.done + progress.failed;
  bar.setAttribute("aria-valuemax", total);
  bar.setAttribute("aria-valuenow", finished);
  Object.assign(bar.dataset, { done: progress.done, failed: progress.failed, total });
}

function progressText(c) {
  const parts = [`${c.progress.done} of ${c.jobs} done`];
  if (c.progress.failed) parts.push(`${c.progress.failed} failed`);
  return parts.join(" · ");
}

function campaignPill(state) {
  return pill(state, { active: "blue", finished: "green", cancelled: "grey" }[state] ?? "grey");
}

// -- campaigns ------------------------------------------------------------------------------

function campaignsView(root, selected) {
  const formSlot = h("div");
  const tbody = h("tbody");
  const detailSlot = h("div", { id: "campaign-detail" });
  root.append(
    pageHeader(
      "Campaigns",
      "Content versions pinned at creation, deployed to each card by an admin session triggered by SMS or SIP push.",
      can("operator") ? h("button", { class: "btn primary", type: "button", onclick: () => toggleCampaignForm(formSlot) }, "New campaign") : null,
    ),
    formSlot,
    panel(
      null,
      table(
        [
          { label: "#", class: "num" },
          "Campaign",
          "State",
          "Trigger",
          { label: "Progress", class: "col-progress" },
          "Jobs",
          "Created",
        ],
        tbody,
      ),
    ),
    detailSlot,
  );

  const rows = new Map();
  const detail = selected === null ? null : campaignDetail(detailSlot, Number(selected));

  const poll = poller(async () => {
    const [campaigns] = await Promise.all([api("/campaigns"), detail?.refresh()]);
    renderCampaignRows(tbody, rows, campaigns, selected);
  });
  return poll;
}

function renderCampaignRows(tbody, rows, campaigns, selected) {
  if (!campaigns.length) {
    rows.clear();
    fill(tbody, emptyRow(7, "No campaigns yet: upload content, register cards, then start one."));
    return;
  }
  const order = [...campaigns].reverse(); // newest first
  const kept = new Set();
  for (const c of order) {
    kept.add(c.id);
    let row = rows.get(c.id);
    if (!row) {
      const bar = progressBar();
      const label = h("span", { class: "progress-label" });
      const tr = h(
        "tr",
        { class: "clickable", dataset: { campaign: c.id }, onclick: () => (location.hash = `#/campaigns/${c.id}`) },
        h("td", { class: "num muted" }, c.id),
        h("td"),
        h("td"),
        h("td", { class: "col-trigger" }),
        h("td", { class: "col-progress" }, h("div", { class: "progress-cell" }, bar, label)),
        h("td"),
        h("td"),
      );
      row = { tr, bar, label };
      rows.set(c.id, row);
    }
    const cells = row.tr.children;
    fill(cells[1],
      h("a", { class: "strong", href: `#/campaigns/${c.id}` }, c.name),
      h("div", { class: "sub" }, operationsSummary(c.operations)),
    );
    fill(cells[2], campaignPill(c.state));
    fill(cells[3], triggerLabel(c.trigger));
    setProgress(row.bar, c.progress, c.jobs);
    row.label.textContent = progressText(c);
    fill(cells[5], stateCounts(c.progress));
    fill(cells[6], when(c.created_at));
    row.tr.classList.toggle("selected", String(c.id) === selected);
    tbody.append(row.tr); // keeps the order, moving existing rows without rebuilding them
  }
  for (const [id, row] of rows) {
    if (!kept.has(id)) {
      row.tr.remove();
      rows.delete(id);
    }
  }
  tbody.querySelector(".empty-row")?.remove();
}

// How a campaign wakes its cards: its own choice, or the server's configured default.
function triggerLabel(trigger) {
  if (trigger === "sip-push") return h("span", { class: "trigger", dataset: { trigger } }, "SIP push");
  if (trigger === "sms") return h("span", { class: "trigger", dataset: { trigger } }, "SMS");
  return h("span", { class: "trigger muted", dataset: { trigger: "default" }, title: "the server's admin.trigger" }, "default");
}

// A PAP result code (PUSH-PAP): 1xxx success, 2xxx initiator error, 3xxx PPG error,
// 4xxx service failure, 5xxx mobile client aborted.
const PAP_CLASS = { 1: "success", 2: "initiator error", 3: "PPG error", 4: "service failure", 5: "mobile client aborted" };
const PAP_NAME = {
  1000: "OK",
  1001: "accepted for processing",
  2000: "bad request",
  2001: "forbidden",
  2002: "address error",
  2003: "address not found",
  2004: "push ID not found",
  2007: "duplicate push ID",
  2008: "cancellation not possible",
  3000: "internal server error",
  4000: "service failure",
  4001: "service unavailable",
};

function papResult(code) {
  if (code === null || code === undefined) return h("span", { class: "muted" }, "—");
  const name = PAP_NAME[code] ?? PAP_CLASS[Math.floor(code / 1000)] ?? "unknown";
  const ok = code < 2000;
  return h("span", { class: `pap ${ok ? "pap-ok" : "pap-error"}`, dataset: { pap: code }, title: `PAP ${code}: ${name}` }, h("b", { class: "mono" }, String(code)), ` ${name}`);
}

function operationsSummary(ops) {
  const puts = ops.filter((o) => o.op === "put").length;
  const acp = ops.some((o) => o.op === "acp");
  const deletes = ops.length - puts - (acp ? 1 : 0);
  const parts = [];
  if (acp) parts.push("access rules");
  if (puts) parts.push(`${puts} ${puts === 1 ? "file" : "files"}`);
  if (deletes) parts.push(`${deletes} ${deletes === 1 ? "deletion" : "deletions"}`);
  return parts.join(", ");
}

function stateCounts(progress) {
  return h(
    "div",
    { class: "counts" },
    STATES.filter((s) => progress[s]).map((s) =>
      h("span", { class: `count state-${s}`, title: STATE_LABEL[s] }, h("i", { class: "dot" }), progress[s]),
    ),
  );
}

function campaignDetail(slot, id) {
  const title = h("h2");
  const statePill = h("span");
  const meta = h("div", { class: "meta" });
  const ops = h("div", { class: "chips" });
  const bar = progressBar(true);
  const legend = h("div", { class: "legend" });
  const percent = h("div", { class: "percent" });
  const cancel = h("button", { class: "btn danger-ghost", type: "button", hidden: true }, "Cancel campaign");
  const tbody = h("tbody");
  const seen = new Map();
  let current = null;
  let gone = false;

  cancel.addEventListener("click", async () => {
    if (!current || !confirm(`Cancel “${current.name}”? Pending and triggered jobs fail; running sessions finish.`)) return;
    try {
      const result = await api(`/campaigns/${id}/cancel`, { method: "POST" });
      toast(`${result.cancelled} ${result.cancelled === 1 ? "job" : "jobs"} cancelled`, "info", current.name);
    } catch (error) {
      failed(error);
    }
  });

  fill(slot,
    h(
      "section",
      { class: "panel detail", id: "campaign", dataset: { campaign: id } },
      h(
        "div",
        { class: "detail-head" },
        h("div", null, h("div", { class: "eyebrow" }, `Campaign #${id}`), h("div", { class: "title-row" }, title, statePill), meta),
        h("div", { class: "actions" }, cancel),
      ),
      ops,
      h("div", { class: "progress-block" }, h("div", { class: "progress-top" }, percent, legend), bar),
      table(["Card (ICCID)", "State", "Attempts", "PAP result", "Last error", "Updated"], tbody),
    ),
  );

  async function refresh() {
    if (gone) return;
    let c;
    try {
      c = await api(`/campaigns/${id}`);
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        gone = true;
        fill(slot, panel(null, h("p", { class: "empty" }, `There is no campaign #${id}.`)));
        return;
      }
      throw error;
    }
    current = c;
    title.textContent = c.name;
    fill(statePill, campaignPill(c.state));
    const maxAttempts = c.cards.length ? c.cards[0].max_attempts : null;
    fill(meta,
      h("span", null, "Created ", when(c.created_at)),
      h("span", null, `${c.jobs} ${c.jobs === 1 ? "card" : "cards"}`),
      h("span", null, "Trigger ", triggerLabel(c.trigger)),
      maxAttempts ? h("span", null, `up to ${maxAttempts} attempts per card`) : null,
    );
    fill(ops,
      c.operations.map((o) =>
        h("span", { class: `chip chip-${o.op}` }, h("b", null, o.op === "put" ? "PUT" : o.op === "acp" ? "ACP" : "DELETE"), o.path, o.version ? h("i", null, `v${o.version}`) : null),
      ),
    );
    setProgress(bar, c.progress, c.jobs);
    const finished = c.progress.done + c.progress.failed;
    fill(percent,
      h("strong", null, c.jobs ? `${Math.round((100 * finished) / c.jobs)}%` : "—"),
      h("span", { class: "muted" }, ` finished · ${progressText(c)}`),
    );
    fill(legend,
      STATES.map((s) =>
        h("span", { class: `legend-item state-${s}`, dataset: { state: s } }, h("i", { class: "dot" }), STATE_LABEL[s], h("b", null, c.progress[s])),
      ),
    );
    cancel.hidden = c.state !== "active" || !can("operator");
    fill(tbody,
      ...(c.cards.length
        ? c.cards.map((card) => {
            const before = seen.get(card.iccid);
            seen.set(card.iccid, card.state);
            return h(
              "tr",
              { dataset: { iccid: card.iccid, state: card.state }, class: before && before !== card.state ? "changed" : null },
              h("td", null, h("a", { class: "mono", href: `#/cards/${card.iccid}` }, card.iccid)),
              h("td", null, badge(card.state)),
              h("td", null, attempts(card.attempts, card.max_attempts)),
              h("td", { class: "pap-cell" }, papResult(card.pap_code)),
              h("td", { class: "error-cell" }, card.last_error ? h("span", { class: "error-text", title: card.last_error }, card.last_error) : h("span", { class: "muted" }, "—")),
              h("td", null, when(card.updated_at)),
            );
          })
        : [emptyRow(6, "This campaign has no jobs left (its cards were removed).")]),
    );
  }
  return { refresh };
}

function attempts(n, max) {
  const meter = h("span", { class: "meter" }, h("span", { class: "meter-fill" }));
  meter.firstChild.style.width = `${Math.min(100, (100 * n) / max)}%`;
  return h("span", { class: "attempts" }, meter, h("span", null, `${n} / ${max}`));
}

async function toggleCampaignForm(slot) {
  if (slot.firstChild) {
    slot.replaceChildren();
    return;
  }
  let content = [];
  let cards = [];
  try {
    [content, cards] = await Promise.all([api("/content"), api("/cards")]);
  } catch (error) {
    failed(error);
    return;
  }
  const name = h("input", { name: "name", required: true, maxlength: 255, placeholder: "e.g. spring-promo" });
  const paths = h("select", { name: "paths", multiple: true, size: Math.min(6, Math.max(3, content.length)) }, content.map((c) => h("option", { value: c.path }, `${c.path}  (v${c.version})`)));
  const cardSel = h("select", { name: "cards", multiple: true, size: Math.min(6, Math.max(3, cards.length)) }, cards.map((c) => h("option", { value: c.iccid }, c.msisdn ? `${c.iccid}  ${c.msisdn}` : c.iccid)));
  const maxAttempts = h("input", { name: "max_attempts", type: "number", min: 1, max: 1000, placeholder: "server default" });
  const acp = h("textarea", { name: "acp", rows: 3, placeholder: '{"rules": [{"app": "sha256:…", "ports": [3516]}]}' });
  const form = h(
    "form",
    { class: "form-grid" },
    field("Name", name),
    field("Max attempts", maxAttempts, "Per card, trigger and session each count one."),
    field("Paths", paths, "None selected: every path, deletions included."),
    field("Cards", cardSel, "None selected: every card."),
    field("Access rules", acp, "Optional JSON policy: sets the cards' SCWS access rules; content then goes only for the paths selected."),
    h(
      "div",
      { class: "form-actions" },
      h("button", { class: "btn", type: "button", onclick: () => slot.replaceChildren() }, "Close"),
      h("button", { class: "btn primary", type: "submit" }, "Start campaign"),
    ),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const selectedOf = (sel) => [...sel.selectedOptions].map((o) => o.value);
    const body = { name: name.value.trim() };
    if (selectedOf(paths).length) body.paths = selectedOf(paths);
    if (selectedOf(cardSel).length) body.cards = selectedOf(cardSel);
    if (maxAttempts.value) body.max_attempts = Number(maxAttempts.value);
    try {
      if (acp.value.trim()) body.acp = JSON.parse(acp.value);
    } catch (error) {
      failed(new Error(`Access rules: not JSON (${error.message})`));
      return;
    }
    try {
      const campaign = await send("POST", "/campaigns", body);
      toast(`${campaign.jobs} ${campaign.jobs === 1 ? "job" : "jobs"} queued`, "success", `Campaign “${campaign.name}” started`);
      slot.replaceChildren();
      location.hash = `#/campaigns/${campaign.id}`;
    } catch (error) {
      failed(error);
    }
  });
  fill(slot, panel("New campaign", form));
  name.focus();
}

// -- cards ----------------------------------------------------------------------------------

function cardsView(root, iccid) {
  if (iccid !== null) return cardDetailView(root, iccid);
  const formSlot = h("div");
  const keysSlot = h("div");
  const tbody = h("tbody");
  const count = h("span");
  root.append(
    pageHeader("Cards", count, can("admin") ? h("button", { class: "btn primary", type: "button", onclick: () => toggleCardForm(formSlot, keysSlot, load) }, "Add card") : null),
    keysSlot,
    formSlot,
    panel(null, table(["ICCID", "MSISDN", "PSK identity", "TAR", "KIc / KID", { label: "OTA counter", class: "num" }, "Registered", { label: "", class: "col-actions" }], tbody)),
  );

  async function load() {
    const cards = await api("/cards");
    count.textContent = `${cards.length} ${cards.length === 1 ? "card" : "cards"} registered. Keys are stored sealed and never shown after registration.`;
    fill(tbody,
      ...(cards.length
        ? cards.map((c) =>
            h(
              "tr",
              { dataset: { iccid: c.iccid } },
              h("td", null, h("a", { class: "mono strong", href: `#/cards/${c.iccid}` }, c.iccid)),
              h("td", { class: "mono" }, c.msisdn ?? "—"),
              h("td", { class: "mono" }, c.psk_identity),
              h("td", { class: "mono" }, c.ota_tar),
              h("td", { class: "mono" }, `${hexByte(c.ota_kic)} / ${hexByte(c.ota_kid)}`),
              h("td", { class: "num" }, c.ota_counter),
              h("td", null, when(c.created_at)),
              h("td", { class: "col-actions" }, can("admin") ? h("button", { class: "btn small danger-ghost", type: "button", onclick: () => removeCard(c.iccid, load) }, "Remove") : null),
            ),
          )
        : [emptyRow(8, "No cards yet: add one, or let `openscws up` register its card.")]),
    );
  }
  load().catch(failed);
  return null;
}

async function removeCard(iccid, reload) {
  if (!confirm(`Remove card ${iccid} with its jobs and session logs?`)) return;
  try {
    await api(`/cards/${iccid}`, { method: "DELETE" });
    toast(`Card ${iccid} removed`);
    await reload();
  } catch (error) {
    failed(error);
  }
}

function toggleCardForm(slot, keysSlot, reload) {
  if (slot.firstChild) {
    slot.replaceChildren();
    return;
  }
  const iccid = h("input", { name: "iccid", required: true, pattern: "[0-9]{19,20}", inputmode: "numeric", placeholder: "19 or 20 digits" });
  const msisdn = h("input", { name: "msisdn", pattern: "\\+?[0-9]{3,20}", placeholder: "+15550100001" });
  const identity = h("input", { name: "psk_identity", maxlength: 128, placeholder: "scws-<ICCID>" });
  const tar = h("input", { name: "ota_tar", pattern: "[0-9A-Fa-f]{6}", placeholder: "000000" });
  const form = h(
    "form",
    { class: "form-grid" },
    field("ICCID", iccid),
    field("MSISDN", msisdn, "Where trigger SMS go."),
    field("PSK identity", identity),
    field("Admin agent TAR", tar, "3 bytes, hex."),
    h("p", { class: "hint span-all" }, "The PSK and the OTA keys (KIc, KID: AES-128) are made here, in your browser, and shown once; the server keeps them sealed and never shows them."),
    h(
      "div",
      { class: "form-actions" },
      h("button", { class: "btn", type: "button", onclick: () => slot.replaceChildren() }, "Close"),
      h("button", { class: "btn primary", type: "submit" }, "Register card"),
    ),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { iccid: iccid.value.trim() };
    if (msisdn.value.trim()) body.msisdn = msisdn.value.trim();
    if (identity.value.trim()) body.psk_identity = identity.value.trim();
    if (tar.value.trim()) body.ota_tar = tar.value.trim();
    const keys = { psk_key: randomHex(16), kic_key: randomHex(16), kid_key: randomHex(16) };
    try {
      const card = await send("POST", "/cards", { ...body, ...keys });
      slot.replaceChildren();
      showKeys(keysSlot, card, keys);
      await reload();
    } catch (error) {
      failed(error);
    }
  });
  fill(slot, panel("Register a card", form));
  iccid.focus();
}

// Key bytes from the browser's cryptographic random source, as upper-case hex.
function randomHex(n) {
  const bytes = crypto.getRandomValues(new Uint8Array(n));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("").toUpperCase();
}

// The keys made for a card live only in this panel: dismissing it forgets them. Each is shown
// with the check value the server computed from what it stored.
function showKeys(slot, card, made) {
  const keys = Object.entries(made).map(([k, v]) => [k, `${v}  (check ${card.key_checks[k]})`]);
  const labels = { psk_key: "PSK", kic_key: "KIc key", kid_key: "KID key" };
  fill(slot,
    h(
      "section",
      { class: "panel notice" },
      h("div", { class: "panel-head" }, h("h2", null, `Keys of card ${card.iccid}`), h("button", { class: "btn small", type: "button", onclick: () => slot.replaceChildren() }, "I have stored them")),
      h("p", null, "Shown this once: personalise the card with them now. The server keeps them sealed and never shows them again."),
      h("dl", { class: "keys" }, keys.map(([k, v]) => [h("dt", null, labels[k] ?? k), h("dd", null, mono(v))])),
    ),
  );
}

function cardDetailView(root, iccid) {
  const info = h("dl", { class: "facts" });
  const jobs = h("tbody");
  const sessions = h("div", { class: "sessions" });
  root.append(
    h("a", { class: "back", href: "#/cards" }, "← Cards"),
    pageHeader(h("span", { class: "mono" }, iccid), "Card details, its latest jobs and its admin sessions."),
    panel("Card", info),
    panel("Jobs", table(["Job", "Campaign", "State", "Attempts", "Last error", "Updated"], jobs)),
    panel("Admin sessions", sessions),
  );
  return poller(async () => {
    let card;
    try {
      card = await api(`/cards/${encodeURIComponent(iccid)}`);
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        fill(info, h("p", { class: "empty" }, error.message));
        return;
      }
      throw error;
    }
    const logs = await api(`/cards/${encodeURIComponent(iccid)}/sessions?limit=50`);
    fill(info,
      ...[
        ["MSISDN", card.msisdn ?? "—"],
        ["PSK identity", card.psk_identity],
        ["Agent id", card.agent_id],
        ["Admin agent TAR", card.ota_tar],
        ["KIc / KID", `${hexByte(card.ota_kic)} / ${hexByte(card.ota_kid)}`],
        ["OTA counter", String(card.ota_counter)],
      ].map(([k, v]) => h("div", null, h("dt", null, k), h("dd", { class: "mono" }, v))),
      h("div", null, h("dt", null, "Registered"), h("dd", null, when(card.created_at))),
    );
    fill(jobs,
      ...(card.jobs.length
        ? card.jobs.map((j) =>
            h(
              "tr",
              { dataset: { job: j.id, state: j.state } },
              h("td", null, mono(j.id.slice(0, 8), j.id)),
              h("td", null, j.campaign_id ? h("a", { href: `#/campaigns/${j.campaign_id}` }, `#${j.campaign_id}`) : "—"),
              h("td", null, badge(j.state)),
              h("td", null, attempts(j.attempts, j.max_attempts)),
              h("td", { class: "error-cell" }, j.last_error ? h("span", { class: "error-text", title: j.last_error }, j.last_error) : h("span", { class: "muted" }, "—")),
              h("td", null, when(j.updated_at)),
            ),
          )
        : [emptyRow(6, "No jobs for this card yet.")]),
    );
    fill(sessions,
      ...(logs.length ? logs.map(sessionEntry) : [h("p", { class: "empty" }, "No admin sessions recorded yet.")]),
    );
  });
}

function sessionEntry(log) {
  const outcome = { done: "done", failed: "failed", retry: "triggered" }[log.outcome] ?? "pending";
  const duration = log.ended_at ? `${((new Date(log.ended_at) - new Date(log.started_at)) / 1000).toFixed(1)} s` : "running";
  return h(
    "article",
    { class: "session", dataset: { outcome: log.outcome } },
    h(
      "header",
      null,
      h("span", { class: `badge state-${outcome}` }, log.outcome),
      when(log.started_at),
      h("span", { class: "muted" }, duration),
      log.job_id ? h("span", { class: "muted" }, "job ", mono(log.job_id.slice(0, 8), log.job_id)) : null,
    ),
    log.detail.length ? h("ol", { class: "log-lines" }, log.detail.map((line) => h("li", null, line))) : null,
  );
}

// -- content --------------------------------------------------------------------------------

function contentView(root, selected) {
  const formSlot = h("div");
  const tbody = h("tbody");
  const historySlot = h("div");
  root.append(
    pageHeader(
      "Content",
      "The versioned repository. A campaign pins the current versions; uploading changes no card by itself.",
      can("operator") ? h("button", { class: "btn primary", type: "button", onclick: () => toggleUploadForm(formSlot, load) }, "Upload") : null,
    ),
    formSlot,
    panel(null, table(["Path", "Version", "Type", { label: "Size", class: "num" }, "SHA-256", "Stored", { label: "", class: "col-actions" }], tbody)),
    historySlot,
  );

  async function load() {
    const items = await api("/content");
    fill(tbody,
      ...(items.length
        ? items.map((c) =>
            h(
              "tr",
              { class: c.path === selected ? "clickable selected" : "clickable", dataset: { path: c.path }, onclick: (e) => e.target.closest("button") || (location.hash = `#/content${c.path}`) },
              h("td", null, h("a", { class: "mono strong", href: `#/content${c.path}` }, c.path)),
              h("td", null, h("span", { class: "version" }, `v${c.version}`)),
              h("td", { class: "mono" }, [c.content_type, c.content_encoding ? ` · ${c.content_encoding}` : ""].join("")),
              h("td", { class: "num" }, bytes(c.size)),
              h("td", null, mono(c.sha256.slice(0, 12), c.sha256)),
              h("td", null, when(c.created_at)),
              h("td", { class: "col-actions" }, can("operator") ? h("button", { class: "btn small danger-ghost", type: "button", onclick: () => deleteContent(c.path, load) }, "Delete") : null),
            ),
          )
        : [emptyRow(7, "The repository is empty: upload a file.")]),
    );
    if (selected !== null) await loadHistory(historySlot, selected);
  }
  load().catch(failed);
  return null;
}

async function loadHistory(slot, path) {
  let versions;
  try {
    versions = await api(`/content${encodePath(path)}/history`);
  } catch (error) {
    fill(slot, panel(`History of ${path}`, h("p", { class: "empty" }, error.message)));
    return;
  }
  const latest = versions[versions.length - 1]?.version;
  const rows = [...versions].reverse().map((v) =>
    h(
      "tr",
      { dataset: { version: v.version } },
      h("td", null, h("span", { class: "version" }, `v${v.version}`)),
      h("td", null, v.deleted ? pill("deleted", "red") : v.version === latest ? pill("current", "green") : pill("older", "grey")),
      h("td", { class: "mono" }, v.deleted ? "—" : v.content_type),
      h("td", { class: "mono" }, [v.content_encoding, v.content_language].filter(Boolean).join(" · ") || "—"),
      h("td", { class: "mono" }, v.realm ?? "—"),
      h("td", { class: "num" }, v.deleted ? "—" : bytes(v.size)),
      h("td", null, when(v.created_at)),
      h("td", { class: "col-actions" }, v.deleted ? null : h("a", { class: "btn small", href: `${API}/content${encodePath(path)}/versions/${v.version}`, download: "", rel: "noopener" }, "Download")),
    ),
  );
  fill(slot,
    panel(h("span", null, "History of ", h("span", { class: "mono" }, path)), table(["Version", "", "Type", "Encoding · language", "Realm", { label: "Size", class: "num" }, "Stored", { label: "", class: "col-actions" }], h("tbody", null, rows))),
  );
}

async function deleteContent(path, reload) {
  if (!confirm(`Delete ${path}? A deletion version is added; the next campaign over it removes it from the cards.`)) return;
  try {
    const tombstone = await api(`/content${encodePath(path)}`, { method: "DELETE" });
    toast(`${path}: deletion stored as v${tombstone.version}`);
    await reload();
  } catch (error) {
    failed(error);
  }
}

function toggleUploadForm(slot, reload) {
  if (slot.firstChild) {
    slot.replaceChildren();
    return;
  }
  const path = h("input", { name: "path", required: true, pattern: "/\\S*", placeholder: "/index.html" });
  const file = h("input", { name: "file", type: "file", required: true });
  const type = h("input", { name: "content_type", placeholder: "from the file" });
  const encoding = h("input", { name: "content_encoding", placeholder: "e.g. gzip" });
  const language = h("input", { name: "content_language", placeholder: "e.g. en" });
  const realm = h("input", { name: "realm", placeholder: "none: public" });
  file.addEventListener("change", () => {
    const chosen = file.files[0];
    if (!chosen) return;
    if (!type.value) type.value = chosen.type;
    if (!path.value) path.value = `/${chosen.name}`;
  });
  const form = h(
    "form",
    { class: "form-grid" },
    field("Path", path),
    field("File", file),
    field("Content-Type", type),
    field("Content-Encoding", encoding),
    field("Content-Language", language),
    field("Realm", realm, "SCWS protection realm, if any."),
    h(
      "div",
      { class: "form-actions" },
      h("button", { class: "btn", type: "button", onclick: () => slot.replaceChildren() }, "Close"),
      h("button", { class: "btn primary", type: "submit" }, "Store version"),
    ),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const headers = { "Content-Type": type.value.trim() || "application/octet-stream" };
    if (encoding.value.trim()) headers["Content-Encoding"] = encoding.value.trim();
    if (language.value.trim()) headers["Content-Language"] = language.value.trim();
    const query = realm.value.trim() ? `?realm=${encodeURIComponent(realm.value.trim())}` : "";
    try {
      const response = await request(`/content${encodePath(path.value.trim())}${query}`, { method: "PUT", headers, body: file.files[0] });
      const info = await response.json();
      toast(response.status === 201 ? `stored as v${info.version}` : `unchanged: already v${info.version}`, "success", info.path);
      slot.replaceChildren();
      await reload();
    } catch (error) {
      failed(error);
    }
  });
  fill(slot, panel("Upload a version", form));
  path.focus();
}

// -- API tokens -----------------------------------------------------------------------------

function tokensView(root) {
  const tbody = h("tbody");
  const created = h("div", { class: "keys-once", hidden: true });
  const columns = ["Token", "Name", "User", "Role", "State", "Expires", "Last used", { label: "", class: "col-actions" }];
  const name = h("input", { name: "name", required: true, maxlength: 64, placeholder: "ci-deploy" });
  const role = h("select", { name: "role" }, ROLES.filter(can).map((r) => h("option", { value: r, selected: r === me.role }, r)));
  const days = h("input", { name: "expires_in_days", type: "number", min: 1, max: 3650, value: 90 });
  const form = h(
    "form",
    {
      class: "form-grid",
      id: "token-form",
      onsubmit: async (event) => {
        event.preventDefault();
        try {
          const token = await send("POST", "/tokens", { name: name.value, role: role.value, expires_in_days: Number(days.value) });
          created.hidden = false;
          fill(
            created,
            h("strong", { id: "new-token" }, "Your new token (shown only now):"),
            h("code", { class: "mono", id: "new-token-value" }, token.token),
          );
          name.value = "";
          await load();
        } catch (error) {
          failed(error);
        }
      },
    },
    field("Name", name),
    field("Role", role, "at most yours"),
    field("Expires in (days)", days),
    h("div", { class: "form-actions" }, h("button", { class: "btn primary", type: "submit" }, "Create token")),
  );
  const newPanel = panel("New token", form);
  newPanel.append(created);
  async function load() {
    const tokens = await api("/tokens");
    fill(
      tbody,
      tokens.length
        ? tokens.map((t) =>
            h(
              "tr",
              { dataset: { token: t.token_id, state: t.state } },
              h("td", { class: "mono" }, t.token_id),
              h("td", null, t.name),
              h("td", null, t.user),
              h("td", null, t.role),
              h("td", null, pill(t.state, t.state === "active" ? "green" : "grey")),
              h("td", null, when(t.expires_at)),
              h("td", null, when(t.last_used_at)),
              h(
                "td",
                { class: "col-actions" },
                t.state === "active"
                  ? h(
                      "button",
                      {
                        class: "btn small danger-ghost",
                        onclick: async () => {
                          try {
                            await api(`/tokens/${encodeURIComponent(t.token_id)}`, { method: "DELETE" });
                            toast(`Token ${t.token_id} revoked`);
                            await load();
                          } catch (error) {
                            failed(error);
                          }
                        },
                      },
                      "Revoke",
                    )
                  : null,
              ),
            ),
          )
        : emptyRow(columns.length, "No API tokens yet."),
    );
  }
  fill(
    root,
    pageHeader("API tokens", "For scripts and CI: Authorization: Bearer <token>. A token is shown once, when it is made."),
    newPanel,
    panel("Tokens", table(columns, tbody)),
  );
  load().catch(failed);
  return { stop() {} };
}

// -- audit trail ----------------------------------------------------------------------------

function auditView(root) {
  const tbody = h("tbody");
  const columns = ["When", "Who", "From", "Action", "Target", "Result", "Detail"];
  fill(root, pageHeader("Audit trail", "Every state change and every refused attempt, newest first."), panel(null, table(columns, tbody)));
  async function load() {
    const entries = await api("/audit?limit=200");
    fill(
      tbody,
      entries.length
        ? entries.map((e) =>
            h(
              "tr",
              { dataset: { audit: e.id, action: e.action, result: e.result } },
              h("td", null, when(e.at)),
              h("td", { class: "mono" }, e.actor),
              h("td", { class: "mono" }, e.address),
              h("td", { class: "mono" }, e.action),
              h("td", { class: "mono" }, e.target),
              h("td", null, pill(e.result, e.result === "ok" ? "green" : "red")),
              h("td", null, e.detail),
            ),
          )
        : emptyRow(columns.length, "Nothing yet."),
    );
  }
  const poll = poller(load, 5000);
  return poll;
}

// -- routing --------------------------------------------------------------------------------

const VIEWS = { campaigns: campaignsView, cards: cardsView, content: contentView, tokens: tokensView, audit: auditView };
let active = null;

function route() {
  const [name, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  const view = name in VIEWS ? name : "campaigns";
  let arg = null;
  if (rest.length) {
    const parts = rest.map(decodeURIComponent);
    arg = view === "content" ? `/${parts.join("/")}` : parts.join("/") || null;
  }
  active?.stop();
  active = null;
  for (const tab of document.querySelectorAll(".tabs a")) {
    const on = tab.dataset.view === view;
    tab.classList.toggle("active", on);
    if (on) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  const root = document.getElementById("view");
  root.replaceChildren();
  root.dataset.view = view;
  active = VIEWS[view](root, arg);
}

async function logout() {
  try {
    await request("/auth/logout", { method: "POST" });
  } catch {
    // Logged out already: the login page either way.
  }
  toLogin();
}

async function start() {
  try {
    me = await api("/auth/me");
  } catch {
    toLogin();
    return;
  }
  const who = document.getElementById("who");
  fill(who, h("span", { class: "who-name", dataset: { role: me.role } }, `${me.user} · ${me.role}`));
  document.getElementById("logout").addEventListener("click", logout);
  for (const tab of document.querySelectorAll(".tabs a[data-role]")) tab.hidden = !can(tab.dataset.role);
  window.addEventListener("hashchange", route);
  document.addEventListener("visibilitychange", () => document.hidden || checkHealth());
  checkHealth();
  setInterval(checkHealth, HEALTH_MS);
  route();
}

start();
