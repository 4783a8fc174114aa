// jaxvis channel-grid front-end (anywidget ES module, no build step, no network).
//
// A "panel" shows one tiled PNG and maps the mouse onto its tiles with a geometry object
// {rows, cols, tile_w, tile_h, spacing, margin, n_tiles, img_width, img_height, zoom} in PNG
// pixels. Hover shows the tile's label in a tooltip; a click reports the tile index.
//
// Two widgets use this module:
//  * ChannelGrid: one panel; traits png, the geometry traits, labels, selected (tile index).
//  * LayerGrids: many titled panels in one widget (one message per update); traits names,
//    titles, pngs, geometry (list of objects), labels (list of lists), selected [panel, tile],
//    expanded (one bool per panel; a click on a title flips it, the kernel renders what opened).

const GEOMETRY_KEYS = [
  "rows", "cols", "tile_w", "tile_h", "spacing", "margin", "n_tiles", "img_width",
  "img_height", "zoom",
];

function tileAt(g, img, clientX, clientY) {
  const rect = img.getBoundingClientRect();
  if (!g || !rect.width || !rect.height || !g.img_width || !g.img_height) return -1;
  const px = ((clientX - rect.left) * g.img_width) / rect.width - g.margin;
  const py = ((clientY - rect.top) * g.img_height) / rect.height - g.margin;
  const tw = g.tile_w;
  const th = g.tile_h;
  const sp = g.spacing;
  if (px < 0 || py < 0 || tw <= 0 || th <= 0) return -1;
  const c = Math.floor(px / (tw + sp));
  const r = Math.floor(py / (th + sp));
  if (px - c * (tw + sp) >= tw || py - r * (th + sp) >= th) return -1; // in a gap
  if (c >= g.cols || r >= g.rows) return -1;
  const idx = r * g.cols + c;
  return idx < g.n_tiles ? idx : -1;
}

function placeBox(g, box, idx) {
  if (!g || idx < 0 || idx >= g.n_tiles) {
    box.style.display = "none";
    return;
  }
  const z = g.zoom;
  const c = idx % g.cols;
  const r = Math.floor(idx / g.cols);
  box.style.display = "block";
  box.style.left = `${(g.margin + c * (g.tile_w + g.spacing)) * z - 1}px`;
  box.style.top = `${(g.margin + r * (g.tile_h + g.spacing)) * z - 1}px`;
  box.style.width = `${g.tile_w * z}px`;
  box.style.height = `${g.tile_h * z}px`;
}

function div(className, css) {
  const d = document.createElement("div");
  d.className = className;
  if (css) d.style.cssText = css;
  return d;
}

// The tooltip lives on <body> with a fixed position: widget boxes clip their overflow.
function makeTooltip() {
  const tip = div(
    "jv-grid-tooltip",
    "position:fixed;display:none;pointer-events:none;z-index:10000;white-space:nowrap;" +
      "background:rgba(30,30,30,0.88);color:#fff;font:12px/1.4 monospace;padding:2px 6px;" +
      "border-radius:3px;",
  );
  document.body.appendChild(tip);
  return tip;
}

// One tiled image with hover and click. `onClick(idx)` is called with the clicked tile.
function makePanel(tip, onClick) {
  const body = div("jv-channel-grid-body", "position:relative;display:inline-block;line-height:0;");
  const img = document.createElement("img");
  img.className = "jv-grid-img";
  img.alt = "channel grid";
  img.draggable = false;
  img.style.cssText = "image-rendering:pixelated;cursor:pointer;display:block;max-width:none;";
  const hoverBox = div(
    "jv-grid-hover",
    "position:absolute;display:none;pointer-events:none;box-sizing:content-box;" +
      "border:1px solid rgba(0,120,255,0.9);",
  );
  const selBox = div(
    "jv-grid-selected",
    "position:absolute;display:none;pointer-events:none;box-sizing:content-box;" +
      "border:2px solid #f80;margin:-1px 0 0 -1px;",
  );
  body.append(img, hoverBox, selBox);

  const panel = { body, img, geometry: null, labels: [], selected: -1, url: null, hovered: -1 };

  function labelOf(idx) {
    return idx < panel.labels.length ? panel.labels[idx] : `ch ${idx}`;
  }
  img.addEventListener("mousemove", (e) => {
    const idx = tileAt(panel.geometry, img, e.clientX, e.clientY);
    panel.hovered = idx;
    placeBox(panel.geometry, hoverBox, idx);
    if (idx < 0) {
      tip.style.display = "none";
      return;
    }
    const text = labelOf(idx);
    tip.textContent = text;
    img.title = text;
    tip.style.display = "block";
    tip.style.left = `${e.clientX + 12}px`;
    tip.style.top = `${e.clientY + 14}px`;
  });
  img.addEventListener("mouseleave", () => {
    panel.hovered = -1;
    hoverBox.style.display = "none";
    tip.style.display = "none";
  });
  img.addEventListener("click", (e) => {
    const idx = tileAt(panel.geometry, img, e.clientX, e.clientY);
    if (idx >= 0) onClick(idx);
  });

  panel.setPng = (data) => {
    if (panel.url) URL.revokeObjectURL(panel.url);
    panel.url = null;
    if (!data || !data.byteLength) {
      img.removeAttribute("src");
      return;
    }
    panel.url = URL.createObjectURL(new Blob([data], { type: "image/png" }));
    img.src = panel.url;
  };
  panel.setGeometry = (g) => {
    panel.geometry = g;
    img.style.width = `${g.img_width * g.zoom}px`;
    img.style.height = `${g.img_height * g.zoom}px`;
    placeBox(g, selBox, panel.selected);
  };
  panel.setLabels = (labels) => {
    panel.labels = labels || [];
    if (panel.hovered >= 0 && tip.style.display !== "none") tip.textContent = labelOf(panel.hovered);
  };
  panel.setSelected = (idx) => {
    panel.selected = idx;
    placeBox(panel.geometry, selBox, idx);
  };
  panel.dispose = () => {
    if (panel.url) URL.revokeObjectURL(panel.url);
  };
  return panel;
}

// ------------------------------------------------------------------------- ChannelGrid

function renderSingle({ model, el }) {
  const tip = makeTooltip();
  const panel = makePanel(tip, (idx) => {
    model.set("selected", idx);
    model.save_changes();
  });
  el.appendChild(panel.body);

  const geometry = () => Object.fromEntries(GEOMETRY_KEYS.map((k) => [k, model.get(k)]));
  const showPng = () => panel.setPng(model.get("png"));
  const showGeometry = () => panel.setGeometry(geometry());
  const showLabels = () => panel.setLabels(model.get("labels"));
  const showSelected = () => panel.setSelected(model.get("selected"));

  const handlers = [
    ["change:png", showPng],
    ["change:labels", showLabels],
    ["change:selected", showSelected],
  ];
  for (const k of GEOMETRY_KEYS) handlers.push([`change:${k}`, showGeometry]);
  for (const [name, fn] of handlers) model.on(name, fn);
  showGeometry();
  showLabels();
  showSelected();
  showPng();

  return () => {
    panel.dispose();
    tip.remove();
    for (const [name, fn] of handlers) model.off(name, fn);
  };
}

// ------------------------------------------------------------------------- LayerGrids

function renderMulti({ model, el }) {
  const tip = makeTooltip();
  const root = div(
    "jv-layer-grids-body",
    "display:flex;flex-flow:row wrap;align-items:flex-start;gap:10px 16px;",
  );
  el.appendChild(root);
  let panels = [];

  function build() {
    for (const p of panels) p.dispose();
    root.replaceChildren();
    const names = model.get("names") || [];
    const titles = model.get("titles") || [];
    panels = names.map((name, i) => {
      const panel = makePanel(tip, (idx) => {
        model.set("selected", [i, idx]);
        model.save_changes();
      });
      const wrap = div("jv-channel-grid jv-layer-grid");
      wrap.dataset.layer = name;
      const title = div("jv-layer-title", "font-size:12px;line-height:1.6;margin-bottom:2px;");
      const arrow = document.createElement("span");
      arrow.className = "jv-layer-toggle";
      const b = document.createElement("b");
      b.textContent = name;
      const rest = document.createElement("span");
      rest.style.color = "#666";
      rest.textContent = titles[i] ? ` ${titles[i]}` : "";
      title.append(arrow, b, rest);
      title.addEventListener("click", () => {
        const open = (model.get("expanded") || []).slice();
        if (i >= open.length) return;
        open[i] = !open[i];
        model.set("expanded", open);
        model.save_changes();
      });
      wrap.append(title, panel.body);
      root.appendChild(wrap);
      panel.wrap = wrap;
      panel.arrow = arrow;
      return panel;
    });
    update();
  }
  function showOpen() {
    const open = model.get("expanded") || [];
    panels.forEach((p, i) => {
      const toggles = i < open.length;
      p.arrow.textContent = toggles ? (open[i] ? "\u25be " : "\u25b8 ") : "";
      p.wrap.style.cursor = "default";
      p.wrap.firstChild.style.cursor = toggles ? "pointer" : "default";
      // a row shows its picture once one arrives; a closed row is its title only
      const closed = toggles && !open[i];
      p.wrap.classList.toggle("jv-closed", closed);
      p.body.style.display = closed ? "none" : "inline-block";
    });
  }
  function showSelected() {
    const [pi, idx] = model.get("selected") || [-1, -1];
    panels.forEach((p, i) => p.setSelected(i === pi ? idx : -1));
  }
  function showGeometry() {
    const geometry = model.get("geometry") || [];
    panels.forEach((p, i) => geometry[i] && p.setGeometry(geometry[i]));
    showSelected();
  }
  function showLabels() {
    const labels = model.get("labels") || [];
    panels.forEach((p, i) => p.setLabels(labels[i]));
  }
  function showPngs() {
    const pngs = model.get("pngs") || [];
    panels.forEach((p, i) => p.setPng(pngs[i]));
  }
  function update() {
    showGeometry();
    showLabels();
    showPngs();
    showOpen();
  }

  const handlers = [
    ["change:names", build],
    ["change:titles", build],
    ["change:geometry", showGeometry],
    ["change:labels", showLabels],
    ["change:pngs", showPngs],
    ["change:selected", showSelected],
    ["change:expanded", showOpen],
  ];
  for (const [name, fn] of handlers) model.on(name, fn);
  build();

  return () => {
    for (const p of panels) p.dispose();
    tip.remove();
    for (const [name, fn] of handlers) model.off(name, fn);
  };
}

function render(ctx) {
  return ctx.model.get("pngs") === undefined ? renderSingle(ctx) : renderMulti(ctx);
}

export default { render };
