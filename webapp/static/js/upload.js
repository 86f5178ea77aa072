// The upload page: pick or drop many files, send them in small groups, then follow each one
// until its verdict is ready, without reloading the page. Plain JavaScript, no library.
(function () {
  "use strict";

  var form = document.getElementById("upload-form");
  if (!form) { return; }
  var input = document.getElementById("files");
  var zone = document.getElementById("dropzone");
  var selection = document.getElementById("selection");
  var clearButton = document.getElementById("clear-files");
  var uploadButton = document.getElementById("upload-button");
  var formError = document.getElementById("form-error");
  var caseSelect = document.getElementById("case");
  var newCaseTitle = document.getElementById("new-case-title");
  var section = document.getElementById("progress-section");
  var bar = document.getElementById("progress-bar");
  var rowsBody = document.getElementById("file-rows");
  var countEls = {};
  ["queued", "processing", "done", "failed", "rejected"].forEach(function (key) {
    countEls[key] = document.getElementById("count-" + key);
  });

  var groupSize = parseInt(form.dataset.groupSize, 10) || 10;
  var maxFiles = parseInt(form.dataset.maxFiles, 10) || 200;
  var csrfToken = form.querySelector("input[name=csrfmiddlewaretoken]").value;

  var selected = [];      // File objects chosen and not yet sent
  var tracked = {};       // submission id -> {row, status}
  var rejectedCount = 0;
  var uploading = false;
  var pollTimer = null;

  function humanSize(bytes) {
    if (bytes < 1024) { return bytes + " B"; }
    if (bytes < 1024 * 1024) { return (bytes / 1024).toFixed(1) + " KB"; }
    return (bytes / (1024 * 1024)).toFixed(1) + " MB";
  }

  function showSelection() {
    var total = selected.reduce(function (sum, f) { return sum + f.size; }, 0);
    selection.textContent = selected.length
      ? selected.length + (selected.length === 1 ? " file" : " files") + " selected (" + humanSize(total) + ")"
      : "No file selected.";
    clearButton.hidden = selected.length === 0;
    uploadButton.disabled = uploading || selected.length === 0;
  }

  function addFiles(fileList) {
    for (var i = 0; i < fileList.length; i++) { selected.push(fileList[i]); }
    showSelection();
  }

  function setError(message) {
    formError.textContent = message || "";
    formError.hidden = !message;
  }

  input.addEventListener("change", function () {
    addFiles(input.files);
    input.value = "";  // the same file can be chosen again after a clear
  });
  // Enter on the "choose files" control opens the file chooser, as Space does: inside a form, browsers
  // take Enter on a file input for "submit the form" (or for nothing while Upload is disabled).
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter") {
      event.preventDefault();
      input.click();
    }
  });
  clearButton.addEventListener("click", function () { selected = []; showSelection(); input.focus(); });

  ["dragenter", "dragover"].forEach(function (type) {
    zone.addEventListener(type, function (event) {
      event.preventDefault();
      zone.classList.add("dragging");
    });
  });
  ["dragleave", "dragend"].forEach(function (type) {
    zone.addEventListener(type, function () { zone.classList.remove("dragging"); });
  });
  zone.addEventListener("drop", function (event) {
    event.preventDefault();
    zone.classList.remove("dragging");
    if (event.dataTransfer && event.dataTransfer.files) { addFiles(event.dataTransfer.files); }
  });

  function caseMode() {
    var checked = form.querySelector("input[name=case_mode]:checked");
    return checked ? checked.value : "none";
  }

  function errorText(body, fallback) {
    // DRF answers {"field": ["message", ...]} or {"detail": "message"}.
    if (!body || typeof body !== "object") { return fallback; }
    if (body.detail) { return String(body.detail); }
    var parts = [];
    Object.keys(body).forEach(function (key) {
      var value = body[key];
      parts.push(Array.isArray(value) ? value.join(" ") : String(value));
    });
    return parts.join(" ") || fallback;
  }

  function request(url, options) {
    options.headers = Object.assign({ "X-CSRFToken": csrfToken, "Accept": "application/json" }, options.headers || {});
    options.credentials = "same-origin";
    return fetch(url, options).then(function (response) {
      return response.json().catch(function () { return null; }).then(function (body) {
        return { ok: response.ok, status: response.status, body: body };
      });
    });
  }

  function resolveCase() {
    var mode = caseMode();
    if (mode === "existing") { return Promise.resolve(caseSelect.value || null); }
    if (mode !== "new") { return Promise.resolve(null); }
    var title = newCaseTitle.value.trim();
    if (!title) { return Promise.reject(new Error("Give the new case a title.")); }
    return request(form.dataset.caseUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ title: title })
    }).then(function (result) {
      if (!result.ok) { throw new Error("The case could not be created: " + errorText(result.body, "error " + result.status)); }
      // Later batches go to the same case: select it as an existing one.
      var option = document.createElement("option");
      option.value = result.body.id;
      option.textContent = result.body.title;
      caseSelect.appendChild(option);
      caseSelect.value = String(result.body.id);
      caseSelect.disabled = false;
      document.getElementById("case-mode-existing").disabled = false;
      document.getElementById("case-mode-existing").checked = true;
      newCaseTitle.value = "";
      var link = document.getElementById("case-link");
      link.href = form.dataset.caseDetailUrl.replace("/0/", "/" + result.body.id + "/");
      link.textContent = "Open the case “" + result.body.title + "”";
      link.hidden = false;
      return String(result.body.id);
    });
  }

  function addRow(file) {
    var row = document.createElement("tr");
    row.dataset.testid = "upload-row";
    var name = document.createElement("th");
    name.scope = "row";
    name.textContent = file.name;
    var state = document.createElement("td");
    state.className = "state";
    state.dataset.status = "sending";
    state.textContent = "Sending…";
    row.appendChild(name);
    row.appendChild(state);
    rowsBody.appendChild(row);
    return row;
  }

  function setRow(row, status, content) {
    var cell = row.querySelector(".state");
    cell.dataset.status = status;
    cell.className = "state status-" + status;
    cell.textContent = "";
    if (typeof content === "string") { cell.textContent = content; } else { cell.appendChild(content); }
  }

  function verdictLink(item) {
    var link = document.createElement("a");
    link.href = item.url;
    link.className = "decision-" + (item.decision || "");
    link.textContent = item.summary || "Verdict";
    return link;
  }

  function updateCounts() {
    var counts = { queued: 0, processing: 0, done: 0, failed: 0, rejected: rejectedCount };
    var ids = Object.keys(tracked);
    ids.forEach(function (id) { counts[tracked[id].status] += 1; });
    Object.keys(countEls).forEach(function (key) { countEls[key].textContent = String(counts[key]); });
    bar.max = Math.max(ids.length, 1);
    bar.value = counts.done + counts.failed;
    bar.textContent = Math.round((100 * bar.value) / bar.max) + "%";
  }

  function applyStatus(item) {
    var entry = tracked[item.id];
    if (!entry) { return; }
    entry.status = item.status;
    if (item.status === "done") {
      setRow(entry.row, "done", verdictLink(item));
    } else if (item.status === "failed") {
      setRow(entry.row, "failed", "Failed: " + (item.error || "unknown reason"));
    } else {
      setRow(entry.row, item.status, item.status === "processing" ? "Processing…" : "Queued");
    }
  }

  function pending() {
    return Object.keys(tracked).filter(function (id) {
      return tracked[id].status === "queued" || tracked[id].status === "processing";
    });
  }

  function fetchProgress(ids) {
    if (!ids.length) { return Promise.resolve(); }
    var url = form.dataset.progressUrl + "?ids=" + ids.slice(0, 1000).join(",");
    return request(url, { method: "GET" }).then(function (result) {
      if (result.ok && result.body) {
        result.body.submissions.forEach(applyStatus);
        updateCounts();
      }
    }).catch(function () { /* a missed poll is retried on the next tick */ });
  }

  function poll() {
    var ids = pending();
    if (!ids.length && !uploading) { stopPolling(); }
    fetchProgress(ids);
  }

  function startPolling() {
    if (!pollTimer) { pollTimer = window.setInterval(poll, 1000); }
  }

  function stopPolling() {
    if (pollTimer) { window.clearInterval(pollTimer); pollTimer = null; }
  }

  function sendGroup(files, rows, caseId) {
    var data = new FormData();
    var sent = [];
    files.forEach(function (file) { data.append("images", file, file.name); });
    if (caseId) { data.append("case", caseId); }
    return request(form.dataset.batchUrl, { method: "POST", body: data }).then(function (result) {
      if (!result.ok) {
        var reason = errorText(result.body, result.status === 413 ? "the request is too large" : "error " + result.status);
        rows.forEach(function (row) { setRow(row, "rejected", "Not sent: " + reason); });
        rejectedCount += rows.length;
        return;
      }
      result.body.results.forEach(function (item, index) {
        var row = rows[index];
        if (!item.accepted) {
          rejectedCount += 1;
          setRow(row, "rejected", "Rejected: " + item.error);
          return;
        }
        row.dataset.submissionId = String(item.id);
        sent.push(item.id);
        tracked[item.id] = { row: row, status: item.status };
        applyStatus({ id: item.id, status: item.status, error: "", url: form.dataset.detailUrl.replace("/0/", "/" + item.id + "/") });
        if (item.duplicate_of) {
          row.querySelector("th").insertAdjacentText("beforeend", " (already submitted: shows the earlier verdict)");
        }
      });
    }).catch(function (error) {
      rows.forEach(function (row) { setRow(row, "rejected", "Not sent: " + error.message); });
      rejectedCount += rows.length;
    }).then(function () {
      updateCounts();
      startPolling();
      return fetchProgress(sent);  // duplicates of finished uploads show their verdict at once
    });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    setError("");
    if (!selected.length) { setError("Choose one or more images first."); input.focus(); return; }
    if (selected.length > maxFiles) {
      setError("At most " + maxFiles + " files per batch: you chose " + selected.length + ".");
      return;
    }
    var files = selected;
    selected = [];
    uploading = true;
    showSelection();
    resolveCase().then(function (caseId) {
      section.hidden = false;
      var rows = files.map(addRow);
      updateCounts();
      var chain = Promise.resolve();
      for (var start = 0; start < files.length; start += groupSize) {
        (function (groupFiles, groupRows) {
          chain = chain.then(function () { return sendGroup(groupFiles, groupRows, caseId); });
        })(files.slice(start, start + groupSize), rows.slice(start, start + groupSize));
      }
      return chain;
    }).catch(function (error) {
      selected = files.concat(selected);
      setError(error.message);
    }).then(function () {
      uploading = false;
      showSelection();
      poll();
    });
  });

  showSelection();
})();
