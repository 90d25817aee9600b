// The operations page: the top property values, counted apart so the charts need not wait.
// The server renders the list (escaped); it is swapped in as parsed nodes, never as a string.
"use strict";

(function () {
  const box = document.getElementById("top-values");
  if (!box || !box.dataset.url) return;
  relaylog
    .part(box.dataset.url)
    .then(({ doc }) => {
      const found = doc.getElementById("top-values");
      if (found) box.replaceWith(document.importNode(found, true));
    })
    .catch((error) => {
      const state = document.getElementById("values-state");
      if (state) state.textContent = String(error.message || error);
    });
})();
