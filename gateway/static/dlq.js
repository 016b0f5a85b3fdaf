// The dead-letter page: talks to /v1/admin/dlq with the operator's bearer token.
"use strict";
const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem("soma-token") || "";
let cursor = null;
let selected = null;

function say(text, error = false) {
  $("message").textContent = text;
  $("message").className = error ? "error" : "";
}

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: Object.assign(
      { Authorization: "Bearer " + token },
      body ? { "Content-Type": "application/json" } : {}
    ),
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const retry = response.headers.get("Retry-After");
    throw new Error((data.message || response.statusText) + (retry ? ` (retry in ${retry} s)` : ""));
  }
  return data;
}

function decode(b64) {
  if (b64 === null || b64 === undefined) return "(none)";
  try {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return text; }
  } catch { return "(binary, base64) " + b64; }
}

function row(entry) {
  const tr = document.createElement("tr");
  tr.dataset.id = entry.id;
  const cells = [entry.failed_at, entry.tenant || "—", entry.source_topic, entry.reason,
                 entry.error_class.split(".").pop(), entry.status];
  for (const text of cells) {
    const td = document.createElement("td");
    td.textContent = text;
    tr.appendChild(td);
  }
  tr.lastChild.className = "status-" + entry.status;
  const td = document.createElement("td");
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = "Inspect";
  button.className = "inspect";
  button.addEventListener("click", () => inspect(entry.id, tr));
  td.appendChild(button);
  tr.appendChild(td);
  return tr;
}

async function load(append = false) {
  if (!token) { say("Paste an admin token first.", true); return; }
  const params = new URLSearchParams({ status: $("f-status").value, limit: "50" });
  if ($("f-topic").value) params.set("source_topic", $("f-topic").value);
  if ($("f-reason").value) params.set("reason", $("f-reason").value);
  if ($("f-error").value) params.set("error_class", $("f-error").value);
  if (append && cursor) params.set("cursor", cursor);
  try {
    const data = await api("GET", "/v1/admin/dlq?" + params);
    if (!append) $("entries").replaceChildren();
    for (const entry of data.entries) $("entries").appendChild(row(entry));
    cursor = data.next_cursor;
    // Each finished load is counted, so a reader (or a test) can tell a fresh list from a stale one.
    $("entries").dataset.loads = String(Number($("entries").dataset.loads || 0) + 1);
    $("more").style.display = cursor ? "" : "none";
    say(`${$("entries").children.length} dead letter(s)`);
  } catch (error) { say(error.message, true); }
}

async function inspect(id, tr) {
  try {
    const data = await api("GET", "/v1/admin/dlq/entries/" + id);
    selected = id;
    for (const other of $("entries").children) other.classList.remove("selected");
    if (tr) tr.classList.add("selected");
    const env = data.envelope;
    $("d-title").textContent = `Dead letter ${data.dlq_id} (${data.status})`;
    $("d-error").textContent = `${env.error_class}: ${env.error_message}`;
    $("d-where").textContent = `${env.source_topic}[${env.source_partition}]@${env.source_offset}, ` +
      `flow ${env.flow}, group ${env.consumer_group}, attempts ${env.attempts}`;
    $("d-key").textContent = env.original_key === null ? "(none)" : env.original_key;
    $("d-payload").textContent = decode(env.original_value);
    $("d-headers").textContent = env.original_headers.map((h) => `${h.name}: ${decode(h.value)}`).join("\n");
    $("d-stack").textContent = env.stack;
    $("detail").style.display = "block";
  } catch (error) { say(error.message, true); }
}

async function act(action) {
  if (!selected) return;
  try {
    await api("POST", `/v1/admin/dlq/entries/${selected}/${action}`, {});
    say(action === "replay" ? "Replayed to its source topic." : "Acknowledged.");
    $("detail").style.display = "none";
    selected = null;
    // The index applies the action asynchronously: reload until the entry has moved.
    setTimeout(() => load(), 1500);
  } catch (error) { say(error.message, true); }
}

$("use-token").addEventListener("click", () => {
  token = $("token").value.trim();
  sessionStorage.setItem("soma-token", token);
  load();
});
$("filters").addEventListener("submit", (event) => { event.preventDefault(); load(); });
$("more").addEventListener("click", () => load(true));
$("replay").addEventListener("click", () => act("replay"));
$("ack").addEventListener("click", () => act("ack"));
if (token) load();
