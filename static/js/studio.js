/* Hailuo Studio: the little the server-rendered pages need in the browser (no framework).
 *  - first-frame image: drag and drop onto the upload, a preview with the image's dimensions
 *    (and a hint when the provider's documented rules would refuse it), for an upload or a URL;
 *  - gallery: "Clear" filters, focus after paging;
 *  - focus an element marked data-autofocus (an action's refusal on the detail page);
 *  - a form marked data-focus-error focuses its first error; a card marked data-final-notify
 *    (its last poll) tells the page: budget-changed and generation-final on <body>.
 * No inline script or hx-on attribute anywhere: the Content-Security-Policy forbids both.
 * Everything is (re)bound on htmx:load, which htmx fires for the page and for swapped content.
 */
(function () {
  "use strict";

  function kb(bytes) {
    return bytes >= 1048576 ? (bytes / 1048576).toFixed(1) + " MB" : Math.max(1, Math.round(bytes / 1024)) + " KB";
  }

  /* Problems the provider's documented image rules would raise (the server checks again). */
  function problems(rules, w, h, type, size) {
    var out = [];
    var num = function (name) { var v = rules.dataset[name]; return v ? parseFloat(v) : null; };
    var formats = (rules.dataset.formats || "").split(",").filter(Boolean);
    if (type && formats.length && formats.indexOf(type) < 0) out.push("format " + type.toUpperCase() + " is not accepted");
    var maxBytes = num("maxBytes");
    if (size && maxBytes && size > maxBytes) out.push("larger than " + kb(maxBytes));
    var minShort = num("minShortExclusive");
    if (minShort && Math.min(w, h) <= minShort) out.push("the short side must be over " + minShort + " px");
    var minSide = num("minSide");
    if (minSide && Math.min(w, h) < minSide) out.push("sides must be at least " + minSide + " px");
    var maxSide = num("maxSide");
    if (maxSide && Math.max(w, h) > maxSide) out.push("sides must be at most " + maxSide + " px");
    var lo = num("aspectMin"), hi = num("aspectMax");
    if (lo && hi && (w / h <= lo || w / h >= hi)) out.push("the aspect ratio is outside what the provider accepts");
    return out;
  }

  function show(preview, src, onDone) {
    var img = preview.querySelector("[data-preview-img]");
    var text = preview.querySelector("[data-preview-text]");
    if (!src) { preview.hidden = true; img.removeAttribute("src"); text.textContent = ""; return; }
    preview.hidden = false;
    preview.classList.remove("warn");
    text.textContent = "Loading preview…";
    img.onload = function () { onDone(img.naturalWidth, img.naturalHeight); };
    img.onerror = function () {
      img.removeAttribute("src");
      text.textContent = "No preview: this browser could not load the image.";
    };
    img.src = src;
  }

  function describe(preview, rules, w, h, type, size) {
    var text = preview.querySelector("[data-preview-text]");
    var img = preview.querySelector("[data-preview-img]");
    img.alt = "Preview of the first frame, " + w + " by " + h + " pixels";
    var parts = [w + " × " + h + " px"];
    if (type) parts.push(type.toUpperCase());
    if (size) parts.push(kb(size));
    var bad = rules ? problems(rules, w, h, type, size) : [];
    text.textContent = parts.join(" · ") + (bad.length ? " — " + bad.join("; ") : "");
    preview.classList.toggle("warn", bad.length > 0);
  }

  function bindImageInput(fieldset) {
    var zone = fieldset.querySelector("[data-dropzone]");
    var file = zone && zone.querySelector("input[type=file]");
    var url = fieldset.querySelector("input[name=image_url]");
    var filePreview = zone && zone.querySelector("[data-preview=file]");
    var urlPreview = fieldset.querySelector("[data-preview=url]");
    // The rules follow the chosen model; the preserved drop zone keeps its own listeners.
    zone.rules = fieldset;
    if (file && document.getElementById(file.id + "_error")) {
      file.setAttribute("aria-invalid", "true");
      file.setAttribute("aria-describedby", file.id + "_error image-file-preview");
    } else if (file) {
      file.removeAttribute("aria-invalid");
      file.setAttribute("aria-describedby", "image-file-preview");
    }
    if (url && urlPreview) {
      var refreshUrl = function () {
        var value = url.value.trim();
        show(urlPreview, /^https?:\/\//i.test(value) ? value : "", function (w, h) {
          describe(urlPreview, fieldset, w, h, "", 0);
        });
      };
      url.addEventListener("change", refreshUrl);
      refreshUrl();
    }
    if (!zone || zone.dataset.bound) {
      if (file && file.files && file.files[0] && filePreview) filePreview.hidden = false;
      return;
    }
    zone.dataset.bound = "1";
    var objectUrl = null;
    var clearStaleError = function () {
      // A new file makes the server's error about the previous one stale.
      var stale = document.getElementById(file.id + "_error");
      if (stale) stale.remove();
      file.removeAttribute("aria-invalid");
      file.setAttribute("aria-describedby", "image-file-preview");
    };
    var refreshFile = function () {
      if (objectUrl) { URL.revokeObjectURL(objectUrl); objectUrl = null; }
      var chosen = file.files && file.files[0];
      if (!chosen) { show(filePreview, "", null); return; }
      objectUrl = URL.createObjectURL(chosen);
      var type = (chosen.type || "").replace("image/", "");
      show(filePreview, objectUrl, function (w, h) { describe(filePreview, zone.rules, w, h, type, chosen.size); });
    };
    file.addEventListener("change", function () { clearStaleError(); refreshFile(); });
    zone.querySelector("[data-clear-file]").addEventListener("click", function () {
      file.value = "";
      refreshFile();
      file.focus();
    });
    ["dragenter", "dragover"].forEach(function (name) {
      zone.addEventListener(name, function (event) {
        event.preventDefault();
        zone.classList.add("dragging");
      });
    });
    ["dragleave", "dragend", "drop"].forEach(function (name) {
      zone.addEventListener(name, function () { zone.classList.remove("dragging"); });
    });
    zone.addEventListener("drop", function (event) {
      event.preventDefault();
      var data = event.dataTransfer;
      if (data.files && data.files.length) {
        file.files = data.files;
        file.dispatchEvent(new Event("change", { bubbles: true }));
        return;
      }
      // An image dragged from another page arrives as a link: use it as the URL.
      var link = (data.getData("text/uri-list") || data.getData("text/plain") || "").split("\n")[0].trim();
      var target = zone.closest("form").querySelector("input[name=image_url]");
      if (link && target) {
        target.value = link;
        target.dispatchEvent(new Event("change", { bubbles: true }));
      }
    });
    refreshFile();
  }

  function bindFilters(form) {
    if (form.dataset.bound) return;
    form.dataset.bound = "1";
    // On a phone's width the filters fold away unless one is set (the search stays in view).
    var more = form.querySelector("[data-filters-more]");
    if (more && !more.hasAttribute("data-active") && window.matchMedia("(max-width: 600px)").matches) more.open = false;
    var clear = form.querySelector("[data-clear-filters]");
    if (clear) {
      clear.addEventListener("click", function (event) {
        event.preventDefault();
        form.querySelectorAll("input, select").forEach(function (el) {
          if (el.name === "size") return;
          el.value = "";
        });
        htmx.trigger(form, "submit");
      });
    }
  }

  /* The prompt's character counter (the chosen provider's limit; the server refuses more). */
  function bindPrompt(textarea) {
    if (textarea.dataset.bound) return;
    textarea.dataset.bound = "1";
    var counter = document.querySelector("[data-prompt-counter]");
    var update = function () {
      var max = parseInt(textarea.dataset.maxChars || "0", 10);
      if (!counter || !max) return;
      var n = Array.from(textarea.value).length;
      counter.querySelector("[data-count]").textContent = n.toLocaleString();
      counter.classList.toggle("over", n > max);
    };
    textarea.addEventListener("input", update);
    update();
  }

  // Ctrl+Enter (⌘+Enter) in the create form submits it.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey)) return;
    var form = event.target.closest && event.target.closest("#create-form");
    if (!form) return;
    event.preventDefault();
    var button = form.querySelector("button[type=submit]");
    if (button && !button.disabled) form.requestSubmit(button);
  });

  // Dismissable messages.
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-dismiss]");
    if (button) button.closest("li").remove();
  });

  // The elements matching selector in a freshly swapped root, the root itself included (htmx
  // fires htmx:load on the new element, or on the body for the first page). library.js uses it too.
  var within = function (root, selector) {
    var scope = root.querySelectorAll ? root : document;
    var found = Array.prototype.slice.call(scope.querySelectorAll(selector));
    if (root.matches && root.matches(selector)) found.unshift(root);
    return found;
  };
  window.HailuoStudio = window.HailuoStudio || {};
  window.HailuoStudio.within = within;

  document.addEventListener("htmx:load", function (event) {
    var inSwap = within.bind(null, event.detail.elt);
    inSwap("[data-image-input]").forEach(bindImageInput);
    inSwap("#gallery-filters").forEach(bindFilters);
    inSwap("#create-form textarea[name=prompt]").forEach(bindPrompt);
    var autofocus = inSwap("[data-autofocus]")[0];
    if (autofocus) autofocus.focus();
    inSwap("form[data-focus-error]").forEach(function (form) {
      var bad = form.querySelector(".form-errors, [aria-invalid=true]");
      if (bad) bad.focus();
    });
    inSwap("[data-final-notify]").forEach(function () {
      htmx.trigger(document.body, "budget-changed");
      htmx.trigger(document.body, "generation-final");
    });
  });

  // After paging, move focus to the gallery's heading so keyboard users start at the top.
  document.addEventListener("htmx:afterSwap", function (event) {
    var trigger = event.detail.requestConfig && event.detail.requestConfig.elt;
    if (trigger && trigger.hasAttribute && trigger.hasAttribute("data-pager")) {
      var heading = document.getElementById("gallery-h");
      if (heading) heading.focus();
    }
  });
})();
