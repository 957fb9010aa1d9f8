// The otelkit collector's status page: keeps the page current without reloading it.
// Every few seconds it asks /api/status/stamp whether anything changed; when it did, it
// fetches this same page and swaps in its <main>. Between fetches it ages the "last report"
// times. It writes text only (textContent), never markup, and loads nothing from elsewhere.
(function () {
  "use strict";

  function ageText(seconds) {
    // The same wording as the server's (status_page.age_text).
    if (seconds < 60) return Math.round(seconds) + " s";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min";
    if (seconds < 86400) return Math.floor(seconds / 3600) + " h";
    return Math.floor(seconds / 86400) + " d";
  }

  function clockText(date) {
    return date.toISOString().slice(11, 19) + " UTC";
  }

  var main = document.getElementById("status");
  var state = document.getElementById("refresh-state");
  if (!main || !window.fetch || !window.DOMParser) return;
  var interval = Number(main.dataset.refreshMs) || 5000;
  // Server time minus client time, so ages do not depend on the client's clock being right.
  var skew = Number(main.dataset.generated) - Date.now() / 1000;

  function tickAges() {
    var now = Date.now() / 1000 + skew;
    var times = document.querySelectorAll("[data-at]");
    for (var i = 0; i < times.length; i++) {
      var at = Number(times[i].dataset.at);
      if (isFinite(at)) times[i].textContent = ageText(Math.max(0, now - at));
    }
  }

  function showState(text, offline) {
    if (!state) return;
    state.textContent = text;
    state.className = offline ? "muted offline" : "muted";
  }

  function openDetails(root) {
    var open = {};
    var details = root.querySelectorAll("tr[data-key] details[open]");
    for (var i = 0; i < details.length; i++) {
      open[details[i].closest("tr").dataset.key] = true;
    }
    return open;
  }

  function reload() {
    return fetch(window.location.href, { cache: "no-store", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (body) {
        var fresh = new DOMParser().parseFromString(body, "text/html").getElementById("status");
        if (!fresh) throw new Error("no status in the page");
        var open = openDetails(main);
        var adopted = document.importNode(fresh, true);
        var rows = adopted.querySelectorAll("tr[data-key]");
        for (var i = 0; i < rows.length; i++) {
          var details = rows[i].querySelector("details");
          if (details && open[rows[i].dataset.key]) details.open = true;
        }
        main.replaceWith(adopted);
        main = adopted;
        skew = Number(main.dataset.generated) - Date.now() / 1000;
        document.documentElement.dataset.refreshes =
          String(Number(document.documentElement.dataset.refreshes || 0) + 1);
      });
  }

  function poll() {
    fetch("/api/status/stamp", { cache: "no-store", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (body) {
        if (body.stamp !== main.dataset.stamp) return reload();
      })
      .then(function () {
        showState("live · updated " + clockText(new Date()), false);
      })
      .catch(function () {
        showState("collector unreachable · retrying", true);
      })
      .then(function () {
        window.setTimeout(poll, interval);
      });
  }

  window.setInterval(tickAges, 1000);
  window.setTimeout(poll, interval);
  showState("live · updated " + clockText(new Date()), false);
})();
