// The compare page: every take plays, pauses and seeks together (no inline script: CSP).
(function () {
  "use strict";
  function init() {
    var root = document.querySelector("[data-compare]");
    if (!root) return;
    var videos = Array.prototype.slice.call(root.querySelectorAll("video[data-compare-video]"));
    var syncing = false;
    function each(fn, except) { videos.forEach(function (v) { if (v !== except) fn(v); }); }
    function guard(fn) { if (syncing) return; syncing = true; try { fn(); } finally { setTimeout(function () { syncing = false; }, 0); } }
    videos.forEach(function (video) {
      video.addEventListener("play", function () { guard(function () { each(function (v) { v.currentTime = video.currentTime; v.play().catch(function () {}); }, video); }); });
      video.addEventListener("pause", function () { guard(function () { each(function (v) { v.pause(); }, video); }); });
      video.addEventListener("seeked", function () { guard(function () { each(function (v) { if (Math.abs(v.currentTime - video.currentTime) > 0.05) v.currentTime = video.currentTime; }, video); }); });
    });
    var play = document.querySelector("[data-compare-play]");
    var pause = document.querySelector("[data-compare-pause]");
    var restart = document.querySelector("[data-compare-restart]");
    var loop = document.querySelector("[data-compare-loop]");
    function playAll() { guard(function () { each(function (v) { v.play().catch(function () {}); }); }); }
    if (play) play.addEventListener("click", playAll);
    if (pause) pause.addEventListener("click", function () { guard(function () { each(function (v) { v.pause(); }); }); });
    if (restart) restart.addEventListener("click", function () { guard(function () { each(function (v) { v.currentTime = 0; }); }); playAll(); });
    if (loop) loop.addEventListener("change", function () { each(function (v) { v.loop = loop.checked; }); });
    root.dataset.compareReady = "1";
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init); else init();
})();
