// duetime dashboard: live refresh.  Every data-refresh seconds, fetch this
// same page and swap in its <main> (server-rendered and escaped; scripts in
// it never run), unless the tab is hidden or a form field has the focus.
// The page works the same without this script.
(function () {
  "use strict";
  var seconds = parseFloat(document.body.getAttribute("data-refresh") || "0");
  if (!(seconds > 0) || !window.fetch || !window.DOMParser) { return; }
  function busy() {
    var el = document.activeElement;
    return el && /^(INPUT|SELECT|TEXTAREA|BUTTON)$/.test(el.tagName);
  }
  function tick() {
    if (document.hidden || busy()) { return; }
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html === null || busy()) { return; }
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("main");
        var main = document.getElementById("main");
        if (fresh && main) { main.replaceWith(document.importNode(fresh, true)); }
      })
      .catch(function () { /* the next tick tries again */ });
  }
  window.setInterval(tick, seconds * 1000);
}());
