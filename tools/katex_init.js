// Renders the $…$ / $$…$$ (and \(…\) / \[…\]) formulas of the notebooks' markdown with KaTeX, which
// tools/build_docs.py copies into the site (assets/katex/): nothing is loaded from the internet.
// Code (pre, code) is left alone by auto-render; a formula KaTeX cannot parse stays as its source, in red.
(function () {
  if (typeof renderMathInElement !== 'function') return;
  var opts = {
    delimiters: [
      {left: '$$', right: '$$', display: true},
      {left: '\\[', right: '\\]', display: true},
      {left: '\\(', right: '\\)', display: false},
      {left: '$', right: '$', display: false}
    ],
    ignoredClasses: ['nbdev-source'],
    throwOnError: false
  };
  document.querySelectorAll('.jp-RenderedMarkdown').forEach(function (el) { renderMathInElement(el, opts); });
})();
