// MathJax settings for pymdownx.arithmatex (generic mode); MathJax loads from unpkg when
// the site is viewed online (offline the TeX shows as its source).
window.MathJax = {
  tex: { inlineMath: [["\\(", "\\)"]], displayMath: [["\\[", "\\]"]] },
  options: { ignoreHtmlClass: ".*", processHtmlClass: "arithmatex" },
};
