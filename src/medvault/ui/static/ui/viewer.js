// MedVault viewer: the server renders each windowed frame to PNG (cached); this script
// handles scrolling (wheel, arrow keys), window/level by drag and presets, zoom and pan,
// the metadata panel, and the analysis heat-map overlay.
(function () {
  "use strict";
  var configNode = document.getElementById("viewer-config");
  if (!configNode) return;
  var cfg = JSON.parse(configNode.textContent);
  var frames = cfg.frames;
  var stage = document.getElementById("stage");
  var img = document.getElementById("frame");
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
    scale: 1, x: 0, y: 0, fitted: false, tool: "wl",
    natural: { w: 0, h: 0 }, overlayOn: false, overlayUrl: null,
  };
  var inflight = false, wanted = null, currentUrl = null, lastMetaUid = null, lastAnalysisUid = null;

  function frameUrl(i, withWindow) {
    var f = frames[i];
    var url = "/frames/" + encodeURIComponent(f.uid) + "/" + f.frame + ".png";
    var params = [];
    if (withWindow && state.wc !== null) params.push("wc=" + state.wc.toFixed(1), "ww=" + state.ww.toFixed(1));
    if (state.invert) params.push("invert=1");
    return params.length ? url + "?" + params.join("&") : url;
  }

  function render() {
    var url = frameUrl(state.index, true);
    if (inflight) { wanted = url; return; }
    if (url === currentUrl) return;
    inflight = true;
    var started = performance.now();
    fetch(url, { credentials: "same-origin" }).then(function (response) {
      if (!response.ok) {
        return response.text().then(function (t) { throw new Error(t || ("error " + response.status)); });
      }
      var win = response.headers.get("X-Window");
      if (win && state.wc === null) {
        var parts = win.split(",");
        state.wc = parseFloat(parts[0]); state.ww = parseFloat(parts[1]);
      }
      return response.blob();
    }).then(function (blob) {
      var objectUrl = URL.createObjectURL(blob);
      img.onload = function () {
        if (img.dataset.prev) URL.revokeObjectURL(img.dataset.prev);
        img.dataset.prev = objectUrl;
        state.natural = { w: img.naturalWidth, h: img.naturalHeight };
        if (!state.fitted) fit();
        img.dataset.ms = String(Math.round(performance.now() - started));
        stage.dataset.loaded = String(state.index);
        stage.dataset.window = state.wc === null ? "" : state.wc.toFixed(1) + "," + state.ww.toFixed(1);
        statusNode.textContent = "";
        finish();
      };
      img.src = objectUrl;
      currentUrl = url;
      updateHud();
    }).catch(function (err) {
      statusNode.textContent = String(err.message || err).slice(0, 200);
      finish();
    });
    function finish() {
      inflight = false;
      if (wanted && wanted !== currentUrl) { wanted = null; render(); }
      else { wanted = null; prefetch(); }
    }
    var uid = frames[state.index].uid;
    if (uid !== lastMetaUid) { lastMetaUid = uid; loadMeta(uid); loadAnalyses(uid); updateLinks(uid); }
  }

  function prefetch() {
    // Warm the browser cache with the neighbours in the current window.
    [1, -1, 2].forEach(function (d) {
      var j = state.index + d;
      if (j >= 0 && j < frames.length) fetch(frameUrl(j, true), { credentials: "same-origin" }).catch(function () {});
    });
  }

  function applyTransform() {
    var t = "translate(" + state.x + "px," + state.y + "px) scale(" + state.scale + ")";
    img.style.transform = t;
    overlay.style.transform = t;
    overlay.style.width = state.natural.w + "px";
    overlay.style.height = state.natural.h + "px";
  }

  function fit() {
    if (!state.natural.w) return;
    var r = stage.getBoundingClientRect();
    state.scale = Math.min(r.width / state.natural.w, r.height / state.natural.h);
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
    state.x = px - (px - state.x) * factor;
    state.y = py - (py - state.y) * factor;
    state.scale = Math.min(Math.max(state.scale * factor, 0.05), 40);
    applyTransform(); updateHud();
  }

  var drag = null;
  stage.addEventListener("pointerdown", function (e) {
    stage.setPointerCapture(e.pointerId);
    var tool = e.button === 1 ? "pan" : (e.button === 2 ? "zoom" : state.tool);
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
      updateHud(); render();
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
      document.querySelectorAll("[data-tool]").forEach(function (o) { o.classList.toggle("active", o === b); });
    });
  });
  document.querySelectorAll("[data-preset]").forEach(function (b) {
    b.addEventListener("click", function () {
      var p = cfg.presets[b.dataset.preset];
      state.wc = p[0]; state.ww = p[1];
      updateHud(); render();
    });
  });
  function reset() { state.wc = null; state.ww = null; state.invert = false; currentUrl = null; fit(); render(); }
  function toggleInvert() { state.invert = !state.invert; document.getElementById("invert").classList.toggle("active", state.invert); render(); }
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
          div.textContent = r.model + ": " + (r.refused ? "not analysed — " + r.reason : (r.label || "").replace(/_/g, " ") + conf);
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
          overlayButton.classList.toggle("active", state.overlayOn);
          applyTransform();
        }
      }).catch(function () {});
  }
  function toggleOverlay() {
    state.overlayOn = !state.overlayOn;
    overlay.hidden = !state.overlayOn || !state.overlayUrl;
    overlayButton.classList.toggle("active", state.overlayOn);
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
