// Fit each widget snapshot (scripts/execute_notebooks.py puts jv.widgets.save_html pages in
// iframes) to its content, also when its anywidget modules finish rendering after load.
function jvFitSnapshots() {
  for (const frame of document.querySelectorAll("iframe.jv-widget-snapshot")) {
    const fit = () => {
      const body = frame.contentDocument && frame.contentDocument.body;
      if (body) frame.style.height = `${body.scrollHeight + 24}px`;
    };
    const watch = () => {
      fit();
      const body = frame.contentDocument && frame.contentDocument.body;
      if (body) new ResizeObserver(fit).observe(body);
    };
    if (frame.contentDocument && frame.contentDocument.readyState === "complete") watch();
    else frame.addEventListener("load", watch);
  }
}
if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", jvFitSnapshots);
else jvFitSnapshots();
