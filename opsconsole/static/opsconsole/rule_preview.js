// The alert rule page: "Preview (not saved)" evaluates the form as it stands.
(function () {
  const button = document.getElementById("rule-preview-button");
  const out = document.getElementById("rule-preview");
  function show(html) { out.innerHTML = html; }
  function esc(s) { return String(s).replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c])); }
  button.addEventListener("click", async function () {
    const form = document.getElementById("alertrule_form");
    const data = new FormData(form);
    data.set("_rule_id", button.dataset.ruleId);
    show("<p>Evaluating…</p>");
    const response = await fetch(button.dataset.url, {method: "POST", body: data, credentials: "same-origin"});
    const body = await response.json();
    if (!body.ok) {
      const items = Object.entries(body.errors || {}).map(([f, errs]) => `<li><strong>${esc(f)}</strong>: ${esc(errs.join(" "))}</li>`);
      show(`<p class="errornote">Fix these first:</p><ul class="errorlist">${items.join("")}</ul>`);
      return;
    }
    const rows = body.now.map(s => `<tr><td>${esc(JSON.stringify(s.labels))}</td><td>${esc(s.value)}</td><td>${s.breaching ? "breaching" : "ok"}</td></tr>`);
    show(`<h2>Preview</h2>
      <p id="preview-now">Now: ${body.now.length ? "" : "no data"}</p>
      ${rows.length ? `<table><thead><tr><th>Labels</th><th>Value</th><th>Condition</th></tr></thead><tbody>${rows.join("")}</tbody></table>` : ""}
      <p id="preview-backtest">Would have fired <strong>${body.backtest.firings}</strong> time(s) in the last ${body.backtest.days} days (${body.backtest.series} series, evaluated every ${body.backtest.step_seconds} s).</p>`);
  });
})();
