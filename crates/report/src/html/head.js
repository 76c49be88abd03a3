// gbdfl report: records every Content-Security-Policy violation for the self-check.
(function () {
  'use strict';
  var seen = [];
  document.addEventListener('securitypolicyviolation', function (e) {
    seen.push(e.violatedDirective + ' ' + e.blockedURI);
  });
  window.gbdflViolations = seen;
})();
