// The set-password checklist (templates/password_form.html): while the user
// types, each rule the password meets is marked. A help only: the server
// checks every rule on submit (src/auth/policy.rs), with or without this.
// The character classes are those of the policy, after NFKC normalisation.
(function () {
  "use strict";
  var input = document.getElementById("password");
  var list = document.getElementById("password-rules");
  if (!input || !list) return;
  var tests = {
    length: function (p) { return Array.from(p).length >= 8; },
    upper: function (p) { return /\p{Lu}/u.test(p); },
    lower: function (p) { return /\p{Ll}/u.test(p); },
    digit: function (p) { return /\p{N}/u.test(p); },
    special: function (p) { return /[\p{P}\p{S}]/u.test(p); }
  };
  function update() {
    var typed = input.value.normalize("NFKC");
    list.querySelectorAll("li[data-rule]").forEach(function (item) {
      var test = tests[item.getAttribute("data-rule")];
      if (!test) return;
      var met = test(typed);
      item.classList.toggle("coop-rule--met", met);
      item.querySelector(".coop-rule-state").textContent =
        met ? list.getAttribute("data-met") : list.getAttribute("data-unmet");
    });
  }
  input.addEventListener("input", update);
  update();
})();
