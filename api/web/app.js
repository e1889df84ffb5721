// The quotes web page (SPEC §13): the instrument list (paged, searched and sorted by the
// server: GET /instruments?q=&sort=&limit=&offset=), a candlestick chart of the selected
// instrument with its quote counts (GET /instruments/{isin}/candles, polled while it shows
// the latest minutes) and the hot alerts (GET /hot as Server-Sent Events; EventSource
// reconnects by itself and resumes with Last-Event-ID). Plain JavaScript, no build step.
// Partner strings are only ever set with textContent.
//
// URL parameters: ?poll=MS (refresh interval, default 2000), ?limit=N (rows per page,
// default 50). #ISIN selects an instrument.
'use strict';

(function () {
  const params = new URLSearchParams(location.search);
  const POLL = Math.max(100, Number(params.get('poll')) || 2000);
  const PAGE = Math.min(1000, Math.max(1, Number(params.get('limit')) || 50));
  const MAX_ALERTS = 200;
  const $ = (id) => document.getElementById(id);

  const state = {
    q: '', sort: 'isin', offset: 0, total: 0, rows: [],
    selected: null, range: '30m', from: '', to: '',
    alerts: [], lastAlertId: 0,
  };

  // window.quotesDebug is read by the browser tests (api/web_test.go) and the bench.
  const debug = window.quotesDebug = {
    list: null,          // {q, sort, offset, total, version} of the rendered list
    listVersion: 0,      // renders of the list so far
    firstPaint: null,    // ms after navigation start of the first list render
    lastSearchMs: null,  // ms from a keystroke in the search box to its list render
    chartVersion: 0,     // candle loads applied so far
    chartIsin: null,     // the instrument the chart shows
    hotOpen: false,      // the /hot event stream is open
    hotErrors: 0,        // errors (lost connections) of the stream so far
    cspViolations: [],
    rows: () => state.rows,
    candles: () => (candleSeries ? candleSeries.data() : []),
    counts: () => (countSeries ? countSeries.data() : []),
    alerts: () => state.alerts,
  };
  document.addEventListener('securitypolicyviolation', (e) => {
    debug.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI);
  });

  // The API's bearer token, off loopback: open the page as /?access_token=TOKEN once; it
  // is kept for the tab (sessionStorage) and sent with every request.
  const token = new URLSearchParams(location.search).get('access_token') || sessionStorage.getItem('quotesToken') || '';
  if (token) sessionStorage.setItem('quotesToken', token);

  // getJSON fetches url as JSON; it throws an Error with the API's message on failure.
  async function getJSON(url, signal) {
    const headers = { Accept: 'application/json' };
    if (token) headers.Authorization = 'Bearer ' + token;
    const r = await fetch(url, { headers, signal });
    const body = await r.json().catch(() => null);
    if (!r.ok) {
      const err = new Error((body && body.error) || r.status + ' ' + r.statusText);
      err.status = r.status;
      throw err;
    }
    return { body, headers: r.headers };
  }

  // fmtPrice prints a price with at least two decimals (prices are exact JSON numbers of
  // at most six decimals, which JavaScript prints back unchanged).
  function fmtPrice(p) {
    if (p === null || p === undefined) return '—';
    let s = String(p);
    const dot = s.indexOf('.');
    if (dot < 0) s += '.00';
    else if (s.length - dot === 2) s += '0';
    return s;
  }

  function fmtChange(c) {
    if (c === null || c === undefined) return '';
    return (c > 0 ? '+' : '') + c.toFixed(2) + ' %';
  }

  function changeClass(c) {
    return c > 0 ? 'up' : c < 0 ? 'down' : '';
  }

  function cell(tr, text, cls) {
    const td = document.createElement('td');
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  // ---- the instrument list ----

  let listCtl = null;
  let listTimer = 0;
  let searchStarted = 0;

  async function loadList() {
    clearTimeout(listTimer);
    if (listCtl) listCtl.abort();
    const ctl = (listCtl = new AbortController());
    const u = new URLSearchParams({ limit: PAGE, offset: state.offset, sort: state.sort });
    if (state.q) u.set('q', state.q);
    try {
      const { body, headers } = await getJSON('/instruments?' + u, ctl.signal);
      state.total = Number(headers.get('X-Total-Count')) || 0;
      if (state.offset > 0 && state.offset >= state.total) {
        state.offset = Math.max(0, Math.floor((state.total - 1) / PAGE) * PAGE);
        return loadList();
      }
      state.rows = body;
      renderList();
      if (!state.selected && !location.hash && body.length) select(body[0].isin);
      if (!alertsStarted) startAlerts();
    } catch (e) {
      if (e.name === 'AbortError') return;
      $('summary').textContent = 'instruments: ' + e.message;
    }
    if (ctl === listCtl) listTimer = setTimeout(loadList, POLL);
  }

  function renderList() {
    const tbody = $('rows');
    const trs = tbody.children;
    const same = trs.length === state.rows.length &&
      state.rows.every((r, i) => trs[i].dataset.isin === r.isin && trs[i].cells[1].textContent === r.description);
    if (same) { // a refresh of the same rows: update the prices in place
      state.rows.forEach((r, i) => {
        const cs = trs[i].cells;
        cs[2].textContent = fmtPrice(r.price);
        cs[3].textContent = fmtChange(r.changePercent);
        cs[3].className = 'num change ' + changeClass(r.changePercent);
      });
    } else {
      const frag = document.createDocumentFragment();
      for (const r of state.rows) {
        const tr = document.createElement('tr');
        tr.dataset.isin = r.isin;
        if (r.isin === state.selected) tr.className = 'selected';
        cell(tr, r.isin, 'isin');
        cell(tr, r.description, 'desc').title = r.description;
        cell(tr, fmtPrice(r.price), 'num price');
        cell(tr, fmtChange(r.changePercent), 'num change ' + changeClass(r.changePercent));
        frag.appendChild(tr);
      }
      tbody.replaceChildren(frag);
    }
    $('empty').classList.toggle('hidden', state.rows.length > 0);
    const first = state.total ? state.offset + 1 : 0;
    const last = state.offset + state.rows.length;
    $('range').textContent = first + '–' + last + ' of ' + state.total.toLocaleString('en-US');
    $('prev').disabled = state.offset === 0;
    $('next').disabled = last >= state.total;
    $('summary').textContent = state.q
      ? state.total.toLocaleString('en-US') + ' matching “' + state.q + '”'
      : state.total.toLocaleString('en-US') + ' instruments';
    for (const th of document.querySelectorAll('th[data-sort]')) {
      const k = th.dataset.sort;
      th.classList.toggle('asc', state.sort === k);
      th.classList.toggle('desc', state.sort === '-' + k);
    }
    debug.listVersion++;
    debug.list = { q: state.q, sort: state.sort, offset: state.offset, total: state.total, version: debug.listVersion };
    if (debug.firstPaint === null) debug.firstPaint = performance.now();
    if (searchStarted) {
      debug.lastSearchMs = performance.now() - searchStarted;
      searchStarted = 0;
    }
    const sel = state.rows.find((r) => r.isin === state.selected);
    if (sel) showSelected(sel);
  }

  let searchTimer = 0;
  $('search').addEventListener('input', () => {
    if (!searchStarted) searchStarted = performance.now();
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      state.q = $('search').value.trim();
      state.offset = 0;
      loadList();
    }, 80);
  });

  for (const th of document.querySelectorAll('th[data-sort]')) {
    th.addEventListener('click', () => {
      const k = th.dataset.sort;
      state.sort = state.sort === k ? '-' + k : k;
      state.offset = 0;
      loadList();
    });
  }
  $('prev').addEventListener('click', () => { state.offset = Math.max(0, state.offset - PAGE); loadList(); });
  $('next').addEventListener('click', () => { state.offset += PAGE; loadList(); });
  $('rows').addEventListener('click', (e) => {
    const tr = e.target.closest('tr');
    if (tr && tr.dataset.isin) select(tr.dataset.isin);
  });

  // ---- the chart ----

  let chart = null;
  let candleSeries = null;
  let countSeries = null;
  const UP = '#089981';
  const DOWN = '#f23645';

  function initChart() {
    const LC = window.LightweightCharts;
    chart = LC.createChart($('chart'), {
      autoSize: true,
      layout: { background: { color: '#ffffff' }, textColor: '#4a5160', fontSize: 12 },
      grid: { vertLines: { color: '#f0f3fa' }, horzLines: { color: '#f0f3fa' } },
      rightPriceScale: { borderColor: '#e3e6eb' },
      timeScale: { borderColor: '#e3e6eb', timeVisible: true, secondsVisible: false },
      crosshair: { mode: LC.CrosshairMode.Normal },
    });
    candleSeries = chart.addSeries(LC.CandlestickSeries, {
      upColor: UP, downColor: DOWN, borderVisible: false, wickUpColor: UP, wickDownColor: DOWN,
    });
    candleSeries.priceScale().applyOptions({ scaleMargins: { top: 0.08, bottom: 0.24 } });
    countSeries = chart.addSeries(LC.HistogramSeries, {
      priceFormat: { type: 'volume' }, priceScaleId: 'counts', lastValueVisible: false, priceLineVisible: false,
    });
    chart.priceScale('counts').applyOptions({ scaleMargins: { top: 0.84, bottom: 0 } });
  }

  function decimals(x) {
    const s = String(x);
    const dot = s.indexOf('.');
    return dot < 0 ? 0 : s.length - dot - 1;
  }

  function toBars(cs) {
    const bars = [];
    const counts = [];
    let prec = 2;
    for (const c of cs) {
      const time = Date.parse(c.openTimestamp) / 1000;
      bars.push({ time, open: c.openPrice, high: c.highPrice, low: c.lowPrice, close: c.closePrice });
      counts.push({ time, value: c.quotes, color: c.closePrice >= c.openPrice ? 'rgba(8,153,129,.45)' : 'rgba(242,54,69,.45)' });
      prec = Math.max(prec, decimals(c.openPrice), decimals(c.highPrice), decimals(c.lowPrice), decimals(c.closePrice));
    }
    return { bars, counts, prec: Math.min(prec, 6) };
  }

  function sameBar(a, b) {
    return a.time === b.time && a.open === b.open && a.high === b.high && a.low === b.low && a.close === b.close;
  }

  let precision = 0;

  // applyCandles shows cs: a new selection or range replaces the data; a refresh of the
  // live range updates the last bar and appends new ones (older bars that changed, e.g. a
  // late correction, replace the data too).
  function applyCandles(cs, reset) {
    const { bars, counts, prec } = toBars(cs);
    if (prec !== precision) {
      precision = prec;
      candleSeries.applyOptions({ priceFormat: { type: 'price', precision: prec, minMove: Math.pow(10, -prec) } });
    }
    const cur = candleSeries.data();
    if (!reset && cur.length && bars.length) {
      const lastT = cur[cur.length - 1].time;
      const k = bars.findIndex((b) => b.time >= lastT);
      let incremental = k >= 0 && bars[k].time === lastT;
      if (incremental) {
        // every overlapping bar before the last must be unchanged
        const byTime = new Map(cur.map((b) => [b.time, b]));
        for (let i = 0; i < k && incremental; i++) {
          const old = byTime.get(bars[i].time);
          if (old && !sameBar(old, bars[i])) incremental = false;
        }
      }
      if (incremental) {
        for (let i = k; i < bars.length; i++) {
          candleSeries.update(bars[i]);
          countSeries.update(counts[i]);
        }
        return bars;
      }
    }
    candleSeries.setData(bars);
    countSeries.setData(counts);
    if (reset) chart.timeScale().fitContent();
    return bars;
  }

  let chartCtl = null;
  let chartTimer = 0;

  function candlesURL(isin) {
    const base = '/instruments/' + encodeURIComponent(isin) + '/candles?';
    if (state.range !== 'custom') return base + 'last=' + state.range;
    return base + new URLSearchParams({ from: state.from + ':00Z', to: state.to + ':00Z' });
  }

  async function loadChart(reset) {
    clearTimeout(chartTimer);
    if (chartCtl) chartCtl.abort();
    const isin = state.selected;
    if (!isin || !chart) return;
    const ctl = (chartCtl = new AbortController());
    try {
      const { body } = await getJSON(candlesURL(isin), ctl.signal);
      if (ctl !== chartCtl) return;
      const bars = applyCandles(body, reset);
      debug.chartIsin = isin;
      debug.chartVersion++;
      $('chart-msg').textContent = bars.length ? '' : 'No quotes in this range.';
      if (bars.length) {
        const last = bars[bars.length - 1];
        $('sel-price').textContent = fmtPrice(last.close);
        if (reset && state.range !== 'custom') setCustomDefaults(last.time);
      }
    } catch (e) {
      if (e.name === 'AbortError') return;
      $('chart-msg').textContent = isin + ': ' + e.message;
      if (e.status === 404) {
        candleSeries.setData([]);
        countSeries.setData([]);
        debug.chartIsin = isin;
        debug.chartVersion++;
      }
    }
    if (ctl === chartCtl && state.range !== 'custom') chartTimer = setTimeout(() => loadChart(false), POLL);
  }

  function showSelected(r) {
    $('sel-desc').textContent = r.description;
    $('sel-price').textContent = fmtPrice(r.price);
    const ch = $('sel-change');
    ch.textContent = fmtChange(r.changePercent);
    ch.className = 'change ' + changeClass(r.changePercent);
  }

  async function select(isin) {
    if (state.selected === isin) return;
    state.selected = isin;
    if (location.hash !== '#' + isin) history.replaceState(null, '', '#' + isin);
    $('sel-isin').textContent = isin;
    $('sel-desc').textContent = '';
    $('sel-price').textContent = '';
    $('sel-change').textContent = '';
    for (const tr of $('rows').children) tr.classList.toggle('selected', tr.dataset.isin === isin);
    loadChart(true);
    const row = state.rows.find((r) => r.isin === isin);
    if (row) {
      showSelected(row);
      return;
    }
    try { // not on this page: look it up
      const { body } = await getJSON('/instruments?' + new URLSearchParams({ q: isin, limit: 1 }));
      if (state.selected === isin && body.length && body[0].isin === isin) showSelected(body[0]);
    } catch (e) { /* the chart shows the error */ }
  }

  // setCustomDefaults fills the from–to inputs with the hour before the latest candle.
  function setCustomDefaults(lastTime) {
    const iso = (t) => new Date(t * 1000).toISOString().slice(0, 16);
    $('to').value = iso(lastTime + 60);
    $('from').value = iso(lastTime - 3600 + 60);
  }

  $('range-pick').addEventListener('change', () => {
    const v = $('range-pick').value;
    $('custom').classList.toggle('hidden', v !== 'custom');
    if (v === 'custom') return; // wait for Show
    state.range = v;
    loadChart(true);
  });
  $('apply').addEventListener('click', () => {
    if (!$('from').value || !$('to').value) return;
    state.range = 'custom';
    state.from = $('from').value;
    state.to = $('to').value;
    loadChart(true);
  });
  window.addEventListener('hashchange', () => {
    const isin = location.hash.slice(1);
    if (isin) select(isin);
  });

  // ---- hot alerts ----

  let alertsStarted = false;

  // startAlerts shows the alerts of the hour before the newest price on the list, then
  // follows /hot from the last one shown (or from the beginning of what is stored).
  async function startAlerts() {
    alertsStarted = true;
    let newest = 0;
    for (const r of state.rows) if (r.priceTs) newest = Math.max(newest, Date.parse(r.priceTs));
    let url = '/hot?format=json';
    if (newest) url += '&since=' + new Date(newest - 3600e3).toISOString();
    try {
      const { body } = await getJSON(url);
      for (const ev of body) addAlert(ev, false);
    } catch (e) { /* the stream below still works */ }
    openStream();
  }

  function openStream() {
    const live = $('live');
    const es = new EventSource('/hot?lastEventId=' + state.lastAlertId + (token ? '&access_token=' + encodeURIComponent(token) : ''));
    es.onopen = () => {
      debug.hotOpen = true;
      live.textContent = '● live';
      live.className = 'live on';
    };
    es.onerror = () => {
      debug.hotOpen = false;
      debug.hotErrors++;
      live.textContent = '● reconnecting';
      live.className = 'live off';
    };
    es.addEventListener('hot', (e) => addAlert(JSON.parse(e.data), true));
  }

  function addAlert(ev, fresh) {
    if (ev.id <= state.lastAlertId) return;
    state.lastAlertId = ev.id;
    state.alerts.unshift(ev);
    const li = document.createElement('li');
    li.dataset.isin = ev.isin;
    li.dataset.id = ev.id;
    if (fresh) li.className = 'fresh';
    const t = document.createElement('span');
    t.textContent = ev.ts.slice(0, 10) + ' ' + ev.ts.slice(11, 19);
    t.className = 'muted';
    const i = document.createElement('span');
    i.textContent = ev.isin;
    i.className = 'isin';
    const c = document.createElement('span');
    c.textContent = fmtChange(ev.changePercent);
    c.className = 'num ' + changeClass(ev.changePercent);
    const p = document.createElement('span');
    p.textContent = fmtPrice(ev.price) + ' from ' + fmtPrice(ev.referencePrice);
    li.append(t, i, c, p);
    const list = $('alert-list');
    list.prepend(li);
    while (state.alerts.length > MAX_ALERTS) {
      state.alerts.pop();
      list.lastElementChild.remove();
    }
    $('no-alerts').classList.add('hidden');
  }

  $('alert-list').addEventListener('click', (e) => {
    const li = e.target.closest('li');
    if (li) select(li.dataset.isin);
  });

  // ---- start ----

  initChart();
  if (location.hash.length > 1) select(location.hash.slice(1));
  loadList();
})();
