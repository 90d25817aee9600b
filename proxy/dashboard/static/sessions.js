// A session's page: rating the whole session through POST /v1/session/{id}/feedback.
"use strict";

(function () {
  const box = document.getElementById("session-feedback");
  if (!box) return;
  const state = document.getElementById("session-feedback-state");
  box.addEventListener("click", async (event) => {
    const button = event.target.closest("button.rate");
    if (!button) return;
    const rating = button.dataset.rating === "true";
    const path = "/v1/session/" + encodeURIComponent(box.dataset.session) + "/feedback";
    try {
      await relaylog.api("POST", path, { rating: rating });
      for (const other of box.querySelectorAll("button.rate")) {
        other.setAttribute("aria-pressed", String(other === button));
      }
      state.textContent = "rated " + (rating ? "up" : "down") + " just now";
      relaylog.notice("");
    } catch (error) {
      relaylog.notice("Session feedback: " + String(error.message || error), true);
    }
  });
})();
