// The verdict page's confirmation card: the "other generator" name box shows only while "Other generator (name
// it)" is chosen. Without JavaScript the box is always there, and the server reads it only for that choice.
(function () {
  "use strict";
  var select = document.querySelector("select[data-other-value]");
  var field = select && document.getElementById(select.dataset.otherTarget);
  if (!field) { return; }
  var input = field.querySelector("input");

  function update() {
    var other = select.value === select.dataset.otherValue;
    field.hidden = !other;
    if (input) { input.disabled = !other; }
  }

  select.addEventListener("change", function () {
    update();
    if (!field.hidden && input) { input.focus(); }
  });
  update();
})();
