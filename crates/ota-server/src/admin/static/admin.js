// Upload progress for the admin's file forms: a progressive enhancement.
// Without it the form posts as usual; with it the same request goes
// through XMLHttpRequest so the <progress> bar can follow the bytes.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("form.upload").forEach(function (form) {
    form.addEventListener("submit", function (ev) {
      var bar = form.querySelector("progress");
      if (!bar || !window.XMLHttpRequest || !window.FormData) { return; }
      ev.preventDefault();
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.action);
      bar.hidden = false;
      xhr.upload.addEventListener("progress", function (e) {
        if (e.lengthComputable) { bar.value = Math.round(100 * e.loaded / e.total); }
      });
      xhr.addEventListener("load", function () {
        // The server answers with the page to show (a redirect is followed).
        document.open();
        document.write(xhr.responseText);
        document.close();
        if (xhr.responseURL) { history.replaceState(null, "", xhr.responseURL); }
      });
      xhr.addEventListener("error", function () { bar.hidden = true; form.submit(); });
      xhr.send(new FormData(form));
    });
  });
});
