// nbpipe web UI: the token form, action buttons, and live updates of a run over SSE.
// No framework; everything shown comes from the server as text (textContent, never innerHTML).
"use strict";
(function () {
  var KEY = "nbpipe-token";
  var body = document.body;

  function flash(msg, kind) {
    var el = document.getElementById("flash");
    if (!el) return;
    el.textContent = msg;
    el.className = kind || "error";
    el.hidden = !msg;
  }

  // Token form: kept in this tab's sessionStorage only.
  var form = document.getElementById("token-form");
  if (form) {
    var input = document.getElementById("token");
    var state = document.getElementById("token-state");
    var show = function () {
      state.textContent = sessionStorage.getItem(KEY) ? "token set for this tab" : "no token";
    };
    show();
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      if (input.value) sessionStorage.setItem(KEY, input.value); else sessionStorage.removeItem(KEY);
      input.value = "";
      show();
    });
  }

  // Buttons with data-action POST to the API.
  document.querySelectorAll("button[data-action]").forEach(function (btn) {
    btn.addEventListener("click", function () {
      if (btn.dataset.confirm && !window.confirm(btn.dataset.confirm)) return;
      var headers = { "Content-Type": "application/json" };
      var token = sessionStorage.getItem(KEY);
      if (token) headers["Authorization"] = "Bearer " + token;
      btn.disabled = true;
      fetch(btn.dataset.action, { method: "POST", headers: headers, body: btn.dataset.body || "{}" })
        .then(function (resp) {
          return resp.json().catch(function () { return {}; }).then(function (data) {
            btn.disabled = false;
            if (resp.status === 401) {
              flash("This needs the API token: enter it in the form at the top.");
              return;
            }
            if (!resp.ok) {
              flash((data.error && data.error.message) || ("Request failed: HTTP " + resp.status));
              return;
            }
            if (btn.dataset.then === "open-run" && data.id) {
              window.location.href = "/runs/" + encodeURIComponent(data.id);
            } else {
              window.location.reload();
            }
          });
        })
        .catch(function (err) { btn.disabled = false; flash("Request failed: " + err); });
    });
  });

  function setBadge(el, status) {
    if (!el) return;
    var symbols = { succeeded: "✓", failed: "✗", running: "▶", queued: "…", pending: "…", cancelled: "■", skipped: "↷" };
    el.className = "badge st-" + status;
    el.dataset.status = status;
    el.textContent = "";
    var s = document.createElement("span");
    s.setAttribute("aria-hidden", "true");
    s.textContent = symbols[status] || "";
    el.appendChild(s);
    el.appendChild(document.createTextNode(" " + status));
  }

  // Run page: follow the run live.
  var run = document.getElementById("run");
  if (run && window.EventSource) {
    var id = run.dataset.runId;
    var wasFinished = ["succeeded", "failed", "cancelled"].indexOf(run.dataset.status) >= 0;
    var frame = document.getElementById("report");
    var lastKey = null;
    var es = new EventSource("/api/runs/" + encodeURIComponent(id) + "/events");
    es.addEventListener("run", function (e) {
      var snap = JSON.parse(e.data);
      run.dataset.status = snap.status;
      setBadge(document.querySelector("#run-status .badge"), snap.status);
      (snap.steps || []).forEach(function (st) {
        var row = document.querySelector('tr[data-step="' + CSS.escape(st.id) + '"]');
        if (!row) return;
        row.dataset.status = st.status;
        setBadge(row.querySelector(".step-status .badge"), st.status);
        var p = row.querySelector(".step-progress");
        if (p) {
          var pr = st.progress;
          p.textContent = !pr ? "" : (pr.running ? "cell " + pr.running + " of " + pr.total : pr.done + " of " + pr.total + " cells");
        }
        if (frame && frame.dataset.step === st.id) {
          var key = st.status + "/" + JSON.stringify(st.progress);
          if (lastKey !== null && key !== lastKey) {
            frame.src = frame.getAttribute("src"); // re-render the report at its new state
          }
          lastKey = key;
        }
      });
    });
    es.addEventListener("end", function () {
      es.close();
      if (!wasFinished) window.location.reload(); // final durations, buttons and report
    });
  }

  // Container log: refreshed every 2 s while the run is not finished.
  var log = document.getElementById("container-log");
  if (log && run) {
    var refresh = function () {
      if (["succeeded", "failed", "cancelled"].indexOf(run.dataset.status) >= 0) return;
      fetch(log.dataset.logUrl, { headers: { Accept: "application/json" } })
        .then(function (resp) { return resp.ok ? resp.json() : null; })
        .then(function (data) {
          if (data && data.lines && data.lines.length) log.textContent = data.lines.join("\n");
        })
        .catch(function () {})
        .then(function () { window.setTimeout(refresh, 2000); });
    };
    window.setTimeout(refresh, 2000);
  }

  // Runs list: refresh while some run is not finished.
  var list = document.getElementById("runs-page");
  if (list && list.dataset.live === "true") {
    window.setTimeout(function () { window.location.reload(); }, 5000);
  }
})();
