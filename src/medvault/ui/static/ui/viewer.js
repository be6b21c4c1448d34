// MedVault viewer: window/level runs in the browser. Each grey frame comes once as its
// modality values (Hounsfield for CT; /frames/<uid>/<n>.pixels, int16 or float32) and is
// windowed into a canvas on every change, so dragging W/L redraws at the display's rate
// without a request. Colour frames are rendered by the server (PNG). The script also handles
// scrolling (wheel, arrow keys), presets, zoom and pan, the metadata panel and the analysis
// heat-map overlay.
(function () {
  "use strict";
  var configNode = document.getElementById("viewer-config");
  if (!configNode) return;
  var cfg = JSON.parse(configNode.textContent);
  var frames = cfg.frames;
  var stage = document.getElementById("stage");
  var canvas = document.getElementById("frame");
  var ctx = canvas.getContext("2d");
  var overlay = document.getElementById("overlay");
  var hudPos = document.getElementById("hud-pos");
  var hudWindow = document.getElementById("hud-window");
  var statusNode = document.getElementById("status");
  var metaTable = document.getElementById("meta");
  var metaFilter = document.getElementById("meta-filter");
  var analysisPanel = document.getElementById("analysis-panel");
  var overlayButton = document.getElementById("overlay-toggle");
  var similar = document.getElementById("find-similar");
  var download = document.getElementById("download");
  var csrfMatch = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
  var csrf = csrfMatch ? decodeURIComponent(csrfMatch[1]) : "";

  var state = {
    index: Math.min(Math.max(cfg.start || 0, 0), frames.length - 1),
    wc: null, ww: null, invert: false,
    scale: 1, x: 0, y: 0, fitted: false, tool: "wl", toolChosen: false,
    natural: { w: 0, h: 0 }, overlayOn: false, overlayUrl: null,
  };
  var lastMetaUid = null, lastAnalysisUid = null, drawQueued = false, draws = 0, firstDrawn = false;
  var cache = new Map(), pending = new Map(), MAX_CACHED = 64;
  var imageData = null, out32 = null, lut = null;

  function key(i) { return frames[i].uid + "/" + frames[i].frame; }

  function pngUrl(i) {
    var f = frames[i];
    var url = "/frames/" + encodeURIComponent(f.uid) + "/" + f.frame + ".png";
    var params = [];
    if (state.wc !== null) params.push("wc=" + state.wc.toFixed(1), "ww=" + state.ww.toFixed(1));
    if (state.invert) params.push("invert=1");
    return params.length ? url + "?" + params.join("&") : url;
  }

  function remember(k, entry) {
    cache.set(k, entry);
    if (cache.size > MAX_CACHED) cache.delete(cache.keys().next().value);
    return entry;
  }

  function failure(response) {
    return response.text().then(function (t) { throw new Error(t || ("error " + response.status)); });
  }

  // The frame's modality values (grey) or a rendered bitmap (colour), fetched once.
  function load(i) {
    var k = key(i);
    if (cache.has(k)) return Promise.resolve(cache.get(k));
    if (pending.has(k)) return pending.get(k);
    var f = frames[i];
    var p = fetch("/frames/" + encodeURIComponent(f.uid) + "/" + f.frame + ".pixels", { credentials: "same-origin" })
      .then(function (response) {
        if (response.status === 415) return { kind: "color", key: k, bitmaps: {} };
        if (!response.ok) return failure(response);
        var h = response.headers;
        var win = (h.get("X-Window") || "40,400").split(",").map(parseFloat);
        var dtype = h.get("X-Dtype");
        return response.arrayBuffer().then(function (buffer) {
          var data = dtype === "int16" ? new Int16Array(buffer) : new Float32Array(buffer);
          var lo = Infinity, hi = -Infinity;
          for (var j = 0; j < data.length; j++) { var v = data[j]; if (v < lo) lo = v; if (v > hi) hi = v; }
          return { kind: "grey", key: k, data: data, dtype: dtype, min: lo, max: hi,
                   rows: parseInt(h.get("X-Rows"), 10), cols: parseInt(h.get("X-Columns"), 10),
                   window: win, mono1: h.get("X-Photometric") === "MONOCHROME1" };
        });
      })
      .then(function (entry) { pending.delete(k); return remember(k, entry); },
            function (err) { pending.delete(k); throw err; });
    pending.set(k, p);
    return p;
  }

  // Window the grey values into the canvas's pixels: a lookup table per window for int16.
  function paint(e) {
    if (!imageData || imageData.width !== e.cols || imageData.height !== e.rows) {
      imageData = ctx.createImageData(e.cols, e.rows);
      out32 = new Uint32Array(imageData.data.buffer);
    }
    var width = Math.max(state.ww, 1), low = state.wc - width / 2, scale = 255 / width;
    var flip = e.mono1 !== state.invert, d = e.data, n = d.length, out = out32, i, g;
    if (e.dtype === "int16") {
      var span = e.max - e.min + 1, off = e.min;
      if (!lut || lut.length < span) lut = new Uint32Array(span);
      for (i = 0; i < span; i++) {
        g = (i + off - low) * scale;
        g = g <= 0 ? 0 : (g >= 255 ? 255 : g | 0);
        if (flip) g = 255 - g;
        lut[i] = 0xff000000 | (g << 16) | (g << 8) | g;
      }
      for (i = 0; i < n; i++) out[i] = lut[d[i] - off];
    } else {
      for (i = 0; i < n; i++) {
        g = (d[i] - low) * scale;
        g = g <= 0 ? 0 : (g >= 255 ? 255 : g | 0);
        if (flip) g = 255 - g;
        out[i] = 0xff000000 | (g << 16) | (g << 8) | g;
      }
    }
    ctx.putImageData(imageData, 0, 0);
  }

  function windowKey() { return state.wc === null ? "" : state.wc.toFixed(1) + "," + state.ww.toFixed(1) + (state.invert ? ",i" : ""); }

  // Colour frames: the server windows them; one bitmap per window, drawn when it arrives.
  function paintColour(e, index) {
    var wk = windowKey(), bitmap = e.bitmaps[wk];
    if (bitmap) { sizeCanvas(bitmap.width, bitmap.height); ctx.drawImage(bitmap, 0, 0); return true; }
    if (e.loading) { e.again = true; return false; }
    e.loading = true;
    fetch(pngUrl(index), { credentials: "same-origin" }).then(function (response) {
      if (!response.ok) return failure(response);
      var win = response.headers.get("X-Window");
      if (win && state.wc === null) { var p = win.split(","); state.wc = parseFloat(p[0]); state.ww = parseFloat(p[1]); wk = windowKey(); }
      return response.blob().then(createImageBitmap);
    }).then(function (bmp) {
      e.bitmaps = {}; e.bitmaps[wk] = bmp; e.loading = false;
      e.rows = bmp.height; e.cols = bmp.width;
      scheduleDraw();
    }).catch(function (err) { e.loading = false; statusNode.textContent = String(err.message || err).slice(0, 200); });
    return false;
  }

  function sizeCanvas(w, h) {
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
    state.natural = { w: w, h: h };
  }

  function draw() {
    drawQueued = false;
    var e = cache.get(key(state.index));
    if (!e) return;
    if (e.kind === "grey") {
      if (state.wc === null) { state.wc = e.window[0]; state.ww = e.window[1]; }
      sizeCanvas(e.cols, e.rows);
      paint(e);
    } else if (!paintColour(e, state.index)) {
      return;
    }
    if (!state.fitted) fit();
    draws += 1;
    stage.dataset.draws = String(draws);
    stage.dataset.loaded = String(state.index);
    stage.dataset.window = state.wc === null ? "" : state.wc.toFixed(1) + "," + state.ww.toFixed(1);
    // Milliseconds from the start of the navigation to the first image on screen.
    if (!firstDrawn) { firstDrawn = true; canvas.dataset.ms = String(Math.round(performance.now())); }
    statusNode.textContent = "";
    updateHud();
  }

  function scheduleDraw() {
    if (drawQueued) return;
    drawQueued = true;
    requestAnimationFrame(draw);
  }

  function render() {
    var index = state.index;
    load(index).then(function () { if (index === state.index) { scheduleDraw(); prefetch(); } })
      .catch(function (err) { statusNode.textContent = String(err.message || err).slice(0, 200); });
    var uid = frames[index].uid;
    if (uid !== lastMetaUid) { lastMetaUid = uid; loadMeta(uid); loadAnalyses(uid); updateLinks(uid); }
  }

  function prefetch() {
    // The neighbours' values, so scrolling draws without waiting.
    [1, -1, 2, 3].forEach(function (d) {
      var j = state.index + d;
      if (j >= 0 && j < frames.length) load(j).catch(function () {});
    });
  }

  function applyTransform() {
    var t = "translate(" + state.x + "px," + state.y + "px) scale(" + state.scale + ")";
    canvas.style.transform = t;
    overlay.style.transform = t;
    overlay.style.width = state.natural.w + "px";
    overlay.style.height = state.natural.h + "px";
  }

  function fitScale() {
    var r = stage.getBoundingClientRect();
    return Math.min(r.width / state.natural.w, r.height / state.natural.h);
  }

  function fit() {
    if (!state.natural.w) return;
    var r = stage.getBoundingClientRect();
    state.scale = fitScale();
    state.x = (r.width - state.natural.w * state.scale) / 2;
    state.y = (r.height - state.natural.h * state.scale) / 2;
    state.fitted = true;
    applyTransform();
    updateHud();
  }

  function updateHud() {
    var f = frames[state.index];
    hudPos.textContent = "Image " + (state.index + 1) + " / " + frames.length +
      (f.n !== null && f.n !== undefined ? "  (#" + f.n + (f.frames > 1 ? ", frame " + (f.frame + 1) : "") + ")" : "") +
      "   zoom " + Math.round(state.scale * 100) + "%";
    hudWindow.textContent = state.wc === null ? "" : "W " + Math.round(state.ww) + "  L " + Math.round(state.wc) + (state.invert ? "  inverted" : "");
  }

  function go(delta) {
    var next = Math.min(Math.max(state.index + delta, 0), frames.length - 1);
    if (next === state.index) return;
    state.index = next;
    render();
    updateHud();
  }

  // --- input --------------------------------------------------------------------------------
  stage.addEventListener("wheel", function (e) {
    e.preventDefault();
    if (e.ctrlKey) { zoomAt(e.deltaY < 0 ? 1.1 : 1 / 1.1, e); return; }
    go(e.deltaY > 0 ? 1 : -1);
  }, { passive: false });

  document.addEventListener("keydown", function (e) {
    if (e.target && (e.target.tagName === "INPUT" || e.target.tagName === "SELECT")) return;
    var handled = true;
    switch (e.key) {
      case "ArrowDown": case "ArrowRight": case "PageDown": go(e.key === "PageDown" ? 10 : 1); break;
      case "ArrowUp": case "ArrowLeft": case "PageUp": go(e.key === "PageUp" ? -10 : -1); break;
      case "Home": go(-frames.length); break;
      case "End": go(frames.length); break;
      case "f": case "F": fit(); break;
      case "r": case "R": reset(); break;
      case "i": case "I": toggleInvert(); break;
      case "h": case "H": if (!overlayButton.hidden) toggleOverlay(); break;
      default: handled = false;
    }
    if (handled) e.preventDefault();
  });

  function zoomAt(factor, e) {
    var r = stage.getBoundingClientRect();
    var px = (e ? e.clientX - r.left : r.width / 2), py = (e ? e.clientY - r.top : r.height / 2);
    // Limits relative to the fitted size, so a 16x16 image can still be zoomed in (a fixed
    // 4000 % cap made "zoom in" shrink it), and a step never goes the other way.
    var fitted = state.natural.w ? fitScale() : 1;
    var next = Math.min(Math.max(state.scale * factor, Math.min(0.05, fitted / 4)), Math.max(40, fitted * 32));
    if ((factor > 1 && next < state.scale) || (factor < 1 && next > state.scale)) return;
    factor = next / state.scale;
    state.x = px - (px - state.x) * factor;
    state.y = py - (py - state.y) * factor;
    state.scale = next;
    applyTransform(); updateHud();
  }

  var drag = null;
  stage.addEventListener("pointerdown", function (e) {
    stage.setPointerCapture(e.pointerId);
    // A finger pans unless a tool was chosen (the image stays where the finger puts it).
    var touchPan = e.pointerType === "touch" && !state.toolChosen;
    var tool = e.button === 1 || touchPan ? "pan" : (e.button === 2 ? "zoom" : state.tool);
    drag = { x: e.clientX, y: e.clientY, tool: tool, wc: state.wc, ww: state.ww, sx: state.x, sy: state.y, scale: state.scale };
    stage.focus();
    e.preventDefault();
  });
  stage.addEventListener("contextmenu", function (e) { e.preventDefault(); });
  stage.addEventListener("pointermove", function (e) {
    if (!drag) return;
    var dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    if (drag.tool === "wl" && drag.wc !== null) {
      var sensitivity = Math.max(drag.ww, 10) / 250;
      state.ww = Math.max(1, drag.ww + dx * sensitivity);
      state.wc = drag.wc + dy * sensitivity;
      scheduleDraw();
    } else if (drag.tool === "pan") {
      state.x = drag.sx + dx; state.y = drag.sy + dy; applyTransform();
    } else if (drag.tool === "zoom") {
      var factor = Math.pow(1.01, -dy) * drag.scale / state.scale;
      var r = stage.getBoundingClientRect();
      zoomAt(factor, { clientX: r.left + r.width / 2, clientY: r.top + r.height / 2 });
    }
  });
  ["pointerup", "pointercancel"].forEach(function (t) { stage.addEventListener(t, function () { drag = null; }); });

  document.querySelectorAll("[data-tool]").forEach(function (b) {
    b.addEventListener("click", function () {
      state.tool = b.dataset.tool;
      state.toolChosen = true;
      document.querySelectorAll("[data-tool]").forEach(function (o) {
        o.classList.toggle("active", o === b);
        o.setAttribute("aria-pressed", String(o === b));
      });
    });
  });
  document.querySelectorAll("[data-preset]").forEach(function (b) {
    b.addEventListener("click", function () {
      var p = cfg.presets[b.dataset.preset];
      state.wc = p[0]; state.ww = p[1];
      scheduleDraw();
    });
  });
  function setPressed(button, on) { button.classList.toggle("active", on); button.setAttribute("aria-pressed", String(on)); }
  function reset() { state.wc = null; state.ww = null; state.invert = false; setPressed(document.getElementById("invert"), false); fit(); scheduleDraw(); }
  function toggleInvert() { state.invert = !state.invert; setPressed(document.getElementById("invert"), state.invert); scheduleDraw(); }
  document.getElementById("fit").addEventListener("click", fit);
  document.getElementById("reset").addEventListener("click", reset);
  document.getElementById("invert").addEventListener("click", toggleInvert);
  window.addEventListener("resize", function () { if (state.fitted) fit(); });

  // --- metadata -----------------------------------------------------------------------------
  function loadMeta(uid) {
    fetch("/frames/" + encodeURIComponent(uid) + "/info", { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (info) {
        metaTable.textContent = "";
        if (!info) return;
        info.metadata.forEach(function (row) {
          var tr = document.createElement("tr");
          var a = document.createElement("td"); a.textContent = row[1]; a.title = row[0] + " " + row[2];
          var b = document.createElement("td"); b.textContent = row[3];
          tr.appendChild(a); tr.appendChild(b);
          metaTable.appendChild(tr);
        });
        filterMeta();
      });
  }
  function filterMeta() {
    var q = metaFilter.value.toLowerCase();
    Array.prototype.forEach.call(metaTable.rows, function (tr) {
      tr.hidden = q && tr.textContent.toLowerCase().indexOf(q) < 0;
    });
  }
  metaFilter.addEventListener("input", filterMeta);

  // --- analysis hooks: heat-map overlay, Analyse, Find similar --------------------------------
  function updateLinks(uid) {
    if (similar && cfg.similarUrl) similar.href = cfg.similarUrl.replace("__UID__", encodeURIComponent(uid));
    if (download) download.href = "/instances/" + encodeURIComponent(uid) + "/download";
  }
  var CALL_TEXT = { abnormal: "Abnormal", normal: "Normal", indeterminate: "Indeterminate" };
  function loadAnalyses(uid) {
    lastAnalysisUid = uid;
    overlay.hidden = true; overlayButton.hidden = true; state.overlayUrl = null;
    analysisPanel.textContent = "";
    fetch("/api/v1/analyses?instance=" + encodeURIComponent(uid), { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data || uid !== lastAnalysisUid) return;
        var results = data.results || [];
        var chosen = results.filter(function (r) { return String(r.id) === String(cfg.overlayResult); })[0] || results[0];
        results.slice(0, 3).forEach(function (r) {
          var div = document.createElement("div");
          div.className = "card";
          div.style.cssText = "background:#162230;border-color:#223;color:#dfe7ee;padding:.5rem .7rem;margin-bottom:.5rem";
          var p = r.probabilities || {};
          var conf = r.label && p[r.label] !== undefined ? " (" + Math.round(p[r.label] * 100) + "%)" : "";
          // The call first (abnormal / normal / indeterminate, with its reason), the label and
          // probability second, then the model card (intended use, known limits).
          var head = document.createElement("div");
          head.textContent = r.model + ": ";
          if (r.refused) {
            head.appendChild(document.createTextNode("not analysed — " + r.reason));
          } else if (r.call) {
            var call = document.createElement("strong");
            call.className = "call call-" + r.call;
            call.setAttribute("data-call", r.call);
            call.textContent = CALL_TEXT[r.call] || r.call;
            head.appendChild(call);
          }
          div.appendChild(head);
          if (!r.refused && r.call_reason) {
            var reason = document.createElement("div");
            reason.className = "muted call-reason";
            reason.textContent = r.call_reason;
            div.appendChild(reason);
          }
          if (!r.refused && r.label) {
            var label = document.createElement("div");
            label.className = "call-label";
            label.textContent = (r.call ? "most likely: " : "") + r.label.replace(/_/g, " ") + conf;
            div.appendChild(label);
          }
          if (r.model_card_url) {
            var cardLink = document.createElement("a");
            cardLink.className = "model-card-link";
            cardLink.href = r.model_card_url;
            cardLink.textContent = "Model card";
            cardLink.title = "Intended use and known limits of this model";
            div.appendChild(cardLink);
            div.appendChild(document.createTextNode(" "));
          }
          var small = document.createElement("div"); small.className = "muted"; small.style.fontSize = ".75rem";
          small.textContent = (data.disclaimer || "") + " · " + (r.created_at || "").slice(0, 16).replace("T", " ");
          div.appendChild(small);
          if (r.similar_url) {
            // The similar-images grid for this image, searched with this result's model (the
            // server leaves it out for refused results and for roles that may not search).
            var link = document.createElement("a");
            link.className = "find-similar";
            link.href = r.similar_url;
            link.textContent = "Find similar";
            link.title = "Find similar images in the archive";
            div.appendChild(link);
          }
          analysisPanel.appendChild(div);
        });
        var pending = (data.jobs || []).filter(function (j) { return j.status === "queued" || j.status === "running"; });
        if (pending.length) {
          var note = document.createElement("p"); note.className = "muted";
          note.textContent = "Analysis " + pending[0].status + "…";
          analysisPanel.appendChild(note);
          setTimeout(function () { if (uid === lastAnalysisUid) loadAnalyses(uid); }, 2000);
        }
        if (chosen && chosen.heatmap_url) {
          state.overlayUrl = chosen.heatmap_url;
          overlayButton.hidden = false;
          overlay.src = chosen.heatmap_url;
          if (cfg.overlayResult) { state.overlayOn = true; }
          overlay.hidden = !state.overlayOn;
          setPressed(overlayButton, state.overlayOn);
          applyTransform();
        }
      }).catch(function () {});
  }
  function toggleOverlay() {
    state.overlayOn = !state.overlayOn;
    overlay.hidden = !state.overlayOn || !state.overlayUrl;
    setPressed(overlayButton, state.overlayOn);
  }
  overlayButton.addEventListener("click", toggleOverlay);
  var analyseButton = document.getElementById("analyse");
  if (analyseButton) {
    analyseButton.addEventListener("click", function () {
      var uid = frames[state.index].uid;
      var model = cfg.modality === "MR" ? "brain-mri" : "lung-ct";
      statusNode.textContent = "Requesting analysis…";
      fetch("/api/v1/analyses", {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
        body: JSON.stringify({ sop_instance_uid: uid, model: model }),
      }).then(function (r) { return r.json().then(function (j) { return { ok: r.ok, body: j }; }); })
        .then(function (res) {
          statusNode.textContent = res.ok ? "Analysis queued (" + model + ")." : (res.body.error || "The analysis could not be requested.");
          if (res.ok) loadAnalyses(uid);
        }).catch(function () { statusNode.textContent = "The analysis could not be requested."; });
    });
  }

  stage.focus();
  render();
  updateHud();
})();
