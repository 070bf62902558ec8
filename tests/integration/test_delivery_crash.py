#!/usr/bin/python3
"""
test_delivery_crash.py: kill -9 in the middle of the queue. Many messages go to a slow next hop
(nexthop.CaptureServer); petrel is killed while deliveries are under way and started again on
the same spool. Every message must arrive exactly once (by Message-ID at the next hop) and
the queue must end empty: nothing delivered is delivered again, nothing is forgotten.

The only duplicate RFC 5321 allows (section 6.1) is a message whose final 250 reached petrel
just before the kill, before petrel journaled it. test_kill9_gated makes that window impossible
(the next hop's replies are frozen and petrel has journaled every 250 before the kill), so it
allows no duplicate at all; the random kills allow one only where the window is proven on disk:
right after the kill, the message is still queued and its state journal does not hold that
recipient as final (so the restart cannot know it was delivered). Maildir deliveries have the
same window (linked into new/, not yet journaled).
"""

import collections
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import make_message  # noqa: E402
from nexthop import (ORIGIN, DeliveryCase, deliveries, dsns, maildir_files,  # noqa: E402
                     message_id, queue_config, read, relay_route, wait_for, wait_queue_empty)

SENDER = 'sender@' + ORIGIN
N_MESSAGES = 60


def final_at_kill(p):
    """{queue id: indexes of the recipients journaled as final} for every queued message
    (read after the kill: what the restart will see)."""
    out = {}
    for qid in p.queue_ids():
        try:
            with open(os.path.join(p.spool, 'state', qid)) as f:
                lines = f.read().split('\n')[:-1]
        except FileNotFoundError:
            lines = []
        out[qid] = {int(l.split()[0]) for l in lines
                    if re.match(r'^\d+ (delivered|bounced|expired) ', l)}
    return out


def journaled(p, qid, idxs):
    """True if petrel has recorded recipients idxs of qid as final (or removed the message)."""
    if qid not in p.queue_ids():
        return True
    try:
        with open(os.path.join(p.spool, 'state', qid)) as f:
            lines = f.read().split('\n')[:-1]      # a torn last line does not count
    except FileNotFoundError:
        return False
    final = {int(l.split()[0]) for l in lines
             if re.match(r'^\d+ (delivered|bounced|expired) ', l)}
    return set(idxs) <= final


class Crash(DeliveryCase):
    TEST_TIMEOUT = 50

    def setUp(self):
        super().setUp()
        self.cap = self.capture(reply_delay=0.05)
        self.p = self.start_petrel(
            [relay_route('far.test', self.cap.address),
             relay_route('other.test', self.cap.address),
             {'domain': ORIGIN, 'discard': True}],
            queue=queue_config(concurrency_per_destination=3))

    def submit_all(self):
        """N_MESSAGES messages on one connection: {Message-ID: (queue id, recipients)}."""
        c = self.connect(self.p)
        self.assertReply(c.ehlo(), 250)
        sent = {}
        for i in range(N_MESSAGES):
            mid = '<crash-%03d-%s@client.test>' % (i, os.urandom(4).hex())
            rcpts = ['a%d@far.test' % i, 'b%d@other.test' % i] if i % 3 == 0 \
                else ['a%d@far.test' % i]
            qid = c.send_mail(SENDER, rcpts, petrel.stuff(make_message('crash %d' % i,
                                                                       msgid=mid)),
                              ehlo=False)
            sent[mid] = (qid, rcpts)
        c.quit()
        return sent

    def deliveries_at_hop(self):
        """{(Message-ID, recipient): [transactions that delivered it]}."""
        got = collections.defaultdict(list)
        for t in self.cap.accepted():
            for r in t.rcpts:
                got[(t.message_id, r)].append(t)
        return got

    def check_once(self, sent, allowed_dups=()):
        got = self.deliveries_at_hop()
        want = {(mid, r) for mid, (_, rcpts) in sent.items() for r in rcpts}
        self.assertEqual(set(got) - want, set(), 'deliveries nobody sent')
        self.assertEqual(want - set(got), set(), 'forgotten recipients')
        dups = {k: len(v) for k, v in got.items() if len(v) > 1}
        self.assertEqual(set(dups) - set(allowed_dups), set(),
                         'duplicates outside the crash window: %r' % dups)
        self.assertTrue(all(n == 2 for n in dups.values()), dups)
        wait_queue_empty(self.p, 30)
        self.assertEqual(sorted(os.listdir(os.path.join(self.p.spool, 'state'))), [])
        self.assertEqual(dsns(self.p), [])

    def test_kill9_gated(self):
        p, cap = self.p, self.cap
        sent = self.submit_all()
        by_qid = {qid: rcpts for qid, rcpts in sent.values()}
        cap.wait_accepted(15, 20)
        cap.close_gate()
        before = cap.accepted()
        # Wait until petrel has journaled every 250 it got: then a kill cannot hit the window.
        for t in before:
            qid = sent[t.message_id][0]
            idxs = [by_qid[qid].index(r) for r in t.rcpts]
            wait_for(lambda: journaled(p, qid, idxs), 10, 'journal of %s' % qid)
        wait_for(lambda: cap.waiting_count() > 0, 10, 'a delivery held at the gate')
        held = cap.waiting_count()
        p.kill9()
        cap.drop_waiting()
        done_before = {d.id for d in deliveries(p) if d.status == 'sent'}
        # Nothing forgotten: every message not yet fully delivered is still queued.
        pending = [qid for qid, rcpts in by_qid.items()
                   if len([d for d in deliveries(p, qid) if d.status == 'sent']) < len(rcpts)]
        self.assertEqual(set(pending) - set(p.queue_ids()), set(), 'pending messages kept')
        self.assertGreater(len(pending), 0)
        self.assertGreater(held, 0)
        cap.open_gate()
        mark = p.log_size()
        p.restart()
        wait_queue_empty(p, 30)
        again = [d for d in deliveries(p, whole=False) if d.status == 'sent']
        self.assertEqual({d.id for d in again} & (done_before - set(pending)), set(),
                         'a message finished before the kill was delivered again')
        self.assertGreater(p.log_size(), mark)
        self.check_once(sent)

    def test_kill9_at_random(self):
        p, cap = self.p, self.cap
        sent = self.submit_all()
        cap.wait_accepted(20, 20)
        p.kill9()
        on_disk = final_at_kill(p)
        p.restart()
        wait_queue_empty(p, 30)
        # A duplicate is excused only by the window: the next hop's 250 reached petrel, which
        # died before it journaled the recipient (the message is still queued at the kill
        # and the recipient is not final there).
        excused = []
        for (mid, rcpt), txns in self.deliveries_at_hop().items():
            qid, rcpts = sent[mid]
            if len(txns) > 1 and qid in on_disk and rcpts.index(rcpt) not in on_disk[qid]:
                excused.append((mid, rcpt))
        if excused:
            sys.stdout.write('note: %d duplicate(s) in the documented crash window\n'
                             % len(excused))
        self.check_once(sent, excused)

class CrashMaildir(DeliveryCase):
    TEST_TIMEOUT = 50

    def test_kill9_during_maildir_deliveries(self):
        p = self.start_petrel([], start=False)
        mail = os.path.join(p.workdir, 'mail')
        p.overrides['routes'] = [{'domain': 'local.test', 'maildir': os.path.join(mail, '%u')}]
        p.start()
        c = self.connect(p)
        self.assertReply(c.ehlo(), 250)
        sent = {}
        for i in range(150):
            mid = '<md-%03d-%s@client.test>' % (i, os.urandom(4).hex())
            rcpt = 'u%d@local.test' % (i % 5)
            sent[mid] = (c.send_mail(SENDER, rcpt, petrel.stuff(make_message('md', msgid=mid)),
                                     ehlo=False), rcpt)
        c.quit()
        wait_for(lambda: len([d for d in deliveries(p) if d.status == 'sent']) >= 30, 20,
                 '30 Maildir deliveries')
        p.kill9()
        on_disk = final_at_kill(p)
        p.restart()
        wait_queue_empty(p, 40)
        got = collections.Counter()
        for u in range(5):
            for f in maildir_files(os.path.join(mail, 'u%d' % u)):
                got[message_id(read(f).replace(b'\n', b'\r\n'))] += 1
        self.assertEqual(set(got), set(sent), 'every message in a Maildir')
        for mid, n in got.items():
            if n == 1:
                continue
            qid, rcpt = sent[mid]
            # The window: linked into new/ but not yet journaled when the kill came.
            self.assertEqual(n, 2, mid)
            self.assertIn(qid, on_disk, 'duplicate of a message removed before the kill')
            self.assertNotIn(0, on_disk[qid], 'duplicate of a journaled delivery')


if __name__ == '__main__':
    petrel.main()
