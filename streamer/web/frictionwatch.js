/*! frictionwatch.js v1: friction events out, nudges and handoffs in. No dependencies.
 *
 *   <script src="https://YOUR-WORKER/sdk/frictionwatch.js"></script>
 *   <script>frictionwatch.init({endpoint: "https://YOUR-WORKER", siteKey: "pk_..."})</script>
 *
 * Options: endpoint (default: this script's origin), siteKey, flushMs (1000),
 * reactionMs (3000), onIntervention(intervention, actions) to show interventions
 * yourself instead of the default nudge and banner.
 * API: init, track(type, props), requestHelp(channel), show(intervention), flush(),
 * sessionId(), debug(), scrub(text).
 *
 * Captured: page views (SPA history too), clicks (x, y, a stable selector, short
 * text, reaction_ms: ms to the page's first DOM change after the click, null if
 * none within reactionMs), scrolls, js_error, failed fetch/XHR (http_error), form
 * validation failures (form_error: the field name only). A click is held until its
 * reaction is known, except that the watch is cut short (reaction_cut: true,
 * reaction_ms: how long it lasted) by the next click, and skipped (0) from the third
 * click of a rapid burst on one spot on: a rage burst is reported at once.
 * Privacy: typed values are never read; text inside [data-fw-mask] is sent as
 * "[masked]"; nothing inside [data-fw-ignore] is captured; URLs lose their query;
 * error messages and click text are scrubbed of e-mail addresses, card and phone
 * numbers and tokens before they leave the page (scrub: the patterns of the server's
 * detectors/scrub.py, which scrubs everything again).
 * Each beacon carries the session's token: the worker accepts events only for the
 * sessions it issued (POST /v1/sessions).
 */
(function (win, doc) {
  'use strict';
  if (win.frictionwatch && win.frictionwatch.version) return;

  var URGENT = {checkout_failed: 1, help_request: 1, purchase: 1, session_end: 1,
    intervention_shown: 1, intervention_accepted: 1, intervention_dismissed: 1};
  var MAX_QUEUE = 500, MAX_BATCH = 50, MAX_ERRORS = 20, MAX_SEEN = 100;
  var script = doc.currentScript;
  var cfg = null, session = null, queue = [], sending = false, pauseUntil = 0;
  var pending = [], observer = null, es = null, retryMs = 1000, renewTimer = null;
  var lastPath = null, errors = 0, lastY = 0, scrollTimer = null, root = null, live = null;
  var nudge = null, returnFocus = null, acquiring = false, waiting = [], lastClick = null;
  var streamSid = null, tokenRetries = 0;
  var TOKEN_ERRORS = {missing_token: 1, expired_token: 1, bad_token: 1, wrong_session: 1};
  var stats = {sent: 0, dropped: 0, received: 0, shown: 0, skipped: 0, connected: false};
  var origFetch = win.fetch;

  function now() { return Date.now(); }
  function rid() {
    if (win.crypto && crypto.randomUUID) return crypto.randomUUID();
    return now().toString(36) + Math.random().toString(36).slice(2);
  }
  function load(key) {
    try { return JSON.parse(win.sessionStorage.getItem(key)); } catch (e) { return null; }
  }
  function save(key, value) {
    try { win.sessionStorage.setItem(key, JSON.stringify(value)); } catch (e) { /* private mode */ }
  }
  function path(url) {
    try {
      var u = new URL(url, location.href);
      return (u.origin === location.origin ? '' : u.origin) + u.pathname;
    } catch (e) { return String(url).split(/[?#]/)[0]; }
  }
  // -- personal data out: the patterns of detectors/scrub.py (read the reasons there) --
  var PARAM = /([?#&;][A-Za-z0-9_.%+-]{1,64}=)(?!\[token\])[^\s&#;"'<>\])}]+/g;
  var JWT = /eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*/g;
  var SECRET = /[A-Za-z0-9_-]{32,}/g;
  var EMAIL = (function () {
    var w = '\\p{L}\\p{N}_';
    try {  // Unicode letters where the browser knows them (as Python's \w does)
      return new RegExp('(^|[^' + w + '.%+-])([' + w + '.%+-]+(?:@|%40)[' + w + '-]+(?:\\.[' + w +
        '-]+)*\\.\\p{L}{2,})(?![' + w + '-])', 'gu');
    } catch (e) {
      return /(^|[^\w.%+-])([\w.%+-]+(?:@|%40)[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,})(?![\w-])/g;
    }
  })();
  var CARD = /(^|[^0-9+])([0-9]+(?:[ -][0-9]+)*)/g;
  var PHONE = new RegExp('(^|[^A-Za-z0-9_+])(\\+[0-9](?:[ .()/-]{0,2}[0-9]){6,14}' +
    '|\\(?0[0-9]{1,4}\\)?[ /-][0-9]{2,8}(?:[ -][0-9]{2,8}){0,3}' +
    '|\\(?[0-9]{3}\\)?[ .-][0-9]{3}[ .-][0-9]{4})(?![A-Za-z0-9_])', 'g');
  function digitsIn(s) { return (s.match(/[0-9]/g) || []).length; }
  function luhn(d) {
    var sum = 0;
    for (var i = 0; i < d.length; i++) {
      var n = d.charCodeAt(d.length - 1 - i) - 48;
      if (i % 2) n = n > 4 ? n * 2 - 9 : n * 2;
      sum += n;
    }
    return sum % 10 === 0;
  }
  function scrub(text) {
    text = String(text);
    var digits = digitsIn(text);
    if (text.indexOf('=') >= 0) text = text.replace(PARAM, '$1[token]');
    if (text.indexOf('eyJ') >= 0) text = text.replace(JWT, '[token]');
    if (digits && text.length >= 32) {
      text = text.replace(SECRET, function (run) {
        return /[0-9]/.test(run) && /[A-Za-z]/.test(run) ? '[token]' : run;
      });
    }
    if (text.indexOf('@') >= 0 || text.indexOf('%40') >= 0) text = text.replace(EMAIL, '$1[email]');
    if (digits >= 13) {
      text = text.replace(CARD, function (m, pre, run) {
        if (run.length < 13) return m;
        var groups = [], re = /[0-9]+/g, g, out = '', done = 0, first = 0;
        while ((g = re.exec(run))) groups.push([g.index, g.index + g[0].length]);
        while (first < groups.length) {  // each longest run of whole groups that is a card
          var digits = '', last = -1;
          for (var i = first; i < groups.length; i++) {
            digits += run.slice(groups[i][0], groups[i][1]);
            if (digits.length > 19) break;
            if (digits.length >= 13 && luhn(digits)) last = i;
          }
          if (last < 0) { first++; continue; }
          out += run.slice(done, groups[first][0]) + '[card]';
          done = groups[last][1];
          first = last + 1;
        }
        return pre + (out ? out + run.slice(done) : run);
      });
    }
    if (digits >= 7) {
      text = text.replace(PHONE, function (m, pre, run) {
        var n = digitsIn(run);
        return n >= 7 && n <= 15 ? pre + '[phone]' : m;
      });
    }
    return text;
  }
  function message(value) {  // scrubbed first: a cut card number is no longer found
    var m = String(value);
    return scrub(m.length > 1200 ? m.slice(0, 1200) : m).slice(0, 300);
  }

  function ours(url) { return cfg && String(url).indexOf(cfg.endpoint + '/v1/') === 0; }
  function inside(el, attr) { return !!(el && el.closest && el.closest('[' + attr + ']')); }
  function ignored(el) { return inside(el, 'data-fw-ignore') || inside(el, 'data-fw-ui'); }

  // -- events out --------------------------------------------------------------------
  function emit(type, props, ts) {
    var e = {type: type, ts: ts || now(), event_id: rid(), page: path(location.href)};
    for (var k in props) {
      if (props.hasOwnProperty(k) && k !== 'session_id' && k !== 'type') e[k] = props[k];
    }
    queue.push(e);
    if (queue.length > MAX_QUEUE) stats.dropped += queue.splice(0, queue.length - MAX_QUEUE).length;
    if (URGENT[type] || queue.length >= MAX_BATCH) setTimeout(flush, 0);
    return e;
  }

  function send(pathname, body, keepalive) {
    return origFetch.call(win, cfg.endpoint + pathname, {method: 'POST', body: JSON.stringify(body),
      headers: {'Content-Type': 'text/plain'}, keepalive: !!keepalive, credentials: 'omit'});
  }

  function retryAfter(res, fallback) {
    var s = parseInt(res && res.headers.get('Retry-After'), 10);
    return (s > 0 ? s * 1000 : fallback);
  }

  // Sends what is ready, in order; a click still waiting for its reaction stays queued.
  function flush(beacon) {
    if (!cfg || !session || (sending && !beacon) || (!beacon && now() < pauseUntil)) return;
    var batch = [], rest = [];
    for (var i = 0; i < queue.length; i++) {
      (queue[i].pending || batch.length >= MAX_BATCH ? rest : batch).push(queue[i]);
    }
    if (!batch.length) return;
    queue = rest;
    for (i = 0; i < batch.length; i++) batch[i].session_id = session.id;
    // The token in the body, not a header: sendBeacon cannot set headers.
    var body = {site_key: cfg.siteKey, token: session.token, events: batch};
    if (beacon && navigator.sendBeacon) {
      var blob = new Blob([JSON.stringify(body)], {type: 'text/plain'});
      if (navigator.sendBeacon(cfg.endpoint + '/v1/collect', blob)) {
        stats.sent += batch.length;
        return flush(true);
      }
    }
    sending = true;
    send('/v1/collect', body, true).then(function (res) {
      sending = false;
      if (res.status === 202) {
        stats.sent += batch.length;
        tokenRetries = 0;
      } else if (res.status === 429 || res.status >= 500) {
        queue = batch.concat(queue);  // nothing accepted: all of it again, later
        pauseUntil = now() + retryAfter(res, 2000);
        setTimeout(flush, pauseUntil - now() + 10);
        return;
      } else if ((res.status === 401 || res.status === 403) && tokenRetries < 3) {
        return res.json().then(function (a) { return a && a.error; }, function () { return null; })
          .then(function (reason) {
            if (!TOKEN_ERRORS[reason]) {
              stats.dropped += batch.length;
              return;
            }
            tokenRetries++;  // the token expired or this worker does not know it: renew
            queue = batch.concat(queue);
            ensureSession(function () { if (streamSid !== session.id) connect(); flush(); }, true);
          });
      } else {
        stats.dropped += batch.length;  // refused for good (400/403/413): retrying won't help
        if (win.console) console.warn('frictionwatch: events refused', res.status);
      }
      if (queue.length) setTimeout(flush, 0);
    }, function () {
      sending = false;
      queue = batch.concat(queue);
      pauseUntil = now() + 2000;
    });
  }

  // -- session and token ---------------------------------------------------------------
  function ensureSession(done, renew) {
    waiting.push(done);
    if (acquiring) return;
    var s = session || load('fw:session');
    if (s && !renew && s.exp - now() / 1000 > 60) return ready(s);
    acquiring = true;
    var body = s ? {session_id: s.id, token: s.token} : {};
    body.site_key = cfg.siteKey;
    send('/v1/sessions', body).then(function (res) {
      if (res.status === 201) return res.json().then(function (a) {
        acquiring = false;
        ready({id: a.session_id, token: a.token, exp: a.expires_at});
      });
      acquiring = false;
      if (s && (res.status === 401 || res.status === 403)) {  // not renewable: start anew
        session = null; save('fw:session', null); save('fw:seen', []);
        return retrySession(0);
      }
      retrySession(retryAfter(res, 5000));
    }, function () { acquiring = false; retrySession(5000); });
  }
  function retrySession(ms) {
    setTimeout(function () { var w = waiting; waiting = []; ensureSession(function () {
      for (var i = 0; i < w.length; i++) w[i]();
    }); }, ms);
  }
  function ready(s) {
    session = s;
    save('fw:session', s);
    clearTimeout(renewTimer);
    renewTimer = setTimeout(function () { ensureSession(connect, true); },
      Math.max(5000, (s.exp - 60) * 1000 - now()));
    var w = waiting; waiting = [];
    for (var i = 0; i < w.length; i++) w[i]();
  }

  // -- interventions in ----------------------------------------------------------------
  function connect() {
    if (!session || !win.EventSource) return;
    if (es) es.close();
    streamSid = session.id;
    var source = es = new EventSource(cfg.endpoint + '/v1/sessions/' +
      encodeURIComponent(session.id) + '/interventions?token=' + encodeURIComponent(session.token));
    source.addEventListener('ready', function () { stats.connected = true; retryMs = 1000; });
    source.addEventListener('intervention', function (ev) {
      stats.received++;
      try { deliver(JSON.parse(ev.data)); } catch (e) { /* a bad frame is not the page's problem */ }
    });
    source.onerror = function () {
      stats.connected = false;
      if (source.readyState !== 2 || source !== es) return;  // the browser reconnects itself
      es = null;  // refused (401/403) or worker gone: a fresh token, then again
      setTimeout(function () { ensureSession(connect, true); }, retryMs);
      retryMs = Math.min(retryMs * 2, 30000);
    };
  }

  function seen(id, add) {
    var ids = load('fw:seen') || [];
    if (ids.indexOf(id) >= 0) return true;
    if (add) { ids.push(id); save('fw:seen', ids.slice(-MAX_SEEN)); }
    return false;
  }

  function deliver(iv) {
    if (!iv || !iv.intervention_id || seen(iv.intervention_id, true)) { stats.skipped++; return; }
    if (cfg.onIntervention) {
      stats.shown++;
      cfg.onIntervention(iv, actions(iv));
    } else {
      show(iv);
    }
  }

  function actions(iv) {
    var id = {intervention_id: iv.intervention_id};
    return {
      shown: function () { emit('intervention_shown', id); },
      accepted: function () { emit('intervention_accepted', id); },
      dismissed: function () { emit('intervention_dismissed', id); },
      requestHelp: function (channel) { requestHelp(channel || 'nudge'); }
    };
  }

  // -- the default UI: a nudge (dialog) and a handoff banner (status) -----------------
  var CSS = '[data-fw-ui]{font:15px/1.4 system-ui,sans-serif;color:#1b1b1b}' +
    '.fw-nudge{position:fixed;right:16px;bottom:16px;max-width:340px;background:#fff;' +
    'border:2px solid #1d4ed8;border-radius:10px;padding:14px 16px;box-shadow:0 6px 24px #0003;z-index:2147483646}' +
    '.fw-nudge:focus{outline:3px solid #f59e0b;outline-offset:2px}' +
    '.fw-nudge p{margin:0 28px 10px 0}.fw-title{font-weight:700}' +
    '.fw-ui-btn{font:inherit;padding:7px 12px;margin:0 8px 0 0;border-radius:6px;border:1px solid #1d4ed8;' +
    'background:#fff;color:#1d4ed8;cursor:pointer}.fw-ui-btn:focus-visible{outline:3px solid #f59e0b}' +
    '.fw-primary{background:#1d4ed8;color:#fff}' +
    '.fw-close{position:absolute;top:6px;right:8px;border:0;background:none;font-size:20px;cursor:pointer;color:#1b1b1b}' +
    '.fw-banner{position:fixed;left:16px;bottom:16px;max-width:420px;background:#064e3b;color:#fff;' +
    'border-radius:10px;padding:12px 40px 12px 16px;z-index:2147483646}.fw-banner p{margin:0 0 4px}' +
    '.fw-banner code{font-size:14px;background:#ffffff26;padding:1px 4px;border-radius:4px}' +
    '.fw-banner .fw-close{color:#fff}';

  function el(tag, attrs, text) {
    var node = doc.createElement(tag);
    for (var k in attrs) if (attrs.hasOwnProperty(k)) node.setAttribute(k, attrs[k]);
    if (text) node.textContent = text;
    return node;
  }
  function button(label, action, cls) {
    var b = el('button', {type: 'button', 'class': 'fw-ui-btn ' + (cls || ''), 'data-fw-action': action}, label);
    return b;
  }

  function mountUi() {
    if (root || !doc.body) return;
    var style = el('style', {'data-fw-ui': ''});
    style.textContent = CSS;
    doc.head.appendChild(style);
    root = el('div', {'data-fw-ui': '', id: 'fw-root'});
    live = el('div', {role: 'status', 'aria-live': 'polite', 'data-fw-ui': ''});
    root.appendChild(live);
    doc.body.appendChild(root);
  }

  function show(iv) {
    mountUi();
    if (!root) return;
    stats.shown++;
    var act = actions(iv);
    if (iv.kind === 'handoff') {
      closeNudge();
      live.textContent = '';
      var banner = el('div', {'class': 'fw-banner', 'data-fw-handoff': iv.intervention_id});
      banner.appendChild(el('p', {}, iv.message || 'A person will help you.'));
      var ref = el('p', {}, 'Reference: ');
      ref.appendChild(el('code', {'data-fw-context-id': ''}, iv.context_id || iv.intervention_id));
      banner.appendChild(ref);
      var close = el('button', {type: 'button', 'class': 'fw-close', 'aria-label': 'Close'}, '\u00d7');
      close.onclick = function () { banner.remove(); act.dismissed(); };
      banner.appendChild(close);
      live.appendChild(banner);
      act.shown();
      return;
    }
    closeNudge();
    var box = el('div', {'class': 'fw-nudge', role: 'dialog', 'aria-modal': 'false', tabindex: '-1',
      'aria-labelledby': 'fw-nudge-title', 'aria-describedby': 'fw-nudge-msg',
      'data-fw-nudge': iv.intervention_id});
    box.appendChild(el('p', {id: 'fw-nudge-title', 'class': 'fw-title'}, 'Need a hand?'));
    box.appendChild(el('p', {id: 'fw-nudge-msg'}, iv.message || 'Having trouble? We can help.'));
    var talk = button('Talk to a person', 'accept', 'fw-primary');
    var no = button('No thanks', 'dismiss');
    var x = el('button', {type: 'button', 'class': 'fw-close', 'aria-label': 'Dismiss', 'data-fw-action': 'dismiss'}, '\u00d7');
    talk.onclick = function () { closeNudge(); act.accepted(); requestHelp('nudge'); };
    no.onclick = x.onclick = function () { closeNudge(); act.dismissed(); };
    box.appendChild(talk);
    box.appendChild(no);
    box.appendChild(x);
    nudge = {box: box, dismiss: no.onclick};
    root.appendChild(box);
    var active = doc.activeElement;
    if (!active || !active.matches('input,textarea,select,[contenteditable]')) {
      returnFocus = active;  // don't pull the focus out of a field the customer types in
      box.focus();
    }
    act.shown();
  }

  function closeNudge() {
    if (!nudge) return;
    nudge.box.remove();
    nudge = null;
    if (returnFocus && returnFocus.focus && doc.contains(returnFocus)) returnFocus.focus();
    returnFocus = null;
  }

  function requestHelp(channel) {
    emit('help_request', {channel: channel || 'sdk'});
    mountUi();
    if (live && !live.querySelector('.fw-banner')) {
      live.textContent = 'Connecting you with a person\u2026';
    }
  }

  // -- capture -------------------------------------------------------------------------
  function stableId(id) { return /^[A-Za-z][\w-]{0,63}$/.test(id) && !/\d{4,}/.test(id); }
  function stableClass(c) { return /^[A-Za-z][\w-]*$/.test(c) && !/\d{3,}|^(css|sc|jsx|svelte)-/.test(c); }

  function part(node) {
    var tag = node.tagName.toLowerCase(), s = tag;
    if (node.id && stableId(node.id)) s += '#' + node.id;
    var name = node.getAttribute('data-fw-name') || node.getAttribute('data-testid');
    if (name) s += '[data-fw-name="' + name.replace(/"/g, '') + '"]';
    if (tag === 'input') s += '[type=' + (node.type || 'text') + ']';
    if (tag === 'a' && node.getAttribute('target') === '_blank') s += '[target=_blank]';
    if (node.hasAttribute('download')) s += '[download]';
    if (node.isContentEditable && node.hasAttribute('contenteditable')) s += '[contenteditable]';
    if (s.indexOf('#') < 0 && !name) {
      var classes = [].filter.call(node.classList, stableClass).slice(0, 2);
      if (classes.length) s += '.' + classes.join('.');
      else if (node.parentElement && tag !== 'body' && tag !== 'html') {
        var same = [].filter.call(node.parentElement.children, function (c) { return c.tagName === node.tagName; });
        if (same.length > 1) s += ':nth-of-type(' + (same.indexOf(node) + 1) + ')';
      }
    }
    return s;
  }
  function selector(node) {
    var parts = [];
    for (var n = node; n && n.nodeType === 1 && parts.length < 4; n = n.parentElement) {
      var p = part(n);
      parts.unshift(p);
      if (p.indexOf('#') >= 0 || n.tagName === 'BODY') break;
    }
    return parts.join(' > ');
  }
  function clickText(node) {
    if (/^(INPUT|TEXTAREA|SELECT)$/.test(node.tagName) || node.isContentEditable) return null;
    if (inside(node, 'data-fw-mask')) return '[masked]';
    var t = (node.innerText || node.textContent || node.getAttribute('aria-label') || '').replace(/\s+/g, ' ').trim();
    return t ? scrub(t.slice(0, 200)).slice(0, 40) : null;
  }

  function settle(p, reaction, cut) {
    p.e.reaction_ms = reaction;
    if (cut) p.e.reaction_cut = true;
    delete p.e.pending;
    clearTimeout(p.timer);
  }
  function settleAll(cut) {
    var t = performance.now();
    for (var i = 0; i < pending.length; i++) settle(pending[i], Math.round(t - pending[i].t0), cut);
    pending = [];
    if (observer) { observer.disconnect(); observer = null; }
    setTimeout(flush, 0);
  }
  function watchReaction() {
    if (observer || !win.MutationObserver) return;
    observer = new MutationObserver(function (records) {
      for (var i = 0; i < records.length; i++) {
        var t = records[i].target;
        if (!ignored(t.nodeType === 1 ? t : t.parentElement)) return settleAll(false);
      }
    });
    observer.observe(doc.documentElement, {childList: true, subtree: true, attributes: true, characterData: true});
  }

  function onClick(ev) {
    var node = ev.target && ev.target.nodeType === 1 ? ev.target : ev.target && ev.target.parentElement;
    if (!node || ignored(node)) return;
    var target = node.closest('a,button,input,select,textarea,label,summary,[role=button],[role=link],' +
      '[data-fw-name],[onclick]') || node;
    var props = {x: Math.round(ev.clientX), y: Math.round(ev.clientY), target: selector(target), pending: true};
    var text = clickText(target);
    if (text) props.text = text;
    if (target.closest('a[target=_blank]')) props.opens_new_tab = true;
    if (target.closest('a[download]')) props.download = true;
    var t0 = performance.now(), prev = lastClick;
    var run = prev && t0 - prev.t <= 1000 && Math.abs(props.x - prev.x) + Math.abs(props.y - prev.y) <= 30
      ? prev.run + 1 : 1;
    lastClick = {t: t0, x: props.x, y: props.y, run: run};
    if (pending.length) settleAll(true);  // clicked again before anything happened
    if (run >= 3) {  // a rage burst: no reaction to wait for, the server should know now
      delete props.pending;
      props.reaction_ms = 0;
      props.reaction_cut = true;
      emit('click', props);
      return setTimeout(flush, 0);
    }
    var p = {e: emit('click', props), t0: t0};
    p.timer = setTimeout(function () {
      settle(p, null, false);
      pending.splice(pending.indexOf(p), 1);
      flush();
    }, cfg.reactionMs);
    pending.push(p);
    watchReaction();
  }

  function pageView() {
    var page = path(location.href);
    if (page === lastPath) return;
    var props = {page: page};
    if (lastPath === null && doc.referrer) props.referrer = path(doc.referrer);
    lastPath = page;
    if (pending.length) settleAll(false);  // a navigation is a reaction
    emit('page_view', props);
  }
  function wrapHistory(name) {
    var orig = history[name];
    history[name] = function () {
      var r = orig.apply(this, arguments);
      pageView();
      return r;
    };
  }

  function onError(ev) {
    if (ev.target && ev.target !== win && ev.target.nodeType === 1) return;  // a failed <img> etc.
    if (errors++ >= MAX_ERRORS) return;
    emit('js_error', {message: message(ev.message || 'error')});
  }
  function onRejection(ev) {
    if (errors++ >= MAX_ERRORS) return;
    var r = ev.reason;
    emit('js_error', {message: message((r && r.message) || r || 'unhandled rejection')});
  }
  function httpError(url, status) {
    if (ours(url)) return;
    emit('http_error', {url: path(url), status: status});
  }
  function wrapNetwork() {
    if (origFetch) {
      win.fetch = function (input) {
        var url = typeof input === 'string' ? input : (input && input.url) || String(input);
        var p = origFetch.apply(this, arguments);
        p.then(function (res) { if (res.status >= 400) httpError(url, res.status); },
          function () { httpError(url, 0); });
        return p;
      };
    }
    var X = win.XMLHttpRequest && XMLHttpRequest.prototype;
    if (!X) return;
    var open = X.open, sendX = X.send;
    X.open = function (method, url) { this._fwUrl = String(url); return open.apply(this, arguments); };
    X.send = function () {
      var x = this;
      x.addEventListener('load', function () { if (x.status >= 400) httpError(x._fwUrl, x.status); });
      x.addEventListener('error', function () { httpError(x._fwUrl, 0); });
      return sendX.apply(this, arguments);
    };
  }

  function fieldName(node) { return node.getAttribute('name') || node.id || selector(node); }
  function onInvalid(ev) {
    if (!ignored(ev.target)) emit('form_error', {field: fieldName(ev.target)});
  }
  function watchAriaInvalid() {
    if (!win.MutationObserver) return;
    new MutationObserver(function (records) {
      for (var i = 0; i < records.length; i++) {
        var t = records[i].target;
        if (t.getAttribute('aria-invalid') === 'true' && records[i].oldValue !== 'true' && !ignored(t)) {
          emit('form_error', {field: fieldName(t)});
        }
      }
    }).observe(doc.documentElement, {subtree: true, attributes: true, attributeOldValue: true,
      attributeFilter: ['aria-invalid']});
  }

  function onScroll() {
    clearTimeout(scrollTimer);
    scrollTimer = setTimeout(function () {
      var y = Math.round(win.scrollY || 0);
      if (Math.abs(y - lastY) < 50) return;
      emit('scroll', {y: y, direction: y > lastY ? 'down' : 'up'});
      lastY = y;
    }, 250);
  }

  // -- wiring --------------------------------------------------------------------------
  function init(options) {
    if (cfg) return api;
    options = options || {};
    var base = options.endpoint || (script && script.src ? new URL(script.src).origin : location.origin);
    cfg = {endpoint: base.replace(/\/+$/, ''), siteKey: options.siteKey || '',
      flushMs: options.flushMs || 1000, reactionMs: options.reactionMs || 3000,
      onIntervention: options.onIntervention || null};
    doc.addEventListener('click', onClick, true);
    doc.addEventListener('invalid', onInvalid, true);
    doc.addEventListener('keydown', function (ev) {
      if (ev.key === 'Escape' && nudge) nudge.dismiss();
    });
    win.addEventListener('error', onError, true);
    win.addEventListener('unhandledrejection', onRejection);
    win.addEventListener('scroll', onScroll, {passive: true});
    win.addEventListener('popstate', pageView);
    win.addEventListener('hashchange', pageView);
    win.addEventListener('pagehide', function () { if (pending.length) settleAll(false); flush(true); });
    doc.addEventListener('visibilitychange', function () {
      if (doc.visibilityState === 'hidden') flush(true);
    });
    wrapHistory('pushState');
    wrapHistory('replaceState');
    wrapNetwork();
    watchAriaInvalid();
    if (doc.body) mountUi(); else doc.addEventListener('DOMContentLoaded', mountUi);
    lastY = Math.round(win.scrollY || 0);
    pageView();
    setInterval(flush, cfg.flushMs);
    ensureSession(function () { flush(); connect(); });
    return api;
  }

  function track(type, props) {
    if (typeof type !== 'string' || !type) throw new TypeError('frictionwatch.track(type, props): type must be a string');
    emit(type, props || {});
  }

  var api = {
    version: '1',
    init: init,
    track: track,
    requestHelp: requestHelp,
    show: show,
    flush: function () { flush(); },
    sessionId: function () { return session && session.id; },
    scrub: scrub,
    debug: function () {
      var copy = {queued: queue.length, pending: pending.length, session: session && session.id};
      for (var k in stats) copy[k] = stats[k];
      return copy;
    }
  };
  win.frictionwatch = api;
})(window, document);
