// MedVault upload page: drag & drop files, folders and ZIPs; one request per file with a
// progress bar; the server answers stored / duplicate / rejected (with the reason) per item.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form) return;
  var drop = document.getElementById("dropzone");
  var list = document.getElementById("filelist");
  var startButton = document.getElementById("start-upload");
  var summary = document.getElementById("summary");
  var imageFields = document.getElementById("image-fields");
  var csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  var queue = [];
  var busy = false;
  var IMAGE = /\.(png|jpe?g)$/i;

  // Enter in a patient field must not submit the form as a GET: that would put the patient's
  // ID and name into the URL (and the access log). Uploads go only through the button below.
  form.addEventListener("submit", function (e) { e.preventDefault(); });

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function addFile(file, path) {
    if (file.name === ".DS_Store" || file.name === "Thumbs.db") return;
    var li = el("li");
    var name = el("span", "name", path || file.webkitRelativePath || file.name);
    name.title = name.textContent;
    var progress = el("progress");
    progress.max = 100; progress.value = 0;
    var result = el("span", "result muted", "waiting");
    li.appendChild(name); li.appendChild(progress); li.appendChild(result);
    list.appendChild(li);
    queue.push({ file: file, li: li, progress: progress, result: result, done: false });
    refresh();
  }

  function refresh() {
    var pending = queue.filter(function (q) { return !q.done; });
    var needsImageFields = pending.some(function (q) { return IMAGE.test(q.file.name); });
    imageFields.hidden = !needsImageFields;
    startButton.disabled = busy || pending.length === 0;
    summary.textContent = pending.length ? pending.length + " file(s) ready" : "";
  }

  function walkEntry(entry, prefix) {
    return new Promise(function (resolve) {
      if (entry.isFile) {
        entry.file(function (file) { addFile(file, prefix + file.name); resolve(); }, function () { resolve(); });
      } else if (entry.isDirectory) {
        var reader = entry.createReader();
        var all = [];
        (function readBatch() {
          reader.readEntries(function (entries) {
            if (!entries.length) {
              Promise.all(all.map(function (e) { return walkEntry(e, prefix + entry.name + "/"); })).then(resolve);
            } else { all = all.concat(Array.prototype.slice.call(entries)); readBatch(); }
          }, function () { resolve(); });
        })();
      } else { resolve(); }
    });
  }

  ["dragenter", "dragover"].forEach(function (type) {
    drop.addEventListener(type, function (e) { e.preventDefault(); drop.classList.add("over"); });
  });
  ["dragleave", "drop"].forEach(function (type) {
    drop.addEventListener(type, function (e) { e.preventDefault(); drop.classList.remove("over"); });
  });
  drop.addEventListener("drop", function (e) {
    var items = e.dataTransfer.items;
    if (items && items.length && items[0].webkitGetAsEntry) {
      var entries = [];
      for (var i = 0; i < items.length; i++) {
        var entry = items[i].webkitGetAsEntry();
        if (entry) entries.push(entry);
      }
      Promise.all(entries.map(function (en) { return walkEntry(en, ""); })).then(refresh);
    } else {
      Array.prototype.forEach.call(e.dataTransfer.files, function (f) { addFile(f); });
    }
  });
  ["file-input", "folder-input"].forEach(function (id) {
    var input = document.getElementById(id);
    input.addEventListener("change", function () {
      Array.prototype.forEach.call(input.files, function (f) { addFile(f); });
      input.value = "";
    });
  });

  function showResults(item, payload) {
    item.result.textContent = "";
    item.result.classList.remove("muted");
    (payload.results || []).forEach(function (r, index) {
      var line = el("div");
      var tag = el("span", "tag tag-" + r.status, r.status);
      line.appendChild(tag);
      if (payload.results.length > 1) line.appendChild(document.createTextNode(" " + r.path));
      if (r.reason) line.appendChild(document.createTextNode(" — " + r.reason));
      if (r.study_url && r.status !== "rejected") {
        var a = el("a", "", " open study");
        a.href = r.study_url;
        line.appendChild(document.createTextNode(" "));
        line.appendChild(a);
      }
      item.result.appendChild(line);
    });
    if (payload.error) {
      item.result.appendChild(el("span", "tag tag-rejected", "rejected"));
      item.result.appendChild(document.createTextNode(" — " + payload.error));
    }
  }

  function send(item) {
    return new Promise(function (resolve) {
      var data = new FormData();
      data.append("file", item.file, item.file.name);
      data.append("group", document.getElementById("group").value);
      ["patient_id", "patient_name", "modality", "body_part", "study_description"].forEach(function (k) {
        data.append(k, document.getElementById(k).value);
      });
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.dataset.url || "/upload/file");
      xhr.setRequestHeader("X-CSRFToken", csrf);
      xhr.upload.onprogress = function (e) {
        if (e.lengthComputable) item.progress.value = Math.round((e.loaded / e.total) * 95);
      };
      item.result.textContent = "uploading…";
      xhr.onload = function () {
        item.progress.value = 100;
        var payload;
        try { payload = JSON.parse(xhr.responseText); }
        catch (err) { payload = { error: xhr.status === 200 ? "unexpected answer" : "the server answered " + xhr.status + (xhr.responseURL.indexOf("/accounts/login") >= 0 ? " (your session has ended; log in again)" : "") }; }
        showResults(item, payload);
        item.done = true;
        resolve(payload);
      };
      xhr.onerror = function () {
        showResults(item, { error: "the connection failed" });
        item.done = true;
        resolve({});
      };
      xhr.send(data);
    });
  }

  startButton.addEventListener("click", function () {
    var pending = queue.filter(function (q) { return !q.done; });
    var images = pending.some(function (q) { return IMAGE.test(q.file.name); });
    if (images) {
      var missing = ["patient_id", "patient_name", "modality"].filter(function (k) { return !document.getElementById(k).value.trim(); });
      if (missing.length) {
        summary.textContent = "PNG/JPEG images need a patient ID, patient name and modality.";
        document.getElementById(missing[0]).focus();
        return;
      }
    }
    busy = true; refresh();
    var counts = { stored: 0, duplicate: 0, rejected: 0 };
    var index = 0;
    function next() {
      if (index >= pending.length) {
        busy = false; refresh();
        summary.textContent = "Done: " + counts.stored + " stored, " + counts.duplicate + " duplicate, " + counts.rejected + " rejected.";
        summary.id = "summary";
        form.dataset.finished = "1";
        return;
      }
      var item = pending[index++];
      send(item).then(function (payload) {
        (payload.results || []).forEach(function (r) { counts[r.status] = (counts[r.status] || 0) + 1; });
        if (payload.error) counts.rejected += 1;
        next();
      });
    }
    next();
  });
  refresh();
})();
