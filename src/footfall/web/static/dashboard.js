/* Footfall dashboard: draws the Plotly figures the server embedded as JSON, and small
   form conveniences. No inline scripts (the pages' Content-Security-Policy forbids them). */
(function () {
  "use strict";
  var FONT = '-apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans", "Liberation Sans", sans-serif';
  // Numbers as the tables write them: 12,000, not Plotly's SI "12k".
  var AXIS = { gridcolor: "#eef0f3", linecolor: "#d5dae0", zeroline: false, separatethousands: true,
               exponentformat: "none", automargin: true };
  var YAXIS = merge(AXIS, { rangemode: "tozero" });
  var BASE = {
    font: { family: FONT, size: 12, color: "#3e4c59" },
    margin: { l: 56, r: 20, t: 10, b: 40 },
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "rgba(0,0,0,0)",
    separators: ".,",
    xaxis: AXIS,
    yaxis: YAXIS,
    legend: { orientation: "h", x: 0, y: 1.12 },
    hoverlabel: { font: { family: FONT } },
    bargap: 0.25
  };

  function isObject(value) {
    return value && typeof value === "object" && !Array.isArray(value);
  }

  function merge(base, extra) {
    // A deep copy: Plotly writes into layout objects, so no two axes may share one.
    var out = JSON.parse(JSON.stringify(base));
    Object.keys(extra).forEach(function (k) {
      out[k] = isObject(out[k]) && isObject(extra[k]) ? merge(out[k], extra[k]) : extra[k];
    });
    return out;
  }

  function draw(element) {
    var source = document.getElementById(element.getAttribute("data-chart"));
    if (!source || !window.Plotly) { return; }
    var spec = JSON.parse(source.textContent);
    var layout = merge(BASE, spec.layout || {});
    if (layout.yaxis2) { layout.yaxis2 = merge(AXIS, layout.yaxis2); }
    window.Plotly.newPlot(element, spec.data, layout, { displayModeBar: false, responsive: true })
      .then(function () { element.setAttribute("data-drawn", "true"); });
  }

  function rangeForm(form) {
    // Untouched date fields keep a quick range ("last 30 days") instead of fixing the dates.
    form.addEventListener("submit", function () {
      var dates = form.querySelectorAll("input[data-date]");
      var changed = Array.prototype.some.call(dates, function (input) {
        return input.value !== input.getAttribute("data-initial");
      });
      var days = form.querySelector("[data-days]");
      if (changed) {
        if (days) { days.disabled = true; }
      } else if (days) {
        dates.forEach(function (input) { input.disabled = true; });
      }
    });
  }

  // ------------------------------------------------------------------ site pages

  function escapeAttribute(value) {
    return String(value).replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;");
  }

  function snippetBuilder(card) {
    // The same text the server writes (web/admin.py: snippet): only options that differ
    // from the tracker's defaults become attributes.
    var pre = card.querySelector("pre.snippet");
    var boxes = card.querySelectorAll("input[data-option]");
    function build() {
      var lines = ['<script async src="' + escapeAttribute(card.getAttribute("data-src")) + '"',
        '        data-site-id="' + escapeAttribute(card.getAttribute("data-site-id")) + '"'];
      boxes.forEach(function (box) {
        var fallback = box.getAttribute("data-default") === "true";
        if (box.checked !== fallback) {
          lines.push('        data-' + box.getAttribute("data-option") + '="' + String(box.checked) + '"');
        }
      });
      pre.textContent = lines.join("\n") + "></" + "script>";
    }
    boxes.forEach(function (box) { box.addEventListener("change", build); });
    build();  // a browser may restore ticked boxes when coming back to the page
  }

  function copyButton(button) {
    var label = button.textContent;
    function copied() {
      button.textContent = "Copied";
      button.classList.add("copied");
      window.setTimeout(function () {
        button.textContent = label;
        button.classList.remove("copied");
      }, 2000);
    }
    button.addEventListener("click", function () {
      var target = document.getElementById(button.getAttribute("data-copy"));
      if (!target) { return; }
      var text = target.tagName === "INPUT" ? target.value : target.textContent;
      function selectAndCopy() {
        // Without the asynchronous clipboard (plain http on another host): select, copy.
        var area = document.createElement("textarea");
        area.value = text;
        area.setAttribute("readonly", "");
        area.className = "offscreen";
        document.body.appendChild(area);
        area.select();
        try { document.execCommand("copy"); copied(); } catch (ignored) { /* the text stays selectable */ }
        document.body.removeChild(area);
      }
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(copied, selectAndCopy);
      } else {
        selectAndCopy();
      }
    });
  }

  function cell(row, text, className) {
    var td = document.createElement("td");
    if (className) { td.className = className; }
    td.textContent = text;
    row.appendChild(td);
    return td;
  }

  function ago(time) {
    // As the server words it (web/admin.py: ago), for the page header's "last event".
    var seconds = Math.max(0, (Date.now() - time) / 1000);
    if (seconds < 10) { return "just now"; }
    if (seconds < 60) { return Math.floor(seconds) + " s ago"; }
    if (seconds < 3600) { return Math.floor(seconds / 60) + " min ago"; }
    return Math.floor(seconds / 3600) + " h ago";
  }

  function installCheck(card) {
    // Polls the site's newest events: every 2 s for ten minutes, then every 15 s (and
    // every 15 s while the tab is hidden).
    var url = card.getAttribute("data-url");
    var ever = card.getAttribute("data-ever") === "true";
    var title = card.querySelector("[data-status-title]");
    var note = card.querySelector("[data-status-note]");
    var body = card.querySelector("[data-recent]");
    var table = card.querySelector("table.recent");
    var last = document.querySelector("[data-last-event]");
    var today = document.querySelector("[data-events-today]");
    var tips = card.querySelector("[data-waiting-tips]");
    var refusals = card.querySelector("[data-refusals]");
    var started = Date.now();
    var TITLES = { receiving: "Receiving events", quiet: "No events in the last 24 hours",
                   waiting: "Waiting for the first event" };

    function render(events) {
      if (events.length) { ever = true; }
      var state = events.length ? "receiving" : (ever ? "quiet" : "waiting");
      card.setAttribute("data-state", state);
      card.className = card.className.replace(/\bstate-\w+/, "state-" + state);
      title.textContent = TITLES[state];
      if (state === "receiving") {
        note.textContent = "The newest arrived " + events[0].received_at.slice(0, 19).replace("T", " ") + " UTC.";
      } else if (state === "waiting") {
        note.textContent = "Open a page that has the snippet: its visit shows up here within seconds.";
      }
      tips.hidden = state === "receiving";
      if (events.length && last) { last.textContent = ago(Date.parse(events[0].received_at)); }
      table.hidden = !events.length;
      while (body.firstChild) { body.removeChild(body.firstChild); }
      events.forEach(function (event) {
        var row = document.createElement("tr");
        row.setAttribute("data-testid", "recent-event");
        cell(row, event.received_at.slice(11, 19), "nowrap");
        var type = cell(row, event.label || event.event, "nowrap");
        var dot = document.createElement("span");
        dot.className = "dot ev-" + String(event.event).replace(/[^a-z_]/g, "");
        type.insertBefore(dot, type.firstChild);
        cell(row, event.page, "text");
        var who = cell(row, event.token, "mono small nowrap");
        if (event.ephemeral) {
          var tag = document.createElement("span");
          tag.className = "tag";
          tag.textContent = "ephemeral";
          who.appendChild(document.createTextNode(" "));
          who.appendChild(tag);
        }
        body.appendChild(row);
      });
    }

    function refusalText(refusal) {
      var text = document.createElement("span");
      var calls = refusal.count.toLocaleString("en-US") + (refusal.count === 1 ? " call" : " calls");
      text.appendChild(document.createTextNode("Refused " + calls + " from "));
      var code = document.createElement("code");
      code.textContent = refusal.origin;
      text.appendChild(code);
      text.appendChild(document.createTextNode(" (last " + refusal.last_at.slice(11, 19) + " UTC)" +
        (refusal.allowable ? ": allow this origin?" : ": calls without an Origin header are refused.")));
      return text;
    }

    function refusalForm(refusal) {
      // The same form as the page renders: it allows its origin through the settings' rules,
      // with the page's CSRF token.
      var form = document.createElement("form");
      form.method = "post";
      form.action = refusals.getAttribute("data-action");
      form.className = "alert warning small refusal";
      form.setAttribute("data-testid", "refusal");
      [[refusals.getAttribute("data-csrf-field"), refusals.getAttribute("data-csrf")],
       ["origin", refusal.origin]].forEach(function (pair) {
        var input = document.createElement("input");
        input.type = "hidden";
        input.name = pair[0];
        input.value = pair[1];
        form.appendChild(input);
      });
      form.appendChild(refusalText(refusal));
      if (refusal.allowable) {
        var button = document.createElement("button");
        button.type = "submit";
        button.className = "button small-button";
        button.setAttribute("data-testid", "allow-origin");
        button.textContent = "Allow " + refusal.origin;
        form.appendChild(button);
      }
      return form;
    }

    function renderRefusals(refused) {
      // Forms already shown stay in place and only their counts change, so an Allow button
      // being clicked is never swapped out by the next poll.
      var shown = {};
      Array.prototype.forEach.call(refusals.querySelectorAll("form"), function (form) {
        var origin = form.querySelector("input[name=origin]");
        if (origin) { shown[origin.value] = form; }
      });
      var wanted = {};
      refused.forEach(function (refusal) {
        wanted[refusal.origin] = true;
        var form = shown[refusal.origin];
        if (form) {
          form.replaceChild(refusalText(refusal), form.querySelector("span"));
        } else {
          refusals.appendChild(refusalForm(refusal));
        }
      });
      Object.keys(shown).forEach(function (origin) {
        if (!wanted[origin]) { refusals.removeChild(shown[origin]); }
      });
      refusals.hidden = !refused.length;
    }

    function schedule() {
      var delay = Date.now() - started < 600000 ? 2000 : 15000;
      window.setTimeout(poll, document.hidden ? Math.max(delay, 15000) : delay);
    }

    function poll() {
      fetch(url, { credentials: "same-origin", headers: { accept: "application/json" } })
        .then(function (answer) {
          if (answer.status === 401) {
            note.textContent = "Your session ended: reload the page to sign in again.";
            return null;
          }
          return answer.ok ? answer.json() : { retry: true };
        })
        .then(function (data) {
          if (data === null) { return; }
          if (data.events) { render(data.events); }
          if (refusals && data.refused) { renderRefusals(data.refused); }
          if (today && typeof data.events_today === "number") {
            today.textContent = data.events_today.toLocaleString("en-US");
          }
          schedule();
        }, schedule);
    }
    schedule();
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-snippet]").forEach(snippetBuilder);
    document.querySelectorAll("button[data-copy]").forEach(copyButton);
    document.querySelectorAll("[data-install-check]").forEach(installCheck);
    document.querySelectorAll("[data-chart]").forEach(draw);
    document.querySelectorAll("[data-range-form]").forEach(rangeForm);
    document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      select.addEventListener("change", function () { select.form.requestSubmit(); });
    });
    document.querySelectorAll("[data-confirm]").forEach(function (button) {
      button.addEventListener("click", function (event) {
        if (!window.confirm(button.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
  });
}());
