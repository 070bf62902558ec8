#!/usr/bin/python3
"""
test_tls.py: inbound TLS of the real petrel: STARTTLS (RFC 3207) and implicit TLS (RFC 8314),
the oldest protocol version accepted, plaintext pipelined after STARTTLS (CVE-2011-0411), failed
handshakes, and the certificate reload on SIGHUP. Driven by independent clients: Python's ssl
and smtplib, openssl s_client, gnutls-cli, curl and swaks (a test is skipped, not passed, when
its tool is missing; gnutls-cli comes with scripts/deps --test).

The certificates are made at run time with `openssl req` (a throw-away CA and two server
certificates for petrel.test and 127.0.0.1, in a temporary directory): nothing secret lives in
the tree. test_auth.py imports the helpers of this file (PKI, TLSClient, TLSTestCase, Interactive).
"""

import atexit
import base64
import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import (HOSTNAME, IO_TIMEOUT, PetrelTestCase, SMTPClient,  # noqa: E402
                    free_port, make_message)

HERE = os.path.dirname(os.path.abspath(__file__))
USERS = os.path.join(HERE, 'data', 'users')         # alice/wonderland, bob/builder
PASSWORDS = {'alice': 'wonderland', 'bob': 'builder'}
SERVER_NAME = HOSTNAME                              # in the certificate (and IP 127.0.0.1)
RELOADED_NAME = 'reloaded.' + HOSTNAME              # the CN of the second certificate

OPENSSL = shutil.which('openssl')
GNUTLS_CLI = shutil.which('gnutls-cli')
SWAKS = shutil.which('swaks')
CURL = shutil.which('curl')
TOOL_TIMEOUT = 20

ALERT_VERSION = r'alert.protocol.version'     # how Python's ssl shows that alert
RECEIVED_TLS = r'with %s \(using (TLSv1\.[23]) cipher=[A-Za-z0-9_-]+ bits=\d+\) id '


def tag():
    return 'tag-' + os.urandom(6).hex()


def b64(data):
    if isinstance(data, str):
        data = data.encode('utf-8')
    return base64.b64encode(data).decode('ascii')


def plain_response(user, password, authzid=''):
    """The base64 SASL PLAIN message (RFC 4616): authzid NUL authcid NUL passwd."""
    return b64('%s\0%s\0%s' % (authzid, user, password))


# What must never appear in petrel's log: the passwords, and the base64 of every credential
# these tests send (test_auth.py adds its wrong ones).
SECRETS = ['wonderland', 'builder',
           plain_response('alice', 'wonderland'), plain_response('bob', 'builder'),
           b64('wonderland'), b64('builder')]


# ---- a throw-away PKI, made with openssl req ----

class PKI:
    """A CA and two server certificates (EC P-256), each for DNS:petrel.test and IP:127.0.0.1:
    cert/key (CN petrel.test) and cert2/key2 (CN reloaded.petrel.test)."""

    def __init__(self):
        if not OPENSSL:
            raise RuntimeError('openssl is not installed (scripts/deps)')
        self.dir = tempfile.mkdtemp(prefix='petrel-pki-')
        self.ca = os.path.join(self.dir, 'ca.pem')
        self.ca_key = os.path.join(self.dir, 'ca.key')
        self._req('-x509', '-keyout', self.ca_key, '-out', self.ca, '-subj', '/CN=petrel test CA',
                  '-addext', 'basicConstraints=critical,CA:TRUE',
                  '-addext', 'keyUsage=critical,keyCertSign,cRLSign')
        self.cert, self.key = self._server('server', SERVER_NAME)
        self.cert2, self.key2 = self._server('server2', RELOADED_NAME)

    def _req(self, *args):
        r = subprocess.run([OPENSSL, 'req', '-newkey', 'ec', '-pkeyopt',
                            'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2'] + list(args),
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError('openssl req failed: %s' % r.stderr.decode('utf-8', 'replace'))

    def _server(self, name, cn):
        cert = os.path.join(self.dir, name + '.pem')
        key = os.path.join(self.dir, name + '.key')
        self._req('-x509', '-CA', self.ca, '-CAkey', self.ca_key, '-keyout', key, '-out', cert,
                  '-subj', '/CN=' + cn,
                  '-addext', 'subjectAltName=DNS:%s,IP:127.0.0.1' % SERVER_NAME,
                  '-addext', 'basicConstraints=critical,CA:FALSE',
                  '-addext', 'extendedKeyUsage=serverAuth')
        return cert, key

    def cleanup(self):
        if not os.environ.get('PETREL_KEEP'):
            shutil.rmtree(self.dir, ignore_errors=True)


_pki = None


def pki():
    """The PKI of this run (made on first use, removed at exit)."""
    global _pki
    if _pki is None:
        _pki = PKI()
        atexit.register(_pki.cleanup)
    return _pki


def tls_settings(**extra):
    """The tls: section with the first certificate."""
    p = pki()
    return dict({'certificate': p.cert, 'key': p.key}, **extra)


def client_context(minimum=None, maximum=None, verify=True):
    """A client context that trusts the test CA only (and checks the name), or none at all."""
    if verify:
        ctx = ssl.create_default_context(cafile=pki().ca)
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)     # TLSv1_1 is deprecated: yes
        if minimum is not None:
            if minimum < ssl.TLSVersion.TLSv1_2:
                ctx.set_ciphers('DEFAULT:@SECLEVEL=0')          # OpenSSL 3: < 1.2 needs level 0
            ctx.minimum_version = minimum
        if maximum is not None:
            ctx.maximum_version = maximum
    return ctx


def peer_cn(sslsock):
    """The commonName of the certificate the server showed (the context must verify)."""
    for rdn in sslsock.getpeercert().get('subject', ()):
        for k, v in rdn:
            if k == 'commonName':
                return v
    return None


# ---- an SMTP client that speaks TLS ----

class TLSClient(SMTPClient):
    """petrel's SMTPClient over TLS: starttls() upgrades the connection after a 220; implicit
    connects with TLS from the first byte. source binds the client to a 127.x.y.z address (the
    AUTH throttle counts per address)."""

    def __init__(self, port, timeout=IO_TIMEOUT, greet=True, source=None, context=None,
                 implicit=False, server_hostname=SERVER_NAME):
        self.timeout = timeout
        self.buf = b''
        self.eof = False
        self.ssl_error = None
        self.context = context or client_context()
        self.server_hostname = server_hostname
        self.sock = socket.create_connection(('127.0.0.1', port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        if implicit:
            try:
                self.sock = self._wrap(self.sock)
            except BaseException:
                self.sock.close()
                raise
        self.greeting = self.read_reply() if greet else None

    def _wrap(self, sock):
        sock.settimeout(self.timeout)
        return self.context.wrap_socket(sock, server_hostname=self.server_hostname)

    def _fill(self, deadline):
        try:
            super()._fill(deadline)
        except ssl.SSLError as e:      # an alert or an unclean close: the server is gone
            self.ssl_error = e
            self.eof = True

    def starttls(self):
        """STARTTLS; on 220 the handshake (raises ssl.SSLError if it fails). Returns the reply."""
        r = self.cmd('STARTTLS')
        if r.code == 220:
            if self.buf:
                raise AssertionError('bytes after the 220 before the handshake: %r' % self.buf)
            self.sock = self._wrap(self.sock)
        return r

    @property
    def tls_version(self):
        return self.sock.version() if isinstance(self.sock, ssl.SSLSocket) else None

    @property
    def cn(self):
        return peer_cn(self.sock)


def keywords(ehlo_reply):
    """The extension lines of an EHLO reply ('AUTH PLAIN LOGIN', 'STARTTLS', ...)."""
    return [l[4:] for l in ehlo_reply.lines[1:]]


# ---- a command-line client driven line by line ----

class Interactive:
    """A client program (openssl s_client, gnutls-cli) driven like a terminal: lines to its
    stdin, its stdout collected by a thread and searched with expect(). Killed by its PID if it
    is still running at close()."""

    def __init__(self, args):
        self.args = args
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.out = b''
        self.err = b''
        self.pos = 0
        self.done = {'out': False, 'err': False}
        self.cond = threading.Condition()
        for name, stream in (('out', self.proc.stdout), ('err', self.proc.stderr)):
            threading.Thread(target=self._reader, args=(name, stream), daemon=True).start()

    def _reader(self, name, stream):
        fd = stream.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b''
            with self.cond:
                if not chunk:
                    self.done[name] = True
                    self.cond.notify_all()
                    return
                setattr(self, name, getattr(self, name) + chunk)
                self.cond.notify_all()

    def send(self, text):
        """One line, CRLF added here: the tools' own LF-to-CRLF options are not trusted
        (gnutls-cli --crlf converts only the first LF of each read)."""
        self.proc.stdin.write(text.encode('utf-8') + b'\r\n')
        self.proc.stdin.flush()

    def expect(self, pattern, timeout=IO_TIMEOUT):
        """Wait for `pattern` (a bytes regex, multi-line) in stdout after the last match."""
        rx = re.compile(pattern, re.M)
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                m = rx.search(self.out, self.pos)
                if m:
                    self.pos = m.end()
                    return m
                left = end - time.monotonic()
                if left <= 0 or self.done['out']:
                    raise AssertionError('%s: no %r in its output (exit %r)\nstdout after the '
                                         'last match: %r\nstderr: %r'
                                         % (os.path.basename(self.args[0]), pattern,
                                            self.proc.poll(), self.out[self.pos:][-2000:],
                                            self.err[-2000:]))
                self.cond.wait(left)

    def reply(self, timeout=IO_TIMEOUT):
        """The last line of the next complete SMTP reply: (code, rest of the line)."""
        m = self.expect(rb'^(\d{3}) ([^\r\n]*)\r?\n', timeout)
        return int(m.group(1)), m.group(2).decode('utf-8', 'replace')

    def cmd(self, line, timeout=IO_TIMEOUT):
        self.send(line)
        return self.reply(timeout)

    def finish(self, timeout=TOOL_TIMEOUT):
        """Close stdin and wait for the exit; returns the exit status (kills past timeout)."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError('%s still running %d s after its input ended'
                                 % (self.args[0], timeout))

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for s in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                s.close()
            except OSError:
                pass


# ---- the base class ----

class TLSTestCase(PetrelTestCase):
    """PetrelTestCase with TLS helpers. config() builds the class's CONFIG when the class
    starts (listener() puts extra listeners on free ports, found again in cls.ports). After
    every test, the log of the test (and of the test's own petrels) must hold none of SECRETS:
    petrel never logs a password or an AUTH payload."""
    SECRETS = SECRETS

    @classmethod
    def config(cls):
        return {}

    @classmethod
    def listener(cls, name, role='relay', tls='starttls'):
        port = free_port()
        cls.ports[name] = port
        return {'address': '127.0.0.1:%d' % port, 'role': role, 'tls': tls}

    @classmethod
    def setUpClass(cls):
        if cls.START:
            cls.ports = {}
            cls.CONFIG = cls.config()
        super().setUpClass()

    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix='petrel-tls-')
        self.addCleanup(shutil.rmtree, self.dir, True)

    def tearDown(self):
        try:
            self.check_no_secrets()     # here: the cleanups remove the test's own petrels
        finally:
            super().tearDown()

    def check_no_secrets(self):
        logs = [(p.name, p.log(whole=True)) for p in getattr(self, 'extra_petrels', [])]
        if self.petrel is not None:
            logs.append((self.petrel.name, self.petrel.log_since(self._log_mark, 10 ** 6)))
        for name, text in logs:
            for secret in self.SECRETS:
                self.assertNotIn(secret, text, 'a password or AUTH payload in the log of %s'
                                 % name)

    # -- clients --
    def tls_client(self, port=None, petrel_=None, **kw):
        c = TLSClient(port or (petrel_ or self.petrel).port, **kw)
        return self.track(c)

    def tls_session(self, port=None, ehlo='client.test', **kw):
        """Connected, EHLO, STARTTLS, EHLO again: (client, the EHLO reply inside TLS)."""
        c = self.tls_client(port, **kw)
        self.assertReply(c.ehlo('plain.test'), 250)
        self.assertReply(c.starttls(), 220, '2.0.0', 'Ready to start TLS')
        r = c.ehlo(ehlo)
        self.assertReply(r, 250)
        return c, r

    def implicit_session(self, port, ehlo='client.test', **kw):
        c = self.tls_client(port, implicit=True, **kw)
        self.assertReply(c.greeting, 220)
        r = c.ehlo(ehlo)
        self.assertReply(r, 250)
        return c, r

    def run_tool(self, args, input=None, timeout=TOOL_TIMEOUT):
        r = subprocess.run(args, input=input, stdin=None if input is not None
                           else subprocess.DEVNULL, capture_output=True, timeout=timeout)
        return r.returncode, r.stdout.decode('utf-8', 'replace'), \
            r.stderr.decode('utf-8', 'replace')

    def interactive(self, args):
        p = Interactive(args)
        self.addCleanup(p.close)
        return p

    def need(self, tool, name):
        if not tool:
            self.skipTest('%s is not installed' % name)

    def write(self, data, name='message.eml'):
        path = os.path.join(self.dir, name)
        with open(path, 'wb') as f:
            f.write(data)
        return path

    # -- what petrel did --
    def session_id(self, client, p=None):
        """petrel's id of the session of `client` (from its "connected" log line)."""
        host, port = client.sock.getsockname()[:2]
        return self.wait_test_log(r'([0-9a-f]{16}) smtp connected address=%s port=%d '
                                  % (re.escape(host), port), p=p).group(1)

    def find(self, marker, p=None):
        """The spooled messages whose data contain `marker`."""
        return [m for m in (p or self.petrel).messages() if marker.encode() in m.data]

    def one(self, marker, p=None):
        ms = self.find(marker, p)
        self.assertEqual(len(ms), 1, 'messages with %s: %d' % (marker, len(ms)))
        return ms[0]

    def log_of_test(self):
        """petrel's log since this test began."""
        return self.petrel.log_since(self._log_mark, 10 ** 6)

    def wait_test_log(self, pattern, timeout=10.0, p=None, mark=None):
        """Wait for a line matching `pattern` in the log since `mark` (default: this test)."""
        p = p or self.petrel
        mark = self._log_mark if mark is None else mark
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        while True:
            for line in p.log_since(mark, 10 ** 6).splitlines():
                m = rx.search(line)
                if m:
                    return m
            if time.monotonic() > end:
                self.fail('no log line matching %r within %.0f s' % (pattern, timeout))
            time.sleep(0.05)

    def assertReceivedTLS(self, msg, protocol, version=None):
        """The Received: header names the protocol and the TLS parameters (RFC 3848)."""
        text = msg.received.decode('utf-8', 'replace')
        m = re.search(RECEIVED_TLS % protocol, text)
        self.assertIsNotNone(m, 'Received: %r' % text)
        if version:
            self.assertEqual(m.group(1), version, text)
        self.assertEqual(msg.envelope.get('protocol'), protocol)


def basic_config(**over):
    """Port's listener STARTTLS (relay), the certificate, the users, no relay networks."""
    cfg = {
        'listen': [{'address': '127.0.0.1:{port}', 'role': 'relay', 'tls': 'starttls'}],
        'relay': {'networks': ['10.0.0.0/8'], 'local_domains': ['localhost', HOSTNAME]},
        'tls': tls_settings(),
        'auth': {'users_file': USERS},
    }
    cfg.update(over)
    return cfg


# ---- STARTTLS ----

class StartTLS(TLSTestCase):

    @classmethod
    def config(cls):
        return basic_config()

    def test_ehlo_offers_starttls_only_before_tls(self):
        c = self.tls_client()
        r = c.ehlo()
        self.assertIn('STARTTLS', keywords(r))
        self.assertFalse([k for k in keywords(r) if k.startswith('AUTH')],
                         'AUTH offered in the clear with require_tls: %r' % r)
        self.assertReply(c.starttls(), 220, '2.0.0', 'Ready to start TLS')
        self.assertIn(c.tls_version, ('TLSv1.2', 'TLSv1.3'))
        self.assertEqual(c.cn, SERVER_NAME)      # verified against the test CA and the name
        r = c.ehlo()
        self.assertReply(r, 250)
        self.assertNotIn('STARTTLS', keywords(r))
        self.assertIn('AUTH PLAIN LOGIN', keywords(r))
        self.wait_test_log(r'smtp tls established TLSv1\.[23] cipher=\S+ bits=\d+')

    def test_state_forgotten_after_starttls(self):
        """RFC 3207 §4.2: after the handshake the session starts over: EHLO again, no
        transaction, the HELO name from inside TLS."""
        t = tag()
        c = self.tls_client()
        self.assertReply(c.ehlo('before.test'), 250)
        self.assertReply(c.mail('a@example.org'), 250, '2.1.0')
        self.assertReply(c.starttls(), 220, '2.0.0')
        self.assertReply(c.mail('a@example.org'), 503, '5.5.1', 'HELO/EHLO')
        self.assertReply(c.rcpt('user@localhost'), 503, '5.5.1')
        self.assertReply(c.ehlo('after.test'), 250)
        self.assertReply(c.rcpt('user@localhost'), 503, '5.5.1', 'MAIL')
        c.send_mail('a@example.org', 'user@localhost', make_message(t), ehlo=False)
        m = self.one(t)
        self.assertEqual(m.envelope['helo'], 'after.test')
        self.assertReceivedTLS(m, 'ESMTPS', c.tls_version)

    def test_second_starttls_refused(self):
        c, _ = self.tls_session()
        self.assertReply(c.starttls(), 503, '5.5.1')
        self.assertReply(c.cmd('NOOP'), 250, '2.0.0')       # still talking, still TLS
        self.assertIsNotNone(c.tls_version)

    def test_starttls_with_parameter_is_a_syntax_error(self):
        c = self.tls_client()
        self.assertReply(c.ehlo(), 250)
        self.assertReply(c.cmd('STARTTLS now'), 501, '5.5.4')
        self.assertReply(c.cmd('NOOP'), 250, '2.0.0')       # still in the clear
        self.assertReply(c.starttls(), 220, '2.0.0')
        self.assertReply(c.ehlo(), 250)

    def test_pipelined_plaintext_is_discarded(self):
        """CVE-2011-0411: a command sent in the clear right after STARTTLS (same segment) must
        never run inside TLS. The first reply inside TLS is the NOOP's, not the RSET's."""
        c = self.tls_client()
        self.assertReply(c.ehlo(), 250)
        c.send(b'STARTTLS\r\nRSET\r\n')
        self.assertReply(c.read_reply(), 220, '2.0.0', 'Ready to start TLS')
        self.assertEqual(c.buf, b'', 'a reply to the pipelined RSET came in the clear')
        c.sock = c._wrap(c.sock)
        r = c.cmd('NOOP')
        self.assertEqual(r.lines, ['250 2.0.0 Ok'], 'first reply inside TLS')
        self.assertReply(c.mail('a@example.org'), 503, '5.5.1', 'HELO/EHLO')
        self.wait_test_log(r'smtp starttls discarded-pipelined-octets=6$')

    def test_pipelined_transaction_is_not_executed(self):
        t = tag()
        c = self.tls_client()
        self.assertReply(c.ehlo(), 250)
        injected = b'MAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@localhost>\r\n'
        c.send(b'STARTTLS\r\n' + injected)
        self.assertReply(c.read_reply(), 220, '2.0.0')
        self.assertEqual(c.buf, b'')
        c.sock = c._wrap(c.sock)
        self.assertReply(c.ehlo(), 250)
        self.assertReply(c.rcpt('user@localhost'), 503, '5.5.1', 'MAIL')   # no MAIL survived
        self.assertReply(c.cmd('DATA'), 503, '5.5.1')
        c.send_mail('good@example.org', 'user@localhost', make_message(t), ehlo=False)
        m = self.one(t)
        self.assertEqual(m.sender, 'good@example.org')
        self.assertEqual([r['addr'] for r in m.rcpts], ['user@localhost'])
        self.wait_test_log(r'smtp starttls discarded-pipelined-octets=%d$' % len(injected))

    def test_commands_pipelined_before_starttls_are_answered_in_the_clear(self):
        """EHLO, NOOP and STARTTLS in one write: both replies, then the 220, all in the clear,
        and the handshake after them."""
        c = self.tls_client()
        c.send(b'EHLO client.test\r\nNOOP\r\nSTARTTLS\r\n')
        self.assertIn('STARTTLS', keywords(c.read_reply()))
        self.assertReply(c.read_reply(), 250, '2.0.0')
        self.assertReply(c.read_reply(), 220, '2.0.0', 'Ready to start TLS')
        self.assertEqual(c.buf, b'')
        c.sock = c._wrap(c.sock)
        self.assertReply(c.ehlo(), 250)

    def test_failed_handshake_closes_only_that_connection(self):
        t = tag()
        plain = self.connect()                       # a session in the clear, mid-transaction
        self.assertReply(plain.ehlo(), 250)
        self.assertReply(plain.mail('a@example.org'), 250, '2.1.0')
        secure, _ = self.tls_session()               # a TLS session, mid-transaction
        self.assertReply(secure.mail('b@example.org'), 250, '2.1.0')

        bad = self.tls_client()
        self.assertReply(bad.ehlo(), 250)
        self.assertReply(bad.cmd('STARTTLS'), 220)
        bad.send(b'this is not a TLS ClientHello\r\n\r\n')
        self.assertClosed(bad)
        self.assertNotIn(b'250', bad.buf)
        quitter = self.tls_client()                  # hangs up in the middle of the handshake
        self.assertReply(quitter.ehlo(), 250)
        self.assertReply(quitter.cmd('STARTTLS'), 220)
        quitter.close()
        self.wait_test_log(r'smtp tls handshake failed error=')

        # The others go on.
        self.assertReply(plain.rcpt('user@localhost'), 250, '2.1.5')
        r354, r = plain.data(make_message(t + '-plain'))
        self.assertIsNotNone(r and r.queue_id, r)
        self.assertReply(secure.rcpt('user@localhost'), 250, '2.1.5')
        r354, r = secure.data(make_message(t + '-tls'))
        self.assertIsNotNone(r and r.queue_id, r)
        c, _ = self.tls_session()
        c.send_mail('c@example.org', 'user@localhost', make_message(t + '-new'), ehlo=False)
        for suffix in ('-plain', '-tls', '-new'):
            self.one(t + suffix)

    def test_tls_1_1_refused(self):
        ctx = client_context(ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_1, verify=False)
        if not tls11_works(ctx):
            self.skipTest('this OpenSSL cannot negotiate TLS 1.1 even with a TLS 1.1 server')
        c = self.tls_client(context=ctx)
        self.assertReply(c.ehlo(), 250)
        with self.assertRaises(ssl.SSLError):
            c.starttls()
        self.wait_test_log(r'smtp tls handshake failed error=.*unsupported protocol')
        c2, _ = self.tls_session()                   # petrel is fine, TLS 1.2+ works
        self.assertIn(c2.tls_version, ('TLSv1.2', 'TLSv1.3'))

    def test_refused_handshake_gets_its_alert(self):
        """RFC 8446 §4.2.1 (and 5246 E.1): a server that refuses the client's version aborts
        with a protocol_version alert; after STARTTLS too, not a bare close."""
        ctx = client_context(ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_1, verify=False)
        if not tls11_works(ctx):
            self.skipTest('this OpenSSL cannot negotiate TLS 1.1 even with a TLS 1.1 server')
        c = self.tls_client(context=ctx)
        self.assertReply(c.ehlo(), 250)
        with self.assertRaises(ssl.SSLError) as cm:
            c.starttls()
        self.assertRegex(str(cm.exception).lower(), ALERT_VERSION)

    def test_tls_1_2_accepted(self):
        t = tag()
        c, _ = self.tls_session(context=client_context(maximum=ssl.TLSVersion.TLSv1_2))
        self.assertEqual(c.tls_version, 'TLSv1.2')
        c.send_mail('a@example.org', 'user@localhost', make_message(t), ehlo=False)
        self.assertReceivedTLS(self.one(t), 'ESMTPS', 'TLSv1.2')

    def test_quit_after_starttls_gets_221(self):
        """The last reply before the close (221 to QUIT) must reach a STARTTLS client."""
        c, _ = self.tls_session()
        self.assertReply(c.cmd('QUIT'), 221, '2.0.0')
        self.assertClosed(c)

    def test_quit_after_starttls_python_smtplib(self):
        """smtplib's quit() needs the 221 (it raises SMTPServerDisconnected without it)."""
        with smtplib.SMTP('127.0.0.1', self.petrel.port, local_hostname='client.test',
                          timeout=IO_TIMEOUT) as s:
            s.starttls(context=client_context())
            self.assertEqual(s.ehlo()[0], 250)
            code, _ = s.quit()
        self.assertEqual(code, 221)

    # -- independent clients --
    def test_openssl_s_client(self):
        """openssl s_client -starttls smtp (verifies the certificate), AUTH PLAIN, a message
        relayed to a foreign domain (allowed only because of the AUTH)."""
        self.need(OPENSSL, 'openssl')
        t = tag()
        p = self.interactive([OPENSSL, 's_client', '-starttls', 'smtp', '-connect',
                              '127.0.0.1:%d' % self.petrel.port, '-quiet', '-nocommands',
                              '-CAfile', pki().ca, '-verify_return_error',
                              '-verify_hostname', SERVER_NAME, '-name', 'client.test'])
        p.send('EHLO client.test')
        p.expect(rb'^250-AUTH PLAIN LOGIN\r?\n')
        self.assertEqual(p.reply()[0], 250)
        self.assertNotIn(b'STARTTLS', p.out)
        self.assertEqual(p.cmd('AUTH PLAIN ' + plain_response('alice', 'wonderland')),
                         (235, '2.7.0 Authentication successful'))
        self.assertEqual(p.cmd('MAIL FROM:<alice@localhost>')[0], 250)
        self.assertEqual(p.cmd('RCPT TO:<someone@example.com>')[0], 250)
        self.assertEqual(p.cmd('DATA')[0], 354)
        for line in ('Subject: ' + t, '', 'via openssl s_client', '..dot'):
            p.send(line)
        code, text = p.cmd('.')
        self.assertEqual(code, 250, text)
        p.send('QUIT')
        p.finish()
        m = self.one(t)
        self.assertEqual([r['addr'] for r in m.rcpts], ['someone@example.com'])
        self.assertIn(b'\r\n..dot\r\n', m.body)               # the spool keeps DATA's form
        self.assertReceivedTLS(m, 'ESMTPSA')

    def test_gnutls_cli(self):
        """gnutls-cli --starttls-proto=smtp (a second TLS stack), AUTH LOGIN, a message."""
        self.need(GNUTLS_CLI, 'gnutls-cli (gnutls-bin)')
        t = tag()
        p = self.interactive([GNUTLS_CLI, '--starttls-proto=smtp',
                              '--x509cafile', pki().ca, '--port', str(self.petrel.port),
                              '127.0.0.1'])
        p.expect(rb'Handshake was completed')
        p.send('EHLO client.test')
        p.expect(rb'^250-AUTH PLAIN LOGIN\r?\n')
        self.assertEqual(p.reply()[0], 250)
        self.assertEqual(p.cmd('AUTH LOGIN'), (334, 'VXNlcm5hbWU6'))
        self.assertEqual(p.cmd(b64('bob')), (334, 'UGFzc3dvcmQ6'))
        self.assertEqual(p.cmd(b64('builder')), (235, '2.7.0 Authentication successful'))
        self.assertEqual(p.cmd('MAIL FROM:<bob@localhost>')[0], 250)
        self.assertEqual(p.cmd('RCPT TO:<someone@example.net>')[0], 250)
        self.assertEqual(p.cmd('DATA')[0], 354)
        for line in ('Subject: ' + t, '', 'via gnutls-cli'):
            p.send(line)
        code, text = p.cmd('.')
        self.assertEqual(code, 250, text)
        p.send('QUIT')
        p.finish()
        self.assertReceivedTLS(self.one(t), 'ESMTPSA')

    def test_python_smtplib(self):
        t = tag()
        msg = make_message(t)
        with smtplib.SMTP('127.0.0.1', self.petrel.port, local_hostname='client.test',
                          timeout=IO_TIMEOUT) as s:
            s.ehlo()
            self.assertTrue(s.has_extn('starttls'))
            self.assertFalse(s.has_extn('auth'))
            code, _ = s.starttls(context=client_context())
            self.assertEqual(code, 220)
            s.ehlo()
            self.assertFalse(s.has_extn('starttls'))
            self.assertEqual(s.esmtp_features.get('auth', '').split(), ['PLAIN', 'LOGIN'])
            code, _ = s.login('alice', 'wonderland')
            self.assertEqual(code, 235)
            self.assertEqual(s.sendmail('alice@localhost', ['x@example.org'], msg), {})
        self.assertReceivedTLS(self.one(t), 'ESMTPSA')

    def test_curl(self):
        self.need(CURL, 'curl')
        t = tag()
        rc, out, err = self.run_tool([
            CURL, '-sS', '--max-time', '15', '--ssl-reqd', '--cacert', pki().ca,
            '--user', 'alice:wonderland', '--mail-from', 'alice@localhost',
            '--mail-rcpt', 'someone@example.com', '-T', self.write(
                b'Subject: %s\r\n\r\nvia curl\r\n' % t.encode()),
            'smtp://127.0.0.1:%d' % self.petrel.port])
        self.assertEqual(rc, 0, out + err)
        m = self.one(t)
        self.assertEqual([r['addr'] for r in m.rcpts], ['someone@example.com'])
        self.assertReceivedTLS(m, 'ESMTPSA')

    def test_curl_ssl_reqd_without_auth(self):
        """curl with --ssl-reqd and no login: TLS alone does not allow relaying."""
        self.need(CURL, 'curl')
        t = tag()
        rc, out, err = self.run_tool([
            CURL, '-sS', '--max-time', '15', '--ssl-reqd', '--cacert', pki().ca,
            '--mail-from', 'a@example.org', '--mail-rcpt', 'user@localhost',
            '-T', self.write(b'Subject: %s\r\n\r\nvia curl\r\n' % t.encode()),
            'smtp://127.0.0.1:%d' % self.petrel.port])
        self.assertEqual(rc, 0, out + err)
        self.assertReceivedTLS(self.one(t), 'ESMTPS')
        rc, out, err = self.run_tool([
            CURL, '-sS', '--max-time', '15', '--ssl-reqd', '--cacert', pki().ca,
            '--mail-from', 'a@example.org', '--mail-rcpt', 'someone@example.com',
            '-T', self.write(b'Subject: %s-relay\r\n\r\nx\r\n' % t.encode()),
            'smtp://127.0.0.1:%d' % self.petrel.port])
        self.assertNotEqual(rc, 0, 'curl relayed without AUTH: ' + out + err)
        self.assertIn('554', err)
        self.assertEqual(self.find(t + '-relay'), [])

    def swaks(self, *extra):
        self.need(SWAKS, 'swaks')
        return self.run_tool([SWAKS, '--server', '127.0.0.1:%d' % self.petrel.port,
                              '--timeout', '10', '--helo', 'client.test'] + list(extra))

    def test_swaks_tls_auth_plain(self):
        t = tag()
        rc, out, err = self.swaks('--tls', '--auth', 'PLAIN', '--auth-user', 'alice',
                                  '--auth-password', 'wonderland', '--from', 'alice@localhost',
                                  '--to', 'someone@example.com', '--header', 'Subject: ' + t)
        self.assertEqual(rc, 0, out + err)
        self.assertIn('<~  235 2.7.0', out)
        self.assertReceivedTLS(self.one(t), 'ESMTPSA')

    def test_swaks_tls_auth_login(self):
        t = tag()
        rc, out, err = self.swaks('--tls', '--auth', 'LOGIN', '--auth-user', 'bob',
                                  '--auth-password', 'builder', '--from', 'bob@localhost',
                                  '--to', 'someone@example.com', '--header', 'Subject: ' + t)
        self.assertEqual(rc, 0, out + err)
        self.assertIn('<~  334 VXNlcm5hbWU6', out)
        self.assertIn('<~  334 UGFzc3dvcmQ6', out)
        self.assertReceivedTLS(self.one(t), 'ESMTPSA')


def tls11_works(client_ctx):
    """Control for the TLS 1.1 test: can this client context complete a TLS 1.1 handshake with
    a local TLS 1.1-only server? (If not, petrel's refusal would prove nothing.)"""
    p = pki()
    srv = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        srv.set_ciphers('DEFAULT:@SECLEVEL=0')
        srv.minimum_version = ssl.TLSVersion.TLSv1_1
        srv.maximum_version = ssl.TLSVersion.TLSv1_1
    srv.load_cert_chain(p.cert, p.key)
    ls = socket.socket()
    ls.bind(('127.0.0.1', 0))
    ls.listen(1)
    ls.settimeout(5)

    def serve():
        try:
            conn, _ = ls.accept()
            conn.settimeout(5)
            srv.wrap_socket(conn, server_side=True).close()
        except OSError:
            pass
    th = threading.Thread(target=serve, daemon=True)
    th.start()
    try:
        with socket.create_connection(ls.getsockname(), timeout=5) as s:
            with client_ctx.wrap_socket(s) as c:
                return c.version() == 'TLSv1.1'
    except OSError:
        return False
    finally:
        th.join(5)
        ls.close()


# ---- STARTTLS not offered ----

class NoStartTLS(TLSTestCase):
    """A listener with tls: none although a certificate is configured."""

    @classmethod
    def config(cls):
        return basic_config(listen=[{'address': '127.0.0.1:{port}', 'role': 'relay',
                                     'tls': 'none'}])

    def test_starttls_not_offered_gets_502(self):
        c = self.connect()
        r = c.ehlo()
        self.assertNotIn('STARTTLS', keywords(r))
        self.assertReply(c.cmd('STARTTLS'), 502, '5.5.1')
        self.assertReply(c.cmd('NOOP'), 250, '2.0.0')       # still in the clear, still there

    def test_no_certificate_no_starttls(self):
        p = self.new_petrel({'listen': [{'address': '127.0.0.1:{port}', 'role': 'relay'}]})
        c = self.connect(p)
        self.assertNotIn('STARTTLS', keywords(c.ehlo()))
        self.assertReply(c.cmd('STARTTLS'), 502, '5.5.1')
        self.assertReply(c.cmd('NOOP'), 250, '2.0.0')


# ---- implicit TLS ----

class ImplicitTLS(TLSTestCase):
    """Port: STARTTLS (the fixture's readiness probe speaks in the clear); ports['implicit']:
    TLS from the first byte (relay); ports['submissions']: implicit submission."""

    @classmethod
    def config(cls):
        cfg = basic_config()
        cfg['listen'] = cfg['listen'] + [cls.listener('implicit', 'relay', 'implicit'),
                                         cls.listener('submissions', 'submission', 'implicit')]
        return cfg

    def test_greeting_inside_tls(self):
        t = tag()
        c = self.tls_client(self.ports['implicit'], implicit=True)
        self.assertEqual(c.greeting.lines, ['220 %s ESMTP petrel' % HOSTNAME])
        self.assertIn(c.tls_version, ('TLSv1.2', 'TLSv1.3'))
        self.assertEqual(c.cn, SERVER_NAME)
        r = c.ehlo()
        self.assertNotIn('STARTTLS', keywords(r))
        self.assertIn('AUTH PLAIN LOGIN', keywords(r))
        self.assertReply(c.cmd('STARTTLS'), 503, '5.5.1')
        c.send_mail('a@example.org', 'user@localhost', make_message(t), ehlo=False)
        self.assertReceivedTLS(self.one(t), 'ESMTPS', c.tls_version)
        self.assertReply(c.cmd('QUIT'), 221, '2.0.0')
        self.assertClosed(c)

    def test_plaintext_client_gets_no_greeting(self):
        c = self.tls_client(self.ports['implicit'], greet=False)
        c.send(b'EHLO client.test\r\n')
        self.assertClosed(c)
        self.assertNotIn(b'220', c.buf)
        self.wait_test_log(r'smtp tls handshake failed')
        c2, _ = self.implicit_session(self.ports['implicit'])     # the listener still works
        self.assertReply(c2.cmd('NOOP'), 250, '2.0.0')

    def test_tls_1_1_refused(self):
        ctx = client_context(ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_1, verify=False)
        if not tls11_works(ctx):
            self.skipTest('this OpenSSL cannot negotiate TLS 1.1 even with a TLS 1.1 server')
        with self.assertRaises(ssl.SSLError) as cm:
            self.tls_client(self.ports['implicit'], implicit=True, context=ctx)
        self.assertRegex(str(cm.exception).lower(), ALERT_VERSION)
        self.wait_test_log(r'smtp tls handshake failed error=.*unsupported protocol')

    def test_python_smtp_ssl_submission(self):
        t = tag()
        with smtplib.SMTP_SSL('127.0.0.1', self.ports['submissions'],
                              local_hostname='client.test', timeout=IO_TIMEOUT,
                              context=client_context()) as s:
            s.ehlo()
            self.assertFalse(s.has_extn('starttls'))
            code, _ = s.mail('alice@localhost')
            self.assertEqual(code, 530)                  # submission: AUTH first
            s.rset()
            s.login('alice', 'wonderland')
            self.assertEqual(s.sendmail('alice@localhost', ['x@example.org'],
                                        make_message(t)), {})
            code, _ = s.quit()
            self.assertEqual(code, 221)
        self.assertReceivedTLS(self.one(t), 'ESMTPSA')

    def test_openssl_s_client_implicit(self):
        self.need(OPENSSL, 'openssl')
        t = tag()
        p = self.interactive([OPENSSL, 's_client', '-connect',
                              '127.0.0.1:%d' % self.ports['implicit'], '-quiet', '-nocommands',
                              '-CAfile', pki().ca, '-verify_return_error',
                              '-verify_hostname', SERVER_NAME])
        self.assertEqual(p.reply(), (220, '%s ESMTP petrel' % HOSTNAME))
        self.assertEqual(p.cmd('EHLO client.test')[0], 250)
        self.assertNotIn(b'STARTTLS', p.out)
        self.assertEqual(p.cmd('MAIL FROM:<a@example.org>')[0], 250)
        self.assertEqual(p.cmd('RCPT TO:<user@localhost>')[0], 250)
        self.assertEqual(p.cmd('DATA')[0], 354)
        for line in ('Subject: ' + t, '', 'implicit'):
            p.send(line)
        self.assertEqual(p.cmd('.')[0], 250)
        self.assertEqual(p.cmd('QUIT'), (221, '2.0.0 Bye'))
        p.finish()
        self.assertReceivedTLS(self.one(t), 'ESMTPS')

    def test_curl_smtps(self):
        self.need(CURL, 'curl')
        t = tag()
        rc, out, err = self.run_tool([
            CURL, '-sS', '--max-time', '15', '--cacert', pki().ca,
            '--user', 'bob:builder', '--mail-from', 'bob@localhost',
            '--mail-rcpt', 'someone@example.com', '-T', self.write(
                b'Subject: %s\r\n\r\nvia curl smtps\r\n' % t.encode()),
            'smtps://127.0.0.1:%d' % self.ports['submissions']])
        self.assertEqual(rc, 0, out + err)
        self.assertReceivedTLS(self.one(t), 'ESMTPSA')

    def test_swaks_tlsc(self):
        self.need(SWAKS, 'swaks')
        t = tag()
        rc, out, err = self.run_tool([
            SWAKS, '--server', '127.0.0.1:%d' % self.ports['submissions'], '--timeout', '10',
            '--tlsc', '--auth', 'LOGIN', '--auth-user', 'alice', '--auth-password',
            'wonderland', '--from', 'alice@localhost', '--to', 'someone@example.com',
            '--header', 'Subject: ' + t])
        self.assertEqual(rc, 0, out + err)
        self.assertReceivedTLS(self.one(t), 'ESMTPSA')


# ---- min_version ----

class TLS13Only(TLSTestCase):

    @classmethod
    def config(cls):
        cfg = basic_config(tls=tls_settings(min_version='TLSv1.3'))
        cfg['listen'] = cfg['listen'] + [cls.listener('implicit', 'relay', 'implicit')]
        return cfg

    def test_tls_1_2_refused(self):
        c = self.tls_client(context=client_context(maximum=ssl.TLSVersion.TLSv1_2))
        self.assertReply(c.ehlo(), 250)
        with self.assertRaises(ssl.SSLError):
            c.starttls()
        with self.assertRaises(ssl.SSLError) as cm:
            self.tls_client(self.ports['implicit'], implicit=True,
                            context=client_context(maximum=ssl.TLSVersion.TLSv1_2))
        self.assertRegex(str(cm.exception).lower(), ALERT_VERSION)
        self.wait_test_log(r'smtp tls handshake failed error=.*unsupported protocol')

    def test_tls_1_3_accepted(self):
        t = tag()
        c, _ = self.tls_session()
        self.assertEqual(c.tls_version, 'TLSv1.3')
        c.send_mail('a@example.org', 'user@localhost', make_message(t), ehlo=False)
        self.assertReceivedTLS(self.one(t), 'ESMTPS', 'TLSv1.3')
        c2, _ = self.implicit_session(self.ports['implicit'])
        self.assertEqual(c2.tls_version, 'TLSv1.3')

    def test_openssl_s_client_tls_1_2_refused(self):
        self.need(OPENSSL, 'openssl')
        rc, out, err = self.run_tool([OPENSSL, 's_client', '-starttls', 'smtp', '-connect',
                                      '127.0.0.1:%d' % self.petrel.port, '-tls1_2'],
                                     input=b'')
        self.assertNotEqual(rc, 0, out + err)
        self.assertNotIn('250 ', out)
        self.wait_test_log(r'smtp tls handshake failed error=.*unsupported protocol')


# ---- SIGHUP: certificate reload ----

class Reload(TLSTestCase):
    START = False

    def reload_petrel(self):
        """A petrel whose certificate and key are copies in its own directory (cert.pem,
        key.pem), on a STARTTLS port and an implicit one (self.implicit_port)."""
        p = self.new_petrel(start=False)
        self.cert = os.path.join(p.workdir, 'cert.pem')
        self.key = os.path.join(p.workdir, 'key.pem')
        self.install(pki().cert, pki().key)
        self.implicit_port = free_port()
        p.overrides = basic_config(tls={'certificate': self.cert, 'key': self.key})
        p.overrides['listen'] = p.overrides['listen'] + [
            {'address': '127.0.0.1:%d' % self.implicit_port, 'role': 'relay',
             'tls': 'implicit'}]
        p.start()
        return p

    def install(self, cert, key):
        for src, dst in ((cert, self.cert), (key, self.key)):
            tmp = dst + '.tmp'
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)

    def sighup(self, p, outcome):
        """SIGHUP, and wait for the log line of its outcome."""
        mark = p.log_size()
        p.proc.send_signal(signal.SIGHUP)
        return self.wait_test_log(outcome, p=p, mark=mark)

    def cn_now(self, p):
        c, _ = self.tls_session(p.port)
        cn = c.cn
        c2 = self.tls_client(self.implicit_port, implicit=True)
        self.assertEqual(c2.cn, cn, 'STARTTLS and implicit TLS show different certificates')
        return cn

    def test_sighup_new_certificate_for_new_connections(self):
        t = tag()
        p = self.reload_petrel()
        self.assertEqual(self.cn_now(p), SERVER_NAME)
        # A TLS session in the middle of a transaction, and one in the clear that will
        # STARTTLS only after the reload.
        old, _ = self.tls_session(p.port)
        self.assertEqual(old.cn, SERVER_NAME)
        self.assertReply(old.mail('a@example.org'), 250, '2.1.0')
        self.assertReply(old.rcpt('user@localhost'), 250, '2.1.5')
        later = self.tls_client(p.port)
        self.assertReply(later.ehlo(), 250)

        self.install(pki().cert2, pki().key2)
        self.sighup(p, r'petrel reloaded config=.* tls=yes')
        self.assertEqual(self.cn_now(p), RELOADED_NAME)

        r354, r = old.data(make_message(t + '-old'))     # the old session finishes its message
        self.assertIsNotNone(r and r.queue_id, r)
        self.assertReply(old.cmd('NOOP'), 250, '2.0.0')
        self.assertReply(later.starttls(), 220, '2.0.0')
        self.assertEqual(later.cn, RELOADED_NAME)
        later.send_mail('b@example.org', 'user@localhost', make_message(t + '-later'))
        self.one(t + '-old', p)
        self.one(t + '-later', p)

    def test_sighup_broken_certificate_keeps_the_old_one(self):
        p = self.reload_petrel()
        old, _ = self.tls_session(p.port)

        with open(self.cert, 'w') as f:
            f.write('-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n')
        self.sighup(p, r'petrel reload refused, the old configuration is kept: .*certificate')
        self.assertEqual(self.cn_now(p), SERVER_NAME)

        self.install(pki().cert2, pki().key)             # a certificate with the wrong key
        self.sighup(p, r'petrel reload refused, the old configuration is kept: .*certificate')
        self.assertEqual(self.cn_now(p), SERVER_NAME)

        os.unlink(self.key)                              # a missing key: the config is wrong
        self.sighup(p, r'petrel reload refused: .*petrel\.yaml:\d+:\d+: tls\.key: cannot read')
        self.assertEqual(self.cn_now(p), SERVER_NAME)

        self.install(pki().cert2, pki().key2)            # repaired: the next reload takes it
        self.sighup(p, r'petrel reloaded config=.* tls=yes')
        self.assertEqual(self.cn_now(p), RELOADED_NAME)
        self.assertReply(old.cmd('NOOP'), 250, '2.0.0')
        self.assertTrue(p.alive())


if __name__ == '__main__':
    petrel.main()
