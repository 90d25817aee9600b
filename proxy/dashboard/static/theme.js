// Runs in <head> before the page paints: apply the theme chosen with the toggle, if any.
"use strict";
(function () {
  try {
    var theme = localStorage.getItem("relaylog-theme");
    if (theme === "light" || theme === "dark") {
      document.documentElement.dataset.theme = theme;
    }
  } catch (e) {
    // Storage refused (private mode): follow prefers-color-scheme.
  }
})();
