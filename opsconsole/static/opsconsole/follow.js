// One way for every page to follow work that is still running: the dashboard, lists and
// record pages. An element with `data-follow="<seconds>"` is fetched again from
// `data-follow-url` (or the page's own address) and replaced in place, without a reload
// and without any request leaving the console. When the fresh copy no longer carries
// `data-follow` (the work ended), following stops. A page whose server says
// `<meta name="opsconsole-follow" content="<seconds>">` follows its `#content` that way.
//
// It waits while the tab is hidden, while someone is typing in the element, has changed
// a field in it or ticked a row: nobody's unsaved input is ever replaced.
(function () {
  "use strict";
  if (!window.fetch || !window.DOMParser) return;
  const status = document.getElementById("follow-status");
  const meta = document.querySelector('meta[name="opsconsole-follow"]');
  const content = document.getElementById("content");
  if (meta && content) content.dataset.follow = meta.content;

  function say(text, bad) {
    if (!status) return;
    status.textContent = text;
    status.classList.toggle("state-bad", !!bad);
  }

  function busy(element) {
    if (element.dataset.dirty) return true;
    const active = document.activeElement;
    if (active && element.contains(active) && active.matches("input, textarea, select")) {
      return true;
    }
    return !!element.querySelector("input.action-select:checked, #action-toggle:checked");
  }

  function watchInput(element) {
    element.addEventListener("input", function () {
      element.dataset.dirty = "1";
    });
  }

  function fresh(element, html) {
    const doc = new DOMParser().parseFromString(html, "text/html");
    const found = element.id && doc.getElementById(element.id);
    if (!found) {
      // A fragment (the dashboard's panels): it is the element's new inside.
      const copy = element.cloneNode(false);
      copy.innerHTML = doc.body.innerHTML;
      return copy;
    }
    const again = doc.querySelector('meta[name="opsconsole-follow"]');
    if (element.id === "content" && again) found.dataset.follow = again.content;
    return document.importNode(found, true);
  }

  function follow(element) {
    const every = (parseFloat(element.dataset.follow) || 15) * 1000;
    watchInput(element);
    let timer = setTimeout(tick, every);

    async function tick() {
      if (!element.isConnected) return;
      if (document.hidden || busy(element)) {
        timer = setTimeout(tick, every);
        return;
      }
      try {
        const response = await fetch(element.dataset.followUrl || window.location.href, {
          headers: { "X-Opsconsole-Follow": "1" },
          credentials: "same-origin",
          cache: "no-store",
        });
        if (response.redirected || !response.ok) {
          say("Not updated: " + (response.redirected ? "signed out" : response.status), true);
          timer = setTimeout(tick, every);
          return;
        }
        const html = await response.text();
        if (busy(element)) {
          timer = setTimeout(tick, every);
          return;
        }
        const replacement = fresh(element, html);
        element.replaceWith(replacement);
        const time = new Date().toLocaleTimeString();
        if (replacement.dataset.follow) {
          say("Live · updated " + time);
          follow(replacement);
        } else {
          say("Finished · updated " + time);
        }
      } catch (err) {
        say("Not updated: the console is unreachable", true);
        timer = setTimeout(tick, every);
      }
    }
    followed.set(element, function () {
      clearTimeout(timer);
      tick();
    });
  }

  // Back on the tab: catch up at once rather than at the next tick.
  const followed = new Map();
  document.addEventListener("visibilitychange", function () {
    if (document.hidden) return;
    followed.forEach(function (now, element) {
      if (!element.isConnected) followed.delete(element);
      else if (!busy(element)) now();
    });
  });
  document.querySelectorAll("[data-follow]").forEach(follow);
})();
