// Small behaviours shared by all pages (no inline scripts: the CSP allows only our files).
(function () {
  "use strict";
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
    var fallback = select.form.querySelector("noscript");
    if (fallback) fallback.remove();
  });
  // Close the user menu when clicking elsewhere.
  document.addEventListener("click", function (e) {
    document.querySelectorAll(".usermenu details[open]").forEach(function (d) {
      if (!d.contains(e.target)) d.removeAttribute("open");
    });
  });
})();
