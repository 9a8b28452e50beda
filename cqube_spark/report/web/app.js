/* cQube offline report. Reads data/manifest.js, data/hierarchy/*.js and data/<kpi>/<type>/<period>/<breakdown>/<level>.js
 * (each calls CQ.put(key, data)), loaded on demand with <script> tags so the page works from a file path, a static
 * server or a bucket. Every number shown is a published number (copied as is); the page only filters, sorts and
 * classifies against the configured bands. Charts: Apache ECharts (vendor/echarts.min.js). */
(function () {
  "use strict";
  var CQ = window.CQ = window.CQ || {};
  var LEVELS = ["school", "cluster", "block", "district", "state"];
  var LABEL = {school: "School", cluster: "Cluster", block: "Block", district: "District", state: "State"};
  var COLORS = {low: "#d73027", mid: "#fdae61", high: "#1a9850", none: "#9e9e9e"};
  CQ.store = {}; CQ.H = {}; CQ.renders = 0; CQ.shown = []; CQ.errors = [];
  var loading = {};
  var charts = {};
  var S = CQ.state = {kpi: null, period: null, breakdown: "total", bdvalue: null, unitLevel: "state", unitId: null,
                      level: null, sort: null};

  CQ.put = function (key, obj) { CQ.store[key] = obj; };
  CQ.load = function (key) {
    if (Object.prototype.hasOwnProperty.call(CQ.store, key)) return Promise.resolve(CQ.store[key]);
    if (!loading[key]) {
      loading[key] = new Promise(function (resolve, reject) {
        var s = document.createElement("script");
        s.src = "data/" + key + ".js";
        s.onload = function () { key in CQ.store ? resolve(CQ.store[key]) : reject(new Error("data/" + key + ".js did not load its data")); };
        s.onerror = function () { delete loading[key]; reject(new Error("cannot load data/" + key + ".js")); };
        document.head.appendChild(s);
      });
    }
    return loading[key];
  };

  function $(id) { return document.getElementById(id); }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function fmt(v) { return v === null || v === undefined ? "" : String(v); }
  function options(sel, items, value) {
    sel.innerHTML = "";
    items.forEach(function (it) { var o = el("option", {value: it[0]}, it[1]); sel.appendChild(o); });
    if (value !== null && value !== undefined) sel.value = value;
  }
  function message(text, kind) { $("messages").appendChild(el("div", {"class": "msg " + (kind || "")}, text)); }
  function kpi() { return CQ.manifest.kpis[S.kpi]; }
  function finer(level, than) { return LEVELS.indexOf(level) < LEVELS.indexOf(than); }

  function unit(level, id) { var h = CQ.H[level]; return h ? h[id] : undefined; }
  function ancestor(level, id, target) {
    var u = unit(level, id), guard = 0;
    while (u && guard++ < 6) {
      if (!u.parent_level) return null;
      if (u.parent_level === target) return u.parent_id;
      if (finer(target, u.parent_level)) return null;
      u = unit(u.parent_level, u.parent_id);
    }
    return null;
  }
  function unitName(level, id) { var u = unit(level, id); return u ? u.name : id; }

  function band(v) {
    var k = kpi(), lo = k.bands[0], hi = k.bands[1];
    if (v === null || v === undefined || typeof v !== "number") return "none";
    if (k.better === "higher") return v < lo ? "low" : (v > hi ? "high" : "mid");
    return v > hi ? "low" : (v < lo ? "high" : "mid");
  }
  function bandLabel(b) { return {low: "low performer", high: "high performer", mid: "", none: "no value"}[b]; }
  function pieces() {
    var k = kpi(), lo = k.bands[0], hi = k.bands[1], u = k.unit || "";
    if (k.better === "higher") return [
      {lt: lo, color: COLORS.low, label: "< " + lo + u + " (low)"},
      {gte: lo, lte: hi, color: COLORS.mid, label: lo + "–" + hi + u},
      {gt: hi, color: COLORS.high, label: "> " + hi + u + " (high)"}];
    return [
      {gt: hi, color: COLORS.low, label: "> " + hi + u + " (low performers)"},
      {gte: lo, lte: hi, color: COLORS.mid, label: lo + "–" + hi + u},
      {lt: lo, color: COLORS.high, label: "< " + lo + u + " (high performers)"}];
  }

  function bdKey(row, cols, idx) { return cols.map(function (c) { return fmt(row[idx[c]]); }).join(" · "); }

  function fileKey(level, period) {
    var p = period || S.period;
    return S.kpi + "/" + p + "/" + S.breakdown + "/" + level;
  }

  // -- render ---------------------------------------------------------------------------------------------
  function render() {
    var seq = ++CQ.renders;
    document.body.dataset.ready = "0";
    $("messages").innerHTML = "";
    var k = kpi();
    controls(k);
    legend(k);
    breadcrumb();
    $("trend").closest(".panel").classList.toggle("hidden", !!k.missing);
    if (k.missing) { message(k.missing, "error"); show(false); $("notes").innerHTML = ""; return done(seq); }
    var key = fileKey(S.level);
    if (k.files.indexOf(key) < 0) {
      var why = S.breakdown !== "total" && k.files.indexOf(S.kpi + "/" + S.period + "/total/" + S.level) >= 0
        ? "The breakdown '" + S.breakdown + "' is not carried at " + S.level + " level (configs/report.yaml breakdownLevels)."
        : "No published data for " + k.title + ", " + periodLabel(S.period) + ", " + S.level + " level.";
      message(why); show(false); trend(k); return done(seq);
    }
    CQ.load(key).then(function (d) {
      if (seq !== CQ.renders) return;
      var rows = rowsOf(d, k);
      if (!rows.length) {
        message("No units with data in " + periodLabel(S.period) + " under " + unitName(S.unitLevel, S.unitId) + ".");
        show(false);
      } else {
        show(true);
        map(k, rows); bar(k, rows); table(k, d, rows);
      }
      CQ.shown = rows;
      unitSelector(rows);
      return trend(k);
    }).catch(fail).then(function () { done(seq); });
  }
  function done(seq) { if (seq === CQ.renders) { document.body.dataset.ready = "1"; } }
  function fail(e) { message(String(e && e.message || e), "error"); }
  function show(on) {
    ["map", "bar", "table"].forEach(function (id) { $(id).closest(".panel").classList.toggle("hidden", !on); });
  }
  function periodLabel(key) {
    var p = (kpi().periods || []).filter(function (x) { return x.key === key; })[0];
    return p ? p.label : key;
  }

  function rowsOf(d, k) {
    var idx = {}; d.columns.forEach(function (c, i) { idx[c] = i; });
    var idCol = idx[S.level + "_id"], cols = d.breakdown_columns;
    var values = {};
    var out = [];
    d.rows.forEach(function (r) {
      var id = r[idCol];
      if (S.unitLevel !== S.level && !(S.unitLevel === "state" && unit(S.level, id) === undefined)) {
        if (ancestor(S.level, id, S.unitLevel) !== S.unitId) return;
      }
      var bk = bdKey(r, cols, idx);
      values[bk] = true;
      out.push({r: r, bk: bk});
    });
    var vals = Object.keys(values).sort();
    if (cols.length) {
      if (vals.indexOf(S.bdvalue) < 0) S.bdvalue = vals[0] || null;
      options($("bdvalue"), vals.map(function (v) { return [v, v]; }), S.bdvalue);
    }
    return out.filter(function (x) { return !cols.length || x.bk === S.bdvalue; }).map(function (x) {
      var u = unit(S.level, x.r[idCol]) || {};
      var o = {id: x.r[idCol], name: u.name === undefined ? x.r[idCol] : u.name, lat: u.lat, lng: u.lng};
      d.measures.forEach(function (m) { o[m] = x.r[idx[m]]; });
      o.band = band(o[k.main]);
      return o;
    });
  }

  function controls(k) {
    var ks = CQ.manifest.kpi_order.map(function (n) { return [n, CQ.manifest.kpis[n].title]; });
    options($("kpi"), ks, S.kpi);
    var periods = (k.periods || []).map(function (p) { return [p.key, p.label]; });
    if (!k.missing && periods.every(function (p) { return p[0] !== S.period; })) S.period = defaultPeriod(k);
    options($("period"), periods, S.period);
    var bds = (k.breakdowns || ["total"]).map(function (b) { return [b, b === "total" ? "All" : b.replace(/_/g, " ")]; });
    if (bds.every(function (b) { return b[0] !== S.breakdown; })) S.breakdown = "total";
    options($("breakdown"), bds, S.breakdown);
    $("bdvalue-label").classList.toggle("hidden", S.breakdown === "total");
    var lv = (k.levels || []).filter(function (l) { return finer(l, S.unitLevel); });
    if (lv.indexOf(S.level) < 0) S.level = lv[lv.length - 1] || null;
    options($("level"), lv.slice().reverse().map(function (l) { return [l, LABEL[l] + "s"]; }), S.level);
  }
  function defaultPeriod(k) {
    var ov = k.periods.filter(function (p) { return p.key === "window/overall"; })[0];
    return (ov || k.periods[k.periods.length - 1]).key;
  }
  function unitSelector(rows) {
    var sel = $("unit");
    var items = [["", "—"]];
    if (S.level !== "school") rows.slice().sort(function (a, b) { return String(a.name).localeCompare(String(b.name)); })
      .forEach(function (r) { items.push([r.id, r.name + " (" + r.id + ")"]); });
    options(sel, items, "");
    sel.disabled = S.level === "school";
  }
  function legend(k) {
    var L = $("legend"); L.innerHTML = "";
    if (k.missing) return;
    L.appendChild(el("b", {}, k.title + ": " + k.main + (k.unit ? " (" + k.unit + ")" : "") + ", " +
      (k.better === "higher" ? "higher is better" : "lower is better") + ". Bands:"));
    pieces().forEach(function (p) {
      var s = el("span", {"class": "swatch"}); s.style.background = p.color; L.appendChild(s);
      L.appendChild(document.createTextNode(p.label));
    });
    var s = el("span", {"class": "swatch"}); s.style.background = COLORS.none; L.appendChild(s);
    L.appendChild(document.createTextNode("no value"));
    var N = $("notes"); N.innerHTML = "";
    N.appendChild(el("p", {}, k.description || ""));
    (k.notes || []).forEach(function (n) { N.appendChild(el("p", {}, n)); });
  }
  function breadcrumb() {
    var B = $("breadcrumb"); B.innerHTML = "";
    var chain = [], lv = S.unitLevel, id = S.unitId;
    while (lv) {
      chain.unshift([lv, id]);
      var u = unit(lv, id);
      if (!u || !u.parent_level) break;
      lv = u.parent_level; id = u.parent_id;
    }
    chain.forEach(function (c, i) {
      if (i) B.appendChild(el("span", {"class": "sep"}, "›"));
      if (finer(root().level, c[0])) { B.appendChild(el("span", {"class": "above"}, unitName(c[0], c[1]))); return; }
      var a = el("a", {"data-level": c[0], "data-id": c[1]}, unitName(c[0], c[1]));
      a.addEventListener("click", function () { goTo(c[0], c[1]); });
      B.appendChild(a);
    });
  }

  function chart(id) {
    if (!charts[id]) charts[id] = echarts.init($(id), null, {renderer: "canvas"});
    return charts[id];
  }
  function tooltip(k, o) {
    var lines = [o.name + " (" + o.id + ")"];
    kpi().measures.forEach(function (m) { lines.push(m + ": " + fmt(o[m])); });
    if (bandLabel(o.band)) lines.push(bandLabel(o.band));
    return lines.map(function (s) {
      return s.replace(/[&<>"']/g, function (c) { return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]; });
    }).join("<br>");
  }
  function map(k, rows) {
    var pts = rows.filter(function (o) { return typeof o.lat === "number" && typeof o.lng === "number"; });
    var missing = rows.length - pts.length;
    if (missing) message(missing + " of " + rows.length + " " + S.level + "s have no coordinates: they are in the ranking and the table, not on the map.");
    $("map-title").textContent = "Map: " + LABEL[S.level] + "s by " + k.main + " (" + pts.length + " points)";
    chart("map").setOption({
      animation: false,
      tooltip: {trigger: "item", formatter: function (p) { return tooltip(k, rows[p.data.row]); }},
      grid: {left: 50, right: 20, top: 20, bottom: 70},
      xAxis: {type: "value", scale: true, name: "lng", axisLabel: {fontSize: 10}},
      yAxis: {type: "value", scale: true, name: "lat", axisLabel: {fontSize: 10}},
      visualMap: {type: "piecewise", dimension: 2, pieces: pieces(), outOfRange: {color: COLORS.none},
                  orient: "horizontal", left: "center", bottom: 0, textStyle: {fontSize: 11}},
      series: [{type: "scatter", id: "units", symbolSize: S.level === "school" ? 9 : 16,
                data: pts.map(function (o) { return {value: [o.lng, o.lat, o[k.main] === null ? "-" : o[k.main]], row: rows.indexOf(o), id: o.id}; })}]
    }, true);
  }
  function ranked(k, rows) {
    var sign = k.better === "higher" ? -1 : 1;
    return rows.slice().sort(function (a, b) {
      var x = a[k.main], y = b[k.main];
      if (x === null || x === undefined) return 1;
      if (y === null || y === undefined) return -1;
      return sign * (x - y) || String(a.id).localeCompare(String(b.id));
    });
  }
  function bar(k, rows) {
    var r = ranked(k, rows);
    $("bar-title").textContent = "Ranking: " + LABEL[S.level] + "s by " + k.main + " (best first)";
    chart("bar").setOption({
      animation: false,
      tooltip: {trigger: "item", formatter: function (p) { return tooltip(k, r[p.dataIndex]); }},
      grid: {left: 140, right: 30, top: 10, bottom: 30},
      xAxis: {type: "value", name: k.main},
      yAxis: {type: "category", inverse: true, data: r.map(function (o) { return o.name; }), axisLabel: {fontSize: 10}},
      dataZoom: r.length > 25 ? [{type: "slider", yAxisIndex: 0, startValue: 0, endValue: 24, right: 0}] : [],
      series: [{type: "bar", id: "ranking",
                data: r.map(function (o) { return {value: o[k.main], id: o.id, itemStyle: {color: COLORS[o.band]}}; })}]
    }, true);
  }
  function trend(k) {
    if (k.missing) return Promise.resolve();
    var months = k.periods.filter(function (p) { return p.type === "month"; });
    var level = S.unitLevel, id = S.unitId;
    $("trend-title").textContent = "Trend over months: " + unitName(level, id) + " (" + k.main + ")";
    var keys = months.map(function (p) { return fileKey(level, p.key); }).filter(function (x) { return k.files.indexOf(x) >= 0; });
    if (!keys.length) {
      chart("trend").clear();
      message(k.title + " has no monthly files for this level and breakdown: no trend to show.");
      return Promise.resolve();
    }
    return Promise.all(keys.map(CQ.load)).then(function (ds) {
      var xs = [], ys = [];
      ds.forEach(function (d, i) {
        var idx = {}; d.columns.forEach(function (c, j) { idx[c] = j; });
        var row = d.rows.filter(function (r) {
          return r[idx[level + "_id"]] === id && (!d.breakdown_columns.length || bdKey(r, d.breakdown_columns, idx) === S.bdvalue);
        })[0];
        xs.push(keys[i].split("/")[2]); ys.push(row ? row[idx[k.main]] : null);
      });
      chart("trend").setOption({
        animation: false, tooltip: {trigger: "axis"},
        grid: {left: 50, right: 30, top: 20, bottom: 30},
        xAxis: {type: "category", data: xs}, yAxis: {type: "value", scale: true, name: k.main},
        series: [{type: "line", id: "trend", data: ys, connectNulls: false,
                  markArea: {silent: true, itemStyle: {opacity: 0.08},
                             data: [[{yAxis: k.bands[0], itemStyle: {color: COLORS.mid}}, {yAxis: k.bands[1]}]]}}]
      }, true);
    });
  }

  function tableColumns(k) {
    var cols = [["name", LABEL[S.level]], ["id", "code"]];
    kpi().measures.forEach(function (m) { cols.push([m, m]); });
    cols.push(["band", "band"]);
    return cols;
  }
  function sortedRows(k, rows) {
    if (!S.sort) return ranked(k, rows);
    var c = S.sort.col, dir = S.sort.dir;
    return rows.slice().sort(function (a, b) {
      var x = a[c], y = b[c];
      if (x === null || x === undefined) return 1;
      if (y === null || y === undefined) return -1;
      var r = (typeof x === "number" && typeof y === "number") ? x - y : String(x).localeCompare(String(y));
      return dir * r || String(a.id).localeCompare(String(b.id));
    });
  }
  function table(k, d, rows) {
    var cols = tableColumns(k), t = $("table");
    var head = el("tr");
    cols.forEach(function (c) {
      var th = el("th", {"data-col": c[0], "class": (c[0] === "name" || c[0] === "id" || c[0] === "band") ? "text" : ""}, c[1]);
      if (S.sort && S.sort.col === c[0]) th.classList.add(S.sort.dir > 0 ? "sorted-asc" : "sorted-desc");
      th.addEventListener("click", function () {
        S.sort = {col: c[0], dir: S.sort && S.sort.col === c[0] ? -S.sort.dir : 1};
        table(k, d, rows);
      });
      head.appendChild(th);
    });
    t.tHead.innerHTML = ""; t.tHead.appendChild(head);
    var body = document.createElement("tbody");
    sortedRows(k, rows).forEach(function (o) {
      var tr = el("tr", {"data-id": o.id});
      cols.forEach(function (c) {
        var v = c[0] === "band" ? bandLabel(o.band) : fmt(o[c[0]]);
        var td = el("td", {"class": (c[0] === "name" || c[0] === "id" || c[0] === "band" ? "text" : "") +
                                    (c[0] === k.main ? " band-" + o.band : "")}, v);
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    t.replaceChild(body, t.tBodies[0]);
    $("table-title").textContent = LABEL[S.level] + "s — " + periodLabel(S.period) +
      (S.breakdown !== "total" ? " — " + S.breakdown + ": " + S.bdvalue : "");
    $("count").textContent = rows.length + " rows";
  }
  function csvCell(s) { return /[",\n\r]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s; }
  CQ.tableCsv = function () {
    var t = $("table"), lines = [];
    var head = Array.prototype.map.call(t.tHead.rows[0].cells, function (c) { return c.getAttribute("data-col"); });
    lines.push(head.map(csvCell).join(","));
    Array.prototype.forEach.call(t.tBodies[0].rows, function (tr) {
      lines.push(Array.prototype.map.call(tr.cells, function (c) { return csvCell(c.textContent); }).join(","));
    });
    return lines.join("\n") + "\n";
  };
  function downloadCsv() {
    var blob = new Blob([CQ.tableCsv()], {type: "text/csv"});
    var a = el("a", {download: [S.kpi, S.period.replace("/", "_"), S.breakdown, S.level, S.unitId].join("_") + ".csv"});
    a.href = URL.createObjectURL(blob);
    document.body.appendChild(a); a.click(); a.remove();
    setTimeout(function () { URL.revokeObjectURL(a.href); }, 1000);
  }

  // -- navigation -----------------------------------------------------------------------------------------
  function goTo(level, id) {
    S.unitLevel = level; S.unitId = id;
    var lv = (kpi().levels || []).filter(function (l) { return finer(l, level); });
    S.level = lv[lv.length - 1] || null;
    if (!S.level) { S.unitLevel = root().level; S.unitId = root().id; }
    render();
  }
  CQ.goTo = goTo;
  function drill(id) { if (S.level !== "school") goTo(S.level, id); }
  // The page's top unit: the state, or the district of a scoped copy (its state is shown above it, without data).
  function root() { return CQ.manifest.root || {level: "state", id: Object.keys(CQ.H.state || {})[0] || null}; }

  CQ.start = function () {
    if (!window.echarts) { message("The charting library (vendor/echarts.min.js) did not load.", "error"); return; }
    if (!CQ.manifest) { message("The report data (data/manifest.js) did not load.", "error"); return; }
    Promise.all(CQ.manifest.hierarchy.map(function (lv) { return CQ.load("hierarchy/" + lv); })).then(function (hs) {
      CQ.manifest.hierarchy.forEach(function (lv, i) {
        var m = CQ.H[lv] = {};
        hs[i].rows.forEach(function (r) {
          m[r[0]] = {id: r[0], name: r[1], parent_level: r[2], parent_id: r[3], lat: r[4], lng: r[5]};
        });
      });
      S.kpi = CQ.manifest.kpi_order[0]; S.unitLevel = root().level; S.unitId = root().id;
      $("kpi").addEventListener("change", function (e) { S.kpi = e.target.value; S.sort = null; S.bdvalue = null; render(); });
      $("period").addEventListener("change", function (e) { S.period = e.target.value; render(); });
      $("breakdown").addEventListener("change", function (e) { S.breakdown = e.target.value; S.bdvalue = null; render(); });
      $("bdvalue").addEventListener("change", function (e) { S.bdvalue = e.target.value; render(); });
      $("level").addEventListener("change", function (e) { S.level = e.target.value; render(); });
      $("unit").addEventListener("change", function (e) { if (e.target.value) drill(e.target.value); });
      $("csv").addEventListener("click", downloadCsv);
      chart("map").on("click", function (p) { if (p.data && p.data.id) drill(p.data.id); });
      chart("bar").on("click", function (p) { if (p.data && p.data.id) drill(p.data.id); });
      window.addEventListener("resize", function () { Object.keys(charts).forEach(function (c) { charts[c].resize(); }); });
      render();
    }).catch(function (e) { message("The hierarchy could not be loaded: " + e.message, "error"); });
  };
  window.addEventListener("DOMContentLoaded", function () { CQ.start(); });
})();
