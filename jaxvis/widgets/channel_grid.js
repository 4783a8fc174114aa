// jaxvis ChannelGrid front-end (anywidget ES module, no build step, no network).
//
// Shows one tiled PNG (trait `png`, bytes) and maps the mouse onto its tiles using the tile
// geometry traits (rows, cols, tile_w, tile_h, spacing, margin, in PNG pixels). Hover shows the
// tile's label in a tooltip; a click sets the synced `selected` trait to the tile index.

function tileAt(model, img, clientX, clientY) {
  const rect = img.getBoundingClientRect();
  const iw = model.get("img_width");
  const ih = model.get("img_height");
  if (!rect.width || !rect.height || !iw || !ih) return -1;
  const px = ((clientX - rect.left) * iw) / rect.width - model.get("margin");
  const py = ((clientY - rect.top) * ih) / rect.height - model.get("margin");
  const tw = model.get("tile_w");
  const th = model.get("tile_h");
  const sp = model.get("spacing");
  if (px < 0 || py < 0 || tw <= 0 || th <= 0) return -1;
  const c = Math.floor(px / (tw + sp));
  const r = Math.floor(py / (th + sp));
  if (px - c * (tw + sp) >= tw || py - r * (th + sp) >= th) return -1; // in a gap
  if (c >= model.get("cols") || r >= model.get("rows")) return -1;
  const idx = r * model.get("cols") + c;
  return idx < model.get("n_tiles") ? idx : -1;
}

function placeBox(model, img, box, idx) {
  if (idx < 0 || idx >= model.get("n_tiles")) {
    box.style.display = "none";
    return;
  }
  const scale = model.get("zoom");
  const cols = model.get("cols");
  const tw = model.get("tile_w");
  const th = model.get("tile_h");
  const sp = model.get("spacing");
  const m = model.get("margin");
  const c = idx % cols;
  const r = Math.floor(idx / cols);
  box.style.display = "block";
  box.style.left = `${(m + c * (tw + sp)) * scale - 1}px`;
  box.style.top = `${(m + r * (th + sp)) * scale - 1}px`;
  box.style.width = `${tw * scale}px`;
  box.style.height = `${th * scale}px`;
}

function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "jv-channel-grid-body";
  root.style.cssText = "position:relative;display:inline-block;line-height:0;";

  const img = document.createElement("img");
  img.className = "jv-grid-img";
  img.alt = "channel grid";
  img.draggable = false;
  img.style.cssText = "image-rendering:pixelated;cursor:pointer;display:block;max-width:none;";

  const hoverBox = document.createElement("div");
  hoverBox.className = "jv-grid-hover";
  hoverBox.style.cssText =
    "position:absolute;display:none;pointer-events:none;box-sizing:content-box;" +
    "border:1px solid rgba(0,120,255,0.9);";

  const selBox = document.createElement("div");
  selBox.className = "jv-grid-selected";
  selBox.style.cssText =
    "position:absolute;display:none;pointer-events:none;box-sizing:content-box;" +
    "border:2px solid #f80;margin:-1px 0 0 -1px;";

  const tip = document.createElement("div");
  tip.className = "jv-grid-tooltip";
  tip.style.cssText =
    "position:absolute;display:none;pointer-events:none;z-index:10;white-space:nowrap;" +
    "background:rgba(30,30,30,0.88);color:#fff;font:12px/1.4 monospace;padding:2px 6px;" +
    "border-radius:3px;";

  root.append(img, hoverBox, selBox, tip);
  el.appendChild(root);

  let url = null;
  function showPng() {
    const data = model.get("png");
    const n = data ? data.byteLength : 0;
    if (url) URL.revokeObjectURL(url);
    url = null;
    if (!n) {
      img.removeAttribute("src");
      return;
    }
    url = URL.createObjectURL(new Blob([data], { type: "image/png" }));
    img.src = url;
  }
  function sizeImg() {
    const z = model.get("zoom");
    img.style.width = `${model.get("img_width") * z}px`;
    img.style.height = `${model.get("img_height") * z}px`;
    placeBox(model, img, selBox, model.get("selected"));
  }
  function showSelected() {
    placeBox(model, img, selBox, model.get("selected"));
  }

  let hovered = -1;
  function labelOf(idx) {
    const labels = model.get("labels") || [];
    return idx < labels.length ? labels[idx] : `ch ${idx}`;
  }
  function onMove(e) {
    const idx = tileAt(model, img, e.clientX, e.clientY);
    hovered = idx;
    placeBox(model, img, hoverBox, idx);
    if (idx < 0) {
      tip.style.display = "none";
      return;
    }
    const rect = root.getBoundingClientRect();
    tip.textContent = labelOf(idx);
    tip.style.display = "block";
    tip.style.left = `${e.clientX - rect.left + 12}px`;
    tip.style.top = `${e.clientY - rect.top + 14}px`;
  }
  function onLeave() {
    hovered = -1;
    hoverBox.style.display = "none";
    tip.style.display = "none";
  }
  function onClick(e) {
    const idx = tileAt(model, img, e.clientX, e.clientY);
    if (idx < 0) return;
    model.set("selected", idx);
    model.save_changes();
  }
  function onLabels() {
    if (hovered >= 0 && tip.style.display !== "none") tip.textContent = labelOf(hovered);
  }

  img.addEventListener("mousemove", onMove);
  img.addEventListener("mouseleave", onLeave);
  img.addEventListener("click", onClick);

  const handlers = [
    ["change:png", showPng],
    ["change:img_width", sizeImg],
    ["change:img_height", sizeImg],
    ["change:zoom", sizeImg],
    ["change:labels", onLabels],
  ];
  for (const name of ["selected", "rows", "cols", "tile_w", "tile_h", "spacing", "margin", "n_tiles"]) {
    handlers.push([`change:${name}`, showSelected]);
  }
  for (const [name, fn] of handlers) model.on(name, fn);
  showPng();
  sizeImg();

  return () => {
    if (url) URL.revokeObjectURL(url);
    for (const [name, fn] of handlers) model.off(name, fn);
  };
}

export default { render };
