#!/usr/bin/python3
"""
test_durability.py: what a 250 promises. A message acknowledged with 250 survives kill -9 and
is listed at the next start, its slot file unchanged; a message interrupted by kill -9 before
its 250 is not queued after the restart (its slot file is a free slot). Graceful stop (SIGTERM)
lets a session finish the message it holds, and start-up never deletes files it does not
understand.
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


def sha(p, qid):
    """The digest of qid's commit record and the bytes it covers (what was acknowledged; a
    recycled slot file may hold an older message's bytes after them)."""
    return hashlib.sha256(p.message(qid).committed).hexdigest()


def read(path):
    with open(path, 'rb') as f:
        return f.read()


class Durability(PetrelTestCase):
    START = False
    TEST_TIMEOUT = 60

    def test_acknowledged_message_survives_kill9(self):
        p = self.new_petrel(FSYNC)
        c = self.connect(p)
        content = make_message('durable', 'must survive\r\n')
        qid = c.send_mail('a@example.org', ['user@localhost', 'other@localhost'], content)
        slot = p.spool_path(qid)
        digest = sha(p, qid)
        p.kill9()
        c.close()
        self.assertIn(qid, p.queue_ids(), 'queued right after the crash')
        p.restart()
        p.wait_log(r'spool message id=%s from=<a@example\.org> nrcpt=2 size=\d+' % qid)
        p.wait_log(r'spool ready .*messages=1\b')
        self.assertEqual(p.queue_ids(), [qid])
        self.assertEqual(p.spool_path(qid), slot, 'in the same slot file')
        self.assertEqual(sha(p, qid), digest, 'unchanged')
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
        wait_for(lambda: any(b'Subject: interrupted' in read(s) for s in p.slot_paths()),
                 what='the interrupted message in a slot file')
        p.kill9()
        c.close()
        self.assertEqual(p.queue_ids(), [qid], 'only the acknowledged message is queued')
        self.assertEqual(p.queue_all(), [qid], 'its slot file is not committed')
        p.restart()
        p.wait_log(r'spool ready .*messages=1\b')
        self.assertEqual(p.queue_ids(), [qid])
        self.assertEqual(p.queue_all(), [qid], 'nothing else at start-up')
        for m in p.messages():
            self.assertNotIn(b'interrupted', m.data)

    def test_new_ids_after_restart_do_not_collide(self):
        p = self.new_petrel(FSYNC)
        c = self.connect(p)
        old = [c.send_mail('a@example.org', 'user@localhost', make_message('old %d' % i))
               for i in range(5)]
        digests = {q: sha(p, q) for q in old}
        p.kill9()
        p.restart()
        c = self.connect(p)
        new = [c.send_mail('a@example.org', 'user@localhost', make_message('new %d' % i))
               for i in range(5)]
        self.assertFalse(set(old) & set(new), 'an id was reused')
        self.assertEqual(sorted(p.queue_ids()), sorted(old + new))
        for q, d in digests.items():
            self.assertEqual(sha(p, q), d, 'old message overwritten')

    def test_unknown_files_in_slots_are_kept(self):
        """A file in slots/ that is not a slot is left alone; a slot file that is not a
        committed message (garbage, a record torn by a crash) is a free slot, never listed."""
        p = self.new_petrel(FSYNC, start=False)
        slots = os.path.join(p.spool, 'slots')
        os.makedirs(slots)
        readme = os.path.join(slots, 'README')
        with open(readme, 'wb') as f:
            f.write(b'someone else\'s file\n')
        with open(os.path.join(slots, '0'), 'wb') as f:
            f.write(b'this is not a spool file\n')
        torn = petrel.format_slot('fedcba9876543210', b'id fedcba9876543210\narrival 1.0\n'
                                  b'from <a@example.org>\nrcpt <user@localhost>\n\n'
                                  b'Subject: torn\r\n\r\nnever acknowledged\r\n')
        with open(os.path.join(slots, '1'), 'wb') as f:
            f.write(torn[:-5])                          # a Q record, and the end missing
        p.start()
        p.wait_log(r'spool ready .*messages=0\b')
        self.assertEqual(read(readme), b'someone else\'s file\n', 'a file that is not a slot '
                         'is never touched')
        c = self.connect(p)
        qid = c.send_mail('a@example.org', 'user@localhost', make_message('with junk'))
        self.assertEqual(p.queue_ids(), [qid])

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
