// The datasets page: deleting a dataset through the JSON API (its requests stay logged).
"use strict";

(function () {
  const table = document.getElementById("datasets");
  if (!table) return;
  table.addEventListener("click", async (event) => {
    const button = event.target.closest("button.delete-dataset");
    if (!button) return;
    const name = button.dataset.name;
    if (!window.confirm("Delete the dataset " + name + "? Its requests stay logged.")) return;
    try {
      await relaylog.api("POST", "/v1/helicone-dataset/" + encodeURIComponent(button.dataset.id) + "/delete", {});
      button.closest("tr").remove();
      relaylog.notice("Deleted the dataset " + name + ".");
    } catch (error) {
      relaylog.notice("Dataset " + name + ": " + String(error.message || error), true);
    }
  });
})();
