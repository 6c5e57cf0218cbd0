// One way for every page to follow work that is still running: the dashboard, lists and
// record pages. An element with `data-follow="<seconds>"` is fetched again from
// `data-follow-url` (or the page's own address) and replaced in place, without a reload
// and without any request leaving the console. When the fresh copy no longer carries
// `data-follow` (the work ended), following stops. A page whose server says
// `<meta name="opsconsole-follow" content="<seconds>">` follows its `#content` that way.
//
// It waits while the tab is hidden, while someone is typing in the element, has changed
// a field in it or ticked a row: nobody's unsaved input is ever replaced. Keyboard focus
// stays where it was; after each replacement an `opsconsole:replaced` event lets the
// page's scripts (list labels, Django's actions) set up the new part.
(function () {
  "use strict";
  if (!window.fetch || !window.DOMParser) return;
  const status = document.getElementById("follow-status");
  const meta = document.querySelector('meta[name="opsconsole-follow"]');
  const content = document.getElementById("content");
  if (meta && content) content.dataset.follow = meta.content;
  // Back on the tab: catch up at once rather than at the next tick (one entry per slot).
  const followed = new Map();

  function say(text, bad) {
    if (!status) return;
    status.textContent = text;
    status.classList.toggle("state-bad", !!bad);
  }

  function busy(element) {
    if (element.dataset.dirty) return "you have unsaved changes here";
    const active = document.activeElement;
    if (active && element.contains(active) && active.matches("input, textarea, select")) {
      return "you are typing";
    }
    if (element.querySelector("input.action-select:checked, #action-toggle:checked")) {
      return "rows are ticked";
    }
    return "";
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

  // The focused link or button, found again in the new copy by what identifies it.
  function focusKey(element) {
    const active = document.activeElement;
    if (!active || active === document.body || !element.contains(active)) return null;
    if (active.id) return "#" + CSS.escape(active.id);
    const href = active.getAttribute("href");
    if (href) return active.tagName.toLowerCase() + '[href="' + CSS.escape(href) + '"]';
    const action = active.form && active.form.getAttribute("action");
    if (action) return 'form[action="' + CSS.escape(action) + '"] ' + active.tagName.toLowerCase();
    return null;
  }

  function follow(element) {
    const every = (parseFloat(element.dataset.follow) || 15) * 1000;
    element.addEventListener("input", function () {
      element.dataset.dirty = "1";
    });
    let timer = setTimeout(tick, every);

    async function tick() {
      if (!element.isConnected) return;
      const waiting = document.hidden ? "hidden" : busy(element);
      if (waiting) {
        if (waiting !== "hidden") say("Paused: " + waiting + ". Reload to catch up.");
        timer = setTimeout(tick, every);
        return;
      }
      try {
        const response = await fetch(element.dataset.followUrl || window.location.href, {
          headers: { "X-Opsconsole-Follow": "1" },
          credentials: "same-origin",
          cache: "no-store",
        });
        if (response.redirected) {
          // Signed out: asking again every few seconds would only fetch the login page.
          say("Not updated: signed out. Reload to sign in again.", true);
          followed.delete(element);
          return;
        }
        if (!response.ok) {
          say("Not updated: " + response.status, true);
          timer = setTimeout(tick, every);
          return;
        }
        const html = await response.text();
        if (busy(element)) {
          timer = setTimeout(tick, every);
          return;
        }
        const key = focusKey(element);
        const replacement = fresh(element, html);
        element.replaceWith(replacement);
        followed.delete(element);
        if (key) {
          const again = replacement.querySelector(key);
          if (again) again.focus({ preventScroll: true });
        }
        document.dispatchEvent(new CustomEvent("opsconsole:replaced", { detail: replacement }));
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

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) return;
    followed.forEach(function (now, element) {
      if (!element.isConnected) followed.delete(element);
      else if (!busy(element)) now();
    });
  });
  // Django's list actions (select all, the counter) bind once on load: bind the new rows.
  document.addEventListener("opsconsole:replaced", function (event) {
    const boxes = event.detail.querySelectorAll("tr input.action-select");
    if (boxes.length && typeof window.Actions === "function") window.Actions(boxes);
  });
  document.querySelectorAll("[data-follow]").forEach(follow);
})();
