// Refreshes the dashboard panels in place: no full reload, no external request.
// Pauses while the tab is hidden or someone is typing in a panel's form.
(function () {
  "use strict";
  const board = document.getElementById("dashboard");
  if (!board || !window.fetch) return;
  const every = (parseInt(board.dataset.refreshSeconds, 10) || 15) * 1000;
  const stamp = document.getElementById("dashboard-updated");

  async function refresh() {
    if (document.hidden || board.contains(document.activeElement)) return;
    try {
      const response = await fetch(board.dataset.refreshUrl, {
        headers: { "X-Requested-With": "fetch" },
        credentials: "same-origin",
        cache: "no-store",
      });
      if (response.redirected || !response.ok) {
        stamp.textContent = "Not updated: " + (response.redirected ? "logged out" : response.status);
        stamp.className = "state-bad";
        return;
      }
      board.innerHTML = await response.text();
      stamp.textContent = "Updated " + new Date().toLocaleTimeString();
      stamp.className = "";
    } catch (err) {
      stamp.textContent = "Not updated: the console is unreachable";
      stamp.className = "state-bad";
    }
  }
  setInterval(refresh, every);
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) refresh();
  });
})();
