"""The search page `clipsearch serve` shows: one self-contained HTML file (no CDN)."""

PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>clipsearch</title>
<style>
*{box-sizing:border-box}
body{margin:0;font:15px system-ui,sans-serif;background:#111;color:#eee}
header{position:sticky;top:0;z-index:2;background:#1b1b1b;padding:10px;display:flex;
 flex-wrap:wrap;gap:8px;align-items:center;border-bottom:1px solid #333}
header form{display:flex;flex:1 1 420px;gap:6px;flex-wrap:wrap}
input,select,button{font:inherit;padding:7px 9px;border-radius:6px;border:1px solid #444;
 background:#222;color:#eee}
input[name=q]{flex:1 1 220px;min-width:0}
input[name=under]{flex:0 1 180px;min-width:0}
button{cursor:pointer;background:#2d5fd3;border-color:#2d5fd3}
#drop{border:1px dashed #555;border-radius:6px;padding:6px 10px;color:#aaa;cursor:pointer}
#drop.over{border-color:#2d5fd3;color:#fff}
#status{padding:8px 12px;color:#aaa;min-height:1.5em}
#results{display:grid;grid-template-columns:repeat(auto-fill,minmax(160px,1fr));gap:6px;
 padding:6px}
#results figure{margin:0;position:relative;cursor:pointer;background:#222;aspect-ratio:1}
#results img{width:100%;height:100%;object-fit:cover;display:block}
#results figure.selected{outline:3px solid #2d5fd3;outline-offset:-3px}
#results figcaption{position:absolute;right:4px;bottom:4px;background:#000a;padding:1px 5px;
 border-radius:4px;font-size:12px}
#view{position:fixed;inset:0;background:#000e;display:none;z-index:3;padding:12px;
 overflow:auto}
#view.open{display:flex;flex-direction:column;align-items:center;gap:8px}
#view img{max-width:100%;max-height:70vh;object-fit:contain}
#view .meta{max-width:900px;width:100%;word-break:break-all}
#view ol{margin:4px 0;padding-left:22px}
#results figure.weak{opacity:.5}
details{flex-basis:100%}
details summary{cursor:pointer;color:#aaa}
details div{display:flex;flex-wrap:wrap;gap:6px;margin-top:6px}
details input{flex:0 1 150px;min-width:0}
.group{grid-column:1/-1;display:flex;flex-wrap:wrap;gap:6px;padding:6px 0;
 border-bottom:1px solid #333}
.group figure{width:150px;flex:0 0 150px}
.group figure.keep{outline:3px solid #3a9d5d;outline-offset:-3px}
#dups{background:#333;border-color:#555}
</style></head><body>
<header>
 <form id="search" autocomplete="off">
  <input name="q" type="search" placeholder="Describe a photo, e.g. kids on a beach at dusk
 (-word to avoid, 2:word to weigh)" aria-label="search">
  <input name="under" placeholder="folder (optional)" aria-label="folder filter">
  <select name="k" aria-label="results per page">
   <option>24</option><option selected>48</option><option>96</option><option>200</option>
  </select>
  <button type="submit">Search</button>
  <details id="filters"><summary>Filters</summary><div>
   <label>taken after <input name="after" type="date"></label>
   <label>before <input name="before" type="date"></label>
   <input name="camera" placeholder="camera" aria-label="camera">
   <input name="near" placeholder="near LAT,LON" aria-label="near">
   <input name="within" placeholder="within 5km" aria-label="within">
   <select name="sort" aria-label="order"><option value="score">best match</option>
    <option value="taken">newest first</option></select>
   <input name="min_z" type="number" step="0.5" min="0" placeholder="stand out (z)"
    aria-label="minimum z">
  </div></details>
 </form>
 <button id="dups" type="button" title="groups of the same photo">Duplicates</button>
 <label id="drop" title="or drop an image anywhere">Search by image
  <input id="file" type="file" accept="image/*" hidden></label>
</header>
<div id="status"></div>
<main id="results"></main>
<div id="view" role="dialog" aria-modal="true"></div>
<script>
"use strict";
const form = document.getElementById("search"), results = document.getElementById("results");
const status = document.getElementById("status"), view = document.getElementById("view");
let current = null;  // {kind, arg, k}: what the grid shows, to load more on scroll
// The filters and order, by the API's names (they are in the URL too).
const FILTERS = ["under", "after", "before", "camera", "near", "within", "sort", "min_z"];
const STRONG_Z = 3;  // matches this many deviations above the collection's mean stand out
function filters() {
  const f = {};
  for (const name of FILTERS) {
    const value = form[name].value.trim();
    if (value && !(name === "sort" && value === "score")) f[name] = value;
  }
  return f;
}
let loading = false, exhausted = false, selected = -1;  // selected: the keyboard's card

// As on the command line: plain words make one term; a quoted phrase or a weighted
// token (2:word, 2:"red car") is a term of its own; -word or -"a phrase" steers away.
function terms(text) {
  const q = [], not = [], plain = [];
  for (const m of text.matchAll(/(-?)(?:(\d+(?:\.\d+)?):(?=[^\d\s]))?(?:"([^"]*)"|(\S+))/g)) {
    const [, minus, weight, quoted, word] = m;
    const value = quoted !== undefined ? quoted : word;
    if (!value) continue;
    if (minus) not.push(value);
    else if (weight || quoted !== undefined) q.push(weight ? `${weight}:${value}` : value);
    else plain.push(value);
  }
  if (plain.length) q.unshift(plain.join(" "));
  return {q, not};
}
function fail(err) { status.textContent = err; }
async function getJSON(url, options) {
  const r = await fetch(url, options);
  const data = await r.json().catch(() => ({error: r.statusText}));
  if (!r.ok) throw new Error(data.error || r.statusText);
  return data;
}
function card(hit) {
  const fig = document.createElement("figure");
  const img = document.createElement("img");
  img.loading = "lazy"; img.src = hit.thumb; img.alt = hit.path;
  const cap = document.createElement("figcaption");
  cap.textContent = hit.score.toFixed(3);
  if (hit.z !== undefined && hit.z < STRONG_Z && current?.sorted !== "taken")
    fig.classList.add("weak");  // where the strong matches end
  fig.append(img, cap);
  fig.addEventListener("click", () => open(hit));
  return fig;
}
async function show(kind, arg, k, more) {
  if (loading) return;
  loading = true;
  try {
    let data;
    if (kind === "text") {
      const p = new URLSearchParams();
      arg.q.forEach(v => p.append("q", v)); arg.not.forEach(v => p.append("not", v));
      for (const [name, value] of Object.entries(arg.filters)) p.set(name, value);
      p.set("k", k);
      data = await getJSON("/api/search?" + p);
    } else if (kind === "similar") {
      data = await getJSON(`/api/similar/${arg}?k=${k}`);
    } else {
      const body = new FormData();
      body.append("image", arg); body.append("k", k);
      for (const [name, value] of Object.entries(filters())) body.append(name, value);
      data = await getJSON("/api/search", {method: "POST", body});
    }
    const shown = more ? results.children.length : 0;
    if (!more) { results.replaceChildren(); selected = -1; }
    current = {kind, arg, k, sorted: form.sort.value};
    data.results.slice(shown).forEach(h => results.append(card(h)));
    exhausted = data.results.length < k;
    const strong = data.results.filter(h => h.z >= STRONG_Z).length;
    status.textContent = data.results.length ? `${data.results.length} photos` +
      (current.sorted === "taken" ? ", newest first" : `, ${strong} stand out`) : "no matches";
  } catch (e) { fail(e.message); } finally { loading = false; }
}
// Groups of the same photo (copies, resizes, re-encodes), the one to keep outlined first.
async function duplicates(under) {
  status.textContent = "looking for duplicates...";
  try {
    const data = await getJSON("/api/duplicates" + (under ? "?under=" +
                                                    encodeURIComponent(under) : ""));
    results.replaceChildren(); selected = -1; current = null;
    for (const group of data.groups) {
      const row = document.createElement("div");
      row.className = "group";
      for (const m of group.members) {
        const fig = card({...m, score: m.cosine, available: true});
        fig.title = `${m.path} · ${m.width}x${m.height} · ${m.bytes} bytes`;
        if (m.path === group.keep) fig.classList.add("keep");
        row.append(fig);
      }
      results.append(row);
    }
    status.textContent = data.groups.length ?
      `${data.groups.length} groups of the same photo; outlined: the one to keep` :
      "no duplicates";
  } catch (e) { fail(e.message); }
}
document.getElementById("dups").addEventListener("click", () => {
  const params = {view: "duplicates"};
  if (form.under.value.trim()) params.under = form.under.value.trim();
  navigate(params);
});
// The search lives in the URL (/?q=...&under=...&k=...): a link or a reload shows the same
// results, and Back / Forward move through searches.
function fromURL() {
  const p = new URLSearchParams(location.search);
  form.q.value = p.get("q") || "";
  for (const name of FILTERS) form[name].value = p.get(name) || (name === "sort" ? "score" : "");
  if (FILTERS.some(name => name !== "under" && p.get(name)))
    document.getElementById("filters").open = true;
  if (p.get("k")) form.k.value = p.get("k");
  if (p.get("similar")) return show("similar", p.get("similar"), +form.k.value, false);
  if (p.get("view") === "duplicates") return duplicates(p.get("under"));
  if (!form.q.value.trim()) { results.replaceChildren(); status.textContent = ""; return; }
  const t = terms(form.q.value);
  t.filters = filters();
  show("text", t, +form.k.value, false);
}
function navigate(params) {
  const url = "/?" + new URLSearchParams(params);
  if (url !== location.pathname + location.search) history.pushState(null, "", url);
  fromURL();
}
form.addEventListener("submit", ev => {
  ev.preventDefault();
  if (!terms(form.q.value).q.length) return fail("type what to look for");
  const params = {q: form.q.value.trim(), ...filters()};
  if (form.k.value !== "48") params.k = form.k.value;
  navigate(params);
});
window.addEventListener("popstate", () => { view.classList.remove("open"); fromURL(); });
function byImage(file) {
  if (!file) return;
  if (file.size > 32 * 1024 * 1024) return fail("that image is over 32 MB");
  show("upload", file, +form.k.value, false);
}
document.getElementById("file").addEventListener("change", e => byImage(e.target.files[0]));
const drop = document.getElementById("drop");
for (const target of [document.body]) {
  target.addEventListener("dragover", e => { e.preventDefault(); drop.classList.add("over"); });
  target.addEventListener("dragleave", () => drop.classList.remove("over"));
  target.addEventListener("drop", e => {
    e.preventDefault(); drop.classList.remove("over");
    byImage(e.dataTransfer.files[0]);
  });
}
window.addEventListener("scroll", () => {
  if (!current || exhausted || loading) return;
  if (window.innerHeight + window.scrollY > document.body.offsetHeight - 400)
    show(current.kind, current.arg, Math.min(current.k + +form.k.value, 1000), true);
});
async function open(hit) {
  view.replaceChildren();
  const img = document.createElement("img");
  img.src = hit.image; img.alt = hit.path;
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.innerHTML = "<div class=path></div><div class=score></div><div>Described as:</div>" +
    "<ol class=texts></ol><button class=more>More like this</button> " +
    "<button class=close>Close</button>";
  meta.querySelector(".path").textContent = hit.path + (hit.available ? "" : " (unavailable)");
  meta.querySelector(".score").textContent = [`score ${hit.score.toFixed(3)}`,
    hit.z !== undefined ? `z ${hit.z.toFixed(1)}` : "",
    hit.date ? hit.date.replace("T", " ") + (hit.taken_source === "mtime" ? " (file date)" : "")
      : "", hit.camera || "",
    hit.gps ? `${hit.gps.lat.toFixed(5)}, ${hit.gps.lon.toFixed(5)}` : ""].filter(Boolean)
    .join(" · ");
  meta.querySelector(".more").addEventListener("click", () => {
    view.classList.remove("open"); navigate({similar: hit.id});
  });
  meta.querySelector(".close").addEventListener("click", () => view.classList.remove("open"));
  view.append(img, meta);
  view.classList.add("open");
  try {
    const texts = await getJSON(`/api/describe/${hit.id}?k=5`);
    for (const t of texts.results) {
      const li = document.createElement("li");
      li.textContent = `${t.text} (${t.score.toFixed(3)})`;
      meta.querySelector(".texts").append(li);
    }
  } catch (e) { meta.querySelector(".texts").textContent = e.message; }
}
// Arrow keys walk the results (outside the form's fields), Enter opens one, Escape closes it.
function select(i) {
  const cards = results.children;
  if (!cards.length) return;
  selected = Math.max(0, Math.min(i, cards.length - 1));
  [...cards].forEach((c, j) => c.classList.toggle("selected", j === selected));
  cards[selected].scrollIntoView({block: "nearest"});
}
document.addEventListener("keydown", e => {
  if (e.key === "Escape") return view.classList.remove("open");
  if (view.classList.contains("open") || e.target.closest("input, select, button")) return;
  const across = Math.max(1, Math.round(results.clientWidth /
                                        (results.firstElementChild?.offsetWidth || 1)));
  const step = {ArrowRight: 1, ArrowLeft: -1, ArrowDown: across, ArrowUp: -across}[e.key];
  if (step) { e.preventDefault(); select(selected < 0 ? 0 : selected + step); }
  else if (e.key === "Enter" && selected >= 0) results.children[selected].click();
});
fromURL();
</script></body></html>
"""
