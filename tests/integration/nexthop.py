"""
nexthop.py: the other end of petrel's outbound delivery, for the test_delivery*.py scripts
(stdlib only).

- CaptureServer: an SMTP server in this process (one thread per connection) that records every
  transaction (envelope, data after unstuffing, Message-ID, the connection it came on) and
  answers as the test scripts it: per-recipient replies that may change with each attempt
  (451 twice, then 250), a refused greeting, a chosen EHLO (PIPELINING, DSN, CHUNKING, ...), a
  gate that holds the final reply of DATA until the test opens it.
- SmtpSink: Postfix's smtp-sink (/usr/sbin/smtp-sink) as a next hop, dumping each transaction
  to a file; messages() parses the dumps.
- Dnsmasq: a private dnsmasq on a free 127.0.0.1 port with MX, A and null MX records, for
  `mx: true` routes (dns: {nameservers: ["127.0.0.1:PORT"]}).

Every server listens on 127.0.0.1 only. Processes are stopped by PID (SIGTERM, then SIGKILL);
a timer kills whatever is left shortly before the fixture's watchdog would end the script.
"""

import email
import email.policy
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402

SMTP_SINK = '/usr/sbin/smtp-sink'
DNSMASQ = shutil.which('dnsmasq') or '/usr/sbin/dnsmasq'
START_DEADLINE = 10.0
CONN_TIMEOUT = 30.0     # a capture connection idle this long is closed
CLOSE = '<close>'       # a data_reply that closes the connection instead of replying

_procs = []             # helper processes started and not yet stopped


def _reap_all():
    for p in list(_procs):
        if p.poll() is None:
            p.kill()


# Kill helper processes before petrel.py's watchdog calls os._exit() (which skips atexit).
_reaper = threading.Timer(max(5, petrel.FILE_TIMEOUT - 3), _reap_all)
_reaper.daemon = True
_reaper.start()


def wait_for(cond, timeout=10.0, what='condition', interval=0.02):
    """Poll cond() until it is true; AssertionError past the deadline. Returns cond()'s value."""
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError('%s not reached within %.0f s' % (what, timeout))
        time.sleep(interval)


def unstuff(data):
    """RFC 5321 4.5.2: remove the leading dot of every line that starts with one."""
    lines = data.split(b'\r\n')
    return b'\r\n'.join(l[1:] if l.startswith(b'.') else l for l in lines)


def header_section(data):
    end = data.find(b'\r\n\r\n')
    return data if end < 0 else data[:end + 2]


def message_id(data):
    """The Message-ID of a message (bytes, CRLF), or None."""
    m = re.search(rb'^Message-ID:[ \t]*(<[^>\r\n]*>)', header_section(data),
                  re.I | re.M)
    return m.group(1).decode('ascii', 'replace') if m else None


def parse_message(data):
    """An email.message.EmailMessage from bytes."""
    return email.message_from_bytes(data, policy=email.policy.compat32)


def dsn_fields(data):
    """For a DSN (RFC 3464 multipart/report): (the report's per-message fields, a list of the
    per-recipient field dicts, the parsed message). Field names are lower-cased."""
    msg = parse_message(data)
    assert msg.get_content_type() == 'multipart/report', msg.get_content_type()
    assert msg.get_param('report-type') == 'delivery-status', msg.get_param('report-type')
    parts = msg.get_payload()
    status = [p for p in parts if p.get_content_type() == 'message/delivery-status']
    assert len(status) == 1, [p.get_content_type() for p in parts]
    blocks = status[0].get_payload()    # compat32: a list of Message objects, one per block
    assert isinstance(blocks, list) and len(blocks) >= 2, blocks
    per_msg = {k.lower(): v for k, v in blocks[0].items()}
    per_rcpt = [{k.lower(): v for k, v in b.items()} for b in blocks[1:]]
    return per_msg, per_rcpt, msg


def free_port():
    """A port free for both TCP and UDP on 127.0.0.1 a moment ago."""
    for _ in range(50):
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            t.bind(('127.0.0.1', 0))
            port = t.getsockname()[1]
            try:
                u.bind(('127.0.0.1', port))
            except OSError:
                continue
            return port
        finally:
            t.close()
            u.close()
    raise RuntimeError('no free port')


class Hole:
    """A 127.0.0.1 port bound but not listening: connections to it are refused, and nobody
    else can take it until release()."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(('127.0.0.1', 0))
        self.port = self.sock.getsockname()[1]

    def release(self):
        """Free the port (for a server that takes it over)."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def big_body(size, seed):
    """About `size` bytes of CRLF lines, many starting with dots (some a lone dot)."""
    rnd = random.Random(seed)
    out, n = [], 0
    while n < size:
        k = rnd.choice((0, 1, 1, 2, 5, 40, 77, 200, 990))
        line = ''.join(rnd.choice('abcxyz .-') for _ in range(k))
        if rnd.random() < 0.2:
            line = '.' * rnd.randint(1, 3) + line[3:]
        out.append(line + '\r\n')
        n += len(out[-1])
    return ''.join(out)


# ---- the capture server ----

class Transaction:
    """One mail transaction as the capture server saw it."""

    def __init__(self, conn):
        self.conn = conn            # the Connection
        self.helo = conn.helo
        self.mail = None            # the MAIL command line as sent
        self.sender = None          # reverse path without <>
        self.mail_params = ''
        self.rcpt_lines = []        # every RCPT command line
        self.rcpts = []             # accepted recipients (addresses without <>)
        self.refused = []           # (address, reply) of refused RCPTs
        self.raw = b''              # data as received (dot-stuffed), without the final dot
        self.data = None            # data after unstuffing (None: DATA never completed)
        self.reply = None           # the final reply sent for the data
        self.accepted = False       # final reply 2xx and written to the socket
        self.accepted_at = None     # time.monotonic() when that reply was written
        self.bdat = False
        self.dropped = False        # held at the gate, then abandoned (drop_waiting)

    @property
    def message_id(self):
        return message_id(self.data) if self.data is not None else None

    def __repr__(self):
        return '<Txn conn=%d from=<%s> rcpts=%r reply=%r mid=%s>' % (
            self.conn.id, self.sender, self.rcpts, self.reply, self.message_id)


class Connection:
    def __init__(self, server, sock, cid):
        self.server = server
        self.sock = sock
        self.id = cid
        self.helo = None
        self.commands = []      # every command line, in order
        self.batches = []       # lists of command lines that arrived in one read
        self.closed = False
        self.buf = b''
        self._batch = None

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError
        self.buf += chunk

    def read_line(self):
        while b'\r\n' not in self.buf:
            if len(self.buf) > 100000:
                raise EOFError
            self._fill()
        line, self.buf = self.buf.split(b'\r\n', 1)
        return line

    def read_command(self):
        """A command line; commands that were already buffered with the previous one count as
        one batch (pipelined)."""
        fresh = not self.buf
        line = self.read_line()
        text = line.decode('utf-8', 'replace')
        if fresh or self._batch is None:
            self._batch = []
            self.batches.append(self._batch)
        self._batch.append(text)
        self.commands.append(text)
        if not self.buf:
            self._batch = None
        return text

    def read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def send(self, text):
        self.sock.sendall(text.encode('utf-8') + b'\r\n')

    def peer_closed(self):
        """True if the client has closed its end (EOF waiting to be read)."""
        try:
            self.sock.setblocking(False)
            try:
                return self.sock.recv(1, socket.MSG_PEEK) == b''
            finally:
                self.sock.settimeout(CONN_TIMEOUT)
        except BlockingIOError:
            return False
        except OSError:
            return True


def script(table):
    """A reply function from {address: reply or [reply for attempt 1, attempt 2, ...]}:
    addresses not in the table, and attempts past the end of a list, get None (250)."""
    table = {k.lower(): v for k, v in table.items()}

    def reply(addr, attempt):
        v = table.get(addr.lower())
        if v is None or isinstance(v, str):
            return v
        return v[attempt - 1] if attempt <= len(v) else None
    return reply


class CaptureServer:
    """A scriptable SMTP server on 127.0.0.1 (see the module docstring).

    greeting:    the greeting line, or a function(connection number, from 1) → line; a
                 non-2xx greeting is followed by closing the connection.
    extensions:  EHLO keywords after the first line (PIPELINING, DSN, SIZE n, CHUNKING...).
    ehlo_reply:  a reply to EHLO instead of the 250 (e.g. '502 5.5.1 no': HELO must follow).
    mail_reply:  function(sender, attempt) → reply or None (250).
    rcpt_reply:  function(address, attempt) → reply or None (250); attempt counts RCPTs of
                 that address (case-insensitive) over the server's whole life, from 1.
    data_reply:  function(Transaction) → reply or None (250) for the end of data, or CLOSE
                 (the connection is closed without a reply).
    max_rcpts:   RCPTs past that many in one transaction get 452 4.5.3.
    max_per_connection: after that many transactions, the server answers the next MAIL with
                 421 and closes (as Exim's smtp_accept_max_per_connection does).
    reply_delay: seconds to wait before the final reply to the data (a slow next hop).
    rcpt_gate:   an Event; while it is cleared, replies to RCPT wait.
    gate:        while it is closed (close_gate), final replies to the data wait; they go out
                 when it opens, or never (drop_waiting). A reply is never sent to a client
                 that has already closed the connection.
    """

    def __init__(self, greeting='220 capture.test ESMTP', extensions=('PIPELINING', '8BITMIME',
                 'SIZE 52428800', 'ENHANCEDSTATUSCODES'), ehlo_reply=None, mail_reply=None,
                 rcpt_reply=None, data_reply=None, max_per_connection=None, port=0,
                 name='capture.test', reply_delay=0, max_rcpts=None):
        self.greeting = greeting
        self.extensions = list(extensions)
        self.ehlo_reply = ehlo_reply
        self.mail_reply = mail_reply
        self.rcpt_reply = rcpt_reply
        self.data_reply = data_reply
        self.max_per_connection = max_per_connection
        self.reply_delay = reply_delay
        self.max_rcpts = max_rcpts
        self.waiting = []           # transactions whose final reply is held at the gate
        self.name = name
        self.gate = threading.Event()
        self.gate.set()
        self.rcpt_gate = threading.Event()     # cleared: replies to RCPT wait
        self.rcpt_gate.set()
        self.lock = threading.Lock()
        self.transactions = []      # every transaction that got as far as MAIL
        self.connections = []
        self.open_now = 0           # connections open at this moment
        self.max_open = 0           # the most that were open at once
        self.rcpt_seen = {}         # address (lower case) → RCPTs so far
        self.mail_seen = {}
        self.errors = []            # unexpected things (exceptions in handlers)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(('127.0.0.1', port))
        self.listener.listen(128)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.address = '127.0.0.1:%d' % self.port
        self._stop = False
        self._threads = []
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    # -- results --
    def accepted(self):
        """Transactions whose data got a 2xx final reply."""
        with self.lock:
            return [t for t in self.transactions if t.accepted]

    def delivered_rcpts(self):
        """Every recipient of every accepted transaction (one entry per delivery)."""
        return [r for t in self.accepted() for r in t.rcpts]

    def message_ids(self):
        return [t.message_id for t in self.accepted()]

    def wait_accepted(self, n, timeout=20.0, what=None):
        wait_for(lambda: len(self.accepted()) >= n, timeout,
                 what or '%d accepted transactions at %s (have %d)'
                 % (n, self.address, len(self.accepted())))
        return self.accepted()

    def wait_rcpts(self, n, timeout=20.0):
        wait_for(lambda: len(self.delivered_rcpts()) >= n, timeout,
                 '%d delivered recipients at %s' % (n, self.address))
        return self.delivered_rcpts()

    def attempts_of(self, addr):
        with self.lock:
            return self.rcpt_seen.get(addr.lower(), 0)

    # -- life cycle --
    def stop(self):
        self._stop = True
        self.gate.set()
        self.rcpt_gate.set()
        try:
            self.listener.close()
        except OSError:
            pass
        with self.lock:
            conns = list(self.connections)
        for c in conns:
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                c.sock.close()
            except OSError:
                pass
        self._thread.join(5)
        for t in list(self._threads):
            t.join(5)

    def _accept_loop(self):
        while not self._stop:
            try:
                sock, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            sock.settimeout(CONN_TIMEOUT)
            with self.lock:
                conn = Connection(self, sock, len(self.connections) + 1)
                self.connections.append(conn)
                self.open_now += 1
                self.max_open = max(self.max_open, self.open_now)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _count(self, table, key):
        with self.lock:
            table[key] = table.get(key, 0) + 1
            return table[key]

    def _serve(self, conn):
        try:
            self._session(conn)
        except (EOFError, OSError, socket.timeout):
            pass
        except Exception as e:     # a bug in a script: record it, the test will see it
            self.errors.append(repr(e))
        finally:
            with self.lock:
                conn.closed = True
                self.open_now -= 1
            try:
                conn.sock.close()
            except OSError:
                pass

    def _session(self, conn):
        g = self.greeting(conn.id) if callable(self.greeting) else self.greeting
        conn.send(g)
        if not g.startswith('2'):
            return
        txn = None
        done = 0
        while not self._stop:
            line = conn.read_command()
            verb = line.split(' ', 1)[0].upper()
            arg = line[len(verb):].strip()
            if verb == 'EHLO':
                conn.helo = arg
                txn = None
                if self.ehlo_reply:
                    conn.send(self.ehlo_reply)
                    continue
                lines = [self.name] + self.extensions
                conn.sock.sendall(''.join('250%s%s\r\n' % ('-' if i < len(lines) - 1 else ' ', l)
                                          for i, l in enumerate(lines)).encode())
            elif verb == 'HELO':
                conn.helo = arg
                txn = None
                conn.send('250 %s' % self.name)
            elif verb == 'MAIL':
                if self.max_per_connection is not None and done >= self.max_per_connection:
                    conn.send('421 4.7.0 too many messages in this connection')
                    return
                m = re.match(r'^FROM:\s*<([^>]*)>\s*(.*)$', arg, re.I)
                if not m:
                    conn.send('501 5.5.4 syntax')
                    continue
                if txn is not None:
                    conn.send('503 5.5.1 nested MAIL')
                    continue
                t = Transaction(conn)
                t.mail, t.sender, t.mail_params = line, m.group(1), m.group(2)
                r = self.mail_reply(t.sender, self._count(self.mail_seen, t.sender.lower())) \
                    if self.mail_reply else None
                with self.lock:
                    self.transactions.append(t)
                if r and not r.startswith('2'):
                    conn.send(r)
                    continue
                txn = t
                conn.send(r or '250 2.1.0 ok')
            elif verb == 'RCPT':
                m = re.match(r'^TO:\s*<([^>]*)>\s*(.*)$', arg, re.I)
                if txn is None:
                    conn.send('503 5.5.1 need MAIL')
                    continue
                if not m:
                    conn.send('501 5.5.4 syntax')
                    continue
                txn.rcpt_lines.append(line)
                addr = m.group(1)
                if self.max_rcpts is not None and len(txn.rcpts) >= self.max_rcpts:
                    txn.refused.append((addr, '452'))
                    conn.send('452 4.5.3 too many recipients')
                    continue
                while not self.rcpt_gate.wait(0.05):
                    if self._stop:
                        return
                n = self._count(self.rcpt_seen, addr.lower())
                r = self.rcpt_reply(addr, n) if self.rcpt_reply else None
                if r and not r.startswith('2'):
                    txn.refused.append((addr, r))
                    conn.send(r)
                    continue
                txn.rcpts.append(addr)
                conn.send(r or '250 2.1.5 ok')
            elif verb == 'DATA':
                if txn is None or not txn.rcpts:
                    conn.send('503 5.5.1 need RCPT' if txn else '503 5.5.1 need MAIL')
                    continue
                conn.send('354 go ahead')
                raw = []
                while True:
                    l = conn.read_line()
                    if l == b'.':
                        break
                    raw.append(l + b'\r\n')
                txn.raw = b''.join(raw)
                txn.data = unstuff(txn.raw)
                self._finish(conn, txn)
                done += 1
                txn = None
            elif verb == 'BDAT':
                parts = arg.split()
                if txn is None or not txn.rcpts or not parts or not parts[0].isdigit():
                    conn.send('503 5.5.1 bad BDAT')
                    continue
                txn.bdat = True
                chunk = conn.read_exact(int(parts[0]))
                txn.raw += chunk
                if len(parts) > 1 and parts[1].upper() == 'LAST':
                    txn.data = txn.raw
                    self._finish(conn, txn)
                    done += 1
                    txn = None
                else:
                    conn.send('250 2.0.0 chunk ok')
            elif verb == 'RSET':
                txn = None
                conn.send('250 2.0.0 ok')
            elif verb == 'NOOP':
                conn.send('250 2.0.0 ok')
            elif verb == 'QUIT':
                conn.send('221 2.0.0 bye')
                return
            else:
                conn.send('502 5.5.2 not implemented')

    def _finish(self, conn, txn):
        r = self.data_reply(txn) if self.data_reply else None
        if r == CLOSE:
            raise EOFError
        r = r or '250 2.0.0 accepted'
        if self.reply_delay:
            time.sleep(self.reply_delay)
        with self.lock:
            self.waiting.append(txn)
        try:
            while True:
                with self.lock:
                    if txn.dropped or self._stop:
                        raise EOFError
                    if self.gate.is_set():
                        if conn.peer_closed():
                            raise EOFError      # the client is gone: nobody hears the reply
                        txn.reply = r
                        conn.send(r)
                        if r.startswith('2'):
                            txn.accepted_at = time.monotonic()
                            txn.accepted = True
                        return
                self.gate.wait(0.05)
        finally:
            with self.lock:
                self.waiting.remove(txn)

    # -- the gate --
    def close_gate(self):
        """From now on no final reply to the data goes out (the ones sent are recorded)."""
        with self.lock:
            self.gate.clear()

    def open_gate(self):
        self.gate.set()

    def waiting_count(self):
        with self.lock:
            return len(self.waiting)

    def drop_waiting(self):
        """The transactions held at the gate never get their reply: their connections are
        closed. Returns how many there were."""
        with self.lock:
            held = list(self.waiting)
            for t in held:
                t.dropped = True
                try:
                    t.conn.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        return len(held)


# ---- processes ----

def _start(args, log_path):
    log = open(log_path, 'ab')
    try:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    finally:
        log.close()
    _procs.append(proc)
    return proc


def _stop(proc, deadline=5.0):
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)        # by PID
        try:
            proc.wait(deadline)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    if proc in _procs:
        _procs.remove(proc)
    return proc.returncode


def _smtp_ready(port, deadline):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            c = petrel.SMTPClient(port, timeout=3)
        except (OSError, petrel.ConnectionClosed, AssertionError):
            time.sleep(0.05)
            continue
        try:
            c.quit()
        except Exception:
            pass
        c.close()
        return True
    return False


class SmtpSink:
    """Postfix's smtp-sink on 127.0.0.1, dumping every transaction into its own file."""

    def __init__(self, extra_args=()):
        self.dir = tempfile.mkdtemp(prefix='petrel-sink-')
        os.chmod(self.dir, 0o755)
        self.dump_dir = os.path.join(self.dir, 'dump')
        os.mkdir(self.dump_dir)
        os.chmod(self.dump_dir, 0o777)  # smtp-sink writes as nobody when started by root
        self.log_path = os.path.join(self.dir, 'smtp-sink.log')
        self.extra_args = list(extra_args)
        self.proc = None
        self.port = None

    @staticmethod
    def available():
        return os.access(SMTP_SINK, os.X_OK)

    def start(self):
        for _ in range(3):
            self.port = petrel.free_port()
            args = [SMTP_SINK]
            if os.geteuid() == 0:
                args += ['-u', 'nobody']
            args += ['-d', os.path.join(self.dump_dir, 'm.')] + self.extra_args + \
                ['127.0.0.1:%d' % self.port, '64']
            self.proc = _start(args, self.log_path)
            if _smtp_ready(self.port, START_DEADLINE):
                return self
            rc = _stop(self.proc)
            self.proc = None
            if rc is None or 'in use' not in self.log():
                break
        raise RuntimeError('smtp-sink did not start:\n%s' % self.log())

    @property
    def address(self):
        return '127.0.0.1:%d' % self.port

    def log(self):
        try:
            with open(self.log_path, 'rb') as f:
                return f.read().decode('utf-8', 'replace')
        except FileNotFoundError:
            return ''

    def messages(self):
        """[(headers added by smtp-sink as a dict of lists, the message bytes)] for every
        complete dump file (a transaction in progress is left out)."""
        out = []
        for name in sorted(os.listdir(self.dump_dir)):
            with open(os.path.join(self.dump_dir, name), 'rb') as f:
                raw = f.read()
            if not raw.endswith(b'\n\n'):
                continue            # still being written
            text = raw.replace(b'\r\n', b'\n')
            lines = text.split(b'\n')
            meta = {}
            i = 0
            while i < len(lines) and not lines[i].startswith(b'Received: '):
                k, _, v = lines[i].decode('utf-8', 'replace').partition(': ')
                meta.setdefault(k, []).append(v)
                i += 1
            i += 3                  # smtp-sink's three-line Received: header
            out.append((meta, b'\n'.join(lines[i:])))
        return out

    def message_ids(self):
        ids = []
        for _, body in self.messages():
            m = re.search(rb'^Message-ID:[ \t]*(<[^>\n]*>)', body.split(b'\n\n', 1)[0],
                          re.I | re.M)
            ids.append(m.group(1).decode() if m else None)
        return ids

    def stop(self):
        _stop(self.proc)
        self.proc = None

    def cleanup(self):
        self.stop()
        if not os.environ.get('PETREL_KEEP'):
            shutil.rmtree(self.dir, ignore_errors=True)


def dns_query(port, name, qtype, timeout=1.0):
    """One UDP DNS query to 127.0.0.1:port; returns (rcode, answer count)."""
    qid = os.urandom(2)
    pkt = qid + b'\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00'
    for label in name.rstrip('.').split('.'):
        pkt += bytes([len(label)]) + label.encode('ascii')
    pkt += b'\x00' + struct.pack('>HH', qtype, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        s.sendto(pkt, ('127.0.0.1', port))
        r = s.recv(4096)
    finally:
        s.close()
    if r[:2] != qid:
        raise OSError('DNS reply with a foreign id')
    flags, _, an = struct.unpack('>HHH', r[2:8])
    return flags & 15, an


class Dnsmasq:
    """A private dnsmasq answering only from the records given, on a free 127.0.0.1 port.

    mx:      [(domain, exchanger, preference)]
    hosts:   {name: address} (A records)
    null_mx: [domain] (a single MX "." with preference 0, RFC 7505)
    local:   domains answered only from these records (unknown names: NXDOMAIN)
    """

    def __init__(self, mx=(), hosts=None, null_mx=(), local=('test',)):
        self.mx = list(mx)
        self.hosts = dict(hosts or {})
        self.null_mx = list(null_mx)
        self.local = list(local)
        self.dir = tempfile.mkdtemp(prefix='petrel-dns-')
        self.log_path = os.path.join(self.dir, 'dnsmasq.log')
        self.proc = None
        self.port = None

    @staticmethod
    def available():
        return os.access(DNSMASQ, os.X_OK)

    def args(self):
        a = [DNSMASQ, '--keep-in-foreground', '--no-resolv', '--no-hosts', '--no-poll',
             '--conf-file=/dev/null', '--pid-file', '--port=%d' % self.port,
             '--listen-address=127.0.0.1', '--bind-interfaces', '--cache-size=0',
             '--log-queries', '--log-facility=-']
        a += ['--local=/%s/' % d for d in self.local]
        a += ['--mx-host=%s,%s,%d' % m for m in self.mx]
        a += ['--host-record=%s,%s' % hv for hv in self.hosts.items()]
        a += ['--dns-rr=%s,15,000000' % d for d in self.null_mx]
        return a

    def start(self):
        probe = (self.mx[0][0], 15) if self.mx else \
            (next(iter(self.hosts)), 1) if self.hosts else None
        for _ in range(3):
            self.port = free_port()
            self.proc = _start(self.args(), self.log_path)
            end = time.monotonic() + START_DEADLINE
            while time.monotonic() < end and self.proc.poll() is None:
                try:
                    if probe is None or dns_query(self.port, *probe, timeout=0.3)[1] > 0:
                        return self
                except OSError:
                    pass
                time.sleep(0.05)
            _stop(self.proc)
            self.proc = None
            if 'in use' not in self.log():
                break
        raise RuntimeError('dnsmasq did not start:\n%s' % self.log())

    @property
    def nameserver(self):
        return '127.0.0.1:%d' % self.port

    def log(self):
        try:
            with open(self.log_path, 'rb') as f:
                return f.read().decode('utf-8', 'replace')
        except FileNotFoundError:
            return ''

    def stop(self):
        _stop(self.proc)
        self.proc = None

    def cleanup(self):
        self.stop()
        if not os.environ.get('PETREL_KEEP'):
            shutil.rmtree(self.dir, ignore_errors=True)


# ---- petrel's side ----

DELIVERY_RE = re.compile(r'^.*\b([0-9a-f]{16}) delivery to=<(.*)> route=(\S+) relay=(\S+) '
                         r'status=(\S+) dsn=(\S+) attempt=(\d+)((?: [a-z_]+=(?:"[^"]*"|[^ "]*))*) '
                         r'reply="(.*)"$')
DSN_RE = re.compile(r'\b([0-9a-f]{16}) dsn id=([0-9a-f]{16}) to=<([^>]*)> action=(\S+) '
                    r'nrcpt=(\d+)')


class Delivery:
    def __init__(self, m):
        (self.id, self.rcpt, self.route, self.relay, self.status, self.dsn, attempt, extra,
         self.reply) = m.groups()
        self.attempt = int(attempt)
        self.fields = dict(w.split('=', 1) for w in extra.split())    # tls=..., and so on

    def __repr__(self):
        return '<%s to=%s %s %s attempt=%d %r>' % (self.id, self.rcpt, self.status, self.dsn,
                                                   self.attempt, self.reply)


def deliveries(p, qid=None, whole=True):
    """petrel's "delivery" log lines (of every run, or of the current one), as Delivery."""
    out = []
    for line in p.log(whole=whole).splitlines():
        m = DELIVERY_RE.match(line)
        if m and (qid is None or m.group(1) == qid):
            out.append(Delivery(m))
    return out


def dsns(p, qid=None, whole=True):
    """(original id, dsn id, to, action, nrcpt) of petrel's "dsn" log lines."""
    out = []
    for line in p.log(whole=whole).splitlines():
        m = DSN_RE.search(line)
        if m and (qid is None or m.group(1) == qid):
            out.append((m.group(1), m.group(2), m.group(3), m.group(4), int(m.group(5))))
    return out


def removed(p, qid, whole=True):
    return re.search(r'\b%s removed \(every recipient done\)' % qid, p.log(whole=whole)) \
        is not None


def wait_removed(p, qids, timeout=20.0):
    """Wait until petrel logged the removal of every id and none is still queued."""
    qids = [qids] if isinstance(qids, str) else list(qids)
    wait_for(lambda: all(removed(p, q) for q in qids) and
             not set(qids) & set(p.queue_ids()), timeout,
             'removal of %s' % ' '.join(qids[:5]) + (' ...' if len(qids) > 5 else ''))


def wait_queue_empty(p, timeout=20.0):
    """Wait until no slot file holds a message and nothing else is in the way (queue_all)."""
    wait_for(lambda: not p.queue_all(), timeout, 'an empty queue (left: %s)' % p.queue_all())


def maildir_files(d, sub='new'):
    try:
        return sorted(os.path.join(d, sub, n) for n in os.listdir(os.path.join(d, sub)))
    except FileNotFoundError:
        return []


def read(path):
    with open(path, 'rb') as f:
        return f.read()


def relay_route(domain, address):
    return {'domain': domain, 'relay': address, 'tls': 'none'}


def mx_route(domain, port):
    return {'domain': domain, 'mx': True, 'port': port, 'tls': 'none'}


def queue_config(retry='1s', max_lifetime='1m', **kw):
    q = {'retry': [retry], 'max_lifetime': max_lifetime, 'delay_warning': 0}
    q.update(kw)
    return q


# ---- the base class of the delivery tests ----

ORIGIN = 'origin.test'          # the senders' domain (DSNs go there)


class DeliveryCase(petrel.PetrelTestCase):
    """Each test starts its own petrel (new_petrel) and next hops; all of them are stopped by
    PID at the end of the test, and their logs are printed when it fails."""
    START = False
    TEST_TIMEOUT = 60

    def capture(self, **kw):
        s = CaptureServer(**kw)
        self.addCleanup(s.stop)
        return s

    def sink(self, *extra):
        if not SmtpSink.available():
            self.skipTest('%s is not installed (apt-get install postfix)' % SMTP_SINK)
        s = SmtpSink(extra)
        self.addCleanup(s.cleanup)
        self.addCleanup(self._dump_helper_on_failure, s, 'smtp-sink')
        return s.start()

    def dnsmasq(self, **kw):
        if not Dnsmasq.available():
            self.skipTest('dnsmasq is not installed')
        d = Dnsmasq(**kw)
        self.addCleanup(d.cleanup)
        self.addCleanup(self._dump_helper_on_failure, d, 'dnsmasq')
        return d.start()

    def _dump_helper_on_failure(self, helper, what):
        outcome = getattr(self, '_outcome', None)
        if outcome is not None and not getattr(outcome, 'success', True):
            sys.stdout.write('----- log of %s -----\n%s\n----- end -----\n'
                             % (what, helper.log()[-6000:]))

    def start_petrel(self, routes, queue=None, start=True, port=None, **extra):
        cfg = {'routes': routes, 'queue': queue or queue_config()}
        cfg.update(extra)
        p = self.new_petrel(cfg, start=False)
        if start:
            p.start(port=port)
        return p

    def submit(self, p, sender, rcpts, content, mail_params='', rcpt_params=''):
        """One message (content unstuffed, CRLF) through a fresh connection; its queue id."""
        c = self.connect(p)
        self.assertReply(c.ehlo(), 250)
        self.assertReply(c.mail(sender, mail_params), 250, '2.1.0')
        for r in ([rcpts] if isinstance(rcpts, str) else rcpts):
            self.assertReply(c.rcpt(r, rcpt_params), 250, '2.1.5')
        r354, r = c.data(petrel.stuff(content))
        self.assertReply(r354, 354)
        self.assertIsNotNone(r)
        self.assertTrue(r.queue_id, r)
        c.quit()
        c.close()
        return r.queue_id

    def assertDelivered(self, p, qid, rcpt, attempt=None, route=None):
        ds = [d for d in deliveries(p, qid) if d.rcpt == rcpt]
        sent = [d for d in ds if d.status == 'sent']
        self.assertEqual(len(sent), 1, 'exactly one "sent" for %s of %s: %r' % (rcpt, qid, ds))
        if attempt is not None:
            self.assertEqual(sent[0].attempt, attempt, ds)
        if route is not None:
            self.assertEqual(sent[0].route, route, ds)
        return sent[0]
