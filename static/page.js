// paywatch invoice page: keeps the server-rendered page current.
//
// Opens the invoice's read-only WebSocket room, applies `snapshot` and
// `payment_received` frames, resumes after a drop with `?after=<cursor>`,
// and polls GET /api/invoices/{id} while WebSockets are unavailable or keep
// failing. Text from payers and merchants is only ever set with textContent.
(function () {
  "use strict";

  var root = document.getElementById("invoice");
  if (!root) {
    return;
  }

  var STATUS_LABELS = {
    unpaid: "Awaiting payment",
    partially_paid: "Partially paid",
    paid: "Paid",
    overpaid: "Overpaid",
    expired: "Expired"
  };
  var POLL_INTERVAL_MS = 4000;
  var MAX_BACKOFF_MS = 15000;
  // Failed connection attempts in a row before polling starts meanwhile.
  var FAILURES_BEFORE_POLLING = 2;
  // Failed attempts in a row before the cursor is dropped and the next
  // connection asks for a fresh snapshot (which holds every payment).
  var FAILURES_BEFORE_FRESH_SNAPSHOT = 6;

  var id = root.getAttribute("data-invoice-id");
  var state = {
    amount: Number(root.getAttribute("data-amount-sats")),
    paid: Number(root.getAttribute("data-paid-sats")),
    status: root.getAttribute("data-status"),
    expiresAt: Date.parse(root.getAttribute("data-expires-at")),
    cursor: null,
    seen: {}
  };

  var el = {
    status: document.getElementById("status"),
    paid: document.getElementById("paid"),
    paidSats: document.getElementById("paid-sats"),
    amount: document.getElementById("amount"),
    amountSats: document.getElementById("amount-sats"),
    expiry: document.getElementById("expiry"),
    expiryRow: document.getElementById("expiry-row"),
    list: document.getElementById("payments"),
    empty: document.getElementById("no-payments"),
    badge: document.getElementById("connection"),
    copy: document.getElementById("copy-address"),
    address: document.getElementById("address")
  };

  Array.prototype.forEach.call(el.list.querySelectorAll("li[data-event-id]"), function (li) {
    state.seen[li.getAttribute("data-event-id")] = true;
  });

  // ---- formatting (the same as the server's) ----

  function formatBch(sats) {
    var whole = Math.floor(sats / 1e8);
    var fraction = String(sats % 1e8);
    if (fraction === "0") {
      return String(whole);
    }
    while (fraction.length < 8) {
      fraction = "0" + fraction;
    }
    return whole + "." + fraction.replace(/0+$/, "");
  }

  function groupThousands(n) {
    return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  }

  function formatTime(iso) {
    var at = new Date(iso);
    if (isNaN(at.getTime())) {
      return String(iso);
    }
    return at.toISOString().slice(0, 19).replace("T", " ") + " UTC";
  }

  function pad2(n) {
    return n < 10 ? "0" + n : String(n);
  }

  function formatRemaining(ms) {
    var left = Math.floor(ms / 1000);
    if (left <= 0) {
      return "expired";
    }
    var days = Math.floor(left / 86400);
    var hours = Math.floor(left / 3600) % 24;
    var minutes = Math.floor(left / 60) % 60;
    var seconds = left % 60;
    if (days > 0) {
      return days + "d " + hours + "h left";
    }
    if (hours > 0) {
      return hours + ":" + pad2(minutes) + ":" + pad2(seconds) + " left";
    }
    return minutes + ":" + pad2(seconds) + " left";
  }

  // ---- rendering ----

  function settled() {
    return state.status === "paid" || state.status === "overpaid";
  }

  function renderStatus() {
    var status = state.status;
    if ((status === "unpaid" || status === "partially_paid") && Date.now() >= state.expiresAt) {
      status = "expired";
    }
    el.status.textContent = STATUS_LABELS[status] || status;
    el.status.setAttribute("data-status", status);
    root.setAttribute("data-status", status);
    el.paid.textContent = formatBch(state.paid) + " BCH";
    el.paidSats.textContent = groupThousands(state.paid) + " sats";
    el.amount.textContent = formatBch(state.amount) + " BCH";
    el.amountSats.textContent = groupThousands(state.amount) + " sats";
    el.expiryRow.hidden = settled();
    renderCountdown();
  }

  function renderCountdown() {
    if (!el.expiry || isNaN(state.expiresAt)) {
      return;
    }
    var text = formatRemaining(state.expiresAt - Date.now());
    if (el.expiry.textContent !== text) {
      el.expiry.textContent = text;
    }
    if (text === "expired" && !settled() && el.status.getAttribute("data-status") !== "expired") {
      renderStatus();
    }
  }

  function applyInvoice(invoice) {
    if (!invoice || typeof invoice.paid_sats !== "number") {
      return;
    }
    // Totals only grow: an older frame never takes the page back.
    if (invoice.paid_sats < state.paid) {
      return;
    }
    state.amount = invoice.amount_sats;
    state.paid = invoice.paid_sats;
    state.status = invoice.status;
    var expires = Date.parse(invoice.expires_at);
    if (!isNaN(expires)) {
      state.expiresAt = expires;
    }
    renderStatus();
  }

  function addPayment(payment) {
    if (!payment || payment.event_id === undefined) {
      return;
    }
    var key = String(payment.event_id);
    if (state.seen[key]) {
      return;
    }
    state.seen[key] = true;

    var li = document.createElement("li");
    li.className = "payment payment-new";
    li.setAttribute("data-event-id", key);

    var head = document.createElement("div");
    head.className = "payment-head";
    var amount = document.createElement("span");
    amount.className = "payment-amount";
    amount.textContent = formatBch(payment.amount_sats) + " BCH";
    var time = document.createElement("time");
    time.className = "payment-time";
    time.setAttribute("datetime", String(payment.paid_at));
    time.textContent = formatTime(payment.paid_at);
    head.appendChild(amount);
    head.appendChild(time);
    li.appendChild(head);

    var txid = document.createElement("code");
    txid.className = "txid";
    txid.textContent = String(payment.txid);
    li.appendChild(txid);

    if (payment.memo) {
      var memo = document.createElement("p");
      memo.className = "payment-memo";
      memo.textContent = String(payment.memo);
      li.appendChild(memo);
    }

    // Keep the list in event order (oldest first), whatever order frames
    // and polls arrive in.
    var before = null;
    var items = el.list.children;
    for (var i = 0; i < items.length; i++) {
      if (Number(items[i].getAttribute("data-event-id")) > Number(key)) {
        before = items[i];
        break;
      }
    }
    el.list.insertBefore(li, before);
    el.empty.hidden = true;
  }

  function applyFrame(frame) {
    if (!frame || typeof frame !== "object") {
      return;
    }
    if (frame.type === "snapshot") {
      (frame.payments || []).forEach(addPayment);
      applyInvoice(frame.invoice);
    } else if (frame.type === "payment_received") {
      addPayment(frame);
      applyInvoice(frame.invoice);
    }
    if (typeof frame.cursor === "string") {
      state.cursor = frame.cursor;
    }
  }

  // ---- connection state badge ----

  var BADGE_TEXT = {
    connecting: "connecting…",
    live: "live",
    reconnecting: "reconnecting…",
    polling: "polling"
  };

  function setBadge(name) {
    if (!el.badge) {
      return;
    }
    el.badge.hidden = false;
    el.badge.setAttribute("data-state", name);
    el.badge.textContent = BADGE_TEXT[name] || name;
  }

  // ---- WebSocket with resume and backoff ----

  var socket = null;
  var failures = 0;
  var reconnectTimer = null;

  function socketUrl() {
    var scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    var url = scheme + "//" + window.location.host + "/ws/jpp/invoice/" + encodeURIComponent(id) + "/";
    if (state.cursor) {
      url += "?after=" + encodeURIComponent(state.cursor);
    }
    return url;
  }

  function connect() {
    reconnectTimer = null;
    if (typeof window.WebSocket !== "function") {
      startPolling();
      return;
    }
    // A connection counts as working once a frame arrived: one the server
    // closes right after the upgrade is a failure like a refused one.
    var working = false;
    var ws;
    try {
      ws = new window.WebSocket(socketUrl());
    } catch (e) {
      scheduleReconnect(false);
      return;
    }
    socket = ws;
    ws.onmessage = function (event) {
      var frame;
      try {
        frame = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      applyFrame(frame);
      working = true;
      failures = 0;
      stopPolling();
      setBadge("live");
    };
    ws.onclose = function () {
      if (socket === ws) {
        socket = null;
      }
      scheduleReconnect(working);
    };
    // An error is always followed by a close; onclose handles both.
  }

  function scheduleReconnect(wasWorking) {
    if (reconnectTimer !== null) {
      return;
    }
    if (!wasWorking) {
      failures += 1;
    }
    if (failures >= FAILURES_BEFORE_FRESH_SNAPSHOT) {
      state.cursor = null;
    }
    if (failures >= FAILURES_BEFORE_POLLING) {
      startPolling();
    } else {
      setBadge("reconnecting");
    }
    // 0.5 s, 1 s, 2 s, 4 s, ... up to MAX_BACKOFF_MS, with jitter so that
    // many pages do not all come back at the same instant.
    var base = Math.min(MAX_BACKOFF_MS, 500 * Math.pow(2, Math.max(0, failures - 1)));
    var delay = wasWorking ? 250 : base / 2 + Math.random() * base / 2;
    reconnectTimer = window.setTimeout(connect, delay);
  }

  // ---- polling fallback ----

  var pollTimer = null;

  function startPolling() {
    setBadge("polling");
    if (pollTimer !== null) {
      return;
    }
    poll();
    pollTimer = window.setInterval(poll, POLL_INTERVAL_MS);
  }

  function stopPolling() {
    if (pollTimer !== null) {
      window.clearInterval(pollTimer);
      pollTimer = null;
    }
  }

  function poll() {
    if (typeof window.fetch !== "function") {
      return;
    }
    window
      .fetch("/api/invoices/" + encodeURIComponent(id), {
        cache: "no-store",
        headers: { Accept: "application/json" }
      })
      .then(function (response) {
        return response.ok ? response.json() : null;
      })
      .then(function (body) {
        if (body && body.invoice) {
          (body.payments || []).forEach(addPayment);
          applyInvoice(body.invoice);
        }
      })
      .catch(function () {
        // The server is unreachable; the next poll or reconnect will tell.
      });
  }

  // ---- copy button ----

  if (el.copy && el.address && navigator.clipboard && window.isSecureContext) {
    el.copy.hidden = false;
    el.copy.addEventListener("click", function () {
      navigator.clipboard.writeText(el.address.textContent).then(function () {
        el.copy.textContent = "Copied";
        window.setTimeout(function () {
          el.copy.textContent = "Copy address";
        }, 1500);
      });
    });
  }

  renderStatus();
  window.setInterval(renderCountdown, 1000);
  setBadge("connecting");
  connect();
})();
