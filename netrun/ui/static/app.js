// netrun ui: the page's script. Plain JavaScript, no library: a hash router, one function per page,
// DOM built with textContent (a value from the database is never parsed as HTML), SVG drawn from the
// layout the server computes. The live state is polled once a second.
"use strict";

const POLL_MS = 1000;
const WRITES = document.querySelector('meta[name="netrun-writes"]')?.content === "yes";
const TOKEN = document.querySelector('meta[name="netrun-token"]')?.content || "";
const COUNTS = ["startable", "queued", "running", "finished", "failed"];
const SVGNS = "http://www.w3.org/2000/svg";

let overview = null;      // /api/overview: the graph and its layout
let lastLive = null;      // the latest /api/live answer
let liveListeners = [];   // what the current page redraws on each live answer
let pageToken = 0;        // bumped per navigation: answers for a page left are dropped

// -- small helpers ------------------------------------------------------------------------------
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVGNS, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

async function api(path, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== null && value !== undefined && value !== "") query.set(key, value);
  }
  const url = path + (query.toString() ? "?" + query : "");
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({ message: response.statusText }));
  if (!response.ok) throw new Error(body.message || response.statusText);
  return body;
}

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST", body: JSON.stringify(body),
    headers: { "Content-Type": "application/json", "X-Netrun-Token": TOKEN },
  });
  const answer = await response.json().catch(() => ({ message: response.statusText }));
  if (!response.ok) throw new Error(answer.message || response.statusText);
  return answer;
}

const short = (id) => (typeof id === "string" && id.length === 26 ? id.slice(0, 8) + "~" + id.slice(-4) : id ?? "");
const time = (t) => (t ? t.replace("T", " ").replace(/\.\d+/, "").replace("+00:00", "") : "");
const link = (href, text, attrs) => h("a", { href, ...(attrs || {}) }, text);
const packetLink = (id) => (id ? link("#/packet/" + id, short(id), { class: "mono", title: id }) : "");
const epochLink = (id) => (id ? link("#/epoch/" + id, short(id), { class: "mono", title: id }) : "");

function table(columns, rows, { empty = "none", numeric = [] } = {}) {
  if (!rows.length) return h("p", { class: "dim" }, empty);
  return h("table", {},
    h("thead", {}, h("tr", {}, columns.map(([, title]) => h("th", { class: numeric.includes(title) ? "num" : null }, title)))),
    h("tbody", {}, rows.map((row) => h("tr", {}, columns.map(([render, title]) =>
      h("td", { class: numeric.includes(title) ? "num" : null }, render(row)))))));
}

function fields(pairs) {
  return h("table", { class: "fields" }, h("tbody", {}, pairs.filter(([, v]) => v !== undefined).map(([k, v]) =>
    h("tr", {}, h("td", {}, k), h("td", {}, v ?? "")))));
}

function fail(error) {
  return h("p", { class: "error", role: "alert" }, error.message || String(error));
}

function hashParams() {
  const [, query] = location.hash.split("?");
  return Object.fromEntries(new URLSearchParams(query || ""));
}

function go(path, params) {
  const query = new URLSearchParams(Object.entries(params || {}).filter(([, v]) => v !== "" && v != null));
  location.hash = "#/" + path + (query.toString() ? "?" + query : "");
}

// A filter form whose submit navigates to the same page with the values in the hash.
function filters(page, specs, values) {
  const form = h("form", { class: "filters" },
    specs.map(([name, label, options]) => h("label", {}, label, options === "checkbox"
      ? h("input", { type: "checkbox", name, value: "1", checked: values[name] === "1" })
      : options
      ? h("select", { name }, h("option", { value: "" }, "(any)"),
          options.map((o) => h("option", { value: o, selected: values[name] === o }, o)))
      : h("input", { name, value: values[name] || "", size: 16 }))),
    h("button", { class: "primary" }, "Apply"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    go(page, Object.fromEntries(new FormData(form)));
  });
  return form;
}

function nodeNames() {
  return overview ? overview.graph.nodes.map((n) => n.name) : [];
}

// A list read page by page: `load(cursor)` returns {rows, next}; "Older" appends the next page.
async function pagedList(container, load, render, more = "Older") {
  let cursor = null;
  const body = h("div");
  const button = h("button", { class: "more" }, more);
  const note = h("span", { class: "dim" });
  container.append(body, h("div", {}, button, " ", note));
  async function next() {
    button.disabled = true;
    try {
      const page = await load(cursor);
      body.append(render(page.rows, body.childElementCount === 0));
      cursor = page.next;
      button.hidden = cursor === null || cursor === undefined;
      note.textContent = button.hidden ? "" : page.rows.length ? "" : "nothing matched in this stretch of the run; Older looks further back";
    } catch (error) {
      body.append(fail(error));
    }
    button.disabled = false;
  }
  button.addEventListener("click", next);
  await next();
}

// -- the live state ----------------------------------------------------------------------------
async function poll() {
  try {
    lastLive = await api("/api/live");
    const state = document.getElementById("state");
    state.textContent = lastLive.state + (lastLive.owner ? ` (pid ${lastLive.owner.pid})` : "");
    state.className = "state " + lastLive.state;
    state.dataset.state = lastLive.state;
    document.getElementById("dlq-count").textContent = lastLive.dead_letters_pending || "";
    for (const listener of liveListeners) listener(lastLive);
  } catch (error) {
    const state = document.getElementById("state");
    state.textContent = "unreachable";
    state.className = "state";
  }
  setTimeout(poll, POLL_MS);
}

// -- the graph page ---------------------------------------------------------------------------
function graphSvg(layout) {
  const svg = s("svg", { width: layout.width, height: layout.height, viewBox: `0 0 ${layout.width} ${layout.height}`,
                         id: "graph", role: "img" });
  for (const edge of layout.edges) {
    const key = `${edge.from}.${edge.from_port}>${edge.to}.${edge.to_port}`;
    svg.append(s("path", { class: "gedge", d: edge.path, "data-edge-path": key },
                 s("title", {}, `${edge.from}.${edge.from_port} → ${edge.to}.${edge.to_port}`)));
  }
  for (const node of layout.nodes) {
    const g = s("g", { class: "gnode", "data-node": node.name, tabindex: 0,
                       onclick: () => go("epochs", { node: node.name }) });
    g.append(s("title", {}, node.name));
    g.append(s("rect", { class: "box", x: node.x, y: node.y, width: node.w, height: node.h, rx: 6 }));
    g.append(s("text", { class: "title", x: node.x + 10, y: node.y + 18 }, node.name));
    const cell = node.w / COUNTS.length;
    COUNTS.forEach((name, i) => {
      const cx = node.x + cell * (i + 0.5);
      g.append(s("text", { class: `count ${name}`, x: cx, y: node.y + 38, "data-count": name }, "0"));
      g.append(s("text", { class: "label", x: cx, y: node.y + 50 }, name));
    });
    for (const port of node.in_ports) {
      g.append(s("circle", { cx: port.x, cy: port.y, r: 5 }));
      g.append(s("text", { class: "port", x: port.x + 9, y: port.y + 4 }, port.name + (port.slots ? `[${port.slots}]` : "")));
      g.append(s("text", { class: "waiting", x: port.x + 9 + 7.5 * (port.name.length + 1), y: port.y + 4,
                          "data-port": `${node.name}.${port.name}` }, ""));
    }
    for (const port of node.out_ports) {
      g.append(s("circle", { cx: port.x, cy: port.y, r: 5 }));
      g.append(s("text", { class: "port", x: port.x - 9, y: port.y + 4, "text-anchor": "end" }, port.name));
    }
    svg.append(g);
  }
  for (const edge of layout.edges) {
    const key = `${edge.from}.${edge.from_port}>${edge.to}.${edge.to_port}`;
    svg.append(s("text", { class: "elabel", x: edge.label_x, y: edge.label_y, "data-edge": key }, ""));
  }
  return svg;
}

function paintGraph(svg, live) {
  for (const g of svg.querySelectorAll(".gnode")) {
    const name = g.dataset.node;
    const counts = live.nodes[name] || {};
    for (const text of g.querySelectorAll("[data-count]")) text.textContent = counts[text.dataset.count] ?? 0;
    const inside = live.inside[name] || 0;
    g.querySelector("title").textContent = `${name}: ` + Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(", ")
      + (inside ? `; ${inside} packet(s) inside epochs` : "") + " (click: its epochs)";
  }
  for (const text of svg.querySelectorAll("[data-port]")) {
    const n = live.ports[text.dataset.port] || 0;
    text.textContent = n ? `${n} waiting` : "";
  }
  for (const text of svg.querySelectorAll("[data-edge]")) {
    const n = live.edges[text.dataset.edge] || 0;
    text.textContent = n ? String(n) : "";
    const path = svg.querySelector(`[data-edge-path="${CSS.escape(text.dataset.edge)}"]`);
    if (path) path.classList.toggle("busy", n > 0);
  }
}

function graphPage(main) {
  main.append(h("h1", {}, "Graph"));
  const summary = h("div", { class: "summary", id: "summary" });
  const svg = graphSvg(overview.layout);
  const details = h("div");
  main.append(summary, h("div", { class: "canvas" }, svg), details);
  const paint = (live) => {
    paintGraph(svg, live);
    summary.replaceChildren(
      ...[["state", live.state], ["history records", live.history_rows], ["live packets", live.live_packets],
          ["running epochs", live.running_count], ["dead letters pending", live.dead_letters_pending],
          ["last activity", time(live.last_activity)]].map(([k, v]) => h("div", {}, h("b", { "data-summary": k }, v ?? "–"), k)));
    const parts = [];
    if (live.running_epochs.length) {
      parts.push(h("h2", {}, "Running epochs"), table([[(r) => epochLink(r.epoch), "epoch"], [(r) => r.node, "node"],
        [(r) => r.attempt, "attempt"], [(r) => time(r.started_at), "started"]], live.running_epochs));
    }
    if (live.inbox.length) {
      parts.push(h("h2", {}, "Injected, not yet admitted"), table([[(r) => r.kind, "kind"], [(r) => r.node, "node"],
        [(r) => r.port ?? "", "port"], [(r) => r.items, "items"]], live.inbox));
    }
    if (live.recent_failures.length) {
      parts.push(h("h2", {}, "Recent failures"), table([[(r) => time(r.finished_at), "when"], [(r) => r.node, "node"],
        [(r) => epochLink(r.epoch), "epoch"], [(r) => r.attempt, "attempt"], [(r) => r.error, "error"]], live.recent_failures));
    }
    if (live.state !== "running") {
      parts.push(h("h2", {}, "Packets left in the net"), table([[(r) => packetLink(r.packet), "packet"],
        [(r) => r.location, "where"], [(r) => r.node ?? "", "node"], [(r) => r.port ?? "", "port"],
        [(r) => r.value ?? "", "value"]], live.packets_left, { empty: "none: every packet was consumed" }));
      if (live.packets_left.length < live.live_packets) {
        parts.push(h("p", { class: "dim" }, `the oldest ${live.packets_left.length} of ${live.live_packets}; all of them: the SQL page`));
      }
    }
    details.replaceChildren(...parts);
  };
  if (lastLive) paint(lastLive);
  liveListeners.push(paint);
}

// -- epochs ------------------------------------------------------------------------------------
async function epochsPage(main, params) {
  main.append(h("h1", {}, "Epochs"),
    filters("epochs", [["node", "node", nodeNames()], ["state", "state", ["startable", "running", "finished", "failed", "cancelled"]],
                       ["since", "created since (ISO or 10m)"], ["until", "created until"]], params));
  await pagedList(main, async (cursor) => {
    const page = await api("/api/epochs", { ...params, before: cursor });
    return { rows: page.epochs, next: page.next };
  }, (rows) => table([[(r) => epochLink(r.id), "epoch"], [(r) => r.node, "node"], [(r) => r.state, "state"],
    [(r) => r.attempt, "attempts"], [(r) => time(r.created_at), "created"], [(r) => time(r.started_at), "started"],
    [(r) => time(r.finished_at), "finished"], [(r) => r.error ?? "", "error"]], rows, { empty: "no epochs on this page" }));
}

async function epochPage(main, id) {
  const e = await api("/api/epoch/" + encodeURIComponent(id));
  const epoch = e.epoch;
  main.append(h("h1", {}, `Epoch ${epoch.id} of ${epoch.node}`),
    fields([["node", link(`#/epochs?node=${encodeURIComponent(epoch.node)}`, epoch.node)], ["state", epoch.state],
      ["attempts started", epoch.attempt], ["salvo condition", epoch.salvo_condition], ["created", time(epoch.created_at)],
      ["started", time(epoch.started_at)], ["finished", time(epoch.finished_at)],
      ["error", epoch.error ? `${epoch.error_type ?? ""}: ${epoch.error}` : null],
      ["pool job", e.job ? `${e.job.pool} · ${e.job.state}${e.job.worker ? " · " + e.job.worker : ""}` : null]]),
    h("h2", {}, "Input packets"), table([[(r) => r.port, "port"], [(r) => packetLink(r.packet), "packet"]], e.inputs),
    h("h2", {}, "Packets created"), e.outputs.length ? h("p", {}, e.outputs.map((p) => [packetLink(p), " "])) : h("p", { class: "dim" }, "none"),
    h("h2", {}, "Attempts"));
  if (!e.attempts.length) main.append(h("p", { class: "dim" }, "none started"));
  for (const a of e.attempts) {
    main.append(h("div", { class: "attempt" },
      h("p", {}, h("b", {}, `attempt ${a.attempt}: ${a.outcome ?? "running"}`), ` started ${time(a.started_at)}`,
        a.finished_at ? `, ended ${time(a.finished_at)}` : ""),
      a.error ? h("p", { class: "error" }, `${a.error_type ?? ""}: ${a.error}`) : null,
      a.traceback ? h("pre", { class: "traceback" }, a.traceback) : null));
  }
  main.append(h("h2", {}, "Log lines"), e.logs.length ? h("pre", {}, e.logs.map((l) => `${time(l.timestamp)}  ${l.text}\n`))
    : h("p", { class: "dim" }, "none"));
  main.append(h("h2", {}, `History (${e.history_total} records)`), historyTable(e.history));
}

// -- packets and lineage ------------------------------------------------------------------------
function originText(origin) {
  if (!origin) return "unknown (no history record)";
  if (origin.how === "created") return [`created by epoch `, epochLink(origin.epoch), ` of ${origin.node}`];
  if (origin.how === "replayed") return [`a replay of dead-lettered packet `, packetLink(origin.replay_of), ` at ${origin.node}.${origin.port}`];
  return `injected at ${origin.node ?? "?"}.${origin.port ?? "?"}`;
}

function endText(end) {
  if (!end) return "unknown";
  if (end.state === "live") return `live: ${end.location}${end.node ? " " + end.node : ""}${end.port ? "." + end.port : ""}`;
  const parts = [`${end.state} by epoch `, epochLink(end.epoch), ` of ${end.node}`];
  if (end.dead_letter) {
    parts.push(" (", link(`#/dlq/${end.dead_letter.seq}`, `dead letter #${end.dead_letter.seq}`), `, ${end.dead_letter.reason}, ${end.dead_letter.status}`);
    if (end.dead_letter.replayed_as) parts.push(" as ", packetLink(end.dead_letter.replayed_as));
    parts.push(")");
  }
  return parts;
}

function lineageSvg(graph, root) {
  const columns = new Map();
  for (const n of graph.nodes) {
    if (!columns.has(n.depth)) columns.set(n.depth, []);
    columns.get(n.depth).push(n);
  }
  const depths = [...columns.keys()].sort((a, b) => a - b);
  const W = 170, H = 44, GX = 60, GY = 14, M = 16;
  const pos = new Map();
  let rows = 1;
  depths.forEach((d, i) => {
    columns.get(d).forEach((n, j) => pos.set(n.packet, { x: M + i * (W + GX), y: M + j * (H + GY), n }));
    rows = Math.max(rows, columns.get(d).length);
  });
  const width = M * 2 + depths.length * W + (depths.length - 1) * GX, height = M * 2 + rows * (H + GY);
  const svg = s("svg", { width, height, viewBox: `0 0 ${width} ${height}`, id: "lineage" });
  for (const [a, b] of graph.edges) {
    const p = pos.get(a), q = pos.get(b);
    if (!p || !q) continue;
    const x1 = p.x + W, y1 = p.y + H / 2, x2 = q.x, y2 = q.y + H / 2, mx = (x1 + x2) / 2;
    svg.append(s("path", { class: "ledge", d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}` }));
  }
  for (const { x, y, n } of pos.values()) {
    const o = n.origin || {};
    const where = o.how === "created" ? `made by ${o.node}` : o.how === "replayed" ? "replayed" : o.how === "injected" ? `injected at ${o.node ?? "?"}` : "?";
    const g = s("g", { class: "lnode" + (n.packet === root ? " root" : ""), "data-packet": n.packet, "data-depth": n.depth,
                       "data-origin": o.how ?? "", tabindex: 0, onclick: () => go("packet/" + n.packet) },
      s("title", {}, n.packet), s("rect", { x, y, width: W, height: H, rx: 5 }),
      s("text", { x: x + 8, y: y + 17, class: "mono" }, short(n.packet)),
      s("text", { x: x + 8, y: y + 34, fill: "#6a737d" }, `${where} · ${n.end ? n.end.state : "?"}`));
    svg.append(g);
  }
  return svg;
}

async function packetPage(main, id) {
  const p = await api("/api/packet/" + encodeURIComponent(id));
  const v = p.value;
  main.append(h("h1", {}, `Packet ${p.packet}`),
    fields([["came from", h("span", { id: "origin" }, originText(p.origin))], ["went to", h("span", {}, endText(p.end))]]),
    h("h2", {}, "Value"));
  if (!v.stored) main.append(h("p", { class: "dim" }, "not stored: a consumed value is kept only with consumed_packet_storage"));
  else if (v.text !== null) {
    main.append(h("p", { class: "dim" }, `JSON, in the ${v.where}'s row` + (v.cut ? `; the first ${v.text.length.toLocaleString()} of ${v.size.toLocaleString()} characters (all of it: netrun value)` : "")),
      h("pre", { id: "value" }, v.text));
  } else {
    main.append(h("p", { class: "dim" }, v.note), h("pre", { id: "value" }, v.preview ?? ""));
  }
  main.append(h("h2", {}, "Lineage"), h("p", { class: "dim" }, "ancestors on the left, descendants on the right; click a packet to follow it"),
    h("div", { class: "canvas", id: "lineage-canvas" }, lineageSvg(p.graph, p.packet)));
  const root = main.querySelector("#lineage .lnode.root rect");
  if (root) main.querySelector("#lineage-canvas").scrollLeft = Math.max(0, Number(root.getAttribute("x")) - 300);
  if (p.truncated) main.append(h("p", { class: "dim" }, "truncated: too many packets to draw"));
  main.append(h("h2", {}, "Path"), table([[(r) => r.seq, "seq"], [(r) => time(r.timestamp), "time"], [(r) => r.name, "record"],
    [(r) => r.node ?? "", "node"], [(r) => epochLink(r.epoch), "epoch"], [(r) => (r.data ? JSON.stringify(r.data) : ""), "data"]], p.path));
}

// -- history and logs ------------------------------------------------------------------------------
function historyTable(rows) {
  return table([[(r) => r.seq, "seq"], [(r) => time(r.timestamp), "time"], [(r) => r.type, "type"], [(r) => r.name, "name"],
    [(r) => r.node_name ?? "", "node"], [(r) => epochLink(r.epoch_id), "epoch"], [(r) => packetLink(r.packet_id), "packet"],
    [(r) => (r.data ? JSON.stringify(r.data) : ""), "data"]], rows, { empty: "no records on this page" });
}

async function historyPage(main, params) {
  main.append(h("h1", {}, "History"), h("p", { class: "dim" }, "newest first"),
    filters("history", [["node", "node", nodeNames()], ["epoch", "epoch ID"], ["packet", "packet ID"],
                        ["kind", "kind (action, event, PacketMoved…)"], ["since", "since (ISO or 10m)"]], params));
  const query = { ...params };
  for (const kind of ["epoch", "packet"]) {
    if (query[kind]) query[kind] = (await api("/api/find", { id: query[kind], kind })).id;
  }
  await pagedList(main, async (cursor) => {
    const page = await api("/api/history", { ...query, before: cursor });
    return { rows: page.records, next: page.next };
  }, historyTable);
}

async function logsPage(main, params) {
  main.append(h("h1", {}, "Logs"), h("p", { class: "dim" }, "lines printed by node functions, newest first"),
    filters("logs", [["node", "node", nodeNames()], ["epoch", "epoch ID"]], params));
  const query = { ...params };
  if (query.epoch) query.epoch = (await api("/api/find", { id: query.epoch, kind: "epoch" })).id;
  await pagedList(main, async (cursor) => {
    const page = await api("/api/logs", { ...query, before: cursor });
    return { rows: page.lines, next: page.next };
  }, (rows) => table([[(r) => time(r.timestamp), "time"], [(r) => r.node, "node"], [(r) => epochLink(r.epoch), "epoch"],
    [(r) => h("span", { class: "mono" }, r.text), "text"]], rows, { empty: "no log lines" }));
}

// -- dead letters ----------------------------------------------------------------------------------
async function dlqPage(main, params) {
  main.append(h("h1", {}, "Dead letters"),
    filters("dlq", [["node", "node", nodeNames()], ["all", "replayed and discarded ones too", "checkbox"]], params));
  const selected = new Set();
  const area = h("div", { id: "dlq-actions" });
  const message = h("div", { id: "dlq-message" });
  if (WRITES) {
    const count = h("span", { class: "dim" }, "none selected");
    const update = () => { count.textContent = selected.size ? `${selected.size} selected` : "none selected"; };
    const ask = (verb) => {
      if (!selected.size) { message.replaceChildren(fail(new Error("select dead letters first"))); return; }
      const seqs = [...selected].sort((a, b) => a - b);
      const panel = h("div", { class: "confirm", id: "confirm" },
        h("p", {}, `${verb === "replay" ? "Replay" : "Discard"} ${seqs.length} dead letter(s): ${seqs.map((x) => "#" + x).join(", ")}? `
          + (verb === "replay" ? "Each value goes back to the input port it came from; netrun resume runs it." : "They leave the queue (their rows stay, for the record).")),
        h("button", { class: "danger", id: "confirm-yes", onclick: async () => {
          panel.remove();
          try {
            const answer = await post(`/api/dlq/${verb}`, { seqs });
            message.replaceChildren(h("div", { class: "notice", role: "status" }, answer.done.map((d) =>
              h("div", {}, `dead letter #${d.seq}: `, d.replayed_as ? ["replayed as packet ", packetLink(d.replayed_as)] : "discarded"))));
            selected.clear();
            update();
            list.replaceChildren();
            await loadList();
          } catch (error) {
            message.replaceChildren(fail(error));
          }
        } }, "Confirm"), " ", h("button", { onclick: () => panel.remove() }, "Cancel"));
      area.after(panel);
    };
    area.append(h("button", { id: "replay", onclick: () => ask("replay") }, "Replay selected"), " ",
      h("button", { id: "discard", onclick: () => ask("discard") }, "Discard selected"), " ", count);
    area.update = update;
  }
  const list = h("div");
  main.append(area, message, list);
  const loadList = () => pagedList(list, async (cursor) => {
    const page = await api("/api/dlq", { ...params, after: cursor });
    return { rows: page.dead_letters, next: page.next };
  }, (rows) => table([
    ...(WRITES ? [[(r) => (r.status === "pending" ? h("input", { type: "checkbox", "data-seq": r.seq, onchange: (event) => {
      if (event.target.checked) selected.add(r.seq); else selected.delete(r.seq);
      area.update();
    } }) : ""), ""]] : []),
    [(r) => link(`#/dlq/${r.seq}`, `#${r.seq}`), "seq"], [(r) => r.node ?? "", "node"], [(r) => r.port ?? "", "port"],
    [(r) => packetLink(r.packet), "packet"], [(r) => r.reason, "reason"], [(r) => r.status, "status"],
    [(r) => time(r.created_at), "when"], [(r) => r.error ?? "", "error"], [(r) => r.value ?? "", "value"],
    [(r) => (r.replayed_as ? packetLink(r.replayed_as) : ""), "replayed as"]], rows, { empty: "no dead letters" }), "More");
  await loadList();
}

async function deadLetterPage(main, seq) {
  const d = await api("/api/dlq/" + encodeURIComponent(seq));
  main.append(h("h1", {}, `Dead letter #${d.seq}`),
    fields([["packet", packetLink(d.packet)], ["node", d.node], ["port", d.port], ["epoch", epochLink(d.epoch)],
      ["reason", d.reason], ["status", d.status], ["created", time(d.created_at)], ["resolved", time(d.resolved_at)],
      ["replayed as", d.replayed_as ? packetLink(d.replayed_as) : null]]),
    h("h2", {}, "Error"), h("pre", { class: "error" }, d.error ?? "(none)"),
    h("h2", {}, "Traceback"), d.traceback ? h("pre", { class: "traceback" }, d.traceback) : h("p", { class: "dim" }, "none"),
    h("h2", {}, "Value"), h("pre", {}, d.value.stored ? (d.value.text ?? d.value.preview ?? "") : "(not stored)"));
}

// -- SQL ---------------------------------------------------------------------------------------------
function sqlPage(main, params) {
  const text = h("textarea", { id: "sql", rows: 6, spellcheck: "false" },
    params.q || "SELECT node_name, state, n FROM node_counts ORDER BY 1, 2");
  const download = h("a", { id: "csv", href: "#" }, "Download CSV");
  const result = h("div", { id: "sql-result" });
  const run = async () => {
    download.href = "/api/sql.csv?" + new URLSearchParams({ q: text.value });
    result.replaceChildren(h("p", { class: "dim" }, "running…"));
    try {
      const answer = await api("/api/sql", { q: text.value });
      result.replaceChildren(
        table(answer.columns.map((c, i) => [(row) => (row[i] === null ? "NULL" : String(row[i])), c]), answer.rows, { empty: "(no rows)" }),
        answer.truncated ? h("p", { class: "dim" }, `the first ${answer.rows.length} rows; the CSV has them all`) : "");
    } catch (error) {
      result.replaceChildren(fail(error));
    }
  };
  main.append(h("h1", {}, "SQL"), h("p", { class: "dim" }, "one read-only statement over the tables of the README's \"The database\"; a statement that would write is refused"),
    text, h("p", {}, h("button", { class: "primary", id: "run", onclick: run }, "Run"), " ", download), result);
  download.href = "/api/sql.csv?" + new URLSearchParams({ q: text.value });
}

// -- routing -----------------------------------------------------------------------------------------
async function route() {
  const token = ++pageToken;
  liveListeners = [];
  const [path] = location.hash.replace(/^#\/?/, "").split("?");
  const [page, arg] = path.split("/");
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.nav === (page || "graph"));
  const main = h("main", { id: "main", "data-page": page || "graph", "data-route": path });
  document.getElementById("main").replaceWith(main);
  const params = hashParams();
  try {
    if (!overview) overview = await api("/api/overview");
    if (token !== pageToken) return;
    const pages = {
      "": () => graphPage(main), graph: () => graphPage(main), epochs: () => epochsPage(main, params),
      epoch: () => epochPage(main, decodeURIComponent(arg)), packet: () => packetPage(main, decodeURIComponent(arg)),
      history: () => historyPage(main, params), logs: () => logsPage(main, params),
      dlq: () => (arg ? deadLetterPage(main, arg) : dlqPage(main, params)), sql: () => sqlPage(main, params),
    };
    await (pages[page] || (() => main.append(h("p", { class: "error" }, "no such page"))))();
  } catch (error) {
    main.append(fail(error));
  }
  main.dataset.ready = "yes";
}

document.getElementById("find").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = document.getElementById("find-id");
  try {
    const found = await api("/api/find", { id: input.value.trim() });
    go(`${found.kind}/${found.id}`);
    input.value = "";
  } catch (error) {
    const main = document.getElementById("main");
    main.querySelector(".find-error")?.remove();
    main.prepend(h("p", { class: "error find-error", role: "alert" }, error.message));
  }
});
window.addEventListener("hashchange", route);
route();
poll();
