// The results table (sort, filter, pages of rows) and the detail view of one image.
// Rows come from the report's data script; every text goes in through textContent, never as markup, and
// every link and picture is a URL the report made (a "./" path, each segment percent-encoded): the
// script never builds a URL from a name.
(function () {
  "use strict";
  var DATA = window.GRADCAM_REPORT || { images: [], rows: [] };
  var images = DATA.images, rows = DATA.rows;
  var PAGE = 300; // rows rendered at a time: the page stays fast with 10,000 results
  var NUMERIC = { prob: true, share: true, area: true };
  var $ = function (id) { return document.getElementById(id); };
  var collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });
  var view = rows.map(function (_, n) { return n; });
  var shown = PAGE, sortKey = null, sortDir = 1, savedScroll = 0;

  var KEYS = {
    input: function (r) { return images[r.i].in; },
    "class": function (r) { return r.err ? null : classText(r); },
    prob: function (r) { return r.p; },
    method: function (r) { return r.m; },
    layer: function (r) { return r.l; },
    share: function (r) { return r.s; },
    area: function (r) { return r.a; },
    error: function (r) { return r.err || null; }
  };

  function el(tag, props) {
    var node = document.createElement(tag);
    for (var k in props || {}) {
      if (k === "text") node.textContent = props[k];
      else if (k === "cls") node.className = props[k];
      else node.setAttribute(k, props[k]);
    }
    for (var i = 2; i < arguments.length; i++) {
      var child = arguments[i];
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  // A URL from the data, or null: only the relative paths the report writes, never a scheme.
  function url(u) { return typeof u === "string" && u.slice(0, 2) === "./" ? u : null; }

  function pct(x) { return x == null ? "" : (100 * x).toFixed(x < 0.1 ? 1 : 0) + "%"; }
  function classText(r) { return r.c ? r.c + " (" + r.k + ")" : (r.k != null ? "class " + r.k : ""); }
  function mapText(r) {
    var parts = [];
    if (r.g) parts.push(r.g.join("×"));
    if (r.e) parts.push("empty");
    if (r.n) parts.push((r.n > 1 ? r.n + " regions, largest " : "") + pct(r.s) + " of map, " + pct(r.a) + " of photo");
    for (var k in r.x || {}) parts.push(k + " " + r.x[k]);
    return parts.join(" · ");
  }
  function boxText(r) { return r.b ? r.b.join(", ") : ""; }
  function searchText(r) {
    if (r._q === undefined) r._q = [images[r.i].in, classText(r), r.m, r.l, r.err].join(" ").toLowerCase();
    return r._q;
  }

  function compare(a, b) {
    if (a == null || b == null) return a == null ? (b == null ? 0 : 1) : -1; // blanks last either way
    return (typeof a === "number" ? a - b : collator.compare(a, b)) * sortDir;
  }

  function sortView() {
    if (!sortKey) { view.sort(function (a, b) { return a - b; }); return; }
    var key = KEYS[sortKey];
    var values = {};
    view.forEach(function (n) { values[n] = key(rows[n]); });
    view.sort(function (a, b) { return compare(values[a], values[b]) || a - b; });
  }

  function applyFilter() {
    var terms = $("filter").value.toLowerCase().split(/\s+/).filter(Boolean);
    var status = $("status").value;
    view = [];
    rows.forEach(function (r, n) {
      if (status === "ok" && r.err) return;
      if (status === "failed" && !r.err) return;
      var text = terms.length ? searchText(r) : "";
      if (terms.every(function (t) { return text.indexOf(t) >= 0; })) view.push(n);
    });
    sortView();
    shown = PAGE;
    render();
  }

  function renderRow(n) {
    var r = rows[n], link = "#image-" + r.i;
    var thumb = url(r.t) ? el("a", { href: link }, el("img", { src: url(r.t), loading: "lazy", alt: "", decoding: "async" })) : null;
    return el("tr", { cls: r.err ? "failed" : "", "data-row": n },
      el("td", { cls: "thumb" }, thumb),
      el("td", {}, el("a", { href: link, title: images[r.i].in }, el("code", { text: images[r.i].d || images[r.i].in }))),
      el("td", { text: r.err ? "" : classText(r) }),
      el("td", { cls: "num", text: r.p == null ? "" : r.p.toFixed(3) }),
      el("td", { text: r.m || "" }),
      el("td", {}, r.l ? el("code", { text: r.l }) : null),
      el("td", { cls: "map", text: r.err ? "" : mapText(r) }),
      el("td", { cls: "num", text: boxText(r) }),
      el("td", { cls: "error", text: r.err || (r.w ? r.w.join("; ") : "") }));
  }

  function render() {
    var fragment = document.createDocumentFragment();
    view.slice(0, shown).forEach(function (n) { fragment.append(renderRow(n)); });
    document.querySelector("#table tbody").replaceChildren(fragment);
    var count = Math.min(shown, view.length);
    $("shown").textContent = "showing " + count.toLocaleString() + " of " + view.length.toLocaleString() +
      (view.length < rows.length ? " matching (" + rows.length.toLocaleString() + " in all)" : "");
    $("more").hidden = shown >= view.length;
  }

  function sortBy(th) {
    var key = th.getAttribute("data-key");
    sortDir = key === sortKey ? -sortDir : (NUMERIC[key] ? -1 : 1); // numbers largest first
    sortKey = key;
    document.querySelectorAll("#table th[data-key]").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", sortDir > 0 ? "ascending" : "descending");
    sortView();
    shown = PAGE;
    render();
  }

  function figure(src, caption) {
    if (!url(src)) return null;
    return el("figure", {}, el("a", { href: url(src) }, el("img", { src: url(src), alt: caption, decoding: "async" })),
      el("figcaption", { text: caption }));
  }

  function showDetail(i) {
    var image = images[i];
    if (!image) { closeDetail(); return; }
    var mine = rows.filter(function (r) { return r.i === i; });
    var detail = $("detail");
    if (!document.body.classList.contains("detail")) savedScroll = window.scrollY;
    detail.replaceChildren(el("a", { cls: "back", href: "#results", text: "← all results" }),
      el("h2", {}, el("code", { text: image.in })));
    mine.filter(function (r) { return r.err; }).forEach(function (r) {
      detail.append(el("p", { cls: "error", text: r.err }));
    });
    var classes = [];
    mine.forEach(function (r) { if (!r.err && classes.indexOf(r.k) < 0) classes.push(r.k); });
    classes.forEach(function (k) {
      var ofClass = mine.filter(function (r) { return !r.err && r.k === k; });
      var first = ofClass[0];
      detail.append(el("h3", { text: classText(first) + (first.p == null ? "" : " · p = " + first.p.toFixed(3)) }));
      var sheets = [];
      ofClass.forEach(function (r) { if (url(r.f.sheet) && sheets.indexOf(r.f.sheet) < 0) sheets.push(r.f.sheet); });
      sheets.forEach(function (s) { detail.append(el("div", { cls: "sheet" }, figure(s, "sheet"))); });
      ofClass.forEach(function (r) { detail.append(outputsOf(r)); });
    });
    document.body.classList.add("detail");
    detail.hidden = false;
    window.scrollTo(0, 0);
  }

  function outputsOf(r) {
    var box = el("div", {});
    box.append(el("p", { cls: "facts", text: [r.m, r.l, mapText(r), r.b ? "box " + boxText(r) : "no box"]
      .concat(r.w || []).filter(Boolean).join(" · ") }));
    var outputs = el("div", { cls: "outputs" });
    ["overlay", "heatmap", "guided", "bbox"].forEach(function (kind) {
      if (url(r.f[kind])) outputs.append(figure(r.f[kind], kind));
    });
    Object.keys(r.f).forEach(function (kind) {
      if (url(r.f[kind]) && /\.npy$/.test(r.f[kind])) outputs.append(el("a", { href: url(r.f[kind]), text: kind + " (.npy)" }));
    });
    box.append(outputs);
    return box;
  }

  function closeDetail() {
    if (!document.body.classList.contains("detail")) return;
    document.body.classList.remove("detail");
    $("detail").hidden = true;
    $("detail").replaceChildren();
    window.scrollTo(0, savedScroll);
  }

  function route() {
    var match = /^#image-(\d+)$/.exec(location.hash);
    if (match) showDetail(Number(match[1])); else closeDetail();
  }

  var timer = null;
  $("filter").addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(applyFilter, 120);
  });
  $("status").addEventListener("change", applyFilter);
  $("more").addEventListener("click", function () { shown += PAGE; render(); });
  document.querySelectorAll("#table th[data-key]").forEach(function (th) {
    th.addEventListener("click", function () { sortBy(th); });
    th.addEventListener("keydown", function (ev) { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); sortBy(th); } });
  });
  window.addEventListener("hashchange", route);
  render();
  route();
})();
