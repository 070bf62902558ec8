#!/usr/bin/python3
"""
test_delivery_tls.py: STARTTLS and AUTH on outbound deliveries (route tls: opportunistic |
require | none, ca_file, auth). The next hop is TlsNextHop, an SMTP server in this process
(stdlib ssl) that offers STARTTLS and AUTH PLAIN/LOGIN as each test asks, with certificates
made here by `openssl req -x509` (a CA, leaves signed by it, a self-signed one). It records
what it saw on every connection: the commands, whether the transaction came over TLS, the SNI,
the credentials. The tests check both ends: what arrived (and how), and petrel's delivery log
line (status, dsn, tls="...").

petrel's relay route is `127.0.0.1:PORT`, so the name it verifies is the address: the leaf
carries IP:127.0.0.1 in its SAN. One test uses an mx route through a private dnsmasq, for a
verification (and SNI) by host name.
"""

import base64
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import PetrelTestCase, make_message  # noqa: E402

OPENSSL = shutil.which('openssl') or '/usr/bin/openssl'
DNSMASQ = shutil.which('dnsmasq') or '/usr/sbin/dnsmasq'
SENDER = 'sender@origin.test'
USER = 'relayuser'
PASSWORD = 'c0rrect horse:battery'  # a blank and a colon: sent as they are
WAIT = 15.0     # seconds for an expected delivery log line

# The delivery log line; tls= is one of the key=value fields between attempt= and reply=.
DELIVERY_RE = re.compile(r'\b([0-9a-f]{16}) delivery to=<([^>]*)> route=(\S+) relay=(\S+) '
                         r'status=(\S+) dsn=(\S+) attempt=(\d+)'
                         r'((?: [a-z_]+=(?:"[^"]*"|[^ "]*))*) reply="(.*)"$')
TLS_FIELD_RE = re.compile(r' tls=(none|"[^"]*")')
TLS_RE = re.compile(r'^"TLSv1\.[23] cipher=[A-Za-z0-9_-]+ bits=\d+"$')


# ---- certificates ----

class Certs:
    """A CA, leaves signed by it (mx.test + IP:127.0.0.1; other.test only) and a self-signed
    leaf (mx.test + IP:127.0.0.1), as PEM files in a temporary directory."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix='petrel-tls-certs-')
        self.ca = self._path('ca.pem')
        self._run('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
                  '-nodes', '-keyout', self._path('ca.key'), '-out', self.ca, '-days', '2',
                  '-subj', '/CN=petrel test CA',
                  '-addext', 'basicConstraints=critical,CA:TRUE',
                  '-addext', 'keyUsage=critical,keyCertSign,cRLSign')
        self.good = self._leaf('good', 'DNS:mx.test,IP:127.0.0.1')
        self.wrong_name = self._leaf('wrong', 'DNS:other.test')
        self.self_signed = (self._path('self.pem'), self._path('self.key'))
        self._run('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
                  '-nodes', '-keyout', self.self_signed[1], '-out', self.self_signed[0],
                  '-days', '2', '-subj', '/CN=mx.test',
                  '-addext', 'subjectAltName=DNS:mx.test,IP:127.0.0.1')

    def _path(self, name):
        return os.path.join(self.dir, name)

    def _run(self, *args):
        r = subprocess.run([OPENSSL] + list(args), stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError('openssl %s failed: %s' % (args[0], r.stderr.decode()))

    def _leaf(self, name, san):
        key, csr, pem, ext = (self._path(name + s) for s in ('.key', '.csr', '.pem', '.ext'))
        with open(ext, 'w') as f:
            f.write('subjectAltName=%s\nbasicConstraints=CA:FALSE\n'
                    'extendedKeyUsage=serverAuth\n' % san)
        self._run('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
                  '-keyout', key, '-out', csr, '-subj', '/CN=%s' % san.split(',')[0][4:])
        self._run('x509', '-req', '-in', csr, '-CA', self.ca, '-CAkey', self._path('ca.key'),
                  '-CAcreateserial', '-out', pem, '-days', '2', '-extfile', ext)
        return pem, key

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- the next hop ----

class Conn:
    """What the next hop saw on one connection."""

    def __init__(self, cid):
        self.id = cid
        self.commands = []      # command lines (AUTH payloads included: this is the test's end)
        self.tls = False        # the handshake completed
        self.tls_version = None
        self.tls_error = None   # why the handshake failed, if it did
        self.sni = None
        self.auth = None        # (mechanism, user, password) of a successful AUTH
        self.auth_tries = []    # (mechanism, user, password) of every AUTH
        self.messages = []      # Message objects


class Message:
    def __init__(self, conn, sender, rcpts, data):
        self.conn = conn
        self.sender = sender
        self.rcpts = rcpts
        self.data = data
        self.tls = conn.tls
        self.auth_user = conn.auth[1] if conn.auth else None


class Closed(Exception):
    pass


class TlsNextHop:
    """An SMTP server on 127.0.0.1 (one thread per connection).

    cert:      (pem, key) for STARTTLS, or None: STARTTLS is not offered
    break_tls: answer STARTTLS with 220, then send bytes that are not TLS and close
    users:     {user: password}: AUTH is offered (after TLS, or also in plain text with
               auth_in_plain) and required before MAIL
    mechs:     the AUTH mechanisms offered
    """

    def __init__(self, cert=None, break_tls=False, users=None, mechs=('PLAIN', 'LOGIN'),
                 auth_in_plain=False):
        self.cert = cert
        self.break_tls = break_tls
        self.users = users
        self.mechs = mechs
        self.auth_in_plain = auth_in_plain
        self.conns = []
        self.lock = threading.Lock()
        self.ctx = None
        self._sni = {}
        if cert:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(*cert)
            self.ctx.sni_callback = self._sni_cb
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()

    @property
    def address(self):
        return '127.0.0.1:%d' % self.port

    def close(self):
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass

    def _sni_cb(self, sslobj, name, ctx):
        self._sni[id(sslobj)] = name

    def messages(self):
        with self.lock:
            return [m for c in self.conns for m in c.messages]

    def commands(self):
        with self.lock:
            return [(c.id, line) for c in self.conns for line in c.commands]

    def _accept(self):
        while not self.closed:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                conn = Conn(len(self.conns) + 1)
                self.conns.append(conn)
            threading.Thread(target=self._serve, args=(s, conn), daemon=True).start()

    # -- one connection --
    def _serve(self, sock, conn):
        sock.settimeout(20)
        st = {'sock': sock, 'buf': b''}
        try:
            self._session(st, conn)
        except (Closed, OSError, ssl.SSLError, ValueError):
            pass
        finally:
            try:
                st['sock'].close()
            except OSError:
                pass

    def _send(self, st, text):
        st['sock'].sendall(text.encode() + b'\r\n')

    def _line(self, st):
        while b'\r\n' not in st['buf']:
            chunk = st['sock'].recv(65536)
            if not chunk:
                raise Closed()
            st['buf'] += chunk
        line, st['buf'] = st['buf'].split(b'\r\n', 1)
        return line.decode('utf-8', 'replace')

    def _ehlo(self, st, conn):
        lines = ['mx.test', 'PIPELINING', 'SIZE 10000000', '8BITMIME']
        if self.cert and not conn.tls:
            lines.append('STARTTLS')
        if self.users is not None and (conn.tls or self.auth_in_plain):
            lines.append('AUTH ' + ' '.join(self.mechs))
        for i, l in enumerate(lines):
            self._send(st, '250%s%s' % (' ' if i == len(lines) - 1 else '-', l))

    def _starttls(self, st, conn):
        if not self.cert or conn.tls:
            self._send(st, '502 5.5.1 no STARTTLS here')
            return
        if st['buf']:
            self._send(st, '501 5.5.2 pipelined STARTTLS')
            return
        self._send(st, '220 2.0.0 ready to start TLS')
        if self.break_tls:
            time.sleep(0.1)
            st['sock'].sendall(b'this is not a TLS record at all\r\n' * 4)
            raise Closed()
        tls = self.ctx.wrap_socket(st['sock'], server_side=True, do_handshake_on_connect=False)
        st['sock'] = tls
        try:
            tls.do_handshake()
        except (ssl.SSLError, OSError) as e:
            conn.tls_error = str(e)
            raise Closed()
        finally:
            conn.sni = self._sni.pop(id(tls), None)
        conn.tls = True
        conn.tls_version = tls.version()

    def _auth(self, st, conn, args):
        parts = args.split()
        mech = parts[0].upper() if parts else ''
        if self.users is None or (not conn.tls and not self.auth_in_plain) \
                or mech not in self.mechs:
            self._send(st, '504 5.5.4 mechanism not available')
            return
        if conn.auth:
            self._send(st, '503 5.5.1 already authenticated')
            return
        if mech == 'PLAIN':
            if len(parts) > 1:
                resp = parts[1]
            else:
                self._send(st, '334 ')
                resp = self._line(st)
            raw = base64.b64decode(resp, validate=True)
            _, user, pw = raw.split(b'\0', 2)
        else:
            self._send(st, '334 VXNlcm5hbWU6')
            user = base64.b64decode(self._line(st), validate=True)
            self._send(st, '334 UGFzc3dvcmQ6')
            pw = base64.b64decode(self._line(st), validate=True)
        cred = (mech, user.decode(), pw.decode())
        conn.auth_tries.append(cred)
        if self.users.get(cred[1]) == cred[2]:
            conn.auth = cred
            self._send(st, '235 2.7.0 authentication successful')
        else:
            self._send(st, '535 5.7.8 authentication credentials invalid')

    def _session(self, st, conn):
        self._send(st, '220 mx.test ESMTP test next hop')
        sender, rcpts = None, []
        while True:
            line = self._line(st)
            conn.commands.append(line)
            verb = line.split(' ', 1)[0].upper()
            args = line[len(verb) + 1:]
            if verb in ('EHLO', 'HELO'):
                sender, rcpts = None, []
                self._ehlo(st, conn) if verb == 'EHLO' else self._send(st, '250 mx.test')
            elif verb == 'STARTTLS':
                self._starttls(st, conn)
                sender, rcpts = None, []
            elif verb == 'AUTH':
                self._auth(st, conn, args)
            elif verb == 'MAIL':
                if self.users is not None and not conn.auth:
                    self._send(st, '530 5.7.0 authentication required')
                    continue
                sender = re.match(r'MAIL FROM:<([^>]*)>', line, re.I).group(1)
                rcpts = []
                self._send(st, '250 2.1.0 ok')
            elif verb == 'RCPT':
                if sender is None:
                    self._send(st, '503 5.5.1 MAIL first')
                    continue
                rcpts.append(re.match(r'RCPT TO:<([^>]*)>', line, re.I).group(1))
                self._send(st, '250 2.1.5 ok')
            elif verb == 'DATA':
                if sender is None or not rcpts:
                    self._send(st, '503 5.5.1 no valid recipients')
                    continue
                self._send(st, '354 go ahead')
                data = []
                while True:
                    l = self._line(st)
                    if l == '.':
                        break
                    data.append(l[1:] if l.startswith('.') else l)
                with self.lock:
                    conn.messages.append(Message(conn, sender, rcpts,
                                                 '\r\n'.join(data).encode() + b'\r\n'))
                sender, rcpts = None, []
                self._send(st, '250 2.0.0 ok: queued')
            elif verb == 'RSET':
                sender, rcpts = None, []
                self._send(st, '250 2.0.0 ok')
            elif verb == 'NOOP':
                self._send(st, '250 2.0.0 ok')
            elif verb == 'QUIT':
                self._send(st, '221 2.0.0 bye')
                raise Closed()
            else:
                self._send(st, '502 5.5.2 unknown command')


# ---- a private DNS server (dnsmasq) for the mx test ----

def dns_probe(port, name, qtype, timeout=0.3):
    """Number of answers to one query (raises OSError on no reply)."""
    q = struct.pack('>HHHHHH', 0x1234, 0x0100, 1, 0, 0, 0)
    q += b''.join(bytes([len(p)]) + p.encode() for p in name.split('.')) + b'\0'
    q += struct.pack('>HH', qtype, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        s.sendto(q, ('127.0.0.1', port))
        r = s.recv(4096)
    finally:
        s.close()
    return struct.unpack('>H', r[6:8])[0]


class Dnsmasq:
    def __init__(self, mx, hosts):
        self.dir = tempfile.mkdtemp(prefix='petrel-tls-dns-')
        self.proc = None
        for _ in range(3):
            self.port = petrel.free_port()
            args = [DNSMASQ, '--keep-in-foreground', '--no-resolv', '--no-hosts', '--no-poll',
                    '--conf-file=/dev/null', '--pid-file', '--port=%d' % self.port,
                    '--listen-address=127.0.0.1', '--bind-interfaces', '--cache-size=0',
                    '--local=/test/']
            args += ['--mx-host=%s,%s,10' % m for m in mx]
            args += ['--host-record=%s,%s' % h for h in hosts]
            with open(os.path.join(self.dir, 'log'), 'ab') as log:
                self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=log)
            end = time.monotonic() + 10
            while time.monotonic() < end and self.proc.poll() is None:
                try:
                    if dns_probe(self.port, mx[0][0], 15) > 0:
                        return
                except OSError:
                    pass
                time.sleep(0.05)
            self.stop()
        raise RuntimeError('dnsmasq did not start')

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- the tests ----

class Delivery:
    def __init__(self, m):
        (self.id, self.rcpt, self.route, self.relay, self.status, self.dsn, attempt,
         fields, self.reply) = m.groups()
        self.attempt = int(attempt)
        t = TLS_FIELD_RE.search(fields)
        self.tls = t.group(1) if t else None

    def __repr__(self):
        return '<%s %s %s dsn=%s tls=%s %r>' % (self.id, self.rcpt, self.status, self.dsn,
                                               self.tls, self.reply)


def deliveries(p, qid):
    out = []
    for line in p.log(whole=True).splitlines():
        m = DELIVERY_RE.search(line)
        if m and m.group(1) == qid:
            out.append(Delivery(m))
    return out


class OutboundTls(PetrelTestCase):
    START = False

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.certs = Certs()

    @classmethod
    def tearDownClass(cls):
        cls.certs.cleanup()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix='petrel-tls-')
        self.addCleanup(shutil.rmtree, self.dir, True)

    # -- helpers --
    def hop(self, **kw):
        h = TlsNextHop(**kw)
        self.addCleanup(h.close)
        return h

    def password_file(self, text=PASSWORD + '\n'):
        path = os.path.join(self.dir, 'relay.pass')
        with open(path, 'w') as f:
            f.write(text)
        return path

    def route(self, hop, tls=None, ca_file=None, auth=False, password_file=None):
        r = {'domain': '*', 'relay': hop.address}
        if tls:
            r['tls'] = tls
        if ca_file:
            r['ca_file'] = ca_file
        if auth:
            r['auth'] = {'user': USER, 'password_file': password_file or self.password_file()}
        return r

    def start(self, *routes):
        return self.new_petrel({'routes': list(routes),
                                'queue': {'retry': ['1s'], 'delay_warning': 0}})

    def submit(self, p, rcpt='user@far.test', subject='tls test'):
        c = self.connect(p)
        qid = c.send_mail(SENDER, rcpt, make_message(subject))
        c.quit()
        return qid

    def wait_delivery(self, p, qid, status, attempt=None):
        """The first delivery line of qid with this status (and attempt number)."""
        end = time.monotonic() + WAIT
        while True:
            for d in deliveries(p, qid):
                if d.status == status and (attempt is None or d.attempt >= attempt):
                    return d
            if time.monotonic() > end:
                self.fail('no delivery with status=%s attempt>=%s for %s within %.0f s: %r'
                          % (status, attempt, qid, WAIT, deliveries(p, qid)))
            time.sleep(0.05)

    def assertNoMailInTheClear(self, hop):
        for cid, line in hop.commands():
            conn = hop.conns[cid - 1]
            self.assertFalse(not conn.tls and re.match(r'(MAIL|RCPT|DATA|AUTH)\b', line, re.I),
                             'sent in the clear on connection %d: %r' % (cid, line))
        self.assertEqual(hop.messages(), [])

    def assertStartFails(self, config, pattern):
        p = self.new_petrel(config, start=False)
        with self.assertRaises(RuntimeError) as cm:
            p.start(deadline=10)
        self.assertRegex(str(cm.exception), pattern)
        self.assertNotIn(PASSWORD, p.log(whole=True))

    # -- opportunistic --
    def test_opportunistic_uses_starttls_without_verifying(self):
        # A self-signed certificate: fine for opportunistic TLS (nothing is verified).
        hop = self.hop(cert=self.certs.self_signed)
        p = self.start(self.route(hop))
        qid = self.submit(p)
        d = self.wait_delivery(p, qid, 'sent')
        self.assertRegex(d.tls, TLS_RE)
        [m] = hop.messages()
        self.assertTrue(m.tls, 'the message came over TLS')
        conn = hop.conns[0]
        verbs = [l.split()[0].upper() for l in conn.commands]
        self.assertEqual(verbs[:3], ['EHLO', 'STARTTLS', 'EHLO'], conn.commands)
        self.assertEqual(conn.tls_version, d.tls.strip('"').split()[0])
        self.assertIsNone(conn.sni, 'no SNI for an address (RFC 6066)')
        self.assertIn(('id ' + qid).encode(), m.data)
        self.assertRegex(p.log(), r'smtp-out tls established host=127\.0\.0\.1 verified=no '
                                  r'TLSv1\.[23] ')

    def test_opportunistic_without_starttls_delivers_in_plain(self):
        hop = self.hop()
        p = self.start(self.route(hop, tls='opportunistic'))
        qid = self.submit(p)
        d = self.wait_delivery(p, qid, 'sent')
        self.assertEqual(d.tls, 'none')
        [m] = hop.messages()
        self.assertFalse(m.tls)
        self.assertNotIn('STARTTLS', [l.upper() for _, l in hop.commands()])

    def test_opportunistic_handshake_failure_falls_back_to_plain(self):
        hop = self.hop(cert=self.certs.good, break_tls=True)
        p = self.start(self.route(hop))
        qid = self.submit(p)
        d = self.wait_delivery(p, qid, 'sent')
        self.assertEqual((d.attempt, d.tls), (1, 'none'), 'the same attempt, in plain text')
        self.assertEqual(len(hop.conns), 2, [c.commands for c in hop.conns])
        first, second = hop.conns
        self.assertEqual([l.split()[0].upper() for l in first.commands], ['EHLO', 'STARTTLS'])
        # STARTTLS is still offered, but this target gets plain text now.
        self.assertNotIn('STARTTLS', [l.upper() for l in second.commands])
        [m] = hop.messages()
        self.assertFalse(m.tls)
        self.assertRegex(p.log(), r'smtp-out tls failed host=127\.0\.0\.1 error="[^"]+" '
                                  r'fallback=plain')

    def test_tls_none_never_starts_tls(self):
        hop = self.hop(cert=self.certs.good)
        p = self.start(self.route(hop, tls='none'))
        qid = self.submit(p)
        d = self.wait_delivery(p, qid, 'sent')
        self.assertEqual(d.tls, 'none')
        self.assertNotIn('STARTTLS', [l.upper() for _, l in hop.commands()])

    # -- require --
    def test_require_with_ca_file_delivers_over_verified_tls(self):
        # A body of 1.5 MB with dot-led lines: the spool file goes through the TLS filter.
        hop = self.hop(cert=self.certs.good)
        p = self.start(self.route(hop, tls='require', ca_file=self.certs.ca))
        content = make_message('big', ''.join('.%05d %s\r\n' % (i, 'x' * 70)
                                              for i in range(20000)))
        c = self.connect(p)
        qid = c.send_mail(SENDER, 'user@far.test', petrel.stuff(content))
        c.quit()
        d = self.wait_delivery(p, qid, 'sent')
        self.assertRegex(d.tls, TLS_RE)
        [m] = hop.messages()
        self.assertTrue(m.tls)
        self.assertEqual(petrel.split_received(m.data)[1], content, 'the data, byte for byte')
        self.assertRegex(p.log(), r'smtp-out tls established host=127\.0\.0\.1 verified=yes ')

    def test_require_self_signed_is_deferred_never_sent_in_clear(self):
        # No ca_file: the system trust store, which does not know this certificate.
        hop = self.hop(cert=self.certs.self_signed)
        p = self.start(self.route(hop, tls='require'))
        qid = self.submit(p)
        d = self.wait_delivery(p, qid, 'deferred', attempt=2)   # retried, still not in plain
        self.assertEqual((d.dsn, d.tls), ('4.7.5', 'none'), d)
        self.assertIn('TLS required but the certificate did not verify', d.reply)
        self.assertTrue(all(c.tls_error for c in hop.conns), [c.tls_error for c in hop.conns])
        self.assertNoMailInTheClear(hop)
        self.assertIn(qid, p.queue_ids())

    def test_require_wrong_name_is_deferred(self):
        # Signed by the trusted CA, but for other.test: not for 127.0.0.1.
        hop = self.hop(cert=self.certs.wrong_name)
        p = self.start(self.route(hop, tls='require', ca_file=self.certs.ca))
        qid = self.submit(p)
        d = self.wait_delivery(p, qid, 'deferred')
        self.assertEqual(d.dsn, '4.7.5', d)
        self.assertRegex(d.reply, r'^451 4\.7\.5 TLS required but the certificate did not '
                                  r'verify \(.*mismatch.*\)')
        self.assertNoMailInTheClear(hop)
        self.assertIn(qid, p.queue_ids())

    def test_require_without_starttls_is_deferred(self):
        hop = self.hop()
        p = self.start(self.route(hop, tls='require', ca_file=self.certs.ca))
        qid = self.submit(p)
        d = self.wait_delivery(p, qid, 'deferred', attempt=2)
        self.assertEqual(d.dsn, '4.7.5', d)
        self.assertIn('TLS required but STARTTLS is not offered', d.reply)
        self.assertNoMailInTheClear(hop)
        self.assertIn(qid, p.queue_ids())

    def test_require_by_mx_name_sends_sni_and_verifies_the_name(self):
        if not os.access(DNSMASQ, os.X_OK):
            self.skipTest('dnsmasq is not installed')
        good = self.hop(cert=self.certs.good)
        wrong = self.hop(cert=self.certs.good)
        dns = Dnsmasq(mx=[('good.test', 'mx.test'), ('bad.test', 'other.test')],
                      hosts=[('mx.test', '127.0.0.1'), ('other.test', '127.0.0.1')])
        self.addCleanup(dns.cleanup)
        p = self.new_petrel({
            'routes': [{'domain': 'good.test', 'mx': True, 'port': good.port, 'tls': 'require',
                        'ca_file': self.certs.ca},
                       {'domain': 'bad.test', 'mx': True, 'port': wrong.port,
                        'tls': 'require', 'ca_file': self.certs.ca}],
            'queue': {'retry': ['1s'], 'delay_warning': 0},
            'dns': {'nameservers': ['127.0.0.1:%d' % dns.port]}})
        ok = self.submit(p, 'user@good.test')
        bad = self.submit(p, 'user@bad.test')
        d = self.wait_delivery(p, ok, 'sent')
        self.assertRegex(d.tls, TLS_RE)
        self.assertTrue(d.relay.startswith('mx.test[127.0.0.1]:'), d)
        [m] = good.messages()
        self.assertTrue(m.tls)
        self.assertEqual(good.conns[0].sni, 'mx.test')
        # other.test's certificate says mx.test: refused, although it is signed by the CA.
        d = self.wait_delivery(p, bad, 'deferred')
        self.assertEqual(d.dsn, '4.7.5', d)
        self.assertEqual(wrong.conns[0].sni, 'other.test')
        self.assertNoMailInTheClear(wrong)

    # -- AUTH --
    def test_auth_plain_to_a_smarthost(self):
        hop = self.hop(cert=self.certs.good, users={USER: PASSWORD})
        p = self.start(self.route(hop, tls='require', ca_file=self.certs.ca, auth=True))
        qid = self.submit(p)
        d = self.wait_delivery(p, qid, 'sent')
        self.assertRegex(d.tls, TLS_RE)
        [m] = hop.messages()
        self.assertTrue(m.tls)
        self.assertEqual(hop.conns[0].auth, ('PLAIN', USER, PASSWORD))
        verbs = [l.split()[0].upper() for l in hop.conns[0].commands]
        self.assertEqual(verbs[:5], ['EHLO', 'STARTTLS', 'EHLO', 'AUTH', 'MAIL'], verbs)
        self.assertRegex(p.log(), r'smtp-out auth ok host=127\.0\.0\.1 user=relayuser '
                                  r'mechanism=PLAIN')
        log = p.log(whole=True)
        self.assertNotIn(PASSWORD, log)
        self.assertNotIn(base64.b64encode(b'\0' + USER.encode() + b'\0' +
                                          PASSWORD.encode()).decode(), log)

    def test_auth_login_when_plain_is_not_offered(self):
        hop = self.hop(cert=self.certs.self_signed, users={USER: PASSWORD}, mechs=('LOGIN',))
        p = self.start(self.route(hop, auth=True))      # opportunistic TLS
        qid = self.submit(p)
        self.wait_delivery(p, qid, 'sent')
        self.assertEqual(hop.conns[0].auth, ('LOGIN', USER, PASSWORD))
        [m] = hop.messages()
        self.assertTrue(m.tls)
        self.assertNotIn(PASSWORD, p.log(whole=True))

    def test_auth_wrong_password_is_deferred_not_bounced(self):
        hop = self.hop(cert=self.certs.good, users={USER: 'another password'})
        p = self.start(self.route(hop, tls='require', ca_file=self.certs.ca, auth=True))
        qid = self.submit(p)
        d = self.wait_delivery(p, qid, 'deferred', attempt=2)
        self.assertEqual(d.dsn, '4.7.8', d)
        self.assertRegex(d.reply, r'^451 4\.7\.8 authentication to the smarthost failed: '
                                  r'535 5\.7\.8 ')
        self.assertEqual([t for c in hop.conns for t in c.auth_tries][0],
                         ('PLAIN', USER, PASSWORD))
        self.assertEqual(hop.messages(), [])
        self.assertEqual([x for x in deliveries(p, qid) if x.status != 'deferred'], [])
        self.assertNotRegex(p.log(whole=True), r'\bdsn id=')
        self.assertIn(qid, p.queue_ids())
        self.assertNotIn(PASSWORD, p.log(whole=True))

    def test_auth_is_not_sent_in_the_clear(self):
        # Opportunistic TLS, a server without STARTTLS that offers AUTH anyway: no AUTH.
        hop = self.hop(users={USER: PASSWORD}, auth_in_plain=True)
        p = self.start(self.route(hop, auth=True))
        qid = self.submit(p)
        d = self.wait_delivery(p, qid, 'deferred')
        self.assertEqual(d.dsn, '4.7.8', d)
        self.assertIn('no TLS, and AUTH is not sent in the clear', d.reply)
        self.assertNoMailInTheClear(hop)

    def test_auth_without_auth_offered_is_deferred(self):
        hop = self.hop(cert=self.certs.good)
        p = self.start(self.route(hop, tls='require', ca_file=self.certs.ca, auth=True))
        qid = self.submit(p)
        d = self.wait_delivery(p, qid, 'deferred')
        self.assertEqual(d.dsn, '4.7.8', d)
        self.assertIn('the server does not offer AUTH', d.reply)
        self.assertEqual(hop.messages(), [])

    def test_auth_in_plain_when_tls_none_was_chosen(self):
        hop = self.hop(cert=self.certs.good, users={USER: PASSWORD}, auth_in_plain=True)
        p = self.start(self.route(hop, tls='none', auth=True))
        qid = self.submit(p)
        d = self.wait_delivery(p, qid, 'sent')
        self.assertEqual(d.tls, 'none')
        conn = hop.conns[0]
        self.assertFalse(conn.tls)
        self.assertEqual(conn.auth, ('PLAIN', USER, PASSWORD))

    # -- connection reuse --
    def test_reused_connection_keeps_tls_and_auth(self):
        hop = self.hop(cert=self.certs.good, users={USER: PASSWORD})
        p = self.start(self.route(hop, tls='require', ca_file=self.certs.ca, auth=True))
        first = self.submit(p, subject='first')
        self.wait_delivery(p, first, 'sent')
        second = self.submit(p, subject='second')     # within the idle time (5 s)
        d = self.wait_delivery(p, second, 'sent')
        self.assertRegex(d.tls, TLS_RE)
        self.assertTrue(d.relay.startswith('127.0.0.1[127.0.0.1]:'), d)
        self.assertEqual(len(hop.conns), 1, 'one connection for both')
        verbs = [l.split()[0].upper() for l in hop.conns[0].commands]
        self.assertEqual((verbs.count('STARTTLS'), verbs.count('AUTH')), (1, 1), verbs)
        self.assertEqual([m.tls for m in hop.messages()], [True, True])

    # -- start-up --
    def test_missing_password_file_refuses_start(self):
        hop = self.hop()
        self.assertStartFails({'routes': [self.route(hop, auth=True, password_file=os.path.join(
            self.dir, 'nonexistent.pass'))]}, r'nonexistent\.pass')

    def test_empty_password_file_refuses_start(self):
        hop = self.hop()
        path = self.password_file('\n' + PASSWORD + '\n')
        self.assertStartFails({'routes': [self.route(hop, auth=True, password_file=path)]},
                              r'routes\[0\] \(\*\): auth password_file .*relay\.pass: '
                              r'the first line is empty')

    def test_bad_ca_file_refuses_start(self):
        hop = self.hop()
        path = os.path.join(self.dir, 'bad-ca.pem')
        with open(path, 'w') as f:
            f.write('not a certificate\n')
        self.assertStartFails({'routes': [self.route(hop, tls='require', ca_file=path)]},
                              r'routes\[0\] \(\*\): ca_file: .*bad-ca\.pem')


if __name__ == '__main__':
    petrel.main()
