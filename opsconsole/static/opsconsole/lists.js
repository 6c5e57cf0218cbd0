// On a phone lists and inline tables stack each row into a card (console.css); each cell is
// labelled with its column's header so the card still reads "Status: Failed". Run on load
// and again on whatever a followed page puts in place (follow.js).
(function () {
  "use strict";
  function label(root) {
    root.querySelectorAll("#result_list, .inline-group .tabular table").forEach(function (table) {
      const headers = Array.from(table.querySelectorAll("thead th")).map(function (th) {
        return th.textContent.trim();
      });
      table.querySelectorAll("tbody tr").forEach(function (row) {
        Array.from(row.children).forEach(function (cell, i) {
          if (!headers[i] || cell.classList.contains("action-checkbox")) return;
          cell.dataset.label = headers[i];
          // A field in a table row is named by its column (Django's inline tables give
          // it no label of its own).
          cell.querySelectorAll("input:not([type=hidden]), select, textarea").forEach(function (field) {
            if (!field.labels.length && !field.getAttribute("aria-label")) {
              field.setAttribute("aria-label", headers[i]);
            }
          });
        });
      });
    });
  }
  label(document);
  document.addEventListener("opsconsole:replaced", function (event) {
    label(event.detail);
  });
})();
