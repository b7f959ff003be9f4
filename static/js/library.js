/* Hailuo Studio: browser notifications for the member's own videos.
 *  - A button marked data-notify-enable asks the browser's permission when pressed (never on
 *    page load); it then says whether notifications are on or blocked.
 *  - A card's last live poll is marked data-final-notify (studio.js tells the page), and
 *    data-mine when the video is the member's own: if it succeeded, failed or expired while
 *    the tab is in the background (document.hidden) and permission was granted, one
 *    Notification says so (tagged with the card's id, so one per video). Clicking it brings
 *    the tab forward.
 * No inline script: the Content-Security-Policy forbids it. Bound on htmx:load.
 */
(function () {
  "use strict";

  var FINAL = { succeeded: "Your video is ready", failed: "Your video failed", expired: "Your video expired" };

  function supported() {
    return typeof window.Notification === "function";
  }

  function refreshButton(button) {
    if (!supported()) { button.hidden = true; return; }
    var permission = window.Notification.permission;
    button.hidden = false;
    button.disabled = permission !== "default";
    button.setAttribute("aria-pressed", permission === "granted" ? "true" : "false");
    button.textContent = permission === "granted" ? "Browser notifications on"
      : permission === "denied" ? "Browser notifications blocked (change it in the browser's site settings)"
      : "Notify me when my videos finish";
  }

  function notify(card) {
    if (!supported() || window.Notification.permission !== "granted" || !document.hidden) return;
    if (!card.hasAttribute("data-mine") || card.dataset.notified) return;
    var title = FINAL[card.dataset.state];
    if (!title) return;
    card.dataset.notified = "1";
    var prompt = card.querySelector(".prompt");
    var note = new window.Notification(title, {
      body: prompt ? (prompt.getAttribute("title") || prompt.textContent) : "",
      tag: card.id,
      icon: document.querySelector("link[rel=icon]") ? document.querySelector("link[rel=icon]").href : undefined,
    });
    note.onclick = function () { window.focus(); if (note.close) note.close(); };
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-notify-enable]");
    if (!button || !supported()) return;
    var done = function () {
      document.querySelectorAll("[data-notify-enable]").forEach(refreshButton);
    };
    var asked = window.Notification.requestPermission(done);
    if (asked && asked.then) asked.then(done);
  });

  document.addEventListener("htmx:load", function (event) {
    var within = window.HailuoStudio.within.bind(null, event.detail.elt);  // studio.js, loaded first
    within("[data-notify-enable]").forEach(refreshButton);
    within("[data-final-notify]").forEach(notify);
  });
})();
