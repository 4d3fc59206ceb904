// The PAC helper functions (Netscape's proxy auto-config, as browsers provide them).
// dnsResolve(host) and myIpAddress() are native: the agent answers them for the link the PAC
// file came from, dnsResolve with a timeout.

function dnsResolve(host) {
    var r = __homespot_dns(String(host));
    return (r === undefined || r === null) ? null : r;
}

function isPlainHostName(host) {
    return String(host).indexOf(".") < 0;
}

function dnsDomainIs(host, domain) {
    host = String(host).toLowerCase();
    domain = String(domain).toLowerCase();
    return host.length >= domain.length &&
        host.substring(host.length - domain.length) === domain;
}

function localHostOrDomainIs(host, hostdom) {
    host = String(host).toLowerCase();
    hostdom = String(hostdom).toLowerCase();
    if (host === hostdom) return true;
    return host.indexOf(".") < 0 && hostdom.indexOf(host + ".") === 0;
}

function isResolvable(host) {
    return dnsResolve(host) !== null;
}

function dnsDomainLevels(host) {
    return String(host).split(".").length - 1;
}

function __homespot_ipv4(text) {
    var m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(String(text));
    if (!m) return null;
    var n = 0;
    for (var i = 1; i <= 4; i++) {
        var b = parseInt(m[i], 10);
        if (b > 255) return null;
        n = n * 256 + b;
    }
    return n;
}

function isInNet(host, pattern, mask) {
    var a = __homespot_ipv4(host);
    if (a === null) {
        var r = dnsResolve(host);
        if (r === null) return false;
        a = __homespot_ipv4(r);
        if (a === null) return false;
    }
    var p = __homespot_ipv4(pattern), m = __homespot_ipv4(mask);
    if (p === null || m === null) return false;
    return ((a & m) >>> 0) === ((p & m) >>> 0);
}

// As Mozilla and Chromium implement it (so pactester agrees): dots are literal, `*` and `?`
// are wildcards, and the rest is a regular expression, so character classes like `[ab]` work.
function shExpMatch(str, shexp) {
    var re = String(shexp).replace(/\./g, "\\.").replace(/\*/g, ".*").replace(/\?/g, ".");
    return new RegExp("^" + re + "$").test(String(str));
}

var __homespot_days = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
var __homespot_months = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];

function __homespot_gmt(args) {
    var gmt = args.length > 0 && args[args.length - 1] === "GMT";
    var list = Array.prototype.slice.call(args, 0, gmt ? args.length - 1 : args.length);
    return { gmt: gmt, list: list, now: new Date() };
}

function __homespot_between(v, lo, hi) {
    return lo <= hi ? (v >= lo && v <= hi) : (v >= lo || v <= hi);
}

function weekdayRange() {
    var a = __homespot_gmt(arguments);
    var today = a.gmt ? a.now.getUTCDay() : a.now.getDay();
    var lo = __homespot_days.indexOf(String(a.list[0]).toUpperCase());
    if (lo < 0) return false;
    if (a.list.length < 2) return today === lo;
    var hi = __homespot_days.indexOf(String(a.list[1]).toUpperCase());
    if (hi < 0) return false;
    return __homespot_between(today, lo, hi);
}

function dateRange() {
    var a = __homespot_gmt(arguments);
    var d = a.gmt ? a.now.getUTCDate() : a.now.getDate();
    var mo = a.gmt ? a.now.getUTCMonth() : a.now.getMonth();
    var y = a.gmt ? a.now.getUTCFullYear() : a.now.getFullYear();
    // Each argument is a day (1-31), a month name or a year (> 31); compare the fields given.
    var parts = a.list.map(function (x) {
        var m = __homespot_months.indexOf(String(x).toUpperCase());
        if (m >= 0) return { k: "m", v: m };
        var n = parseInt(x, 10);
        if (isNaN(n)) return null;
        return n > 31 ? { k: "y", v: n } : { k: "d", v: n };
    });
    if (parts.some(function (p) { return p === null; })) return false;
    var value = function (p, y2, mo2, d2) { return p.k === "y" ? y2 : p.k === "m" ? mo2 : d2; };
    if (parts.length === 1) return value(parts[0], y, mo, d) === parts[0].v;
    var half = parts.length / 2;
    if (half !== Math.floor(half)) return false;
    var lo = parts.slice(0, half), hi = parts.slice(half);
    var key = function (ps, base) {
        var k = [base[0], base[1], base[2]];
        ps.forEach(function (p) { k[p.k === "y" ? 0 : p.k === "m" ? 1 : 2] = p.v; });
        return k[0] * 10000 + k[1] * 100 + k[2];
    };
    var now = [y, mo, d];
    var useY = lo.some(function (p) { return p.k === "y"; });
    var cur = useY ? key([], now) : key([], [0, mo, d]);
    var l = key(lo, useY ? now : [0, mo, d]);
    var h = key(hi, useY ? now : [0, mo, d]);
    return useY ? (cur >= l && cur <= h) : __homespot_between(cur, l, h);
}

// Inclusive bounds, as browsers: timeRange(0, 12) holds until 12:59:59; with minutes, the end
// minute is included to its last second. No wrap-around past midnight (browsers have none).
function timeRange() {
    var a = __homespot_gmt(arguments);
    var n = a.list.map(function (x) { return parseInt(x, 10); });
    if (n.some(function (x) { return isNaN(x); })) return false;
    var h = a.gmt ? a.now.getUTCHours() : a.now.getHours();
    var mi = a.gmt ? a.now.getUTCMinutes() : a.now.getMinutes();
    var s = a.gmt ? a.now.getUTCSeconds() : a.now.getSeconds();
    var now = h * 3600 + mi * 60 + s;
    if (n.length === 1) return h === n[0];
    if (n.length === 2) return n[0] <= h && h <= n[1];
    var lo, hi;
    if (n.length === 4) { lo = n[0] * 3600 + n[1] * 60; hi = n[2] * 3600 + n[3] * 60 + 59; }
    else if (n.length === 6) { lo = n[0] * 3600 + n[1] * 60 + n[2]; hi = n[3] * 3600 + n[4] * 60 + n[5]; }
    else return false;
    return lo <= now && now <= hi;
}
