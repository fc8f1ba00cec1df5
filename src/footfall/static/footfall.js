/*! footfall.js: the Footfall browser tracker. AGPL-3.0-or-later. */
/*
 * Embedded as
 *   <script async src="https://stats.example.com/footfall.js" data-site-id="default"></script>
 * Every request goes to the host this file was loaded from; nothing goes to a third party.
 * The server minifies this file once at start-up and serves the minified bytes.
 *
 * Support form (form mode, attributes only): data-form-selector's form sends form_viewed
 * once per page view, answer_shown when data-answer-selector's element becomes visible
 * (its data-* attributes, e.g. data-answer-id, go along), ticket_submitted when the form is
 * submitted (or data-ticket-selector's element clicked); each with data.form (the form's id,
 * else the page path) and data.question (data-question-selector's text).
 *
 * Identity modes (mode):
 *   "f" fingerprint: id derived from stable device signals; wins when enabled and allowed
 *   "c" cookie:      random id in a first-party cookie on the registrable domain
 *   "e" ephemeral:   random id that lives only in this page's memory; events say
 *                    ephemeral:true. Used when both are off, consent is not (yet) given,
 *                    or was rejected (also by Global Privacy Control).
 */
(function (win, doc) {
  'use strict';
  var existing = win.footfall;
  if (existing && existing.getId) return; // loaded twice

  var script = doc.currentScript || doc.querySelector('script[data-site-id]') || doc.createElement('b');
  var nav = navigator;
  var TOKEN = /^[\w-]{8,128}$/; // the server's token format
  var DAY = 86400;

  function attr(name, fallback) {
    var value = script.getAttribute('data-' + name);
    return value == null || value === '' ? fallback : value;
  }
  function flag(name, fallback) {
    var value = attr(name);
    return value == null ? fallback : value != 'false' && value != '0';
  }

  // Everything is sent to the directory footfall.js was served from.
  var base = (script.src || '/').replace(/[^\/]*$/, '');
  var site = attr('site-id', '');
  var cookieName = attr('cookie-name', 'footfall_id');
  if (!/^[\w-]{1,64}$/.test(cookieName)) cookieName = 'footfall_id';
  var CONSENT = 'footfall_consent';
  var useCookie = flag('user-analytics-cookie-enabled', true);
  var useFingerprint = flag('user-analytics-fingerprint-enabled', false);
  var consentRequired = flag('consent-required', false);
  var respectGpc = flag('respect-gpc', true);
  var abTest = flag('ab-test', false);
  var emailSelector = attr('user-email-query-selector');
  var formSelector = attr('form-selector');
  var ticketSelector = attr('ticket-selector');
  var questionSelector = attr('question-selector');
  var answerSelector = attr('answer-selector');

  // ------------------------------------------------------------------ ids

  function base64url(bytes) {
    var text = '';
    for (var i = 0; i < bytes.length; i++) text += String.fromCharCode(bytes[i]);
    return btoa(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  function random(n) {
    return crypto.getRandomValues(new Uint8Array(n));
  }

  /** 128 random bits, base64url; with data-ab-test a random 0 or 1 as last character. */
  function newToken() {
    return base64url(random(16)) + (abTest ? random(1)[0] & 1 : '');
  }

  /** A small 128-bit string hash (four multiplicative lanes, murmur-style finish). */
  function hash128(text) {
    var h = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a];
    var primes = [0x9e3779b1, 0x85ebca77, 0xc2b2ae3d, 0x27d4eb2f];
    var i, k, x;
    for (i = 0; i < text.length; i++) {
      for (k = 0; k < 4; k++) h[k] = Math.imul(h[k] ^ text.charCodeAt(i), primes[k]) ^ (h[(k + 1) & 3] >>> 13);
    }
    var out = new Uint8Array(16);
    for (k = 0; k < 4; k++) {
      x = h[k] + h[(k + 1) & 3] + h[(k + 2) & 3];
      x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
      x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
      x ^= x >>> 16;
      for (i = 0; i < 4; i++) out[k * 4 + i] = x >>> (i * 8);
    }
    return out;
  }

  function attempt(fn) {
    try {
      return fn();
    } catch (e) {
      return '';
    }
  }

  /** Stable browser/device characteristics, hashed; computed once, never sent raw. */
  function fingerprint() {
    var scr = screen;
    var signals = [
      attempt(function () {
        var canvas = doc.createElement('canvas');
        var g = canvas.getContext('2d');
        canvas.width = 240;
        canvas.height = 60;
        g.textBaseline = 'top';
        g.font = '16px Arial';
        g.fillStyle = '#f60';
        g.fillRect(120, 2, 60, 22);
        g.fillStyle = '#069';
        g.fillText('Footfall, \ud83d\udc63 0.1', 2, 15);
        g.fillStyle = 'rgba(102,204,0,.7)';
        g.fillText('Footfall, \ud83d\udc63 0.1', 4, 17);
        return canvas.toDataURL();
      }),
      attempt(function () {
        var gl = doc.createElement('canvas').getContext('webgl');
        var info = gl.getExtension('WEBGL_debug_renderer_info');
        var found = [gl.getParameter(info.UNMASKED_VENDOR_WEBGL), gl.getParameter(info.UNMASKED_RENDERER_WEBGL)];
        var lose = gl.getExtension('WEBGL_lose_context');
        if (lose) lose.loseContext();
        return found;
      }),
      [scr.width, scr.height, scr.colorDepth],
      attempt(function () {
        return Intl.DateTimeFormat().resolvedOptions().timeZone;
      }),
      nav.languages,
      nav.platform,
      nav.hardwareConcurrency,
      nav.deviceMemory,
      nav.maxTouchPoints
    ];
    var bytes = hash128(JSON.stringify(signals));
    // A/B group from the hash, so it stays the same on every visit.
    return base64url(bytes) + (abTest ? bytes[0] & 1 : '');
  }

  // ------------------------------------------------------------------ cookies

  function getCookie(name) {
    var match = doc.cookie.match(new RegExp('(?:^|; )' + name + '=([^;]*)'));
    return match ? match[1] : null;
  }

  var domain; // the registrable domain ("" = host-only cookie), found on first write

  function cookieText(name, value, seconds, where) {
    return name + '=' + value + '; Path=/; SameSite=Lax; Max-Age=' + seconds +
      (where ? '; Domain=' + where : '') + (location.protocol == 'https:' ? '; Secure' : '');
  }

  /** Browsers refuse public suffixes such as co.uk: the shortest domain accepted is it. */
  function findDomain() {
    var labels = location.hostname.split('.');
    var probe = 'footfall_probe';
    var value = newToken();
    for (var i = labels.length - 1; i >= 0; i--) {
      var candidate = labels.slice(i).join('.');
      doc.cookie = cookieText(probe, value, 60, candidate);
      if (getCookie(probe) == value) {
        doc.cookie = cookieText(probe, '', 0, candidate);
        return candidate;
      }
    }
    return '';
  }

  function setCookie(name, value) {
    if (domain == null) domain = findDomain();
    doc.cookie = cookieText(name, value, 399 * DAY, domain);
  }

  function deleteCookie(name) {
    if (domain == null) domain = findDomain();
    doc.cookie = cookieText(name, '', 0, domain);
    doc.cookie = cookieText(name, '', 0, '');
  }

  // ------------------------------------------------------------------ consent and mode

  /** "1" accepted, "0" rejected, "" not decided yet (the screen is needed). */
  function consent() {
    var stored = getCookie(CONSENT);
    if (stored == '1' || stored == '0') return stored;
    if (respectGpc && nav.globalPrivacyControl) return '0';
    return consentRequired ? '' : '1';
  }

  function pending() {
    return (useCookie || useFingerprint) && consent() === '';
  }

  var ephemeralToken = newToken();
  var fingerprintToken;
  var token;
  var mode;

  function chooseMode() {
    var allowed = consent() == '1';
    if (allowed && useFingerprint) {
      mode = 'f';
      token = fingerprintToken || (fingerprintToken = fingerprint());
    } else if (allowed && useCookie) {
      mode = 'c';
      var stored = getCookie(cookieName);
      token = stored && TOKEN.test(stored) ? stored : newToken();
      setCookie(cookieName, token); // also renews the 399 days
    } else {
      mode = 'e';
      token = ephemeralToken;
    }
  }

  // ------------------------------------------------------------------ delivery

  var QUEUE = 'footfall_queue';
  var MAX_AGE = 7 * DAY * 1000; // the server keeps client times up to 7 days old
  var backoff = 0;
  var timer;
  // From pagehide on, the browser carries keepalive requests on by itself but rejects their
  // promises here: queueing those would send them twice.
  var unloading = false;

  function readQueue() {
    return attempt(function () {
      return JSON.parse(localStorage.getItem(QUEUE));
    }) || [];
  }

  function writeQueue(items) {
    attempt(function () {
      if (items.length) localStorage.setItem(QUEUE, JSON.stringify(items.slice(-200)));
      else localStorage.removeItem(QUEUE);
    });
  }

  var retired; // the id this page gave up: consent withdrawn, or reset()

  /** An answer may renew the id cookie (Set-Cookie) for a request sent before the page
   *  gave that id up; the page's choice wins: the new id, or no cookie at all. */
  function settleCookie() {
    if (!retired || getCookie(cookieName) != retired) return;
    if (mode == 'c') setCookie(cookieName, token);
    else deleteCookie(cookieName);
  }

  /** JSON POST with keepalive: it survives the page unloading; failures are queued. */
  function deliver(item) {
    function failed() {
      if (!unloading) retry(item);
    }
    try {
      // A string body goes as text/plain: a simple request, no CORS preflight before it.
      fetch(item.u, { method: 'POST', body: item.b, keepalive: true, credentials: 'include' }).then(
        function (answer) {
          settleCookie();
          var status = answer.status;
          if (status >= 500 || status == 429 || status == 408) return failed();
          backoff = 0; // delivered, or refused for good (4xx): either way it is done
          if (readQueue().length) flush();
        },
        failed
      );
    } catch (e) {
      failed();
    }
  }

  function retry(item) {
    item.n = (item.n || 0) + 1;
    if (item.n > 50 || Date.now() - item.t > MAX_AGE) return;
    var items = readQueue();
    items.push(item);
    writeQueue(items);
    if (!timer) {
      var delay = Math.min(300, Math.pow(2, backoff++)) * (750 + Math.random() * 500);
      timer = setTimeout(function () {
        timer = 0;
        flush();
      }, delay);
    }
  }

  function flush() {
    var items = readQueue();
    writeQueue([]);
    items.forEach(deliver);
  }

  function post(path, body) {
    var query = (site ? '&site=' + encodeURIComponent(site) : '') +
      // lets a server on the site's own domain renew the cookie over HTTP (Safari caps
      // cookies written by scripts at 7 days)
      (mode == 'c' ? '&cookie=' + cookieName : '');
    deliver({ u: base + path + query.replace('&', '?'), b: JSON.stringify(body), t: Date.now() });
  }

  // ------------------------------------------------------------------ events and users

  var held = []; // interactions waiting for the consent decision
  var dismissed = false; // the dialog was closed without a choice: ephemeral for this page

  function send(event, data, time) {
    post('api/analytics/track', {
      event: event,
      token: token,
      data: data || {},
      ab_test: abTest,
      ephemeral: mode == 'e',
      url: location.href,
      ts: time || Date.now()
    });
  }

  function release() {
    var waiting = held;
    held = [];
    waiting.forEach(function (args) {
      send.apply(null, args);
    });
  }

  /** The first element matching a page's selector (null when none, or not a selector). */
  function find(selector) {
    return (selector && attempt(function () {
      return doc.querySelector(selector);
    })) || null;
  }

  function text(field) {
    return field ? (field.tagName == 'INPUT' || field.tagName == 'TEXTAREA' ? field.value : field.textContent).trim() : '';
  }

  // The support form's events (and feedback or clicks while it is on the page) name the form
  // and carry the question, unless the caller gave them.
  var FORM_EVENT = /^(form_|answer_|ticket_|message_(dis)?like|click_)/;

  function track(event, data) {
    var form = FORM_EVENT.test(event) && find(formSelector);
    if (form) {
      data = JSON.parse(JSON.stringify(data || {}));
      if (data.form == null) data.form = form.getAttribute('id') || location.pathname;
      var question = text(find(questionSelector)).slice(0, 2000);
      if (data.question == null && question) data.question = question;
    }
    checkUser();
    if (pending() && !dismissed) {
      held.push([event, data, Date.now()]);
      showConsent();
    } else {
      send(event, data);
    }
  }

  var settings = win.footfallSettings;
  var lastUser; // what the last identify call said

  /** An identify call whenever footfallSettings.user (or the token) changes. */
  function checkUser() {
    var current = win.footfallSettings;
    var user = current && current.user;
    if (!user || typeof user != 'object') return;
    var said = JSON.stringify([token, user]);
    if (said == lastUser) return;
    lastUser = said;
    post('api/identify', {
      token: token,
      // sent even in ephemeral mode, but the server never links it to an ephemeral token
      ephemeral: mode == 'e',
      user: { uniqueClientId: user.uniqueClientId, email: user.email, metadata: user.metadata }
    });
  }

  function userSettings() {
    var current = win.footfallSettings;
    if (!current || typeof current != 'object') win.footfallSettings = current = {};
    if (!current.user || typeof current.user != 'object') current.user = {};
    return current.user;
  }

  attempt(function () {
    // Assigning window.footfallSettings is noticed at once, changes inside it on the next
    // check. (A page that declared it with `var` keeps a plain property: checks still see it.)
    Object.defineProperty(win, 'footfallSettings', {
      configurable: true,
      get: function () {
        return settings;
      },
      set: function (value) {
        settings = value;
        setTimeout(checkUser);
      }
    });
  });
  setInterval(checkUser, 1000);

  /**
   * The email field is read at submission: its value wins; empty or missing clears the stale
   * email. With data-form-selector only that form counts, else any form of the page.
   */
  function onSubmit(e) {
    var form = e.target;
    if (formSelector && !attempt(function () { return form.matches(formSelector); })) return;
    if (emailSelector) userSettings().email = text(find(emailSelector));
    checkUser();
    if (formSelector && !ticketSelector) track('ticket_submitted');
  }
  if (emailSelector || formSelector) doc.addEventListener('submit', onSubmit, true);
  if (ticketSelector) {
    doc.addEventListener('click', function (e) {
      if (attempt(function () { return e.target.closest(ticketSelector); })) track('ticket_submitted');
    }, true);
  }

  var viewed; // form_viewed sent on this page view
  var shown = ''; // what the visible answer was last reported as ('' = none visible)

  /** Run on every change of the page: the form appearing, the answer appearing. */
  function watchForm() {
    if (!viewed && find(formSelector)) {
      viewed = 1;
      track('form_viewed');
    }
    var answer = find(answerSelector);
    if (!answer || !answer.getClientRects().length || getComputedStyle(answer).visibility == 'hidden') {
      shown = '';
      return;
    }
    var data = {};
    for (var key in answer.dataset) {
      data[key.replace(/[A-Z]/g, function (c) { return '_' + c.toLowerCase(); })] = answer.dataset[key];
    }
    var said = JSON.stringify([data, text(find(questionSelector))]);
    if (said != shown) {
      shown = said;
      track('answer_shown', data);
    }
  }

  // ------------------------------------------------------------------ consent screen

  var panel;
  var STYLE =
    ':host{all:initial;display:block}' +
    '.o{position:fixed;inset:0;z-index:2147483647;display:flex;align-items:center;justify-content:center;background:rgba(15,23,42,.45)}' +
    '.c{box-sizing:border-box;max-width:400px;margin:16px;padding:22px 24px;background:#fff;color:#1e293b;border-radius:14px;box-shadow:0 18px 50px rgba(15,23,42,.3);font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}' +
    '.i .c{max-width:none;margin:0 0 16px;box-shadow:none;border:1px solid #cbd5e1}' +
    'h2{margin:0 0 6px;font-size:17px}p{margin:0 0 18px;color:#475569}' +
    '.b{display:flex;gap:10px;justify-content:flex-end;flex-wrap:wrap}' +
    'button{font:inherit;font-weight:600;padding:8px 18px;border-radius:8px;border:1px solid #94a3b8;background:#fff;color:#1e293b;cursor:pointer}' +
    'button:focus-visible{outline:3px solid #60a5fa;outline-offset:2px}' +
    '.y{background:#1e293b;border-color:#1e293b;color:#fff}';

  function ready(fn) {
    if (doc.readyState == 'loading') doc.addEventListener('DOMContentLoaded', fn);
    else fn();
  }

  /** Widget mode: a dialog over the page. Form mode: a card just above the form. */
  function showConsent() {
    ready(function () {
      if (panel) return;
      var form = formSelector && attempt(function () {
        return doc.querySelector(formSelector);
      });
      panel = doc.createElement('footfall-consent');
      var root = panel.attachShadow ? panel.attachShadow({ mode: 'open' }) : panel;
      root.innerHTML = '<style>' + STYLE + '</style><div class="' + (form ? 'i' : 'o') +
        '"><div class="c" role="dialog" aria-modal="' + !form + '" aria-labelledby="t" tabindex="-1">' +
        '<h2 id="t"></h2><p></p><div class="b"><button class="n"></button><button class="y"></button></div></div></div>';
      var texts = {
        h2: attr('consent-screen-title', 'Help us improve'),
        p: attr('consent-screen-disclaimer', 'May we use an anonymous identifier to understand how visitors use our help? It contains nothing about you, and you can change your mind at any time.'),
        '.y': attr('consent-screen-accept-button-text', 'Allow tracking'),
        '.n': attr('consent-screen-reject-button-text', 'No, thanks')
      };
      for (var selector in texts) root.querySelector(selector).textContent = texts[selector];
      root.querySelector('.y').onclick = function () {
        decide('1');
      };
      root.querySelector('.n').onclick = function () {
        decide('0');
      };
      if (form) form.parentNode.insertBefore(panel, form);
      else {
        // The dialog never traps the page: Escape or a click beside it closes it, no choice made.
        root.querySelector('.o').onclick = function (e) {
          if (e.target == this) dismiss();
        };
        root.querySelector('.c').onkeydown = function (e) {
          if (e.key == 'Escape') dismiss();
        };
        doc.body.appendChild(panel);
        root.querySelector('.c').focus();
      }
    });
  }

  function hideConsent() {
    if (panel) panel.remove();
    panel = null;
  }

  function dismiss() {
    dismissed = true;
    hideConsent();
    release();
  }

  function decide(choice) {
    var wasPersistent = mode != 'e';
    setCookie(CONSENT, choice);
    if (choice == '0') {
      if (mode == 'c') retired = token;
      deleteCookie(cookieName);
    }
    hideConsent();
    chooseMode();
    if (wasPersistent && mode == 'e') ephemeralToken = token = newToken(); // no link to before
    release();
    checkUser();
  }

  // ------------------------------------------------------------------ start

  chooseMode();
  send('visitor');
  checkUser();
  flush(); // events queued by earlier pages
  if (formSelector && pending()) showConsent();
  if (formSelector) {
    ready(function () {
      watchForm();
      new MutationObserver(watchForm).observe(doc.documentElement, { childList: true, subtree: true, attributes: true, characterData: true });
    });
  }
  function leaving() {
    release(); // undecided: the held interactions go out ephemeral rather than not at all
  }
  doc.addEventListener('visibilitychange', function () {
    if (doc.visibilityState == 'hidden') leaving();
  });
  win.addEventListener('pagehide', function () {
    leaving();
    unloading = true;
  });
  win.addEventListener('pageshow', function () {
    unloading = false; // back from the back/forward cache
  });

  var api = (win.footfall = {
    track: track,
    /** Merge user data into footfallSettings.user and identify at once. */
    identify: function (user) {
      var current = userSettings();
      for (var key in user) current[key] = user[key];
      checkUser();
    },
    /** New anonymous id (e.g. on logout); the user data is forgotten. A fingerprint stays. */
    reset: function () {
      if (win.footfallSettings) delete win.footfallSettings.user;
      lastUser = null;
      if (mode == 'c') {
        retired = token;
        setCookie(cookieName, (token = newToken()));
      }
      if (mode == 'e') ephemeralToken = token = newToken();
    },
    getId: function () {
      return token;
    },
    /** With data-ab-test: "control" or "test", the group the server gives this id's events
     *  (e.g. to show the control group no answer); else null. */
    group: function () {
      return (abTest && { 0: 'control', 1: 'test' }[token.slice(-1)]) || null;
    },
    consent: {
      show: showConsent,
      /** Withdraw consent: the id cookie is deleted and events become ephemeral. */
      revoke: function () {
        decide('0');
      }
    }
  });
  // Calls made before this file loaded: window.footfall = {q: [arguments of track(...)]}
  ((existing && existing.q) || []).forEach(function (args) {
    api.track.apply(null, args);
  });
})(window, document);
