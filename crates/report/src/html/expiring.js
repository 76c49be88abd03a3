// gbdfl expiring report: the table of rows, paginated, sortable and
// filterable, built from the JSON data block with textContent only (never
// markup). The charts are drawn by gbdfl over all rows; this script checks
// them against the data and writes the result into #selfcheck.
(function () {
  'use strict';
  var t0 = performance.now();
  var M = JSON.parse(document.getElementById('meta').textContent);
  var dataBlock = document.getElementById('data');
  var D = JSON.parse(dataBlock.textContent);
  // At a million people the block is ~90 MB of text: once parsed, the DOM
  // need not keep it (memory, and Chromium's --dump-dom stays quick).
  dataBlock.textContent = '';
  var L = M.labels;
  var N = D.n;
  var DAY = 86400000;
  var asOf = Date.parse(M.as_of + 'T00:00:00Z');

  function expiry(i) {
    var d = D.days[i];
    return d === null ? '' : new Date(asOf + d * DAY).toISOString().slice(0, 10);
  }
  function fetched(i) {
    return new Date(D.fetched[i] * 1000).toISOString().slice(0, 19) + 'Z';
  }
  function reasons(i) {
    var out = [];
    for (var b = 0; b < L.reasons.length; b++) {
      if (D.reasons[i] & (1 << b)) out.push(L.reasons[b]);
    }
    return out.join(', ');
  }
  // The text of column c of row i, as shown.
  function cell(i, c) {
    switch (c) {
      case 0: return D.iin[i];
      case 1: return D.name[i];
      case 2: return D.types[D.type[i]];
      case 3: return D.number[i];
      case 4: return expiry(i);
      case 5: return D.days[i] === null ? '' : String(D.days[i]);
      case 6: return D.statuses[D.status[i]];
      case 7: return D.lifes[D.life[i]];
      case 8: return fetched(i);
      case 9: return reasons(i);
      default: return D.notes[D.note[i]];
    }
  }

  var order = null; // row numbers in the chosen order; null: as written
  var view = null;  // rows passing the filter, in order
  var page = 0;
  var sortCol = -1, sortDir = 1;
  var search = null; // lower-case text of each row, built on first filter

  function applyFilter() {
    var q = document.getElementById('q').value.trim().toLowerCase();
    var bit = Number(document.getElementById('reason').value);
    var src = order;
    var n = src ? src.length : N;
    if (!q && bit < 0) {
      view = src;
    } else {
      if (q && !search) {
        search = new Array(N);
        for (var i = 0; i < N; i++) {
          search[i] = (D.iin[i] + '\u0001' + D.name[i] + '\u0001' + D.types[D.type[i]] + '\u0001' +
            D.number[i] + '\u0001' + D.statuses[D.status[i]] + '\u0001' + D.lifes[D.life[i]] +
            '\u0001' + D.notes[D.note[i]]).toLowerCase();
        }
      }
      view = [];
      for (var k = 0; k < n; k++) {
        var r = src ? src[k] : k;
        if (bit >= 0 && !(D.reasons[r] & (1 << bit))) continue;
        if (q && search[r].indexOf(q) < 0) continue;
        view.push(r);
      }
    }
    page = 0;
    render();
  }

  function sortBy(c) {
    sortDir = sortCol === c ? -sortDir : 1;
    sortCol = c;
    var rows = new Array(N);
    for (var i = 0; i < N; i++) rows[i] = i;
    var key;
    if (c === 4 || c === 5) {
      key = D.days; // the same order for the date and the days left
    } else if (c === 8) {
      key = D.fetched;
    } else if (c === 9) {
      key = D.reasons;
    } else {
      key = new Array(N);
      for (var j = 0; j < N; j++) key[j] = cell(j, c);
    }
    var coll = new Intl.Collator(M.lang, { numeric: true });
    rows.sort(function (a, b) {
      var x = key[a], y = key[b];
      if (x === y) return a - b;
      if (x === null) return 1; // no value: last either way
      if (y === null) return -1;
      var d = typeof x === 'number' ? x - y : coll.compare(x, y);
      return d === 0 ? a - b : d * sortDir;
    });
    order = rows;
    var ths = document.querySelectorAll('#rows-table th');
    for (var t = 0; t < ths.length; t++) {
      ths[t].setAttribute('aria-sort', t === c ? (sortDir > 0 ? 'ascending' : 'descending') : 'none');
    }
    applyFilter();
  }

  function render() {
    var size = Number(document.getElementById('size').value);
    var total = view ? view.length : N;
    var pages = Math.max(1, Math.ceil(total / size));
    page = Math.min(Math.max(page, 0), pages - 1);
    var body = document.createDocumentFragment();
    var from = page * size, to = Math.min(total, from + size);
    for (var k = from; k < to; k++) {
      var r = view ? view[k] : k;
      var tr = document.createElement('tr');
      var bits = D.reasons[r], days = D.days[r];
      if (bits & 1) tr.className = 'expired';
      else if (days !== null && days <= M.urgent_days) tr.className = 'soon';
      for (var c = 0; c < 11; c++) {
        var td = document.createElement('td');
        td.textContent = cell(r, c);
        if (c === 5) td.className = 'num';
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
    if (total === 0) {
      var tr0 = document.createElement('tr');
      var td0 = document.createElement('td');
      td0.colSpan = 11;
      td0.textContent = L.no_rows;
      tr0.appendChild(td0);
      body.appendChild(tr0);
    }
    var tbody = document.getElementById('tbody');
    tbody.replaceChildren(body);
    document.getElementById('pageinfo').textContent = L.page_of
      .replace('{page}', String(page + 1)).replace('{pages}', String(pages))
      .replace('{rows}', total.toLocaleString(M.lang));
    document.getElementById('prev').disabled = page === 0;
    document.getElementById('next').disabled = page >= pages - 1;
  }

  // The charts' counts, recomputed here from every row of the data.
  function chartsAgree() {
    var nb = M.buckets, weeks = [];
    for (var b = 0; b < nb; b++) weeks.push([0, 0, 0, 0, 0]);
    var types = {};
    for (var i = 0; i < N; i++) {
      var d = D.days[i], bits = D.reasons[i];
      var bucket = d === null || d > M.within_days ? nb - 1 : d < 0 ? 0 : 1 + Math.floor(d / M.step_days);
      var s = bits & 1 ? 0 : bits & 2 ? 1 : bits & 4 ? 2 : bits & 8 ? 3 : 4;
      weeks[bucket][s]++;
      var t = D.type[i];
      types[t] = (types[t] || 0) + 1;
    }
    var keys = ['expired', 'expires_soon', 'document_not_valid', 'life_status_not_normal', 'other'];
    var drawn = document.querySelectorAll('rect[data-chart="weeks"]');
    var sum = 0;
    for (var k = 0; k < drawn.length; k++) {
      var e = drawn[k];
      var want = weeks[Number(e.dataset.c)][keys.indexOf(e.dataset.s)];
      if (Number(e.dataset.n) !== want) return false;
      sum += want;
    }
    if (sum !== N) return false;
    var counts = Object.keys(types).map(function (t) { return types[t]; });
    counts.sort(function (a, b) { return b - a; });
    var bars = document.querySelectorAll('g[data-chart="types"]');
    var tsum = 0;
    for (var j = 0; j < bars.length; j++) tsum += Number(bars[j].dataset.n);
    if (tsum !== N) return false;
    // The chart lists the largest types; the rest share its last bar.
    var whole = bars.length === counts.length ? bars.length : bars.length - 1;
    for (var m = 0; m < whole; m++) {
      if (Number(bars[m].dataset.n) !== counts[m]) return false;
    }
    return true;
  }

  var heads = document.querySelectorAll('#rows-table th button');
  for (var h = 0; h < heads.length; h++) {
    heads[h].addEventListener('click', function (e) { sortBy(Number(e.currentTarget.dataset.col)); });
  }
  var timer = 0;
  document.getElementById('q').addEventListener('input', function () {
    clearTimeout(timer);
    timer = setTimeout(applyFilter, 200);
  });
  document.getElementById('reason').addEventListener('change', applyFilter);
  document.getElementById('size').addEventListener('change', function () { page = 0; render(); });
  document.getElementById('prev').addEventListener('click', function () { page--; render(); });
  document.getElementById('next').addEventListener('click', function () { page++; render(); });
  document.getElementById('controls').hidden = false;

  render();
  var firstScreen = performance.now();
  var sc = document.getElementById('selfcheck');
  sc.dataset.rows = String(N);
  sc.dataset.charts = chartsAgree() ? 'agree' : 'differ';
  sc.dataset.violations = String(window.gbdflViolations.length);
  sc.dataset.resources = String(performance.getEntriesByType('resource').length);
  sc.dataset.scriptMs = String(Math.round(firstScreen - t0));
  sc.dataset.firstScreenMs = String(Math.round(firstScreen));
  sc.dataset.ready = '1';
})();
