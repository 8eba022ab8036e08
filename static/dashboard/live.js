// Keeps the online page current: polls the presence JSON and updates rows in place (textContent only,
// so names and states are never parsed as HTML). A member added or removed reloads the page.
(function () {
  "use strict";
  var script = document.getElementById("live-script");
  var note = document.getElementById("live-note");
  if (!script || !note) return;
  var url = script.getAttribute("data-url");
  var every = parseInt(note.getAttribute("data-poll-ms"), 10) || 1000;
  var STATES = ["online", "refusing", "offline", "disabled", "live", "down"];

  function ago(iso, now) {
    if (!iso) return "never";
    var s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    if (s < 86400) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " d ago";
  }

  function setState(el, state) {
    STATES.forEach(function (name) { el.classList.remove(name); });
    el.classList.add(state);
  }

  function apply(data) {
    var now = Date.parse(data.now);
    var rows = document.querySelectorAll("tr[data-member]");
    if (rows.length !== data.members.length) { window.location.reload(); return; }
    data.members.forEach(function (m) {
      var row = document.querySelector('tr[data-member="' + CSS.escape(m.member_id) + '"]');
      if (!row) { window.location.reload(); return; }
      row.className = "state-" + m.state;
      var state = row.querySelector('[data-field="state"]');
      state.textContent = m.state;
      setState(state, m.state);
      var seen = row.querySelector('[data-field="last_seen"]');
      seen.textContent = ago(m.last_seen, now);
      seen.setAttribute("datetime", m.last_seen || "");
      seen.title = m.last_seen || "never";
      row.querySelector('[data-field="pending"]').textContent = String(m.pending);
      m.channels.forEach(function (c) {
        var chip = row.querySelector('[data-channel="' + c.id + '"]');
        if (!chip) return;
        setState(chip, c.state);
        chip.querySelector('[data-field="state"]').textContent = c.state;
        chip.querySelector('[data-field="reason"]').textContent = c.reason ? " (" + c.reason + ")" : "";
      });
    });
    Object.keys(data.counts).forEach(function (k) {
      var el = document.getElementById("count-" + k);
      if (el) el.textContent = String(data.counts[k]);
    });
    note.textContent = "live: updated " + new Date(now).toLocaleTimeString();
    note.classList.remove("stale");
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (r.redirected || r.status === 302 || r.status === 403) { window.location.reload(); throw new Error("logged out"); }
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(apply)
      .catch(function (err) {
        note.textContent = "live updates paused (" + err.message + "), retrying";
        note.classList.add("stale");
      })
      .finally(function () { window.setTimeout(poll, every); });
  }
  window.setTimeout(poll, every);
})();
