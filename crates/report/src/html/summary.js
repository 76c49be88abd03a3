// gbdfl summary report: the page is static; this only fills in the self-check.
(function () {
  'use strict';
  var sc = document.getElementById('selfcheck');
  sc.dataset.violations = String(window.gbdflViolations.length);
  sc.dataset.resources = String(performance.getEntriesByType('resource').length);
  sc.dataset.firstScreenMs = String(Math.round(performance.now()));
  sc.dataset.ready = '1';
})();
