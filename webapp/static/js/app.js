// Every page: a table wider than the screen scrolls sideways inside its .table-wrap. Such a scrolling box
// must be reachable with the keyboard (to scroll it with the arrow keys) and say what it holds; a table
// that fits gets no extra tab stop. Plain JavaScript, no library.
(function () {
  "use strict";

  function describe(wrap) {
    var caption = wrap.querySelector("caption");
    if (caption && caption.textContent.trim()) { return caption.textContent.trim(); }
    var section = wrap.closest("section, details, main");
    var heading = section && section.querySelector("h1, h2, h3, summary");
    return heading ? heading.textContent.trim() : "Table";
  }

  function update(wrap) {
    var scrolls = wrap.scrollWidth > wrap.clientWidth + 1;
    if (scrolls && !wrap.hasAttribute("tabindex")) {
      wrap.setAttribute("tabindex", "0");
      wrap.setAttribute("role", "region");
      wrap.setAttribute("aria-label", describe(wrap) + " (scrolls sideways)");
      wrap.dataset.scrolls = "true";
    } else if (!scrolls && wrap.dataset.scrolls) {
      ["tabindex", "role", "aria-label", "data-scrolls"].forEach(function (name) { wrap.removeAttribute(name); });
    }
  }

  var wraps = Array.prototype.slice.call(document.querySelectorAll(".table-wrap"));
  if (!wraps.length) { return; }
  wraps.forEach(update);
  if (window.ResizeObserver) {
    // The box or its table changing size (a narrower window, rows added by a script) may start or end the scroll.
    var observer = new ResizeObserver(function (entries) {
      entries.forEach(function (entry) { update(entry.target.closest(".table-wrap")); });
    });
    wraps.forEach(function (wrap) {
      observer.observe(wrap);
      if (wrap.firstElementChild) { observer.observe(wrap.firstElementChild); }
    });
  }
})();

// A form with data-confirm asks before it is sent (no inline handlers: the Content-Security-Policy forbids them).
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });
})();
