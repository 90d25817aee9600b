// The filter bar (templates/_filters.html) on any view: the custom time range, another score or
// property condition, and a URL without empty fields, so a shared link says only what it filters.
"use strict";

(function () {
  const form = document.getElementById("filter-form");
  if (!form) return;
  const since = document.getElementById("f-since");
  const custom = document.getElementById("f-custom");
  if (since && custom) {
    since.addEventListener("change", () => {
      custom.hidden = since.value !== "custom";
    });
  }
  form.addEventListener("click", (event) => {
    const button = event.target.closest(".add-field");
    if (!button) return;
    const group = button.closest(".repeat");
    const labels = group.querySelectorAll("label");
    const copy = labels[labels.length - 1].cloneNode(true);
    copy.querySelector("input").value = "";
    group.insertBefore(copy, button);
    copy.querySelector("input").focus();
  });
  form.addEventListener("submit", () => {
    for (const field of form.querySelectorAll("input, select")) {
      if (!field.value) field.disabled = true;
    }
  });
})();
