"""
petrel.py: the fixture of petrel's integration tests (stdlib only, and python3-xxhash for the
checksums of spool files).

A Petrel object writes a YAML config into a temporary directory (the spool lives inside it),
starts the real petrel binary (path from the PETREL environment variable) on a free 127.0.0.1
port, waits until it accepts a connection (with a deadline, never a blind sleep), and captures
its stderr (the log) to a file. It stops petrel by PID: SIGTERM, then SIGKILL past a deadline.

SMTPClient is a raw socket client that sends exact bytes and reads whole (multi-line) replies
with a timeout; spool helpers read the slot files of the spool (include/petrel/spool.h): list
the committed messages, find one's slot file and parse it into its envelope and data, report
what else should not be there, and write a committed slot file for a test.

PetrelTestCase starts one petrel per test class (CONFIG holds the overrides), checks after each
test that it is still alive, bounds each test with an alarm, and main() runs the tests of a
script, prints petrel's log for every failure and ends with the line "N passed, M failed".
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import unittest

import xxhash    # python3-xxhash (scripts/deps --test): the spool's XXH3-64 checksums

PETREL = os.environ.get('PETREL') or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), '..', '..', 'build', 'src', 'petrel')
HOSTNAME = 'petrel.test'
START_DEADLINE = 15.0   # seconds for petrel to accept its first connection
STOP_DEADLINE = 15.0    # seconds for petrel to exit after SIGTERM before SIGKILL
IO_TIMEOUT = 10.0       # default socket timeout of the test clients
TEST_TIMEOUT = 40       # default alarm of one test
FILE_TIMEOUT = 115      # the whole script, below Meson's 120 s
LOG_TAIL = 150          # lines of petrel's log printed on a failure

ID_RE = re.compile(r'^[0-9a-f]{16}$')
QUEUED_RE = re.compile(r'^250 2\.0\.0 Ok: queued as ([0-9a-f]{16})$')

_running = []           # every Petrel started and not yet stopped (for the watchdog)


class TestTimeout(Exception):
    """The per-test alarm went off."""


class ConnectionClosed(Exception):
    """The server closed the connection before a complete reply."""


# ---- configuration ----

def free_port():
    """A port that was free a moment ago on 127.0.0.1 (bind to 0, close)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]
    finally:
        s.close()


def deep_merge(base, over):
    """base updated with over, recursively for dicts (lists are replaced as a whole)."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


_PLAIN = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_./:-]*$')


def _scalar(v):
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if isinstance(v, int):
        return str(v)
    s = str(v)
    if _PLAIN.match(s) and not re.match(r'^(true|false|yes|no|on|off|null|~)$', s, re.I):
        return s
    return '"' + s.replace('\\', '\\\\').replace('"', '\\"') + '"'


def to_yaml(obj, indent=0):
    """A small block-style YAML writer for dicts, lists and scalars."""
    pad = ' ' * indent
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                out.append('%s%s:' % (pad, k))
                out.append(to_yaml(v, indent + 2))
            elif isinstance(v, list):
                out.append('%s%s: []' % (pad, k))
            elif isinstance(v, dict):
                out.append('%s%s: {}' % (pad, k))
            else:
                out.append('%s%s: %s' % (pad, k, _scalar(v)))
    elif isinstance(obj, list):
        for v in obj:
            if isinstance(v, dict):
                sub = to_yaml(v, indent + 2).split('\n')
                out.append('%s- %s' % (pad, sub[0].lstrip()))
                out.extend(sub[1:])
            else:
                out.append('%s- %s' % (pad, _scalar(v)))
    else:
        out.append(pad + _scalar(obj))
    return '\n'.join(out)


_hole = None


def hole_port():
    """A 127.0.0.1 port bound (never listening) for the life of the script: connecting to it
    is refused at once, and nobody else can take it."""
    global _hole
    if _hole is None:
        _hole = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        _hole.bind(('127.0.0.1', 0))
    return _hole.getsockname()[1]


def default_config(workdir, port):
    """The test config. Messages must stay queued in the spool for the tests to read them, and
    no test may send traffic off the machine: every domain routes to a relay on a refused
    127.0.0.1 port (a temporary failure, retried in an hour), no delay warnings, and the
    resolver is pointed at the same dead port."""
    hole = '127.0.0.1:%d' % hole_port()
    return {
        'hostname': HOSTNAME,
        'spool': os.path.join(workdir, 'spool'),
        'durability': 'fsync',
        'log_level': 'info',
        'listen': [{'address': '127.0.0.1:%d' % port, 'role': 'relay'}],
        'relay': {'networks': ['127.0.0.0/8'], 'local_domains': ['localhost', HOSTNAME]},
        'limits': {},
        'routes': [{'domain': '*', 'relay': hole, 'tls': 'none'}],
        'queue': {'retry': ['1h'], 'delay_warning': 0},
        'dns': {'nameservers': [hole]},
    }


# ---- SMTP client ----

class Reply:
    """One complete SMTP reply: code, enhanced status code ('' if none), lines."""

    def __init__(self, lines):
        self.lines = lines
        last = lines[-1]
        self.code = int(last[:3])
        m = re.match(r'^\d{3}[ -](\d\.\d{1,3}\.\d{1,3})(?: |$)', last)
        self.enhanced = m.group(1) if m else ''
        self.text = last[4:]

    @property
    def queue_id(self):
        m = QUEUED_RE.match(self.lines[-1])
        return m.group(1) if m else None

    def __repr__(self):
        return '<Reply %s>' % ' | '.join(self.lines)


class SMTPClient:
    """A raw SMTP client: exact bytes out, whole replies in, every wait bounded."""

    def __init__(self, port, timeout=IO_TIMEOUT, greet=True, host='127.0.0.1'):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b''
        self.eof = False
        self.greeting = self.read_reply() if greet else None

    # -- bytes --
    def send(self, data):
        if isinstance(data, str):
            data = data.encode('utf-8')
        self.sock.sendall(data)

    def line(self, text):
        """Send one command line (CRLF added)."""
        if isinstance(text, str):
            text = text.encode('utf-8')
        self.send(text + b'\r\n')

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout('timed out waiting for the server')
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b''
        if not chunk:
            self.eof = True
        self.buf += chunk

    def read_line(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while b'\r\n' not in self.buf:
            if self.eof:
                raise ConnectionClosed('connection closed; pending bytes %r' % self.buf[:200])
            self._fill(deadline)
        line, self.buf = self.buf.split(b'\r\n', 1)
        return line.decode('utf-8', 'replace')

    def read_reply(self, timeout=None):
        """One complete reply (all lines of a multi-line reply)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        lines = []
        while True:
            line = self.read_line(max(0.001, deadline - time.monotonic()))
            if not re.match(r'^\d{3}[ -]', line) and not re.match(r'^\d{3}$', line):
                raise AssertionError('malformed reply line %r (after %r)' % (line, lines))
            if lines and line[:3] != lines[0][:3]:
                raise AssertionError('reply code changed within a reply: %r then %r'
                                     % (lines, line))
            lines.append(line)
            if len(line) == 3 or line[3] == ' ':
                return Reply(lines)

    def read_replies(self, n, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        return [self.read_reply(max(0.001, deadline - time.monotonic())) for _ in range(n)]

    def cmd(self, text, timeout=None):
        self.line(text)
        return self.read_reply(timeout)

    def wait_closed(self, timeout=None):
        """Read until the server closes. Returns the bytes that came meanwhile; raises
        socket.timeout if the connection is still open at the deadline."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while not self.eof:
            self._fill(deadline)
        data, self.buf = self.buf, b''
        return data

    def is_open(self, wait=0.3):
        """True if the server has not closed the connection within `wait` seconds (anything
        that arrives meanwhile stays buffered)."""
        if self.eof:
            return False
        try:
            self._fill(time.monotonic() + wait)
        except socket.timeout:
            return True
        except OSError:
            return False
        return not self.eof

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # -- SMTP shortcuts (each returns the Reply) --
    def ehlo(self, name='client.test'):
        return self.cmd('EHLO ' + name)

    def helo(self, name='client.test'):
        return self.cmd('HELO ' + name)

    def mail(self, addr, params=''):
        return self.cmd('MAIL FROM:<%s>%s' % (addr, (' ' + params) if params else ''))

    def rcpt(self, addr, params=''):
        return self.cmd('RCPT TO:<%s>%s' % (addr, (' ' + params) if params else ''))

    def data(self, content, timeout=None):
        """DATA, then `content` (bytes, already CRLF and dot-stuffed, without the final dot)
        and CRLF.CRLF; returns (354 reply, final reply)."""
        r354 = self.cmd('DATA')
        if r354.code != 354:
            return r354, None
        if isinstance(content, str):
            content = content.encode('utf-8')
        if content and not content.endswith(b'\r\n'):
            content += b'\r\n'
        self.send(content + b'.\r\n')
        return r354, self.read_reply(timeout)

    def send_mail(self, sender, rcpts, content, ehlo=True, timeout=None):
        """A whole transaction; returns the queue id. Fails the test on any unexpected reply."""
        if ehlo:
            r = self.ehlo()
            assert r.code == 250, r
        r = self.mail(sender)
        assert (r.code, r.enhanced) == (250, '2.1.0'), r
        for a in ([rcpts] if isinstance(rcpts, str) else rcpts):
            r = self.rcpt(a)
            assert (r.code, r.enhanced) == (250, '2.1.5'), r
        r354, r = self.data(content, timeout)
        assert r354.code == 354, r354
        assert r is not None and r.queue_id, r
        return r.queue_id

    def quit(self):
        r = self.cmd('QUIT')
        self.wait_closed()
        return r


def stuff(text):
    """Dot-stuff CRLF text (RFC 5321 section 4.5.2)."""
    if isinstance(text, str):
        text = text.encode('utf-8')
    lines = text.split(b'\r\n')
    return b'\r\n'.join(b'.' + l if l.startswith(b'.') else l for l in lines)


def make_message(subject='test', body='Hello.\r\n', msgid=None, extra=''):
    msgid = msgid or '<%s@client.test>' % os.urandom(8).hex()
    return ('From: a@example.org\r\nTo: user@localhost\r\nSubject: %s\r\nMessage-ID: %s\r\n'
            '%s\r\n%s' % (subject, msgid, extra, body)).encode('utf-8')


# ---- spool ----

# The slot files of the spool, slots/<n> (include/petrel/spool.h, spool_record.h): each opens
# with a commit record of RECORD_LEN bytes, "petrel-spool 2 <state> <id> <len> <sum>\n", and
# holds a committed message when the state is Q, the id is the one of the "id" line after it,
# and the file has the len bytes the record covers (envelope and data) with the XXH3-64 sum.
# Anything else (state F, a new file's zeros, a write torn by a crash) is a free slot. Only the
# first RECORD_LEN + len bytes count: a recycled file keeps an older message's bytes after them.
RECORD_LEN = 68
RECORD_RE = re.compile(rb'^petrel-spool 2 ([QF]) ([0-9a-f]{16}) ([0-9a-f]{16}) ([0-9a-f]{16})\n$')
SLOT_RE = re.compile(r'^(0|[1-9][0-9]*)$')
LEGACY = ('queue', 'tmp', 'free')   # the directories of the old layout (spool version 1)


def format_slot(qid, content, state='Q'):
    """The bytes of a slot file holding content (envelope lines from "id <qid>", the empty
    line, the data) under a valid commit record."""
    rec = 'petrel-spool 2 %s %s %016x %016x\n' % (state, qid, len(content),
                                                  xxhash.xxh3_64_intdigest(content))
    assert len(rec) == RECORD_LEN, rec
    return rec.encode() + content


def read_slot(path):
    """What slot file `path` holds: ('Q', id, committed) for a committed message, committed
    being the commit record and the bytes it covers; ('F', id or None, None) for a free slot
    (state F, or no record at all); ('bad', id, reason) for a record that says Q but does not
    check out (a free slot to petrel too, but one that only a crash in mid-write may leave)."""
    with open(path, 'rb') as f:
        rec = f.read(RECORD_LEN)
        m = RECORD_RE.match(rec)
        if not m:
            return 'F', None, None
        state, qid, n, want = m.group(1).decode(), m.group(2).decode(), int(m.group(3), 16), \
            int(m.group(4), 16)
        if state != 'Q':
            return 'F', qid, None
        content = f.read(n)
    if len(content) < n:
        return 'bad', qid, 'the file ends %d bytes short of the recorded length' \
            % (n - len(content))
    if xxhash.xxh3_64_intdigest(content) != want:
        return 'bad', qid, 'checksum mismatch'
    if not content.startswith(('id %s\n' % qid).encode()):
        return 'bad', qid, 'the id line is %r' % content.split(b'\n', 1)[0][:40]
    return 'Q', qid, rec + content


def slot_paths(spool):
    """The slot files of the spool, by number, and the names in slots/ that are not one."""
    d = os.path.join(spool, 'slots')
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        names = []
    slots = sorted(int(n) for n in names if SLOT_RE.match(n))
    return [os.path.join(d, str(n)) for n in slots], sorted(n for n in names
                                                            if not SLOT_RE.match(n))


def scan_spool(spool):
    """Every slot file read once: ([(id, path, committed)] of the committed messages in id
    order, [what else should not be there]: names in slots/ that are not a slot, slot files
    that cannot be read, records that say Q but do not check out, a second slot of an id, and
    a directory of the old layout)."""
    paths, others = slot_paths(spool)
    found, strays, seen = [], ['slots/' + n for n in others], set()
    for path in paths:
        where = 'slots/' + os.path.basename(path)
        try:
            state, qid, what = read_slot(path)
        except FileNotFoundError:
            continue
        except OSError as e:
            strays.append('%s (%s)' % (where, e.strerror))
            continue
        if state == 'bad':
            strays.append('%s (%s: %s)' % (where, qid, what))
        elif state == 'Q' and qid in seen:
            strays.append('%s (a second slot of %s)' % (where, qid))
        elif state == 'Q':
            seen.add(qid)
            found.append((qid, path, what))
    strays += [n + '/' for n in LEGACY if os.path.lexists(os.path.join(spool, n))]
    return sorted(found), strays


def find_slot(spool, qid):
    """(path, committed) of the slot file that holds committed message qid; AssertionError if
    none does. Only the records of the other slot files are read."""
    for path in slot_paths(spool)[0]:
        try:
            with open(path, 'rb') as f:
                m = RECORD_RE.match(f.read(RECORD_LEN))
        except FileNotFoundError:
            continue
        if m and m.group(1) == b'Q' and m.group(2).decode() == qid:
            state, _, what = read_slot(path)
            if state == 'Q':
                return path, what
            raise AssertionError('%s: the record of %s does not check out: %s'
                                 % (path, qid, what))
    raise AssertionError('no slot file in %s/slots holds committed message %s' % (spool, qid))


class SpoolMessage:
    """A committed message in a slot file: envelope (dict of its single-valued lines), rcpts
    (list of dicts with addr and the key=value words), data (bytes after the envelope), body
    (data without petrel's Received: header); path and slot (its number), record (the commit
    record) and committed (the record and the bytes it covers: what a crash must not change).
    `committed` is read from path if not given."""

    def __init__(self, path, committed=None):
        self.path = path
        self.slot = int(os.path.basename(path))
        if committed is None:
            state, qid, committed = read_slot(path)
            if state != 'Q':
                raise AssertionError('%s: not a committed message (%s %s: %s)'
                                     % (path, state, qid, committed))
        self.committed = committed
        self.record = committed[:RECORD_LEN]
        head, sep, self.data = committed[RECORD_LEN:].partition(b'\n\n')
        if not sep:
            raise AssertionError('%s: no empty line after the envelope' % path)
        lines = head.decode('utf-8').split('\n')
        self.envelope = {}
        self.rcpts = []
        self.flags = set()
        for line in lines:
            key, _, value = line.partition(' ')
            if key == 'rcpt':
                # key=value words, then the path (which may hold spaces inside quotes)
                m = re.match(r'^((?:[a-z]+=\S* )*)<(.*)>$', value)
                if not m:
                    raise AssertionError('%s: bad rcpt line %r' % (path, line))
                r = {'addr': m.group(2)}
                for w in m.group(1).split():
                    k, _, v = w.partition('=')
                    r[k] = v
                self.rcpts.append(r)
            elif value == '':
                self.flags.add(key)
            else:
                self.envelope[key] = value
        self.id = self.envelope.get('id')
        self.sender = self.envelope.get('from', '')[1:-1]
        self.received, self.body = split_received(self.data)


def split_received(data):
    """(petrel's Received: header with its folded lines, the rest)."""
    if not data.startswith(b'Received: '):
        return b'', data
    end = 0
    while True:
        nl = data.index(b'\r\n', end) + 2
        end = nl
        if not data[end:end + 1] in (b'\t', b' '):
            return data[:end], data[end:]


# ---- the server under test ----

class Petrel:
    def __init__(self, config=None, workdir=None, name='petrel'):
        self.workdir = workdir or tempfile.mkdtemp(prefix='petrel-it-')
        self.overrides = config or {}
        self.name = name
        self.proc = None
        self.port = None
        self.log_path = os.path.join(self.workdir, 'petrel.log')
        self.config_path = os.path.join(self.workdir, 'petrel.yaml')
        self.spool = os.path.join(self.workdir, 'spool')
        self.log_offset = 0     # where the current run's log starts
        self.returncode = None

    def write_config(self, port):
        cfg = deep_merge(default_config(self.workdir, port), self.overrides)
        # Overridden listen entries may say '127.0.0.1:{port}' for the port picked here.
        cfg['listen'] = [dict(l, address=l['address'].format(port=port)) for l in cfg['listen']]
        self.config = cfg
        self.spool = os.path.join(self.workdir, cfg['spool'])   # relative: to petrel's cwd
        with open(self.config_path, 'w') as f:
            f.write(to_yaml(cfg) + '\n')

    def start(self, port=None, deadline=START_DEADLINE):
        """Start petrel (on `port`, or a fresh free port) and wait until it accepts."""
        if not os.access(PETREL, os.X_OK):
            raise RuntimeError('petrel binary not found: %s (set PETREL)' % PETREL)
        for attempt in range(3):
            self.port = port or free_port()
            self.write_config(self.port)
            self.log_offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) \
                else 0
            with open(self.log_path, 'ab') as log:
                self.proc = subprocess.Popen([PETREL, '-c', self.config_path, '--allow-root'],
                                             stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                             cwd=self.workdir)
            _running.append(self)
            self.returncode = None
            try:
                self._wait_ready(deadline)
                return self
            except RuntimeError:
                rc = self.proc.poll()
                if rc is not None and port is None and 'Address already in use' in self.log():
                    _running.remove(self)
                    continue        # someone took the port in between: pick another
                raise
        raise RuntimeError('petrel could not bind a free port')

    def _wait_ready(self, deadline):
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            rc = self.proc.poll()
            if rc is not None:
                self.returncode = rc
                raise RuntimeError('petrel exited with %d at start-up:\n%s'
                                   % (rc, self.log_tail()))
            try:
                s = socket.create_connection(('127.0.0.1', self.port), timeout=1)
            except OSError:
                time.sleep(0.02)
                continue
            # A real exchange, so the probe's session is gone when we return (it would count
            # against the connection limits otherwise).
            try:
                c = SMTPClient.__new__(SMTPClient)
                c.timeout, c.sock, c.buf, c.eof = 5.0, s, b'', False
                c.read_reply()
                c.line('QUIT')
                c.read_reply()
                c.wait_closed()
            finally:
                s.close()
            return
        raise RuntimeError('petrel did not accept a connection within %.0f s:\n%s'
                           % (deadline, self.log_tail()))

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, deadline=STOP_DEADLINE):
        """Signal petrel by PID and wait; SIGKILL past the deadline. Returns the exit code."""
        if self.proc is None:
            return self.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(sig)      # by PID; a no-op once the child is reaped
            try:
                self.proc.wait(deadline)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                self.returncode = self.proc.returncode
                self._forget()
                raise AssertionError('petrel did not exit within %.0f s of signal %d'
                                     % (deadline, sig))
        self.returncode = self.proc.returncode
        self._forget()
        return self.returncode

    def kill9(self):
        return self.stop(signal.SIGKILL, 5)

    def _forget(self):
        if self in _running:
            _running.remove(self)
        self.proc = None

    def restart(self, **kw):
        """Start again on the same spool, config and port."""
        return self.start(port=self.port, **kw)

    def cleanup(self):
        if self.alive():
            try:
                self.stop()
            except AssertionError:
                pass
        if not os.environ.get('PETREL_KEEP'):
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- log --
    def log(self, whole=False):
        try:
            with open(self.log_path, 'rb') as f:
                if not whole:
                    f.seek(self.log_offset)
                return f.read().decode('utf-8', 'replace')
        except FileNotFoundError:
            return ''

    def log_size(self):
        try:
            return os.path.getsize(self.log_path)
        except FileNotFoundError:
            return 0

    def log_since(self, mark, n=LOG_TAIL):
        try:
            with open(self.log_path, 'rb') as f:
                f.seek(mark)
                lines = f.read().decode('utf-8', 'replace').splitlines()
        except FileNotFoundError:
            return ''
        head = '... (%d lines before)\n' % (len(lines) - n) if len(lines) > n else ''
        return head + '\n'.join(lines[-n:])

    def log_tail(self, n=LOG_TAIL):
        lines = self.log(whole=True).splitlines()
        head = '... (%d lines before)\n' % (len(lines) - n) if len(lines) > n else ''
        return head + '\n'.join(lines[-n:])

    def wait_log(self, pattern, timeout=10.0):
        """Wait until a line of this run's log matches the regex; returns the match."""
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        while True:
            for line in self.log().splitlines():
                m = rx.search(line)
                if m:
                    return m
            if time.monotonic() > end:
                raise AssertionError('no log line matching %r within %.0f s'
                                     % (pattern, timeout))
            time.sleep(0.05)

    # -- clients --
    def connect(self, **kw):
        return SMTPClient(self.port, **kw)

    # -- spool --
    def slot_paths(self):
        """The slot files, by number (free ones too)."""
        return slot_paths(self.spool)[0]

    def queue_ids(self):
        """The ids of the committed messages (slot files in state Q that check out), sorted."""
        return [qid for qid, _, _ in scan_spool(self.spool)[0]]

    def spool_strays(self):
        """What the spool should not hold (scan_spool): [] when all is well."""
        return scan_spool(self.spool)[1]

    def queue_all(self):
        """The committed messages' ids, then the strays (to catch those too): [] means an
        empty queue and nothing else in the way."""
        found, strays = scan_spool(self.spool)
        return [qid for qid, _, _ in found] + strays

    def spool_path(self, qid):
        """The slot file holding committed message qid (AssertionError if none)."""
        return find_slot(self.spool, qid)[0]

    def message(self, qid):
        return SpoolMessage(*find_slot(self.spool, qid))

    def messages(self):
        """Every committed message, in id order (one reading of the spool)."""
        return [SpoolMessage(path, committed) for _, path, committed in
                scan_spool(self.spool)[0]]


# ---- unittest glue ----

class PetrelTestCase(unittest.TestCase):
    """One petrel per class (CONFIG: overrides of the default config; START = False for
    classes whose tests make their own with new_petrel())."""
    CONFIG = {}
    START = True
    TEST_TIMEOUT = TEST_TIMEOUT
    petrel = None

    @classmethod
    def setUpClass(cls):
        if not cls.START:
            return
        cls.petrel = Petrel(cls.CONFIG, name=cls.__name__)
        try:
            cls.petrel.start()
        except BaseException:
            sys.stdout.write('\n----- log of %s -----\n%s\n' % (cls.__name__,
                                                                 cls.petrel.log_tail()))
            cls.petrel.cleanup()
            cls.petrel = None
            raise

    @classmethod
    def tearDownClass(cls):
        p = cls.petrel
        if p is None:
            return
        try:
            if p.alive():
                rc = p.stop()
                if rc != 0:
                    raise AssertionError('petrel exited with %d on SIGTERM:\n%s'
                                         % (rc, p.log_tail()))
        finally:
            p.cleanup()

    def setUp(self):
        self._clients = []
        if self.petrel is not None and not self.petrel.alive():
            # An earlier test killed it (that test failed already): start a fresh one.
            self.petrel.restart()
        self._log_mark = self.petrel.log_size() if self.petrel else 0
        signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, self.TEST_TIMEOUT)

    def tearDown(self):
        signal.setitimer(signal.ITIMER_REAL, 0)
        for c in self._clients:
            c.close()
        if self.petrel is not None and self.petrel.proc is not None:
            rc = self.petrel.proc.poll()
            if rc is not None:
                self.petrel.returncode = rc
                self.petrel._forget()
                self.fail('petrel died during the test (exit status %d)' % rc)

    def new_petrel(self, config=None, start=True, name=None):
        """A petrel of this test only (own directory), stopped and removed after it."""
        p = Petrel(config, name=name or self.id().split('.')[-1])
        if not hasattr(self, 'extra_petrels'):
            self.extra_petrels = []
        self.extra_petrels.append(p)
        self.addCleanup(p.cleanup)
        if start:
            p.start()
        return p

    def connect(self, petrel=None, **kw):
        c = (petrel or self.petrel).connect(**kw)
        self._clients.append(c)
        return c

    def track(self, client):
        self._clients.append(client)
        return client

    def assertReply(self, reply, code, enhanced=None, text=None):
        """Assert code (and enhanced code: '' asserts there is none) of a Reply."""
        self.assertIsNotNone(reply, 'no reply')
        got = (reply.code, reply.enhanced) if enhanced is not None else reply.code
        want = (code, enhanced) if enhanced is not None else code
        self.assertEqual(got, want, 'reply was %r' % (reply,))
        if text is not None:
            self.assertIn(text, reply.lines[-1], 'reply was %r' % (reply,))

    def assertClosed(self, client, timeout=5.0):
        try:
            client.wait_closed(timeout)
        except socket.timeout:
            self.fail('the server did not close the connection within %.0f s' % timeout)


def _alarm(signum, frame):
    raise TestTimeout('test took longer than its alarm')


class _Result(unittest.TextTestResult):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.passed = 0

    def addSuccess(self, test):
        super().addSuccess(test)
        self.passed += 1

    def _dump_log(self, test, err):
        """The failure at once, with petrel's log of this test (the whole tail for a fixture
        that started its own petrel)."""
        self.stream.write('\n' + ''.join(traceback.format_exception(*err)))
        p = getattr(test, 'petrel', None)
        extra = getattr(test, 'extra_petrels', None) or []
        mark = getattr(test, '_log_mark', None)
        for inst in ([p] if p else []) + list(extra):
            if not isinstance(inst, Petrel):
                continue
            if inst is p and mark is not None:
                text = inst.log_since(mark)
                what = 'during %s' % test.id()
            else:
                text = inst.log_tail()
                what = 'tail'
            self.stream.write('----- log of %s (%s) %s -----\n%s\n----- end of log -----\n'
                              % (inst.name, inst.log_path, what, text))
        self.stream.flush()

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._dump_log(test, err)

    def addError(self, test, err):
        super().addError(test, err)
        self._dump_log(test, err)


def _kill_running():
    """SIGKILL every petrel still running (only our own, still unreaped children)."""
    for p in list(_running):
        if p.proc is not None and p.proc.poll() is None:
            p.proc.kill()


def _watchdog():
    sys.stderr.write('\nFATAL: the test script ran longer than %d s; killing petrel\n'
                     % FILE_TIMEOUT)
    for p in list(_running):
        sys.stderr.write('----- log of %s -----\n%s\n' % (p.name, p.log_tail()))
    _kill_running()
    sys.stderr.write('0 passed, 1 failed\n')
    sys.stderr.flush()
    os._exit(1)


def main(module='__main__'):
    """Run the tests of `module`; print "N passed, M failed"; exit 0, 1, or 77 (all skipped)."""
    wd = threading.Timer(FILE_TIMEOUT, _watchdog)
    wd.daemon = True
    wd.start()
    loader = unittest.TestLoader()
    names = sys.argv[1:]
    if names:
        suite = loader.loadTestsFromNames(names, sys.modules[module])
    else:
        suite = loader.loadTestsFromModule(sys.modules[module])
    runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=2, resultclass=_Result)
    t0 = time.monotonic()
    try:
        result = runner.run(suite)
    finally:
        _kill_running()
    wd.cancel()
    # A test counts once however many of its subtests failed.
    bad = [getattr(t, 'test_case', t) for t, _ in result.failures + result.errors]
    failed = len({t.id() for t in bad}) + len(result.unexpectedSuccesses)
    for test, reason in result.skipped:
        print('skipped: %s: %s' % (test.id(), reason))
    print('%d skipped' % len(result.skipped) if result.skipped else '', end='')
    if result.skipped:
        print()
    print('time: %.1f s' % (time.monotonic() - t0))
    print('%d passed, %d failed' % (result.passed, failed))
    sys.stdout.flush()
    if failed:
        sys.exit(1)
    if result.passed == 0 and result.skipped:
        sys.exit(77)
    sys.exit(0)
