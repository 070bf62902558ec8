#!/usr/bin/python3
"""
test_load.py: 1,000 messages over 20 parallel connections (smtplib, one thread each), with
durability: fsync (the real thing). Every message must be spooled exactly once: 1,000
committed slot files, each Message-ID present once, nothing else. The whole run is bounded
(60 s).
"""

import os
import smtplib
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import PetrelTestCase, make_message  # noqa: E402

THREADS = 20
PER_THREAD = 50
DEADLINE = 60.0


class Load(PetrelTestCase):
    CONFIG = {'durability': 'fsync', 'log_level': 'warn'}
    TEST_TIMEOUT = 100

    def test_1000_messages_20_connections(self):
        self.assertEqual(self.petrel.queue_ids(), [])
        sent = {}                   # Message-ID -> recipient
        errors = []
        lock = threading.Lock()
        start = threading.Barrier(THREADS)
        stop_at = time.monotonic() + DEADLINE

        def worker(t):
            try:
                start.wait(10)
                with smtplib.SMTP('127.0.0.1', self.petrel.port, 'load%d.test' % t,
                                  timeout=30) as s:
                    for i in range(PER_THREAD):
                        if time.monotonic() > stop_at:
                            raise TimeoutError('deadline reached after %d messages' % i)
                        mid = '<load-%02d-%03d-%s@client.test>' % (t, i, os.urandom(4).hex())
                        rcpt = 'user%d@localhost' % t
                        body = 'message %d of thread %d\r\n' % (i, t) + ('x' * 70 + '\r\n') * i
                        s.sendmail('load%d@example.org' % t, [rcpt],
                                   make_message('load %d/%d' % (t, i), body, msgid=mid))
                        with lock:
                            sent[mid] = rcpt
            except Exception as e:          # noqa: BLE001 - reported below
                with lock:
                    errors.append('thread %d: %r' % (t, e))

        t0 = time.monotonic()
        threads = [threading.Thread(target=worker, args=(t,), daemon=True)
                   for t in range(THREADS)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(max(0.1, stop_at + 5 - time.monotonic()))
        elapsed = time.monotonic() - t0
        print('\n  %d messages in %.1f s over %d connections (durability: fsync)'
              % (len(sent), elapsed, THREADS))
        self.assertFalse(any(th.is_alive() for th in threads),
                         'not finished within %.0f s' % DEADLINE)
        self.assertEqual(errors, [])
        self.assertEqual(len(sent), THREADS * PER_THREAD)

        ids = self.petrel.queue_ids()
        self.assertEqual(len(ids), THREADS * PER_THREAD, 'one file per message')
        self.assertEqual(len(self.petrel.queue_all()), len(ids), 'no stray slot files')
        seen = {}
        for qid, m in zip(ids, self.petrel.messages()):     # one reading of the spool
            self.assertEqual(m.id, qid)
            mid = [l.split(b' ', 1)[1].decode() for l in m.body.split(b'\r\n')
                   if l.startswith(b'Message-ID: ')]
            self.assertEqual(len(mid), 1, qid)
            self.assertNotIn(mid[0], seen, 'spooled twice: %s' % mid[0])
            seen[mid[0]] = [r['addr'] for r in m.rcpts]
        self.assertEqual(set(seen), set(sent), 'every Message-ID spooled')
        for mid, rcpt in sent.items():
            self.assertEqual(seen[mid], [rcpt])

    def test_restart_sees_all(self):
        """After the load, a restart lists every message (spool ready ... messages=N)."""
        n = len(self.petrel.queue_ids())
        self.assertEqual(self.petrel.stop(), 0)
        self.petrel.overrides = dict(self.petrel.overrides, log_level='info')
        self.petrel.restart()
        self.petrel.wait_log(r'spool ready .* messages=%d\b' % n)


if __name__ == '__main__':
    petrel.main()
