#!/usr/bin/python3
"""
test_stats.py: the stats endpoint (stats: address, token, allow) of the real petrel, driven with
curl: /metrics in the Prometheus text format 0.0.4, checked line by line by a strict parser of
our own (and by python3-prometheus-client's when it is installed); every metric present, as 0,
at start-up; counters that move when mail flows; /stats as JSON with the same values; /healthz
200, and 503 once <spool>/tmp cannot take a file; 401 without the bearer token; 403 outside
stats.allow; 404 and 405; a start-up error naming an address that cannot be bound; and the page
at / rendered by a headless Chromium (its screenshot is left in PETREL_ARTIFACTS, the Meson build
directory of this script).
"""

import base64
import json
import math
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import unittest
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from petrel import PetrelTestCase, free_port, hole_port, main, make_message  # noqa: E402

CURL = shutil.which('curl')
CHROMIUM = shutil.which('chromium')
OPENSSL = shutil.which('openssl')
USERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'users')  # alice
ARTIFACTS = os.environ.get('PETREL_ARTIFACTS') or tempfile.gettempdir()
CURL_TIMEOUT = 10
CHROMIUM_TIMEOUT = 60
TOKEN = 'sekret-Token_42'

# Every family petrel exports, with its type (stats.c stats_families).
FAMILIES = {
    'petrel_build_info': 'gauge',
    'petrel_start_time_seconds': 'gauge',
    'petrel_process_resident_memory_bytes': 'gauge',
    'petrel_config_reloads_total': 'counter',
    'petrel_config_reload_failures_total': 'counter',
    'petrel_config_last_reload_successful': 'gauge',
    'petrel_connections_current': 'gauge',
    'petrel_connections_total': 'counter',
    'petrel_connections_refused_total': 'counter',
    'petrel_sessions': 'gauge',
    'petrel_tls_handshakes_total': 'counter',
    'petrel_tls_handshake_failures_total': 'counter',
    'petrel_auth_successes_total': 'counter',
    'petrel_auth_failures_total': 'counter',
    'petrel_messages_received_total': 'counter',
    'petrel_received_bytes_total': 'counter',
    'petrel_rejections_total': 'counter',
    'petrel_recipients_total': 'counter',
    'petrel_delivery_attempts_total': 'counter',
    'petrel_deliveries_inflight': 'gauge',
    'petrel_queue_messages': 'gauge',
    'petrel_queue_oldest_age_seconds': 'gauge',
    'petrel_dsns_total': 'counter',
    'petrel_spool_commits_total': 'counter',
    'petrel_spool_commit_failures_total': 'counter',
    'petrel_spool_sync_batches_total': 'counter',
    'petrel_dns_lookups_total': 'counter',
    'petrel_dns_failures_total': 'counter',
    'petrel_accept_latency_seconds': 'histogram',
    'petrel_delivery_latency_seconds': 'histogram',
    'petrel_spool_sync_seconds': 'histogram',
    'petrel_loop_lag_seconds': 'histogram',
}
# What may be non-zero before any mail: the process itself, the timer, the probe connection
# with which the fixture waits for petrel to be ready.
NONZERO_AT_START = {'petrel_build_info', 'petrel_start_time_seconds',
                    'petrel_process_resident_memory_bytes', 'petrel_connections_total',
                    'petrel_config_last_reload_successful',
                    'petrel_loop_lag_seconds'}
# Figures that change by themselves between two scrapes.
MOVING = {'petrel_process_resident_memory_bytes', 'petrel_queue_oldest_age_seconds',
          'petrel_loop_lag_seconds'}


# ---- HTTP through curl ----

class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers      # lower-case name -> value
        self.body = body

    def __repr__(self):
        return '<HTTP %d %r %r>' % (self.status, self.headers, self.body[:200])


def http(port, path, method='GET', headers=()):
    """One request with curl; the status, headers and body of the response."""
    cmd = [CURL, '-sS', '-i', '-m', str(CURL_TIMEOUT), '-X', method]
    if method == 'HEAD':
        cmd = [CURL, '-sS', '-I', '-m', str(CURL_TIMEOUT)]
    for h in headers:
        cmd += ['-H', h]
    cmd.append('http://127.0.0.1:%d%s' % (port, path))
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=CURL_TIMEOUT + 5)
    if r.returncode != 0:
        raise AssertionError('curl %s failed (%d): %s' % (path, r.returncode, r.stderr))
    head, _, body = r.stdout.partition(b'\r\n\r\n')
    lines = head.decode('latin-1').split('\r\n')
    m = re.match(r'^HTTP/1\.[01] (\d{3})', lines[0])
    if not m:
        raise AssertionError('bad status line %r' % lines[0])
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(':')
        hdrs[k.strip().lower()] = v.strip()
    return Response(int(m.group(1)), hdrs, body)


# ---- a strict reader of the text format 0.0.4 ----

NAME = r'[a-zA-Z_:][a-zA-Z0-9_:]*'
LABEL_NAME = r'[a-zA-Z_][a-zA-Z0-9_]*'
LABEL_VALUE = r'"(?:[^"\\\n]|\\[\\"n])*"'
NUMBER = r'[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?Inf|NaN'
HELP_RE = re.compile(r'^# HELP (%s) (.*)$' % NAME)
TYPE_RE = re.compile(r'^# TYPE (%s) (counter|gauge|histogram|summary|untyped)$' % NAME)
SAMPLE_RE = re.compile(r'^(%s)(?:\{((?:%s=%s)(?:,%s=%s)*,?)?\})? (%s)(?: -?[0-9]+)?$'
                       % (NAME, LABEL_NAME, LABEL_VALUE, LABEL_NAME, LABEL_VALUE, NUMBER))
LABEL_RE = re.compile(r'(%s)=(%s)' % (LABEL_NAME, LABEL_VALUE))


def unescape(v):
    return re.sub(r'\\(.)', lambda m: '\n' if m.group(1) == 'n' else m.group(1), v[1:-1])


def parse_value(text):
    if text.endswith('Inf'):
        return -math.inf if text.startswith('-') else math.inf
    return float(text)


def parse_metrics(text):
    """Parse and check /metrics; returns {family: {'type', 'help', 'samples': [(name,
    ((label, value), ...), value)]}}. Raises AssertionError on anything the format forbids."""
    assert text.endswith('\n'), 'the text must end with a newline'
    families = {}
    current = None          # the family whose samples may follow
    series = set()
    for n, line in enumerate(text[:-1].split('\n'), 1):
        where = 'line %d: %r' % (n, line)
        assert line != '', '%s: empty line' % where
        if line.startswith('#'):
            m = HELP_RE.match(line) or TYPE_RE.match(line)
            assert m, '%s: a comment that is neither HELP nor TYPE' % where
            name = m.group(1)
            fam = families.setdefault(name, {'type': None, 'help': None, 'samples': []})
            assert not fam['samples'], '%s: HELP/TYPE after the samples of %s' % (where, name)
            key = 'help' if line.startswith('# HELP') else 'type'
            assert fam[key] is None, '%s: second %s for %s' % (where, key.upper(), name)
            fam[key] = m.group(2)
            if current is not None and current != name:
                assert families[current]['samples'], '%s: %s has no sample' % (where, current)
            current = name
            continue
        m = SAMPLE_RE.match(line)
        assert m, '%s: not a sample line' % where
        name, labels_text, value = m.group(1), m.group(2) or '', m.group(3)
        assert current is not None, '%s: a sample before any HELP/TYPE' % where
        fam = families[current]
        assert fam['help'] is not None and fam['type'] is not None, \
            '%s: family %s lacks HELP or TYPE' % (where, current)
        suffixes = ('_bucket', '_sum', '_count') if fam['type'] == 'histogram' else ('',)
        assert any(name == current + s for s in suffixes), \
            '%s: sample %s does not belong to family %s (%s)' % (where, name, current,
                                                                  fam['type'])
        labels = tuple((k, unescape(v)) for k, v in LABEL_RE.findall(labels_text))
        assert len({k for k, _ in labels}) == len(labels), '%s: a label twice' % where
        assert (name, labels) not in series, '%s: the same series twice' % where
        series.add((name, labels))
        v = parse_value(value)
        if fam['type'] == 'counter' or name.endswith(('_bucket', '_count', '_sum')):
            assert v >= 0, '%s: negative counter' % where
        fam['samples'].append((name, labels, v))
    assert current is None or families[current]['samples'], 'the last family has no sample'
    for name, fam in families.items():
        assert fam['help'], '%s: no HELP text' % name
        assert fam['type'], '%s: no TYPE' % name
        if fam['type'] == 'counter':
            assert name.endswith('_total'), '%s: a counter not ending in _total' % name
        if fam['type'] == 'histogram':
            check_histogram(name, fam['samples'])
    return families


def check_histogram(name, samples):
    """Per label set (le aside): buckets in increasing le, cumulative, ending with +Inf equal
    to _count, and a _sum."""
    groups = {}
    for sname, labels, v in samples:
        rest = tuple(l for l in labels if l[0] != 'le')
        g = groups.setdefault(rest, {'buckets': [], 'sum': None, 'count': None})
        if sname == name + '_bucket':
            le = dict(labels).get('le')
            assert le is not None, '%s: a bucket without le' % name
            g['buckets'].append((parse_value(le), v))
        elif sname == name + '_sum':
            g['sum'] = v
        else:
            g['count'] = v
    for rest, g in groups.items():
        b = g['buckets']
        assert b, '%s%r: no buckets' % (name, rest)
        assert all(b[i][0] < b[i + 1][0] for i in range(len(b) - 1)), \
            '%s: le not increasing: %r' % (name, b)
        assert all(b[i][1] <= b[i + 1][1] for i in range(len(b) - 1)), \
            '%s: buckets not cumulative: %r' % (name, b)
        assert b[-1][0] == math.inf, '%s: the last bucket is not +Inf' % name
        assert g['count'] is not None and b[-1][1] == g['count'], \
            '%s: +Inf bucket %r != _count %r' % (name, b[-1][1], g['count'])
        assert g['sum'] is not None, '%s: no _sum' % name


def values(families):
    """{(sample name, labels): value} over every family."""
    return {(s[0], s[1]): s[2] for f in families.values() for s in f['samples']}


def value(families, name, **labels):
    fam = families[name]
    for sname, slabels, v in fam['samples']:
        if sname == name and dict(slabels) == labels:
            return v
    raise KeyError('%s%r' % (name, labels))


def hist_count(families, name):
    return [s[2] for s in families[name]['samples'] if s[0] == name + '_count'][0]


# ---- the tests ----

class StatsTestCase(PetrelTestCase):
    """A petrel with the stats endpoint on a port of its own; mail to discard.test is delivered
    (discard route), to mx.test deferred after a failed MX lookup, anything else deferred (relay
    on a refused port)."""
    STATS_PORT = None
    STATS = {}

    @classmethod
    def setUpClass(cls):
        if CURL is None:
            raise unittest.SkipTest('curl is not installed')
        cls.STATS_PORT = free_port()
        cls.CONFIG = dict({
            'stats': dict({'address': '127.0.0.1:%d' % cls.STATS_PORT}, **cls.STATS),
            'routes': [{'domain': 'discard.test', 'discard': True},
                       {'domain': 'mx.test', 'mx': True},  # the resolver is a dead port
                       {'domain': '*', 'relay': '127.0.0.1:%d' % hole_port(), 'tls': 'none'}],
        }, **cls.extra_config())
        super().setUpClass()

    @classmethod
    def extra_config(cls):
        return {}

    def get(self, path, method='GET', headers=(), port=None):
        return http(port or self.STATS_PORT, path, method, headers)

    def scrape(self, port=None, headers=()):
        r = self.get('/metrics', port=port, headers=headers)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers.get('content-type'),
                         'text/plain; version=0.0.4; charset=utf-8')
        return parse_metrics(r.body.decode('utf-8'))

    def wait_for(self, what, cond, timeout=15.0):
        """Scrape until cond(families) holds; returns the families."""
        end = time.monotonic() + timeout
        while True:
            fams = self.scrape()
            if cond(fams):
                return fams
            if time.monotonic() > end:
                self.fail('%s: not within %.0f s' % (what, timeout))
            time.sleep(0.1)


class Metrics(StatsTestCase):
    def test_format_is_strict_and_complete(self):
        fams = self.scrape()
        self.assertEqual(sorted(fams), sorted(FAMILIES))
        for name, fam in fams.items():
            self.assertEqual(fam['type'], FAMILIES[name], name)
            self.assertTrue(name.startswith('petrel_'), name)
        (_, labels, v), = fams['petrel_build_info']['samples']
        self.assertEqual(v, 1)
        self.assertRegex(dict(labels)['version'], r'^\d+\.\d+\.\d+')
        states = {dict(l)['state'] for _, l, _ in fams['petrel_sessions']['samples']}
        self.assertEqual(states, {'greet', 'helo', 'mail', 'rcpt', 'data', 'bdat', 'wait',
                                  'closing'})
        combos = {(dict(l)['outcome'], dict(l)['route'])
                  for _, l, _ in fams['petrel_recipients_total']['samples']}
        self.assertEqual(len(combos), 16)
        self.assertGreater(value(fams, 'petrel_process_resident_memory_bytes'), 1 << 20)
        self.assertLess(abs(value(fams, 'petrel_start_time_seconds') - time.time()), 3600)

    def test_prometheus_client_parses_it(self):
        try:
            from prometheus_client.parser import text_string_to_metric_families
        except ImportError:
            self.skipTest('python3-prometheus-client is not installed')
        text = self.get('/metrics').body.decode('utf-8')
        ours = values(parse_metrics(text))
        theirs = {}
        types = {}
        for fam in text_string_to_metric_families(text):
            types[fam.name] = fam.type
            for s in fam.samples:
                theirs[(s.name, tuple(sorted(s.labels.items())))] = s.value
        for name, typ in FAMILIES.items():
            # The client names a counter family without its _total.
            key = name[:-len('_total')] if typ == 'counter' else name
            self.assertEqual(types.get(key), typ, name)
        self.assertEqual(len(theirs), len(ours))
        for (name, labels), v in ours.items():
            self.assertEqual(theirs[(name, tuple(sorted(labels)))], v, name)

    def test_loop_lag_timer_runs(self):
        a = hist_count(self.scrape(), 'petrel_loop_lag_seconds')
        time.sleep(0.6)
        b = hist_count(self.scrape(), 'petrel_loop_lag_seconds')
        self.assertGreaterEqual(b - a, 3, 'a 100 ms timer fired %d times in 0.6 s' % (b - a))

    def test_counters_move(self):
        before = self.scrape()
        c = self.connect()
        c.send_mail('a@example.org', ['x@discard.test', 'y@discard.test'], make_message())
        c.send_mail('a@example.org', 'z@discard.test', make_message(body='Two.\r\n'))
        c.send_mail('a@example.org', 'r@elsewhere.example', make_message())
        c.send_mail('a@example.org', 'm@mx.test', make_message())
        r = c.mail('a@example.org', 'SIZE=999999999999')
        self.assertReply(r, 552, '5.3.4')
        c.quit()

        def delta(fams, name, **labels):
            return value(fams, name, **labels) - value(before, name, **labels)

        def synced(fams):   # every batch the sync thread counted has reached the loop
            return (hist_count(fams, 'petrel_spool_sync_seconds') -
                    hist_count(before, 'petrel_spool_sync_seconds') ==
                    delta(fams, 'petrel_spool_sync_batches_total'))

        after = self.wait_for('3 recipients delivered, 1 deferred', lambda f: (
            delta(f, 'petrel_recipients_total', outcome='delivered', route='discard') >= 3 and
            delta(f, 'petrel_recipients_total', outcome='deferred', route='relay') >= 1 and
            delta(f, 'petrel_recipients_total', outcome='deferred', route='mx') >= 1 and
            synced(f)), timeout=30)
        self.assertEqual(delta(after, 'petrel_recipients_total', outcome='delivered',
                               route='discard'), 3)
        self.assertEqual(delta(after, 'petrel_recipients_total', outcome='deferred',
                               route='relay'), 1)
        self.assertEqual(delta(after, 'petrel_recipients_total', outcome='deferred', route='mx'),
                         1)
        self.assertEqual(delta(after, 'petrel_messages_received_total'), 4)
        self.assertGreater(delta(after, 'petrel_received_bytes_total'), 4 * 100)
        self.assertEqual(delta(after, 'petrel_connections_total'), 1)
        self.assertEqual(delta(after, 'petrel_rejections_total', reason='size'), 1)
        self.assertEqual(delta(after, 'petrel_spool_commits_total'), 4)
        self.assertGreaterEqual(delta(after, 'petrel_delivery_attempts_total'), 4)
        # The MX lookup for mx.test: no answer from the dead resolver.
        self.assertGreaterEqual(delta(after, 'petrel_dns_lookups_total'), 1)
        self.assertGreaterEqual(delta(after, 'petrel_dns_failures_total', status='tempfail'), 1)
        self.assertGreaterEqual(delta(after, 'petrel_spool_sync_batches_total'), 1)
        self.assertEqual(hist_count(after, 'petrel_accept_latency_seconds') -
                         hist_count(before, 'petrel_accept_latency_seconds'), 4)
        self.assertEqual(hist_count(after, 'petrel_delivery_latency_seconds') -
                         hist_count(before, 'petrel_delivery_latency_seconds'), 3)
        self.assertEqual(hist_count(after, 'petrel_spool_sync_seconds') -
                         hist_count(before, 'petrel_spool_sync_seconds'),
                         delta(after, 'petrel_spool_sync_batches_total'))
        # The deferred message waits in the queue (retry in an hour).
        self.assertGreaterEqual(value(after, 'petrel_queue_messages'), 1)
        self.assertGreaterEqual(value(after, 'petrel_queue_oldest_age_seconds'), 0)

    def test_sessions_by_state(self):
        c = self.connect()
        c.ehlo()
        self.assertReply(c.mail('a@example.org'), 250, '2.1.0')
        fams = self.wait_for('a session in state mail',
                             lambda f: value(f, 'petrel_sessions', state='mail') >= 1)
        self.assertGreaterEqual(value(fams, 'petrel_connections_current'), 1)
        total = sum(v for _, _, v in fams['petrel_sessions']['samples'])
        self.assertEqual(total, value(fams, 'petrel_connections_current'))
        c.quit()
        fams = self.wait_for('no session left',
                             lambda f: value(f, 'petrel_connections_current') == 0)
        for _, labels, v in fams['petrel_sessions']['samples']:
            self.assertEqual(v, 0, labels)

    def test_json_has_the_same_values(self):
        for attempt in range(5):
            fams = self.scrape()
            r = self.get('/stats')
            again = self.scrape()
            if values(fams).keys() == values(again).keys() and all(
                    values(fams)[k] == values(again)[k] for k in values(fams)
                    if not any(k[0].startswith(m) for m in MOVING)):
                break   # nothing moved around the JSON scrape
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers.get('content-type'), 'application/json')
        j = json.loads(r.body.decode('utf-8'))
        self.assertEqual(sorted(j), sorted(FAMILIES))
        checked = 0
        for fam_name, fam in fams.items():
            for name, labels, v in fam['samples']:
                if fam_name in MOVING:
                    continue
                node = j[fam_name]
                if fam['type'] == 'histogram':
                    if name.endswith('_bucket'):
                        node = node['buckets'][dict(labels)['le']]
                    else:
                        node = node[name[len(fam_name) + 1:]]
                else:
                    for _, lv in labels:
                        node = node[lv]
                self.assertEqual(node, v, '%s%r' % (name, labels))
                checked += 1
        self.assertGreater(checked, 100)

    def test_healthz(self):
        r = self.get('/healthz')
        self.assertEqual((r.status, r.body), (200, b'ok\n'))
        # Root ignores file modes: take the spool directory away and put a file in its place
        # (the probe is created somewhere under it; petrel's own work goes through open fds).
        spool = self.petrel.spool
        away = spool + '.away'
        os.rename(spool, away)
        try:
            with open(spool, 'w') as f:
                f.write('not a directory\n')
            r = self.get('/healthz')
            self.assertEqual(r.status, 503, r)
            self.assertIn(b'spool not writable', r.body)
        finally:
            if os.path.isfile(spool):
                os.unlink(spool)
            os.rename(away, spool)
        r = self.get('/healthz')
        self.assertEqual((r.status, r.body), (200, b'ok\n'))
        r = self.get('/healthz', method='HEAD')
        self.assertEqual((r.status, r.body), (200, b''))

    def test_not_found_and_method(self):
        for path in ('/nope', '/metrics/', '/stats.json', '/../etc/passwd', '/index.html'):
            self.assertEqual(self.get(path).status, 404, path)
        for method in ('POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH'):
            r = self.get('/metrics', method=method)
            self.assertEqual(r.status, 405, '%s %r' % (method, r))
            self.assertEqual(r.headers.get('allow'), 'GET, HEAD')
        r = self.get('/metrics', method='HEAD')
        self.assertEqual((r.status, r.body), (200, b''))
        # A query string does not change the page.
        self.assertEqual(self.get('/metrics?x=1').status, 200)

    def test_page(self):
        r = self.get('/')
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers.get('content-type'), 'text/html; charset=utf-8')
        self.assertIn("default-src 'none'", r.headers.get('content-security-policy', ''))
        html = r.body.decode('utf-8')
        self.assertIn('<svg', html)
        self.assertIn("fetch('stats'", html)
        # Self-contained: no script, style, image or link from anywhere else.
        self.assertIsNone(re.search(r'(?:src|href)\s*=|https?://|@import|url\(', html),
                          'the page loads something from outside')

    def test_page_in_headless_chromium(self):
        if CHROMIUM is None:
            self.skipTest('chromium is not installed (apt-get install chromium)')
        shot = os.path.join(ARTIFACTS, 'stats-page.png')
        if os.path.exists(shot):
            os.unlink(shot)
        profile = tempfile.mkdtemp(prefix='petrel-chromium-')
        self.addCleanup(shutil.rmtree, profile, True)
        # Some traffic, so the page has figures to show.
        c = self.connect()
        c.send_mail('a@example.org', 'p@discard.test', make_message())
        c.quit()
        cmd = [CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
               '--no-first-run', '--disable-background-networking',
               '--disable-component-update', '--disable-sync', '--user-data-dir=' + profile,
               # page time runs ahead until 3 polls of /stats are done, then the shot
               '--virtual-time-budget=5000', '--screenshot=' + shot, '--window-size=1200,900',
               'http://127.0.0.1:%d/' % self.STATS_PORT]
        try:
            r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=CHROMIUM_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.fail('chromium took longer than %d s' % CHROMIUM_TIMEOUT)
        self.assertTrue(os.path.exists(shot), 'no screenshot; chromium said (%d):\n%s'
                        % (r.returncode, r.stderr.decode('utf-8', 'replace')[-2000:]))
        width, height, distinct = png_summary(shot)
        self.assertEqual((width, height), (1200, 900))
        self.assertGreater(os.path.getsize(shot), 20000, 'a nearly empty screenshot')
        self.assertGreater(distinct, 50, 'the screenshot is nearly one colour')
        sys.stdout.write('screenshot: %s\n' % shot)


def png_summary(path):
    """Width, height and the number of distinct byte values of the decoded image data (a blank
    page has very few)."""
    with open(path, 'rb') as f:
        data = f.read()
    assert data[:8] == b'\x89PNG\r\n\x1a\n', 'not a PNG'
    pos, idat, width, height = 8, b'', 0, 0
    while pos < len(data):
        length, kind = struct.unpack('>I4s', data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b'IHDR':
            width, height = struct.unpack('>II', chunk[:8])
        elif kind == b'IDAT':
            idat += chunk
        pos += 12 + length
    return width, height, len(set(zlib.decompress(idat)))


class AtStart(PetrelTestCase):
    START = False

    def test_every_metric_exists_at_zero(self):
        if CURL is None:
            self.skipTest('curl is not installed')
        port = free_port()
        p = self.new_petrel({'stats': {'address': '127.0.0.1:%d' % port}})
        fams = parse_metrics(http(port, '/metrics').body.decode('utf-8'))
        self.assertEqual(sorted(fams), sorted(FAMILIES))
        for fam_name, fam in fams.items():
            for name, labels, v in fam['samples']:
                if fam_name in NONZERO_AT_START:
                    continue
                self.assertEqual(v, 0, '%s%r at start-up' % (name, labels))
        # The fixture's readiness probe is the only connection so far.
        self.assertLessEqual(value(fams, 'petrel_connections_total'), 1)
        j = json.loads(http(port, '/stats').body.decode('utf-8'))
        self.assertEqual(j['petrel_messages_received_total'], 0)
        self.assertEqual(j['petrel_accept_latency_seconds']['count'], 0)
        p.stop()

    def test_bind_failure_names_the_address(self):
        busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(('127.0.0.1', 0))
        busy.listen(1)
        self.addCleanup(busy.close)
        port = busy.getsockname()[1]
        p = self.new_petrel({'stats': {'address': '127.0.0.1:%d' % port}}, start=False)
        with self.assertRaises(RuntimeError):
            p.start(port=free_port())
        self.assertEqual(p.returncode, 1)
        self.assertIn('cannot bind stats address 127.0.0.1:%d: Address already in use'
                      % port, p.log())


class TlsAuth(StatsTestCase):
    """STARTTLS and AUTH: handshakes that work and fail, logins right and wrong."""

    @classmethod
    def extra_config(cls):
        if OPENSSL is None:
            raise unittest.SkipTest('openssl is not installed')
        cls.pki = tempfile.mkdtemp(prefix='petrel-stats-pki-')
        cert, key = os.path.join(cls.pki, 'cert.pem'), os.path.join(cls.pki, 'key.pem')
        r = subprocess.run([OPENSSL, 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
                            'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj',
                            '/CN=petrel.test', '-keyout', key, '-out', cert],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError('openssl req failed: %s' % r.stderr.decode('utf-8', 'replace'))
        return {'tls': {'certificate': cert, 'key': key}, 'auth': {'users_file': USERS}}

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        shutil.rmtree(cls.pki, ignore_errors=True)

    def starttls(self):
        c = self.connect()
        self.assertReply(c.ehlo(), 250)
        self.assertReply(c.cmd('STARTTLS'), 220)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        c.sock = ctx.wrap_socket(c.sock, server_hostname='petrel.test')
        self.assertReply(c.ehlo(), 250)
        return c

    def test_tls_and_auth_counters(self):
        before = self.scrape()

        def delta(fams, name):
            return value(fams, name) - value(before, name)

        c = self.starttls()
        self.assertReply(c.cmd('AUTH PLAIN ' + base64.b64encode(
            b'\0alice\0wonderland').decode()), 235, '2.7.0')
        c.close()
        c = self.starttls()
        self.assertReply(c.cmd('AUTH PLAIN ' + base64.b64encode(
            b'\0alice\0looking-glass').decode(), timeout=20), 535, '5.7.8')
        c.close()
        # A client that says STARTTLS, then sends no handshake but garbage.
        c = self.connect()
        c.ehlo()
        self.assertReply(c.cmd('STARTTLS'), 220)
        c.send(b'this is not a TLS client hello\r\n' * 4)
        self.assertClosed(c)
        after = self.wait_for('the failed handshake counted', lambda f: (
            delta(f, 'petrel_tls_handshake_failures_total') >= 1 and
            value(f, 'petrel_connections_current') == 0))
        self.assertEqual(delta(after, 'petrel_tls_handshakes_total'), 2)
        self.assertEqual(delta(after, 'petrel_tls_handshake_failures_total'), 1)
        self.assertEqual(delta(after, 'petrel_auth_successes_total'), 1)
        self.assertEqual(delta(after, 'petrel_auth_failures_total'), 1)
        for _, labels, v in after['petrel_sessions']['samples']:
            self.assertEqual(v, 0, labels)


class Token(StatsTestCase):
    STATS = {'token': TOKEN}

    def test_bearer_token(self):
        for path in ('/metrics', '/stats', '/healthz'):
            r = self.get(path)
            self.assertEqual(r.status, 401, '%s %r' % (path, r))
            self.assertEqual(r.headers.get('www-authenticate'), 'Bearer realm="petrel"')
            self.assertNotIn(b'petrel_', r.body)
            for bad in ('Bearer wrong', 'Bearer ' + TOKEN + 'x', 'Bearer ' + TOKEN[:-1],
                        'Basic ' + TOKEN, TOKEN):
                r = self.get(path, headers=['Authorization: ' + bad])
                self.assertEqual(r.status, 401, '%s with %r' % (path, bad))
            for good in ('Bearer ' + TOKEN, 'bearer ' + TOKEN):
                r = self.get(path, headers=['Authorization: ' + good])
                self.assertEqual(r.status, 200, '%s with %r: %r' % (path, good, r))
        parse_metrics(self.get('/metrics', headers=['Authorization: Bearer ' + TOKEN])
                      .body.decode('utf-8'))
        # The page holds no figures: it loads, and asks for the token itself.
        r = self.get('/')
        self.assertEqual(r.status, 200)
        self.assertIn(b'Bearer token', r.body)


class Allow(StatsTestCase):
    STATS = {'allow': ['10.0.0.0/8', '::1/128']}

    def test_outside_allow_is_forbidden(self):
        for path in ('/', '/metrics', '/stats', '/healthz', '/nope'):
            r = self.get(path)
            self.assertEqual(r.status, 403, '%s %r' % (path, r))
            self.assertNotIn(b'petrel_', r.body)


if __name__ == '__main__':
    main()
