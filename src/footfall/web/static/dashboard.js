/* Footfall dashboard: draws the Plotly figures the server embedded as JSON, and small
   form conveniences. No inline scripts (the pages' Content-Security-Policy forbids them). */
(function () {
  "use strict";
  var FONT = '-apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans", "Liberation Sans", sans-serif';
  var AXIS = { gridcolor: "#eef0f3", linecolor: "#d5dae0", zeroline: false, separatethousands: true, automargin: true };
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
      var dates = form.querySelectorAll("input[type=date]");
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

  document.addEventListener("DOMContentLoaded", function () {
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
