// The Billing tab's only script, and it is optional: without it every dialog is a page of its own.
// With it, a link marked data-dialog opens that dialog on the tab (a native <dialog>: focus moves
// into it, Escape closes it, focus returns to the link), and the custom date is asked for only
// when On custom date is chosen.
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    var opener = event.target.closest("a[data-dialog]");
    if (!opener) return;
    var dialog = document.getElementById(opener.getAttribute("data-dialog"));
    if (!dialog || typeof dialog.showModal !== "function") return;  // the link's page does the job
    event.preventDefault();
    dialog.showModal();
  });
  function syncDate(form) {
    var custom = form.querySelector("input[name=when][value=custom_date]");
    var date = form.querySelector("input[name=date]");
    if (!custom || !date) return;
    date.disabled = !custom.checked;
    date.required = custom.checked;
  }
  document.addEventListener("change", function (event) {
    if (event.target.name === "when") syncDate(event.target.form);
  });
  document.querySelectorAll("form[data-plan-change]").forEach(syncDate);
  // A form's confirmation is shown once: reloading the tab should not say it again.
  var url = new URL(window.location.href);
  if (url.searchParams.has("done")) {
    url.searchParams.delete("done");
    window.history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
})();
