#!/usr/bin/python3
"""
test_delivery_queue.py: the queue's memory across time and restarts.

- Expiry: max_lifetime is at least 1m, too long for a test, so the message is written into the
  spool by hand (format of include/petrel/spool.h) with an arrival 10 days ago; its first
  failed attempt expires it (4.4.7) and the sender gets a "failed" DSN.
- The state journal (state/<id>, format in src/scheduler.c) is honoured at start-up: final
  recipients are not tried again, a torn last line is ignored, deferred counts go on.
- A "delayed" DSN (delay_warning) goes out once, also across a restart.
- SIGTERM lets a delivery under way finish, journals it, and exits 0.
- kill -9 while messages bounce: every bounce still reaches the sender.
"""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import make_message  # noqa: E402
from nexthop import (DSN_RE, ORIGIN, DeliveryCase, deliveries, dsn_fields,  # noqa: E402
                     dsns, maildir_files, queue_config, read, relay_route, script, wait_for,
                     wait_queue_empty, wait_removed)

SENDER = 'sender@' + ORIGIN
DAY = 86400
BALLAST_MB = 64      # dirty data that makes the next sync slow


def read_text(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ''


def write_spool(spool, qid, sender, rcpts, content, arrival, state=None):
    """A committed message as petrel writes it (spool.h) in a new slot file, and optionally its
    journal."""
    for sub in ('slots', 'state'):
        os.makedirs(os.path.join(spool, sub), exist_ok=True)
    head = ('id %s\narrival %d.%06d\nclient 127.0.0.1\nhelo old.client.test\n'
            'protocol ESMTP\nfrom <%s>\n' % (qid, int(arrival), int(arrival % 1 * 1e6), sender))
    head += ''.join('rcpt <%s>\n' % r for r in rcpts) + '\n'
    n = 0
    while os.path.lexists(os.path.join(spool, 'slots', str(n))):
        n += 1
    with open(os.path.join(spool, 'slots', str(n)), 'xb') as f:
        f.write(petrel.format_slot(qid, head.encode() + petrel.stuff(content)))
    if state is not None:
        with open(os.path.join(spool, 'state', qid), 'w') as f:
            f.write(state)


class Queue(DeliveryCase):
    TEST_TIMEOUT = 45

    def petrel_with(self, routes, queue=None, start=True):
        p = self.start_petrel([], queue=queue, start=False)
        self.bounces = os.path.join(p.workdir, 'bounces')
        p.overrides['routes'] = routes + [{'domain': ORIGIN, 'maildir': self.bounces}]
        if start:
            p.start()
        return p

    def test_old_message_expires_on_first_failure(self):
        cap = self.capture(rcpt_reply=script({'stuck@far.test': '451 4.2.1 mailbox busy'}))
        p = self.petrel_with([relay_route('far.test', cap.address)], start=False)
        qid = '0000000000e0e001'
        mid = '<expired-%s@client.test>' % os.urandom(4).hex()
        content = make_message('ten days old', msgid=mid)
        write_spool(p.spool, qid, SENDER, ['stuck@far.test', 'fine@far.test'], content,
                    time.time() - 10 * DAY)
        p.start()
        wait_removed(p, qid)
        ds = {d.rcpt: d for d in deliveries(p, qid)}
        self.assertEqual((ds['stuck@far.test'].status, ds['stuck@far.test'].dsn,
                          ds['stuck@far.test'].attempt), ('expired', '4.4.7', 1))
        self.assertEqual(ds['fine@far.test'].status, 'sent')
        self.assertEqual(cap.attempts_of('stuck@far.test'), 1)
        self.assertEqual(cap.delivered_rcpts(), ['fine@far.test'])
        self.assertEqual(petrel.split_received(cap.accepted()[0].data)[1], content)
        [(_, dsn_id, to, action, n)] = dsns(p, qid)
        self.assertEqual((to, action, n), (SENDER, 'failed', 1))
        wait_removed(p, dsn_id)
        [f] = maildir_files(self.bounces)
        _, [r], _ = dsn_fields(read(f))
        self.assertEqual(r['final-recipient'].replace(' ', ''), 'rfc822;stuck@far.test')
        self.assertEqual((r['action'], r['status']), ('failed', '4.4.7'))
        self.assertIn('451 4.2.1 mailbox busy', r.get('diagnostic-code', ''))
        self.assertIn(mid.encode(), read(f))
        wait_queue_empty(p)

    def test_journal_is_honoured_at_start(self):
        cap = self.capture()
        p = self.petrel_with([relay_route('far.test', cap.address)], start=False)
        qid = '0000000000e0e002'
        now = int(time.time())
        rcpts = ['r0@far.test', 'r1@far.test', 'r2@far.test', 'r3@far.test']
        state = ('0 delivered %d\n1 bounced %d\n3 deferred %d 2 %d\n2 delivered %d'
                 % (now - 60, now - 60, now - 30, now - 1, now - 1))    # torn last line
        write_spool(p.spool, qid, SENDER, rcpts, make_message('journal'), now - 120, state)
        p.start()
        wait_removed(p, qid)
        self.assertEqual(sorted(cap.delivered_rcpts()), ['r2@far.test', 'r3@far.test'])
        ds = {d.rcpt: d for d in deliveries(p, qid)}
        self.assertEqual(sorted(ds), ['r2@far.test', 'r3@far.test'])
        self.assertEqual(ds['r3@far.test'].attempt, 3, 'attempts go on from the journal')
        self.assertEqual(dsns(p), [], 'r1 bounced before the restart: its DSN is not redone')
        self.assertFalse(os.path.exists(os.path.join(p.spool, 'state', qid)))

    def test_delay_warning_sent_once_across_restart(self):
        cap = self.capture(rcpt_reply=script({'slow@far.test': '451 4.2.2 over quota, later'}))
        p = self.petrel_with([relay_route('far.test', cap.address)],
                             queue=queue_config(max_lifetime='1d', delay_warning='1h'),
                             start=False)
        qid = '0000000000e0e003'
        write_spool(p.spool, qid, SENDER, ['slow@far.test'], make_message('delayed'),
                    time.time() - 2 * 3600)
        p.start()
        wait_for(lambda: len(deliveries(p, qid)) >= 3, 15, 'three attempts')
        [(_, dsn_id, to, action, n)] = dsns(p, qid)
        self.assertEqual((to, action, n), (SENDER, 'delayed', 1))
        wait_removed(p, dsn_id)
        [f] = maildir_files(self.bounces)
        _, [r], _ = dsn_fields(read(f))
        self.assertEqual(r['final-recipient'].replace(' ', ''), 'rfc822;slow@far.test')
        self.assertEqual(r['action'], 'delayed')
        self.assertEqual(r['status'], '4.2.2')
        self.assertIn('will-retry-until', r)
        self.assertEqual(p.stop(), 0)
        p.restart()
        wait_for(lambda: len(deliveries(p, qid, whole=False)) >= 2, 15,
                 'two attempts after the restart')
        self.assertEqual(len(dsns(p, qid)), 1, 'no second warning after the restart')
        self.assertEqual(p.queue_ids(), [qid])
        self.assertEqual(cap.accepted(), [])

    def test_sigterm_waits_for_the_delivery_under_way(self):
        cap = self.capture()
        p = self.petrel_with([relay_route('far.test', cap.address)])
        cap.close_gate()
        qid = self.submit(p, SENDER, 'u@far.test', make_message('sigterm'))
        wait_for(lambda: cap.waiting_count() == 1, 10, 'the delivery held at the next hop')
        p.proc.send_signal(signal.SIGTERM)
        p.wait_log(r'queue shutdown deliveries_in_flight=1 ')
        cap.open_gate()
        p.proc.wait(20)             # no second signal: that one means "exit now"
        self.assertEqual(p.stop(), 0)
        self.assertEqual(len(cap.accepted()), 1)
        self.assertTrue(any(d.status == 'sent' for d in deliveries(p, qid)))
        self.assertEqual(p.queue_ids(), [], 'journaled and removed before the exit')
        p.restart()
        p.wait_log(r'spool ready .*messages=0\b')
        self.assertEqual(len(cap.accepted()), 1)

    def test_kill9_while_bouncing_keeps_every_bounce(self):
        # 20 messages wait at the next hop for their RCPT replies, which then all come back
        # 550 at once. While petrel spools the 20 DSNs, the file system has a lot of dirty data
        # (written here, not synced), so committing them takes a while; petrel is killed as
        # soon as it logs its first DSN, then restarted. Every sender must get its bounce.
        cap = self.capture(rcpt_reply=lambda a, n: '550 5.1.1 no such user'
                           if a.startswith('bad') else None)
        cap.rcpt_gate.clear()
        p = self.start_petrel([relay_route('*', cap.address)])
        c = self.connect(p)
        self.assertReply(c.ehlo(), 250)
        senders = ['s%d@%s' % (i, ORIGIN) for i in range(20)]
        for i, s in enumerate(senders):
            c.send_mail(s, 'bad%d@far.test' % i, make_message('b%d' % i), ehlo=False)
        wait_for(lambda: len(cap.transactions) == 20, 10, '20 transactions at the next hop')
        ballast = os.path.join(p.workdir, 'ballast')
        self.addCleanup(lambda: os.path.exists(ballast) and os.unlink(ballast))
        with open(ballast, 'wb') as f:
            for _ in range(BALLAST_MB):
                f.write(os.urandom(1024 * 1024))
        cap.rcpt_gate.set()

        def window():
            """Messages whose recipient is journaled as bounced while their DSN is not yet
            committed (or None once every DSN is committed: no window to hit)."""
            queued = set(p.queue_ids())
            pairs = [m.groups()[:2] for m in DSN_RE.finditer(p.log())]
            open_ = [o for o, d in pairs if d not in queued and
                     ' bounced ' in read_text(os.path.join(p.spool, 'state', o))]
            if open_:
                return open_
            return None if len(pairs) < 20 or not {d for _, d in pairs} <= queued else []
        hit = []
        wait_for(lambda: hit.append(window()) or hit[-1] is not None, 10, 'the first bounce',
                 interval=0.001)
        p.kill9()
        os.unlink(ballast)
        logged = len(DSN_RE.findall(p.log()))
        p.restart()
        wait_queue_empty(p, 20)
        got = [t.rcpts[0] for t in cap.accepted() if t.sender == '']
        self.assertEqual(sorted(set(senders) - set(got)), [],
                         'senders without their bounce (%d DSNs logged before the kill; '
                         'killed while %d bounce(s) were journaled but their DSN not yet '
                         'committed)' % (logged, len(hit[-1])))

class KeptFiles(DeliveryCase):
    """A new message's spool file stays open from its commit to its first attempt (an open and
    a close saved each), but never more than 1,024 of them: a queue that waits for a slow next
    hop must not run petrel out of file descriptors."""
    TEST_TIMEOUT = 90

    def test_waiting_messages_do_not_hold_a_descriptor_each(self):
        cap = self.capture()
        p = self.start_petrel([relay_route('*', cap.address)],
                              queue=queue_config(concurrency_per_destination=1),
                              durability='none', log_level='warn')
        cap.close_gate()                      # the first delivery waits at the data
        total, conns = 1300, 10
        per = total // conns
        c_list = [self.connect(p) for _ in range(conns)]
        for c in c_list:
            self.assertReply(c.ehlo(), 250)
        for i in range(per):                  # ten sessions, pipelined turn by turn
            for c in c_list:
                c.send(b'MAIL FROM:<%s>\r\nRCPT TO:<rcpt@far.test>\r\nDATA\r\n' % SENDER.encode())
            for c in c_list:
                r = c.read_replies(3)
                self.assertEqual([x.code for x in r], [250, 250, 354], r)
                c.send(petrel.stuff(make_message('kept')) + b'.\r\n')
            for c in c_list:
                self.assertReply(c.read_reply(), 250, '2.0.0')
        wait_for(lambda: cap.waiting_count() == 1, what='the first delivery at the gate')
        fds = len(os.listdir('/proc/%d/fd' % p.pid))
        # 1,024 kept at most, plus the listeners, sessions, spool directories, the log...
        self.assertLess(fds, 1024 + 100, 'open descriptors with %d messages waiting' % total)
        self.assertGreater(fds, 1000, 'the first messages do keep their file open')
        # More parallel deliveries from a reload (the waiting units start at once), then the
        # gate opens.
        p.overrides['queue'] = queue_config(concurrency_per_destination=20)
        p.write_config(p.port)
        os.kill(p.pid, signal.SIGHUP)
        wait_for(lambda: cap.waiting_count() >= 10, what='more deliveries at the gate')
        cap.open_gate()
        wait_for(lambda: len(cap.accepted()) == total, timeout=60, what='every delivery')
        self.assertEqual(len(set(cap.message_ids())), total, 'each message once')
        wait_queue_empty(p)


if __name__ == '__main__':
    petrel.main()
