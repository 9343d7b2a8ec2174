// ausm app: one page per browser tab; every request names the tab's session id.
"use strict";

const $ = (id) => document.getElementById(id);

// -- the tab's session id: kept over a reload of this tab, new for a new (or duplicated) tab ----------
function sessionId() {
  const nav = performance.getEntriesByType("navigation")[0];
  const kept = sessionStorage.getItem("ausm-sid");
  if (kept && nav && nav.type === "reload") return kept;
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  const sid = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  sessionStorage.setItem("ausm-sid", sid);
  return sid;
}
const SID = sessionId();
const API = `/api/${SID}`;

// DAVIS palette colour of an object id (as ausm.io.masks.DAVIS_PALETTE)
function colour(id) {
  let r = 0, g = 0, b = 0, c = id;
  for (let j = 0; j < 8; j++) {
    r |= ((c >> 0) & 1) << (7 - j);
    g |= ((c >> 1) & 1) << (7 - j);
    b |= ((c >> 2) & 1) << (7 - j);
    c >>= 3;
  }
  return `rgb(${r},${g},${b})`;
}

const ui = {
  state: null, frame: 0, obj: 1, pendingObj: null, img: null, loadToken: 0, drag: null,
  playing: null, polling: null,
};
const canvas = $("view");
const ctx = canvas.getContext("2d");

// -- requests -----------------------------------------------------------------------------------------
async function call(method, path, body) {
  const opts = { method, headers: {} };
  if (body instanceof FormData) opts.body = body;
  else if (body !== undefined) { opts.body = JSON.stringify(body); opts.headers["Content-Type"] = "application/json"; }
  const r = await fetch(API + path, opts);
  const data = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  if (!r.ok) throw new Error(data.error || `HTTP ${r.status}`);
  return data;
}

function showError(e) { $("error").textContent = e ? String(e.message || e) : ""; }

async function act(method, path, body) {
  try {
    showError(null);
    const st = await call(method, path, body);
    if (st && st.sid) apply(st);
    return st;
  } catch (e) { showError(e); refresh(); return null; }
}

async function refresh() {
  try { apply(await call("GET", "/state")); } catch (e) { showError(e); }
}

// -- state → page -------------------------------------------------------------------------------------
function apply(st) {
  const old = ui.state;
  ui.state = st;
  const v = st.video;
  $("video-name").textContent = v ? `${v.name} · ${v.width}×${v.height} · ${v.num_frames} frames` : "no video";
  $("open-form").hidden = !st.can_open_paths;
  const last = v ? Math.max(0, (st.task === "loading" ? v.decoded : v.num_frames) - 1) : 0;
  $("frame-slider").max = last;
  const tracking = st.task === "tracking" || (old && old.task === "tracking");  // running, or just finished
  if (tracking && $("follow").checked && st.done > 0) ui.frame = st.done - 1;
  ui.frame = Math.min(ui.frame, last);
  $("frame-slider").value = ui.frame;
  $("frame-label").textContent = v ? `frame ${ui.frame} / ${v.num_frames - 1}` : "frame –";
  applyObjects(st);
  applyTask(st);
  if (st.error) showError(st.error);
  const changed = !old || old.view_version !== st.view_version || !ui.img;
  if (v && ui.frame < v.decoded && changed) loadFrame();
  else draw();
}

function applyObjects(st) {
  const ids = new Set(st.objects);
  if (ui.pendingObj !== null) ids.add(ui.pendingObj);
  if (!ids.has(ui.obj) && ids.size) ui.obj = Math.min(...ids);
  if (!ids.size) { ids.add(ui.obj); ui.pendingObj = ui.obj; }
  const sel = $("obj-select");
  sel.innerHTML = "";
  for (const o of [...ids].sort((a, b) => a - b)) {
    const opt = document.createElement("option");
    opt.value = o; opt.textContent = `object ${o}`; opt.selected = o === ui.obj;
    sel.appendChild(opt);
  }
  const list = $("objects");
  list.innerHTML = "";
  for (const o of st.objects) {
    const frames = st.prompts.filter((p) => p.obj_id === o).map((p) => p.frame);
    const li = document.createElement("li");
    li.className = o === ui.obj ? "selected" : "";
    li.dataset.obj = o;
    li.innerHTML = `<span class="swatch" style="background:${colour(o)}"></span>` +
      `<span class="name">${o} <span class="muted">(frames ${frames.join(", ")})</span></span>` +
      `<button class="clear" title="clear its prompt on this frame">clear here</button>` +
      `<button class="remove" title="remove the object">remove</button>`;
    li.querySelector(".clear").onclick = () => act("DELETE", `/prompt?frame=${ui.frame}&obj_id=${o}`);
    li.querySelector(".remove").onclick = () => act("DELETE", `/object/${o}`);
    li.querySelector(".name").onclick = () => { ui.obj = o; apply(ui.state); };
    list.appendChild(li);
  }
}

function applyTask(st) {
  const busy = !!st.task;
  $("track").disabled = busy || !st.video || !st.prompts.length;
  $("stop").disabled = !busy;
  $("progress").max = Math.max(1, st.total);
  $("progress").value = busy || st.result ? (busy ? st.done : st.total) : 0;
  let status = "idle";
  if (busy) status = `${st.task} ${st.done} / ${st.total}`;
  else if (st.message) status = st.message;
  else if (st.result) status = st.stale ? "prompts changed: press Track to update the results" : "tracked";
  $("status").textContent = status;
  const ready = st.result && !st.stale && !busy;
  for (const fmt of ["palette", "rle", "overlay"]) {
    const a = $(`dl-${fmt}`);
    a.classList.toggle("disabled", !ready);
    if (ready) a.href = `${API}/download/${fmt}?v=${st.view_version}`; else a.removeAttribute("href");
  }
  if (busy && !ui.polling) ui.polling = setInterval(refresh, 250);
  if (!busy && ui.polling) { clearInterval(ui.polling); ui.polling = null; }
}

// -- the frame ----------------------------------------------------------------------------------------
function loadFrame() {
  const st = ui.state;
  if (!st || !st.video) return;
  const token = ++ui.loadToken;
  const img = new Image();
  img.onload = () => {
    if (token !== ui.loadToken) return;
    ui.img = img;
    if (canvas.width !== img.naturalWidth || canvas.height !== img.naturalHeight) {
      canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
    }
    canvas.dataset.frame = ui.frameShown = Number(img.dataset.frame);
    canvas.dataset.version = img.dataset.version;
    draw();
  };
  img.dataset.frame = ui.frame;
  img.dataset.version = st.view_version;
  img.src = `${API}/frame/${ui.frame}.jpg?v=${st.view_version}`;
}

function toCanvas(x, y) {
  const v = ui.state.video;
  return [x * canvas.width / v.width, y * canvas.height / v.height];
}

function draw() {
  if (ui.img) ctx.drawImage(ui.img, 0, 0, canvas.width, canvas.height);
  const st = ui.state;
  if (!st || !st.video) return;
  for (const p of st.prompts.filter((q) => q.frame === ui.frame)) {
    ctx.strokeStyle = colour(p.obj_id); ctx.lineWidth = 2;
    if (p.kind === "box") {
      const [x0, y0] = toCanvas(p.box[0], p.box[1]), [x1, y1] = toCanvas(p.box[2], p.box[3]);
      ctx.setLineDash([6, 4]); ctx.strokeRect(x0, y0, x1 - x0, y1 - y0); ctx.setLineDash([]);
    } else {
      p.points.forEach(([x, y], i) => marker(...toCanvas(x, y), p.labels[i]));
    }
  }
  if (ui.drag && ui.drag.moved) {
    const [x0, y0] = toCanvas(ui.drag.x0, ui.drag.y0), [x1, y1] = toCanvas(ui.drag.x1, ui.drag.y1);
    ctx.strokeStyle = "#fff"; ctx.setLineDash([4, 3]); ctx.strokeRect(x0, y0, x1 - x0, y1 - y0); ctx.setLineDash([]);
  }
}

function marker(x, y, label) {
  ctx.beginPath(); ctx.arc(x, y, 7, 0, 2 * Math.PI);
  ctx.fillStyle = label ? "#2e7d32" : "#c62828"; ctx.fill();
  ctx.strokeStyle = "#fff"; ctx.lineWidth = 2; ctx.stroke();
  ctx.beginPath();
  ctx.moveTo(x - 4, y); ctx.lineTo(x + 4, y);
  if (label) { ctx.moveTo(x, y - 4); ctx.lineTo(x, y + 4); }
  ctx.stroke();
}

function goTo(k) {
  const st = ui.state;
  if (!st || !st.video) return;
  ui.frame = Math.max(0, Math.min(Number($("frame-slider").max), k));
  $("frame-slider").value = ui.frame;
  $("frame-label").textContent = `frame ${ui.frame} / ${st.video.num_frames - 1}`;
  loadFrame();
}

// -- clicks and boxes, in source pixels (integers: the pixel under the pointer) -----------------------
function sourceXY(ev) {
  const r = canvas.getBoundingClientRect(), v = ui.state.video;
  const x = Math.floor((ev.clientX - r.left) / r.width * v.width);
  const y = Math.floor((ev.clientY - r.top) / r.height * v.height);
  return [Math.max(0, Math.min(v.width - 1, x)), Math.max(0, Math.min(v.height - 1, y))];
}

function tool() { return document.querySelector("input[name=tool]:checked").value; }

canvas.addEventListener("contextmenu", (ev) => ev.preventDefault());
canvas.addEventListener("mousedown", (ev) => {
  if (!ui.state || !ui.state.video || ui.state.task) return;
  const [x, y] = sourceXY(ev);
  ui.drag = { x0: x, y0: y, x1: x, y1: y, moved: false, button: ev.button };
});
canvas.addEventListener("mousemove", (ev) => {
  if (!ui.drag) return;
  [ui.drag.x1, ui.drag.y1] = sourceXY(ev);
  ui.drag.moved = tool() === "box" && (Math.abs(ui.drag.x1 - ui.drag.x0) > 3 || Math.abs(ui.drag.y1 - ui.drag.y0) > 3);
  if (ui.drag.moved) draw();
});
window.addEventListener("mouseup", (ev) => {
  const d = ui.drag;
  ui.drag = null;
  if (!d) return;
  const body = { frame: ui.frame, obj_id: ui.obj };
  if (d.moved) {
    body.kind = "box";
    body.box = [Math.min(d.x0, d.x1), Math.min(d.y0, d.y1), Math.max(d.x0, d.x1) + 1, Math.max(d.y0, d.y1) + 1];
  } else if (ev.target === canvas && (tool() !== "box" || d.button === 2)) {
    Object.assign(body, { kind: "point", x: d.x0, y: d.y0, label: d.button === 2 || tool() === "neg" ? 0 : 1 });
  } else { draw(); return; }
  if (ui.pendingObj === ui.obj) ui.pendingObj = null;
  act("POST", "/prompt", body);
});

// -- controls -----------------------------------------------------------------------------------------
$("frame-slider").addEventListener("input", (ev) => goTo(Number(ev.target.value)));
$("prev").onclick = () => goTo(ui.frame - 1);
$("next").onclick = () => goTo(ui.frame + 1);
$("play").onclick = () => {
  if (ui.playing) { clearInterval(ui.playing); ui.playing = null; $("play").textContent = "Play"; return; }
  const fps = Math.min(30, (ui.state && ui.state.video && ui.state.video.fps) || 24);
  $("play").textContent = "Pause";
  ui.playing = setInterval(() => {
    if (ui.frameShown !== ui.frame) return; // the last frame is still loading
    if (ui.frame >= Number($("frame-slider").max)) goTo(0); else goTo(ui.frame + 1);
  }, 1000 / fps);
};
document.addEventListener("keydown", (ev) => {
  if (ev.target.tagName === "INPUT" && ev.target.type === "text") return;
  if (ev.key === "ArrowLeft") goTo(ui.frame - 1);
  else if (ev.key === "ArrowRight") goTo(ui.frame + 1);
  else if (ev.key === " ") { ev.preventDefault(); $("play").click(); }
});
$("obj-select").onchange = (ev) => { ui.obj = Number(ev.target.value); apply(ui.state); };
$("new-object").onclick = () => {
  const ids = ui.state ? ui.state.objects : [];
  ui.obj = ui.pendingObj = Math.max(0, ...ids, ...(ui.pendingObj ? [ui.pendingObj] : [])) + 1;
  apply(ui.state);
};
$("track").onclick = () => act("POST", "/track");
$("stop").onclick = () => act("POST", "/stop");
for (const fmt of ["palette", "rle", "overlay"]) {
  $(`dl-${fmt}`).addEventListener("click", (ev) => { if (ev.currentTarget.classList.contains("disabled")) ev.preventDefault(); });
}
$("open-form").onsubmit = (ev) => {
  ev.preventDefault();
  ui.frame = 0;
  act("POST", "/open", { path: $("open-path").value });
};

function upload(files) {
  if (!files.length) return;
  const limit = ui.state ? ui.state.max_upload_bytes : Infinity;
  const size = [...files].reduce((s, f) => s + f.size, 0);
  if (size > limit) { showError(`the upload is ${(size / 2 ** 20).toFixed(1)} MB; the limit is ${(limit / 2 ** 20).toFixed(0)} MB`); return; }
  const form = new FormData();
  for (const f of files) form.append("files", f, f.webkitRelativePath || f.name);
  $("status").textContent = "uploading…";
  ui.frame = 0;
  act("POST", "/upload", form);
}
$("upload-file").onchange = (ev) => upload(ev.target.files);
$("upload-folder").onchange = (ev) => upload(ev.target.files);

refresh();
