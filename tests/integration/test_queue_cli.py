#!/usr/bin/python3
"""
test_queue_cli.py: `petrel -c FILE queue list|show|flush|delete|hold|release` (control.h).

The fixture's routes send every domain to a refused 127.0.0.1 port with one retry step of an
hour, so every message stays queued, deferred after its first attempt. Against that queue:
- list (ids, sizes, senders, recipients, states, errors) and list --by-domain; show (the
  envelope, each recipient's state from the journal, the headers);
- hold -> held in list; flush -> the others are attempted again, the held one is not;
  release -> attempted; delete -> gone from list and from the spool, and no DSN;
- errors: bad id, unknown message, usage (exit 2);
- the socket itself: mode 0600, pipelined requests, a half-close, a line too long;
- petrel stopped: list and show read the spool, flush/delete/hold/release say it is not
  running (exit 1); the socket is removed at exit, a stale one (kill -9) is replaced; the hold
  survives a restart; a second petrel on the same spool is refused.
"""

import os
import re
import socket
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import PETREL, PetrelTestCase, make_message  # noqa: E402

RUN_TIMEOUT = 15
LINE_RE = re.compile(r'^([0-9a-f]{16}) +(\S+) +(\d+) +(<.*?>) +(\d+)/(\d+) +(\w+) +(\S+) +(.*)$')


def queue(p, *args):
    """Run `petrel -c CONFIG queue ARGS...`; returns the CompletedProcess."""
    return subprocess.run([PETREL, '-c', p.config_path, 'queue'] + list(args),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT)


def listing(p, *extra):
    """{id: dict} of `queue list` (which must succeed)."""
    r = queue(p, 'list', *extra)
    assert r.returncode == 0, 'queue list: %d %r %r' % (r.returncode, r.stdout, r.stderr)
    out = {}
    for line in r.stdout.splitlines():
        m = LINE_RE.match(line)
        if m:
            out[m.group(1)] = {'arrival': m.group(2), 'size': int(m.group(3)),
                               'sender': m.group(4)[1:-1], 'pending': int(m.group(5)),
                               'total': int(m.group(6)), 'state': m.group(7),
                               'next': m.group(8), 'error': m.group(9)}
    return out, r


def attempts(p, qid, n):
    """Delivery log lines of this run for attempt number n of qid."""
    return re.findall(r'%s delivery to=<[^>]+> .*status=deferred .*attempt=%d ' % (qid, n),
                      p.log())


def wait_attempt(p, qid, n, nrcpt, timeout=10):
    petrel_wait(lambda: len(attempts(p, qid, n)) >= nrcpt, timeout,
                '%s: attempt %d of %d recipient(s)' % (qid, n, nrcpt))


def petrel_wait(cond, timeout, what):
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError('timed out waiting for ' + what)
        time.sleep(0.05)


def send(p, sender, rcpts, subject='queued', body='Hello.\r\n'):
    c = p.connect()
    try:
        qid = c.send_mail(sender, rcpts, make_message(subject, body=body))
        c.quit()
    finally:
        c.close()
    return qid


def control_path(p):
    return os.path.join(p.spool, 'control.sock')


class QueueCli(PetrelTestCase):
    TEST_TIMEOUT = 40

    def queued(self, sender, rcpts, **kw):
        qid = send(self.petrel, sender, rcpts, **kw)
        wait_attempt(self.petrel, qid, 1, len(rcpts))
        return qid

    def test_list_shows_every_message(self):
        p = self.petrel
        a = self.queued('alice@example.org', ['r1@far.test', 'r2@far.test'], subject='a')
        b = self.queued('', ['r3@other.test'], body=('x' * 70 + '\r\n') * 70)
        c = self.queued('carol@example.net', ['r4@far.test', 'r5@other.test', 'r6@far.test'])
        got, r = listing(p)
        self.assertIn('ID ', r.stdout.splitlines()[0], 'a header line first')
        for qid, sender, n in ((a, 'alice@example.org', 2), (b, '', 1),
                               (c, 'carol@example.net', 3)):
            self.assertIn(qid, got, r.stdout)
            m = got[qid]
            self.assertEqual(m['size'], len(p.message(qid).data), 'size of ' + qid)
            self.assertEqual(m['sender'], sender)
            self.assertEqual((m['pending'], m['total']), (n, n))
            self.assertEqual(m['state'], 'deferred')
            self.assertRegex(m['next'], r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$')
            self.assertRegex(m['error'], r'^451 4\.4\.1 Connection refused')
            self.assertRegex(m['arrival'], r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$')
        self.assertGreater(got[b]['size'], 5000)
        self.assertRegex(r.stdout, r'\n-- \d+ messages, \d+ bytes, \d+ recipients pending\n$')
        self.assertEqual(sorted(got), sorted(p.queue_ids()), 'every spooled message listed')

        r = queue(p, 'list', '--by-domain')
        self.assertEqual(r.returncode, 0, r.stderr)
        rows = {l.split()[0]: l.split() for l in r.stdout.splitlines()[1:]
                if not l.startswith('--')}
        self.assertIn('far.test', rows, r.stdout)
        self.assertIn('other.test', rows, r.stdout)
        self.assertGreaterEqual(int(rows['far.test'][1]), 2, 'messages for far.test')
        self.assertGreaterEqual(int(rows['far.test'][2]), 4, 'recipients at far.test')
        self.assertRegex(' '.join(rows['other.test'][3:]), r'^\d+[smhd]\S* 451 4\.4\.1 ')

    def test_show_envelope_recipients_headers(self):
        p = self.petrel
        qid = self.queued('dave@example.org', ['x1@far.test', 'x2@other.test'],
                          subject='show me', body='the body is not shown\r\n')
        r = queue(p, 'show', qid)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout
        self.assertIn('id: %s\n' % qid, out)
        self.assertIn('sender: <dave@example.org>\n', out)
        self.assertIn('size: %d\n' % len(p.message(qid).data), out)
        self.assertIn('state: deferred\n', out)
        self.assertIn('recipients: 2 pending of 2\n', out)
        for rcpt in ('x1@far.test', 'x2@other.test'):
            self.assertRegex(out, r'recipient <%s> pending attempts=1 next=\d{4}-\S+Z '
                                  r'error="451 4\.4\.1 Connection refused' % re.escape(rcpt))
        self.assertRegex(out, r'\nReceived: from client\.test .*\n\tby petrel\.test ')
        self.assertIn('\nSubject: show me\n', out)
        self.assertNotIn('the body is not shown', out)

    def test_hold_flush_release_delete(self):
        p = self.petrel
        a = self.queued('a@example.org', ['a@far.test'])
        b = self.queued('b@example.org', ['b@far.test', 'b@other.test'])
        c = self.queued('c@example.org', ['c@other.test'])

        r = queue(p, 'hold', b)
        self.assertEqual((r.returncode, r.stdout), (0, 'held %s\n' % b), r.stderr)
        got, _ = listing(p)
        self.assertEqual(got[b]['state'], 'held')
        self.assertEqual(got[b]['next'], '-')
        self.assertEqual(got[a]['state'], 'deferred')
        with open(os.path.join(p.spool, 'state', b)) as f:
            self.assertRegex(f.read(), r'\n- held \d+\n$')
        r = queue(p, 'hold', b)
        self.assertEqual((r.returncode, r.stdout), (0, '%s was held already\n' % b))

        r = queue(p, 'flush')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r'^flushed: \d+ deferred deliver(y is|ies are) due now\n$')
        wait_attempt(p, a, 2, 1)
        wait_attempt(p, c, 2, 1)
        time.sleep(0.3)
        self.assertEqual(attempts(p, b, 2), [], 'the held message is not attempted')
        got, _ = listing(p)
        self.assertEqual(got[b]['state'], 'held', 'flush leaves a hold alone')

        r = queue(p, 'release', b)
        self.assertEqual((r.returncode, r.stdout), (0, 'released %s (due now)\n' % b),
                         r.stderr)
        wait_attempt(p, b, 2, 2)
        got, _ = listing(p)
        self.assertEqual(got[b]['state'], 'deferred')
        with open(os.path.join(p.spool, 'state', b)) as f:
            self.assertRegex(f.read(), r'\n- released \d+\n')
        r = queue(p, 'release', b)
        self.assertEqual((r.returncode, r.stdout), (0, '%s was not held\n' % b))

        r = queue(p, 'delete', c)
        self.assertEqual((r.returncode, r.stdout), (0, 'deleted %s\n' % c), r.stderr)
        got, _ = listing(p)
        self.assertNotIn(c, got)
        self.assertNotIn(c, p.queue_all())
        self.assertFalse(os.path.exists(os.path.join(p.spool, 'state', c)))
        p.wait_log(r'%s deleted \(queue delete\)' % c)
        self.assertNotRegex(p.log(), r'%s dsn ' % c, 'no DSN for a deleted message')
        r = queue(p, 'show', c)
        self.assertEqual(r.returncode, 1)
        self.assertIn('no such message: %s' % c, r.stderr)
        r = queue(p, 'delete', c)
        self.assertEqual(r.returncode, 1)
        self.assertIn('no such message', r.stderr)

    def test_bad_requests(self):
        p = self.petrel
        for args in (['show', 'zz'], ['hold', '../../etc/passwd'],
                     ['delete', '0660F8BF21ED0600']):
            r = queue(p, *args)
            self.assertEqual(r.returncode, 1, args)
            self.assertIn('bad message id', r.stderr, args)
            self.assertEqual(r.stdout, '')
        for verb in ('show', 'delete', 'hold', 'release'):
            r = queue(p, verb, '00000000000000ff')
            self.assertEqual(r.returncode, 1, verb)
            self.assertIn('no such message: 00000000000000ff', r.stderr, verb)
        for args in ([], ['frobnicate'], ['list', 'extra'], ['show'], ['flush', 'now'],
                     ['list', '--by-domain', 'x']):
            r = queue(p, *args)
            self.assertEqual(r.returncode, 2, args)
            self.assertIn('usage: petrel', r.stderr, args)
        r = subprocess.run([PETREL, '-c', p.config_path, 'frobnicate'], capture_output=True,
                           text=True, timeout=RUN_TIMEOUT)
        self.assertEqual(r.returncode, 2)
        self.assertIn('usage:', r.stderr)

    def test_socket_protocol(self):
        p = self.petrel
        path = control_path(p)
        st = os.lstat(path)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)

        def exchange(data, shut=False):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(10)
            s.connect(path)
            s.sendall(data)
            if shut:
                s.shutdown(socket.SHUT_WR)
            buf = b''
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
            s.close()
            return buf.decode()

        # Two requests in one write, then a half-close: both answered in order, then EOF.
        out = exchange(b'list\r\nbogus\nflush\n', shut=True)
        lines = out.split('\n')
        finals = [l for l in lines if l and not l.startswith(' ')]
        self.assertEqual(finals[0], 'ok', out)
        self.assertTrue(finals[1].startswith('error: unknown request'), out)
        self.assertEqual(finals[2], 'ok', out)
        self.assertEqual(len(finals), 3, out)
        self.assertTrue(all(l.startswith(' ') for l in lines[:lines.index('ok')]), out)
        # A line too long: an error, the rest of it is skipped, the next request answered.
        out = exchange(b'l' * 3000 + b'\nflush\n', shut=True)
        self.assertRegex(out, r'^error: request too long\n flushed: .*\nok\n$')

    def test_second_petrel_on_same_spool_is_refused(self):
        p = self.petrel
        other = os.path.join(p.workdir, 'other.yaml')
        cfg = dict(p.config, listen=[{'address': '127.0.0.1:%d' % petrel.free_port(),
                                      'role': 'relay'}])
        with open(other, 'w') as f:
            f.write(petrel.to_yaml(cfg) + '\n')
        # A slot file the running petrel would be writing a message into (no record yet).
        canary = os.path.join(p.spool, 'slots', '999999')
        being_written = b'\0' * petrel.RECORD_LEN + b'a message being received by petrel\n'
        with open(canary, 'xb') as f:
            f.write(being_written)
        self.addCleanup(lambda: os.path.exists(canary) and os.unlink(canary))
        r = subprocess.run([PETREL, '-c', other, '--allow-root'], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=RUN_TIMEOUT)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn('another petrel is running on spool', r.stderr)
        with open(canary, 'rb') as f:
            self.assertEqual(f.read(), being_written, "the running petrel's slots are left alone")
        self.assertTrue(stat.S_ISSOCK(os.lstat(control_path(p)).st_mode))
        self.assertEqual(queue(p, 'list').returncode, 0)


class QueueCliStopped(PetrelTestCase):
    START = False
    TEST_TIMEOUT = 60

    def test_stopped_restart_and_stale_socket(self):
        p = self.new_petrel()
        a = send(p, 'a@example.org', ['a1@far.test', 'a2@far.test'], subject='kept')
        b = send(p, 'b@example.org', ['b1@other.test'], subject='held')
        wait_attempt(p, a, 1, 2)
        wait_attempt(p, b, 1, 1)
        self.assertEqual(queue(p, 'hold', b).returncode, 0)
        self.assertEqual(p.stop(), 0)
        self.assertFalse(os.path.exists(control_path(p)), 'the socket is removed at exit')

        # Stopped: list and show read the spool.
        got, r = listing(p)
        self.assertIn('not running', r.stderr)
        self.assertEqual(sorted(got), sorted([a, b]))
        self.assertEqual(got[a]['state'], 'deferred')
        self.assertEqual((got[a]['pending'], got[a]['total']), (2, 2))
        self.assertRegex(got[a]['error'], r'^451 4\.4\.1 Connection refused')
        self.assertEqual(got[b]['state'], 'held')
        self.assertEqual(got[a]['size'], len(p.message(a).data))
        r = queue(p, 'show', a)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('state: deferred (read from the spool: petrel is not running)', r.stdout)
        self.assertRegex(r.stdout, r'recipient <a1@far\.test> pending attempts=1 next=\S+Z '
                                   r'error="451 4\.4\.1 Connection refused')
        self.assertIn('\nSubject: kept\n', r.stdout)
        r = queue(p, 'list', '--by-domain')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r'\nfar\.test +1 +2 ')
        r = queue(p, 'show', '00000000000000ff')
        self.assertEqual(r.returncode, 1)
        self.assertIn('no such message', r.stderr)
        for args in (['flush'], ['hold', a], ['release', b]):
            r = queue(p, *args)
            self.assertEqual(r.returncode, 1, args)
            self.assertIn('petrel is not running', r.stderr, args)
            self.assertEqual(r.stdout, '', args)
        self.assertEqual(sorted(p.queue_ids()), sorted([a, b]), 'nothing changed')

        # The hold survives a restart: flush attempts a, never b.
        p.restart()
        got, _ = listing(p)
        self.assertEqual((got[a]['state'], got[b]['state']), ('deferred', 'held'))
        self.assertEqual(queue(p, 'flush').returncode, 0)
        wait_attempt(p, a, 2, 2)
        time.sleep(0.3)
        self.assertEqual(attempts(p, b, 2), [])

        # kill -9 leaves a stale socket: the CLI reads the spool, the next start replaces it.
        p.kill9()
        self.assertTrue(os.path.exists(control_path(p)))
        got, r = listing(p)
        self.assertIn('not running', r.stderr)
        self.assertEqual(sorted(got), sorted([a, b]))
        p.restart()
        p.wait_log(r'control removed a stale socket')
        self.assertEqual(queue(p, 'release', b).returncode, 0)
        wait_attempt(p, b, 2, 1)
        got, _ = listing(p)
        self.assertEqual(got[b]['state'], 'deferred')

        # Stopped, delete marks the message's slot free and removes its journal: the next
        # start does not know it, and the other message is untouched.
        self.assertEqual(p.stop(), 0)
        r = queue(p, 'delete', b)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('not running', r.stderr)
        self.assertEqual(r.stdout, 'deleted %s\n' % b)
        self.assertEqual(p.queue_ids(), [a])
        self.assertFalse(os.path.exists(os.path.join(p.spool, 'state', b)), 'journal removed')
        r = queue(p, 'delete', b)
        self.assertEqual(r.returncode, 1)
        self.assertIn('no such message', r.stderr)
        p.restart()
        got, _ = listing(p)
        self.assertEqual(sorted(got), [a])

    def test_hold_and_delete_while_delivering(self):
        # A next hop that takes the connection and never greets: the deliveries stay under way.
        mute = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        mute.bind(('127.0.0.1', 0))
        mute.listen(16)
        self.addCleanup(mute.close)
        routes = [{'domain': 'mute.test', 'relay': '127.0.0.1:%d' % mute.getsockname()[1],
                   'tls': 'none'}] + petrel.default_config('.', 0)['routes']
        p = self.new_petrel({'routes': routes})
        held = send(p, 'h@example.org', ['h@mute.test'])
        gone = send(p, 'g@example.org', ['g@mute.test', 'g@far.test'])
        wait_attempt(p, gone, 1, 1)     # g@far.test failed at once, g@mute.test is under way
        r = queue(p, 'hold', held)
        self.assertEqual(r.returncode, 0, r.stderr)
        p.wait_log(r'%s held \(queue hold\) pending=1 deliveries_in_flight=1' % held)
        r = queue(p, 'delete', gone)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('deleted %s (1 delivery attempt under way' % gone, r.stdout)
        self.assertNotIn(gone, p.queue_all())
        got, _ = listing(p)
        self.assertNotIn(gone, got)
        self.assertEqual(got[held]['state'], 'held')
        mute.close()                    # the pending connections are refused: both attempts end
        p.wait_log(r'%s delivery to=<g@mute\.test> .*status=ignored' % gone)
        wait_attempt(p, held, 1, 1)
        time.sleep(0.2)
        self.assertFalse(os.path.exists(os.path.join(p.spool, 'state', gone)),
                         'no journal comes back for a deleted message')
        self.assertNotRegex(p.log(), r'%s dsn ' % gone)
        got, _ = listing(p)
        self.assertEqual(sorted(got), [held])
        self.assertEqual(got[held]['state'], 'held', 'what the attempt left is held')
        r = queue(p, 'release', held)
        self.assertEqual(r.returncode, 0, r.stderr)
        wait_attempt(p, held, 2, 1)


if __name__ == '__main__':
    petrel.main()
