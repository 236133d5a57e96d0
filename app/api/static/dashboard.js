// The dashboard at /: tracked coins from GET /api/v1/coins, live through the SSE stream (EventSource reconnects by
// itself), falling back to polling when the stream is not there; a coin's history chart from .../history (uPlot).
// Page URL options: ?currency=eur (one of VS_CURRENCIES), ?poll=SECONDS (the fallback's interval, default 30).
(function () {
  "use strict";
  var params = new URLSearchParams(location.search);
  var POLL_SECONDS = Math.max(1, Number(params.get("poll")) || 30);
  var RELIST_SECONDS = 300;  // while live, re-read the list anyway so freshness badges stay true with no events
  var STREAM_RETRY_SECONDS = 60;  // after a stream refusal that is not 404 (e.g. 503: too many clients)
  var RANGES = {  // the history endpoint's bucket widths per range (at most 2,000 buckets)
    "1D": { seconds: 86400, interval: "15m" },
    "7D": { seconds: 7 * 86400, interval: "1h" },
    "30D": { seconds: 30 * 86400, interval: "4h" },
    "1Y": { seconds: 365 * 86400, interval: "1d" }
  };
  var state = { currency: params.get("currency") || "", coins: {}, order: [], selected: null, range: "1D",
                mode: "connecting", chart: null, source: null, pollTimer: null, relistTimer: null,
                chartTimer: null, updates: 0 };
  window.dashboard = state;  // for people poking in the console, and the browser test

  // ---- formatting --------------------------------------------------------------------------------------------
  function money(value, options) {
    if (value === null || value === undefined) return "—";
    var code = (state.currency || "usd").toUpperCase();
    try {
      return new Intl.NumberFormat(undefined, Object.assign({ style: "currency", currency: code }, options))
        .format(value);
    } catch (e) {  // a vs_currency that is no ISO code (CoinGecko also prices in btc, sats, bits...)
      return new Intl.NumberFormat(undefined, options && options.notation ? { notation: "compact",
        maximumFractionDigits: 2 } : { maximumSignificantDigits: 8 }).format(value) + " " + code;
    }
  }
  function price(value) {
    if (value === null || value === undefined) return "—";
    var abs = Math.abs(value);
    if (abs >= 1 || value === 0) return money(value, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
    return money(value, { minimumFractionDigits: 2, maximumSignificantDigits: 4 });
  }
  function compact(value) { return money(value, { notation: "compact", maximumFractionDigits: 2 }); }
  function percent(value) {
    if (value === null || value === undefined) return "—";
    return (value > 0 ? "▲ +" : value < 0 ? "▼ " : "") + value.toFixed(2) + " %";
  }
  function ago(iso) {
    var seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (seconds < 90) return "just now";
    if (seconds < 5400) return Math.round(seconds / 60) + " min ago";
    if (seconds < 129600) return Math.round(seconds / 3600) + " h ago";
    return Math.round(seconds / 86400) + " d ago";
  }
  function title(id) {
    return id.split(/[-_.]/).map(function (w) { return w.charAt(0).toUpperCase() + w.slice(1); }).join(" ");
  }

  // ---- the cards ---------------------------------------------------------------------------------------------
  function card(id) {
    var existing = document.querySelector('.card[data-coin="' + CSS.escape(id) + '"]');
    if (existing) return existing;
    var node = document.getElementById("coin-card").content.firstElementChild.cloneNode(true);
    node.dataset.coin = id;
    node.querySelector('[data-field="name"]').textContent = title(id);
    node.addEventListener("click", function () { select(id); });
    node.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") select(id); });
    document.getElementById("coins").appendChild(node);
    return node;
  }
  function field(node, name, text) {
    var el = node.querySelector('[data-field="' + name + '"]');
    if (el.textContent !== text) {
      el.textContent = text;
      return true;
    }
    return false;
  }
  function render(item, before) {
    var node = card(item.coin);
    var changed = field(node, "price", price(item.price));
    var change = node.querySelector('[data-field="change_24h"]');
    field(node, "change_24h", percent(item.change_24h));
    change.className = "change " + (item.change_24h > 0 ? "up" : item.change_24h < 0 ? "down" : "flat");
    field(node, "market_cap", compact(item.market_cap));
    field(node, "deviation", price(item.deviation));
    badge(node, item);
    if (changed && before && before.price !== null) {  // a new price, not the first one: show it moved
      state.updates++;
      var el = node.querySelector('[data-field="price"]');
      el.classList.remove("flash"); void el.offsetWidth; el.classList.add("flash");
      el.addEventListener("animationend", function () { el.classList.remove("flash"); }, { once: true });
    }
  }
  function badge(node, item) {
    var el = node.querySelector('[data-field="freshness"]');
    node.classList.toggle("stale", item.stale === true);
    if (!item.fetched_at) {
      el.className = "badge none";
      el.textContent = "no data yet";
      el.title = item.error ? item.error.message : "";
      return;
    }
    el.className = "badge" + (item.stale ? " stale" : "");
    el.textContent = (item.stale ? "stale · " : "") + ago(item.fetched_at);
    el.title = "fetched " + new Date(item.fetched_at).toLocaleString() + ", CoinGecko time " +
      new Date(item.observed_at).toLocaleString();
  }
  function accept(item) {
    if (!item || typeof item.coin !== "string") return;
    var before = state.coins[item.coin];
    state.coins[item.coin] = item;
    if (state.order.indexOf(item.coin) < 0) state.order.push(item.coin);
    render(item, before);
    if (item.coin === state.selected && before && before.observed_at !== item.observed_at) scheduleChart();
  }
  function setMode(mode, text) {
    state.mode = mode;
    var el = document.getElementById("connection");
    el.dataset.mode = mode;
    el.textContent = text;
  }
  function notice(text) {
    var el = document.getElementById("notice");
    el.hidden = !text;
    el.textContent = text || "";
  }

  // ---- data --------------------------------------------------------------------------------------------------
  function getJSON(url) {
    return fetch(url, { headers: { Accept: "application/json" } }).then(function (response) {
      return response.json().then(function (body) {
        if (!response.ok) throw new Error((body.error && body.error.message) || response.statusText);
        return body;
      });
    });
  }
  function list() {
    var url = "/api/v1/coins" + (state.currency ? "?currency=" + encodeURIComponent(state.currency) : "");
    return getJSON(url).then(function (body) {
      state.currency = body.currency;
      body.coins.forEach(accept);
      if (!state.selected && state.order.length) select(state.order[0]);
      notice("");
      if (state.mode === "offline") setMode("polling", "polling every " + POLL_SECONDS + " s");
      return body;
    }).catch(function (err) {
      notice("Cannot reach the server (" + err.message + "); showing the last figures.");
      if (state.mode !== "live") setMode("offline", "offline, retrying");
    });
  }
  function streamUrl() {
    return "/api/v1/stream?coins=" + encodeURIComponent(state.order.join(",")) +
      "&currency=" + encodeURIComponent(state.currency);
  }
  function live() {
    if (!window.EventSource) return poll();
    var source = new EventSource(streamUrl());
    state.source = source;
    function onData(event) {
      try { accept(JSON.parse(event.data)); } catch (e) { /* not ours: ignore */ }
    }
    source.addEventListener("snapshot", onData);
    source.addEventListener("price", onData);
    source.onopen = function () {
      stopPolling();
      setMode("live", "live");
      clearInterval(state.relistTimer);
      state.relistTimer = setInterval(list, RELIST_SECONDS * 1000);
    };
    source.onerror = function () {
      // CONNECTING: a dropped stream, which EventSource re-opens by itself. CLOSED: the server refused it (an HTTP
      // error or not text/event-stream); ask what it said: 404 means this server has no stream, so poll for good.
      if (source.readyState !== EventSource.CLOSED) {
        setMode("connecting", "reconnecting…");
        return;
      }
      source.close();
      state.source = null;
      clearInterval(state.relistTimer);
      poll();
      var probe = new AbortController();
      fetch(streamUrl(), { signal: probe.signal, headers: { Accept: "text/event-stream" } })
        .then(function (response) {
          probe.abort();
          if (response.status !== 404) setTimeout(live, STREAM_RETRY_SECONDS * 1000);
        })
        .catch(function () { setTimeout(live, STREAM_RETRY_SECONDS * 1000); });
    };
  }
  function poll() {
    setMode("polling", "polling every " + POLL_SECONDS + " s");
    if (!state.pollTimer) state.pollTimer = setInterval(list, POLL_SECONDS * 1000);
  }
  function stopPolling() {
    clearInterval(state.pollTimer);
    state.pollTimer = null;
  }

  // ---- the chart ---------------------------------------------------------------------------------------------
  function select(id) {
    state.selected = id;
    document.querySelectorAll(".card").forEach(function (node) {
      node.setAttribute("aria-pressed", node.dataset.coin === id ? "true" : "false");
    });
    document.getElementById("chart-title").textContent = title(id) + " · " + state.currency.toUpperCase();
    drawChart();
  }
  function scheduleChart() {  // several coins' events arrive together: redraw once
    clearTimeout(state.chartTimer);
    state.chartTimer = setTimeout(drawChart, 500);
  }
  function drawChart() {
    var range = RANGES[state.range];
    var now = Math.floor(Date.now() / 1000);
    var url = "/api/v1/coins/" + encodeURIComponent(state.selected) + "/history?interval=" + range.interval +
      "&from=" + (now - range.seconds) + "&currency=" + encodeURIComponent(state.currency);
    var coin = state.selected, which = state.range;
    getJSON(url).then(function (body) {
      if (coin !== state.selected || which !== state.range) return;  // a later click won
      var xs = [], closes = [], points = 0;
      body.buckets.forEach(function (b) {
        xs.push(Date.parse(b.t) / 1000);
        closes.push(b.n > 0 ? b.close : null);  // an empty bucket is a gap, never a carried-forward value
        if (b.n > 0) points++;
      });
      document.getElementById("chart-empty").hidden = points > 0;
      plot([xs, closes]);
    }).catch(function (err) { notice("Cannot load the history (" + err.message + ")."); });
  }
  function lonely(u, seriesIdx) {
    // Points only where a line cannot show a value: a record between two gaps, and the newest one.
    var ys = u.data[seriesIdx], out = [], last = -1;
    for (var i = 0; i < ys.length; i++) {
      if (ys[i] === null) continue;
      last = i;
      if ((i === 0 || ys[i - 1] === null) && (i === ys.length - 1 || ys[i + 1] === null)) out.push(i);
    }
    if (last >= 0 && out.indexOf(last) < 0) out.push(last);
    return out;
  }
  function plot(data) {
    var el = document.getElementById("chart");
    var width = Math.max(280, el.clientWidth);
    if (state.chart) {
      state.chart.setData(data);
      return;
    }
    var accent = getComputedStyle(document.documentElement).getPropertyValue("--accent").trim() || "#2f6fde";
    var muted = getComputedStyle(document.documentElement).getPropertyValue("--muted").trim() || "#888";
    var axis = { stroke: muted, grid: { stroke: "rgba(128,128,128,.15)" }, ticks: { stroke: "rgba(128,128,128,.3)" } };
    state.chart = new uPlot({
      width: width, height: 320,
      series: [{}, { label: "close", stroke: accent, width: 2, fill: accent + "22", spanGaps: false,
                     points: { show: true, size: 6, fill: accent, filter: lonely },
                     value: function (u, v) { return v === null ? "—" : price(v); } }],
      axes: [axis, Object.assign({ size: 80, values: function (u, ticks) { return ticks.map(compact); } }, axis)],
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true } }
    }, data, el);
    new ResizeObserver(function () {
      state.chart.setSize({ width: Math.max(280, el.clientWidth), height: 320 });
    }).observe(el);
  }
  document.querySelectorAll(".ranges button").forEach(function (button) {
    button.addEventListener("click", function () {
      state.range = button.dataset.range;
      document.querySelectorAll(".ranges button").forEach(function (b) {
        b.setAttribute("aria-pressed", b === button ? "true" : "false");
      });
      drawChart();
    });
  });

  // ---- start -------------------------------------------------------------------------------------------------
  setInterval(function () {  // keep "n min ago" true between updates
    state.order.forEach(function (id) { badge(card(id), state.coins[id]); });
  }, 15000);
  list().then(function (body) {
    if (!body) {  // the server did not answer: keep trying until it does
      poll();
      return;
    }
    live();
  });
})();
