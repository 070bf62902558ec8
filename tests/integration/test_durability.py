#!/usr/bin/python3
"""
test_durability.py: what a 250 promises. A message acknowledged with 250 survives kill -9 and
is listed at the next start; a message interrupted by kill -9 before its 250 is not in queue/
after the restart (and tmp/ is cleaned). Graceful stop (SIGTERM) lets a session finish the
message it holds, and start-up never deletes files it does not understand.
"""

import hashlib
import os
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import PetrelTestCase, make_message  # noqa: E402

FSYNC = {'durability': 'fsync'}


def wait_for(cond, timeout=10.0, what='condition'):
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError('%s not reached within %.0f s' % (what, timeout))
        time.sleep(0.02)


def sha(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


class Durability(PetrelTestCase):
    START = False
    TEST_TIMEOUT = 60

    def test_acknowledged_message_survives_kill9(self):
        p = self.new_petrel(FSYNC)
        c = self.connect(p)
        content = make_message('durable', 'must survive\r\n')
        qid = c.send_mail('a@example.org', ['user@localhost', 'other@localhost'], content)
        digest = sha(os.path.join(p.spool, 'queue', qid))
        p.kill9()
        c.close()
        self.assertIn(qid, p.queue_ids(), 'in queue/ right after the crash')
        p.restart()
        p.wait_log(r'spool message id=%s from=<a@example\.org> nrcpt=2 size=\d+' % qid)
        p.wait_log(r'spool ready .*messages=1\b')
        self.assertEqual(p.queue_ids(), [qid])
        self.assertEqual(sha(os.path.join(p.spool, 'queue', qid)), digest, 'unchanged')
        m = p.message(qid)
        self.assertEqual(m.body, content)
        self.assertEqual([r['addr'] for r in m.rcpts], ['user@localhost', 'other@localhost'])

    def test_many_acknowledged_messages_survive_kill9(self):
        p = self.new_petrel(FSYNC)
        c = self.connect(p)
        self.assertReply(c.ehlo(), 250)
        acked = []
        for i in range(30):
            acked.append(c.send_mail('a@example.org', 'user@localhost',
                                     make_message('n%d' % i), ehlo=False))
        p.kill9()
        p.restart()
        p.wait_log(r'spool ready .*messages=30\b')
        self.assertEqual(sorted(p.queue_ids()), sorted(acked))
        for qid in acked:
            p.wait_log(r'spool message id=%s ' % qid)

    def test_interrupted_data_not_in_queue_after_kill9(self):
        p = self.new_petrel(FSYNC)
        c = self.connect(p)
        qid = c.send_mail('a@example.org', 'user@localhost', make_message('before'))
        self.assertReply(c.mail('a@example.org'), 250, '2.1.0')
        self.assertReply(c.rcpt('user@localhost'), 250, '2.1.5')
        self.assertReply(c.cmd('DATA'), 354)
        c.send(b'Subject: interrupted\r\n\r\n' + (b'i' * 998 + b'\r\n') * 400)   # ~400 KB
        wait_for(lambda: p.tmp_files() != [], what='a file in tmp/')
        p.kill9()
        c.close()
        self.assertEqual(p.queue_ids(), [qid], 'only the acknowledged message in queue/')
        p.restart()
        p.wait_log(r'spool ready .*messages=1\b')
        self.assertEqual(p.queue_ids(), [qid])
        self.assertEqual(p.tmp_files(), [], 'tmp/ is cleaned at start-up')
        for m in p.messages():
            self.assertNotIn(b'interrupted', m.data)

    def test_new_ids_after_restart_do_not_collide(self):
        p = self.new_petrel(FSYNC)
        c = self.connect(p)
        old = [c.send_mail('a@example.org', 'user@localhost', make_message('old %d' % i))
               for i in range(5)]
        digests = {q: sha(os.path.join(p.spool, 'queue', q)) for q in old}
        p.kill9()
        p.restart()
        c = self.connect(p)
        new = [c.send_mail('a@example.org', 'user@localhost', make_message('new %d' % i))
               for i in range(5)]
        self.assertFalse(set(old) & set(new), 'an id was reused')
        self.assertEqual(sorted(p.queue_ids()), sorted(old + new))
        for q, d in digests.items():
            self.assertEqual(sha(os.path.join(p.spool, 'queue', q)), d, 'old file overwritten')

    def test_unknown_files_in_queue_are_kept(self):
        p = self.new_petrel(FSYNC, start=False)
        q = os.path.join(p.spool, 'queue')
        os.makedirs(q)
        os.makedirs(os.path.join(p.spool, 'tmp'))
        junk = os.path.join(q, '0123456789abcdef')
        with open(junk, 'wb') as f:
            f.write(b'this is not a spool file\n')
        with open(os.path.join(q, 'README'), 'wb') as f:
            f.write(b'someone else\'s file\n')
        with open(os.path.join(p.spool, 'tmp', 'fedcba9876543210'), 'wb') as f:
            f.write(b'petrel-spool 1\nid fedcba9876543210\n')
        p.start()
        p.wait_log(r'spool ready ')
        self.assertTrue(os.path.exists(junk), 'a malformed spool file is never deleted')
        self.assertTrue(os.path.exists(os.path.join(q, 'README')))
        self.assertEqual(p.tmp_files(), [], 'tmp/ is cleaned at start-up')
        c = self.connect(p)
        qid = c.send_mail('a@example.org', 'user@localhost', make_message('with junk'))
        self.assertIn(qid, p.queue_ids())

    def test_sigterm_lets_session_finish_its_message(self):
        p = self.new_petrel(FSYNC)
        c = self.connect(p)
        self.assertReply(c.ehlo(), 250)
        self.assertReply(c.mail('a@example.org'), 250, '2.1.0')
        self.assertReply(c.rcpt('user@localhost'), 250, '2.1.5')
        self.assertReply(c.cmd('DATA'), 354)
        content = make_message('graceful', 'first half\r\n')
        c.send(content[:40])
        os.kill(p.pid, signal.SIGTERM)
        p.wait_log(r'petrel stopping signal=TERM')
        # New connections are refused once the listeners are closed.
        wait_for(lambda: not _accepts(p.port), what='listener closed')
        c.send(content[40:] + b'.\r\n')
        r = c.read_reply()
        self.assertReply(r, 250, '2.0.0')
        self.assertReply(c.read_reply(), 421, '4.3.2')
        self.assertClosed(c)
        self.assertEqual(p.proc.wait(15), 0)
        self.assertEqual(p.message(r.queue_id).body, content)

    def test_sigterm_closes_idle_sessions(self):
        p = self.new_petrel(FSYNC)
        idle = self.connect(p)
        self.assertReply(idle.ehlo(), 250)
        mid = self.connect(p)
        self.assertReply(mid.ehlo(), 250)
        self.assertReply(mid.mail('a@example.org'), 250, '2.1.0')
        os.kill(p.pid, signal.SIGTERM)
        self.assertReply(idle.read_reply(), 421, '4.3.2')
        self.assertReply(mid.read_reply(), 421, '4.3.2')
        self.assertClosed(idle)
        self.assertClosed(mid)
        self.assertEqual(p.proc.wait(15), 0)
        p.wait_log(r'petrel stopped')
        self.assertEqual(p.queue_ids(), [])


def _accepts(port):
    try:
        s = socket.create_connection(('127.0.0.1', port), timeout=1)
    except OSError:
        return False
    s.close()
    return True


if __name__ == '__main__':
    petrel.main()
