"use strict";
// The circuit viewer: steps through the executor's forward pass, then its backward pass.
// All numbers come from the page's embedded JSON (written by graphexec.viewer); nothing is fetched.
(function () {
  const D = JSON.parse(document.getElementById("gx-data").textContent);
  const SVGNS = "http://www.w3.org/2000/svg";
  const steps = D.steps, last = steps.length - 1;
  const $ = (id) => document.getElementById(id);
  let t = 0, current = null, built = {};

  // When each value appears (forward step) and each fan-out sum grows (backward steps).
  const valueStep = {}, sums = {};
  for (const name of Object.keys(D.values)) valueStep[name] = 0;
  steps.forEach((st, j) => {
    if (st.phase === "forward") valueStep[st.value] = j;
    (st.rules || []).forEach((r) => (sums[r.acc.value] = sums[r.acc.value] || []).push([j, r.acc]));
  });
  const nodeGroup = {};
  D.views.forEach((v) => v.nodes.forEach((n) => {
    if (v.id !== "main") { if (n.ref !== undefined) nodeGroup[n.ref] = v.id; }
  }));

  function el(tag, attrs, parent, text) {
    const e = document.createElementNS(SVGNS, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }
  function h(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // ------------------------------------------------------------------ layout
  function layoutOf(view) {
    if (view.layout) return view.layout;
    const g = new dagre.graphlib.Graph({ multigraph: true });
    g.setGraph({ rankdir: view.rankdir, nodesep: 22, ranksep: 43, edgesep: 10, marginx: 4, marginy: 4 });
    g.setDefaultEdgeLabel(() => ({}));
    view.nodes.forEach((n) => g.setNode(n.id, { width: n.w, height: n.h }));
    view.edges.forEach((e) => g.setEdge(e.from, e.to, { width: e.lw, height: e.lh, labelpos: "c" }, e.id));
    dagre.layout(g);
    const out = { size: [g.graph().width, g.graph().height], nodes: {}, edges: {}, poly: true };
    g.nodes().forEach((id) => { const n = g.node(id); out.nodes[id] = [n.x, n.y, n.width, n.height]; });
    g.edges().forEach((k) => {
      const e = g.edge(k);
      out.edges[k.name] = { points: e.points.map((p) => [p.x, p.y]), end: null,
        label: e.x !== undefined ? [e.x, e.y] : null };
    });
    view.layout = out;
    return out;
  }

  function pathOf(lay, e) {
    const p = lay.points;
    let d = "M" + p[0][0] + "," + p[0][1];
    if (lay.end === null) { for (let i = 1; i < p.length; i++) d += "L" + p[i][0] + "," + p[i][1]; }
    else {
      for (let i = 1; i + 2 < p.length; i += 3) d += "C" + p[i] + " " + p[i + 1] + " " + p[i + 2];
      d += "L" + lay.end[0] + "," + lay.end[1];
    }
    return d;
  }

  // ------------------------------------------------------------------ drawing one view
  function build(view) {
    const lay = layoutOf(view);
    const svg = el("svg", { width: lay.size[0] + 16, height: lay.size[1] + 16,
      viewBox: "-8 -8 " + (lay.size[0] + 16) + " " + (lay.size[1] + 16), role: "group",
      "aria-label": "circuit " + view.title });
    const defs = el("defs", {}, svg);
    const m = el("marker", { id: "arrow-" + view.id, viewBox: "0 0 10 10", refX: 9, refY: 5,
      markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, defs);
    el("path", { d: "M0,0L10,5L0,10z", class: "arrowhead" }, m);
    const parts = { svg: svg, edges: [], nodes: [], byId: {} };
    view.nodes.forEach((n) => (parts.byId[n.id] = n));
    view.edges.forEach((e) => {
      const L = lay.edges[e.id];
      const g = el("g", { class: "wire" }, svg);
      el("path", { d: pathOf(L, e), class: "wire-line", "marker-end": "url(#arrow-" + view.id + ")" }, g);
      const at = L.label || L.points[Math.floor(L.points.length / 2)];
      const info = e.value !== null ? D.values[e.value] : null, tall = info && info.range !== undefined;
      const txt = el("text", { x: at[0], y: at[1] - (tall ? 9 : 2), class: "wire-label" }, g);
      const dims = tall ? el("tspan", { x: at[0], class: "dims" }, txt) : null;
      const val = el("tspan", { x: at[0], dy: tall ? 15 : 0, class: "val" }, txt);
      const grad = el("tspan", { x: at[0], dy: 15, class: "grad" }, txt);
      parts.edges.push({ e: e, g: g, val: val, grad: grad, dims: dims });
    });
    view.nodes.forEach((n) => {
      const [cx, cy, w, hh] = lay.nodes[n.id];
      const g = el("g", { class: "node " + n.kind, tabindex: 0, role: "button",
        "data-name": n.value || "", "aria-label": n.kind + " " + (n.value || n.label) }, svg);
      el("rect", { x: cx - w / 2, y: cy - hh / 2, width: w, height: hh, rx: 7 }, g);
      const y0 = cy - (n.fanout ? 7 : 0);
      if (n.kind === "gate") {
        el("text", { x: cx, y: y0 + 2, class: n.label.length > 2 ? "opname" : "sym" }, g, n.label);
        el("text", { x: cx, y: y0 + 15, class: "sub" }, g, n.sub);
      } else {
        el("text", { x: cx, y: y0 + (n.sub ? -1 : 4), class: "name" }, g, n.label);
        if (n.sub) el("text", { x: cx, y: y0 + 12, class: "sub" }, g, n.sub);
      }
      const badge = el("text", { x: cx, y: cy + hh / 2 - 5, class: "sum" }, g);
      const check = n.ref !== undefined ? D.nodes[n.ref].check : groupCheck(n);
      if (check) g.classList.add("check-" + check.result);
      g.addEventListener("click", () => pick(view, n));
      g.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); pick(view, n); } });
      parts.nodes.push({ n: n, g: g, badge: badge });
    });
    return parts;
  }

  function groupCheck(n) {
    if (n.view === undefined || !D.check) return null;
    const v = D.views.find((x) => x.id === n.view);
    const bad = v.nodes.some((m) => m.ref !== undefined && D.nodes[m.ref].check && D.nodes[m.ref].check.result === "fail");
    return { result: bad ? "fail" : "pass" };
  }

  function show(id) {
    const view = D.views.find((v) => v.id === id);
    if (!built[id]) built[id] = build(view);
    const box = $("canvas"), svg = built[id].svg;
    box.replaceChildren(svg);
    const w = +svg.getAttribute("width"), hh = +svg.getAttribute("height");
    const k = Math.max(0.6, Math.min(1.6, (box.clientWidth - 24) / w, (window.innerHeight * 0.8) / hh));
    svg.style.width = Math.round(w * k) + "px";
    svg.style.height = Math.round(hh * k) + "px";
    current = { view: view, parts: built[id] };
    $("view-title").textContent = view.id === "main" ? "" : "inside the box " + view.title;
    $("up").hidden = !view.parent;
    update();
  }

  // ------------------------------------------------------------------ state at step t
  function sumAt(name) {
    let best = null;
    for (const [j, acc] of sums[name] || []) if (j <= t) best = acc;
    return best;
  }
  function shown(name) { return name !== null && valueStep[name] !== undefined && valueStep[name] <= t; }
  function gradText(key) {
    const g = key && D.edgeGrads[key];
    return g && g.step <= t ? g.text : "";
  }

  function update() {
    const st = steps[t];
    const node = st.node;
    const here = node === undefined ? null : node;
    current.parts.edges.forEach((p) => {
      const e = p.e;
      const info = e.value !== null && shown(e.value) ? D.values[e.value] : null;
      const v = e.value !== null ? (info ? (info.range !== undefined ? info.range : info.text) : "") : (t > 0 ? e.wires + " wires" : "");
      if (p.dims) p.dims.textContent = info ? info.dims : "";
      p.val.textContent = v;
      p.grad.textContent = gradText(e.key);
    });
    current.parts.nodes.forEach((p) => {
      const n = p.n;
      const isHere = here !== null && (n.ref === here || (n.view !== undefined && nodeGroup[here] === n.view));
      p.g.classList.toggle("current", isHere);
      if (n.ref !== undefined) {
        p.g.classList.toggle("done", shown(n.value));
      }
      const acc = n.value ? sumAt(n.value) : null;
      p.badge.textContent = acc && acc.of > 1 ? "Σ∂ " + (acc.sum.scalar ? acc.sum.text + " " : "") + "(" + acc.n + " of " + acc.of + ")" : "";
    });
    $("step-no").textContent = "step " + t + " of " + last;
    $("back").disabled = $("home").disabled = t === 0;
    $("next").disabled = $("end").disabled = t === last;
    panel(st);
    wires();
  }

  // ------------------------------------------------------------------ side panel
  function stats(info, into) {
    if (!info.stats) return;
    into.appendChild(h("p", "stats", "shape (" + info.shape.join(", ") + "): min " + info.stats.min +
      ", max " + info.stats.max + ", mean " + info.stats.mean));
    if (info.heat) into.appendChild(heat(info.heat));
  }
  function heat(hm) {
    const rows = hm.cells.length, cols = hm.cells[0].length, c = document.createElement("canvas");
    const s = Math.max(4, Math.min(16, Math.floor(192 / Math.max(rows, cols))));
    c.width = cols * s; c.height = rows * s; c.className = "heat";
    c.setAttribute("role", "img");
    c.setAttribute("aria-label", "heat map, " + rows + " by " + cols + " cells, red positive, blue negative");
    const ctx = c.getContext("2d"), k = hm.scale || 1;
    hm.cells.forEach((row, i) => row.forEach((v, j) => {
      const a = Math.min(1, Math.abs(v) / k), w = Math.round(255 * (1 - a));
      ctx.fillStyle = v >= 0 ? "rgb(255," + w + "," + w + ")" : "rgb(" + w + "," + w + ",255)";
      ctx.fillRect(j * s, i * s, s, s);
    }));
    return c;
  }

  function panel(st) {
    const box = $("step");
    box.replaceChildren();
    const n = st.node !== undefined ? D.nodes[st.node] : null;
    if (st.phase === "start") {
      box.appendChild(h("h2", "", "Start: the inputs"));
      box.appendChild(h("p", "", "Press → (or Next) to run the forward pass one gate at a time, in the executor's order; the backward pass follows in reverse."));
      return;
    }
    const head = h("h2", st.phase, (st.phase === "forward" ? "Forward: " : "Backward: ") + n.name + " (" + n.op + ")");
    box.appendChild(head);
    if (st.phase === "forward") {
      box.appendChild(h("p", "eq", st.eq));
      stats(D.values[st.value], box);
    } else {
      if (st.seed) box.appendChild(h("p", "eq seed", st.seed + " (the seed)"));
      box.appendChild(h("p", "eq", "upstream gradient ∂" + D.gradOf + "/∂" + n.name + (st.dout.scalar ? " = " + st.dout.text : ":")));
      stats(st.dout, box);
      const ol = h("ol", "rules");
      st.rules.forEach((r) => {
        const li = h("li", "rule");
        li.appendChild(h("p", "eq grad", r.text));
        if (!r.grad.scalar) stats(r.grad, li);
        if (r.acc.of > 1) {
          const parts = r.acc.parts ? r.acc.parts.join(" + ") : "";
          li.appendChild(h("p", "adder", "gradient adder at " + r.src + ": " +
            (r.acc.sum.scalar ? "∂" + D.gradOf + "/∂" + r.src + " = " + parts + " = " + r.acc.sum.text : "sum of " + r.acc.n + " branches: " + r.acc.sum.text) +
            " (" + r.acc.n + " of " + r.acc.of + " branches)"));
        }
        ol.appendChild(li);
      });
      box.appendChild(ol);
    }
    if (n.doc) box.appendChild(h("p", "doc", "rule (" + n.op + "): " + n.doc));
  }

  function wires() {
    const body = $("wires-body");
    body.replaceChildren();
    current.parts.edges.forEach((p) => {
      if (!p.val.textContent && !p.grad.textContent) return;
      const tr = h("tr");
      const from = (p.e.value || p.e.names.join(", ")) + (p.e.wires > 1 ? " (" + p.e.wires + " wires)" : "");
      const to = current.parts.byId[p.e.to];
      tr.appendChild(h("td", "", from));
      tr.appendChild(h("td", "to", to.kind === "output" ? "output " + to.label : (to.value || to.label)));
      tr.appendChild(h("td", "val", (p.dims && p.dims.textContent ? p.dims.textContent + ": " : "") + p.val.textContent));
      tr.appendChild(h("td", "grad", p.grad.textContent));
      body.appendChild(tr);
    });
  }

  function pick(view, n) {
    if (n.view !== undefined) { show(n.view); return; }
    const box = $("details");
    box.replaceChildren();
    box.appendChild(h("h2", "", n.kind === "gate" ? "Node " + D.nodes[n.ref].name : n.kind + " " + (n.value || n.label)));
    const dl = h("dl");
    const row = (k, v) => { dl.appendChild(h("dt", "", k)); dl.appendChild(h("dd", "", String(v))); };
    if (n.ref !== undefined) {
      const x = D.nodes[n.ref];
      row("op", x.op + " v" + x.version);
      row("provided by", x.dist + " " + x.distVersion);
      row("attributes", Object.keys(x.attrs).length ? Object.entries(x.attrs).map((a) => a[0] + "=" + a[1]).join(", ") : "none");
      row("inputs", x.inputs.map((s, i) => s + " " + shape(x.inShapes[i])).join(", "));
      row("output shape", shape(x.outShape));
      row("parameters", x.nParams + (x.nParams ? " (" + Object.entries(x.params).map((a) => a[0] + ": " + a[1]).join(", ") + ")" : ""));
      if (x.check) row("gradient check", x.check.result + (x.check.message ? ": " + x.check.message : ""));
      if (x.doc) row("formula", x.doc);
    }
    const v = n.value && D.values[n.value];
    if (v) { row("value", v.text); row("shape", shape(v.shape)); }
    box.appendChild(dl);
  }
  function shape(s) { return s === null || s === undefined ? "?" : "(" + s.join(", ") + (s.length === 1 ? "," : "") + ")"; }

  // ------------------------------------------------------------------ controls
  function go(to) {
    t = Math.max(0, Math.min(last, to));
    const st = steps[t];
    if ($("follow").checked && st.node !== undefined) {
      const want = nodeGroup[st.node] || "main";
      if (want !== current.view.id) { show(want); return; }
    }
    update();
  }
  $("home").addEventListener("click", () => go(0));
  $("back").addEventListener("click", () => go(t - 1));
  $("next").addEventListener("click", () => go(t + 1));
  $("end").addEventListener("click", () => go(last));
  $("up").addEventListener("click", () => show("main"));
  document.addEventListener("keydown", (ev) => {
    if (ev.altKey || ev.ctrlKey || ev.metaKey) return;
    const to = { ArrowRight: t + 1, ArrowLeft: t - 1, Home: 0, End: last }[ev.key];
    if (to === undefined) return;
    ev.preventDefault();
    go(to);
  });
  $("title").textContent = D.title;
  $("desc").textContent = D.description || "";
  $("note").textContent = D.note || "";
  if (D.checkSummary) $("check").textContent = D.checkSummary;
  show("main");
  document.body.dataset.ready = "1";
})();
