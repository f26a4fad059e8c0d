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
        if (xhr.status < 400 && xhr.responseURL) {
          // Stored: the server redirected to the page to show; go there.
          window.location.assign(xhr.responseURL);
          return;
        }
        // Refused: show the reason as text (never the answer as markup).
        bar.hidden = true;
        var page = new DOMParser().parseFromString(xhr.responseText, "text/html");
        var main = page.querySelector("main");
        var note = form.querySelector("p.upload-error") || document.createElement("p");
        note.className = "upload-error error";
        note.setAttribute("role", "alert");
        note.textContent = "Refused (" + xhr.status + "): " +
          (main ? main.textContent : xhr.statusText).trim();
        form.appendChild(note);
      });
      xhr.addEventListener("error", function () { bar.hidden = true; form.submit(); });
      xhr.send(new FormData(form));
    });
  });
});
