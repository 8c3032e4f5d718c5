// Keyboard shortcuts for the review UI. Every action is also a plain link or form button, so the
// pages work with Tab/Enter alone; these keys make the common verdicts one keystroke.
(function () {
  "use strict";
  function typing(el) {
    return el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));
  }
  function click(id) {
    var el = document.getElementById(id);
    if (el && !el.disabled) { el.click(); return true; }
    return false;
  }
  function rows() { return Array.prototype.slice.call(document.querySelectorAll("table.queue tbody tr")); }
  function select(delta) {
    var all = rows();
    if (!all.length) return;
    var cur = all.findIndex(function (r) { return r.classList.contains("selected"); });
    var next = cur < 0 ? 0 : Math.min(all.length - 1, Math.max(0, cur + delta));
    all.forEach(function (r) { r.classList.remove("selected"); });
    all[next].classList.add("selected");
    var link = all[next].querySelector("a.open");
    if (link) link.focus();
  }
  function toggleImages() {
    document.querySelectorAll("button.thumb").forEach(function (b) { reveal(b); });
  }
  function reveal(button) {
    var img = button.querySelector("img");
    if (!img) return;
    var shown = img.classList.toggle("blurred") === false;
    button.setAttribute("aria-pressed", shown ? "true" : "false");
  }
  var pendingG = false;
  document.addEventListener("click", function (ev) {
    var thumb = ev.target.closest && ev.target.closest("button.thumb");
    if (thumb) { reveal(thumb); return; }
    var row = ev.target.closest && ev.target.closest("table.queue tbody tr");
    if (row && !ev.target.closest("a")) { window.location.href = row.getAttribute("data-href"); }
  });
  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    var help = document.getElementById("help");
    if (typing(document.activeElement)) {
      if (ev.key === "Escape") document.activeElement.blur();
      return;
    }
    if (pendingG) { pendingG = false; if (ev.key === "q") { window.location.href = "/review"; ev.preventDefault(); } return; }
    switch (ev.key) {
      case "j": select(1); break;
      case "k": select(-1); break;
      case "c": if (!click("claim")) return; break;
      case "u": if (!click("uphold")) return; break;
      case "o": if (!click("overturn")) return; break;
      case "e": if (!click("escalate")) return; break;
      case "r": toggleImages(); break;
      case "g": pendingG = true; break;
      case "/": var f = document.getElementById("filter-guild"); if (f) f.focus(); else return; break;
      case "?": if (help && help.showModal) { help.open ? help.close() : help.showModal(); } break;
      default: return;
    }
    ev.preventDefault();
  });
})();
