#!/usr/bin/python3
"""
test_delivery_local.py: `maildir:` and `discard:` routes. A Maildir delivery is checked byte for
byte on disk (the file in new/, LF line endings, unstuffed, Return-Path: and Delivered-To:
first, nothing left in tmp/), and a bounce delivered to a Maildir is parsed as a DSN.
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import make_message  # noqa: E402
from nexthop import (ORIGIN, DeliveryCase, big_body, deliveries, dsn_fields, dsns,  # noqa: E402
                     maildir_files, read, relay_route, script, wait_for, wait_queue_empty,
                     wait_removed)

SENDER = 'sender@' + ORIGIN
NAME_RE = re.compile(r'^(\d+)\.M(\d+)P(\d+)Q(\d+)\.([^/,]+),S=(\d+)$')


def maildir_form(data):
    """What a Maildir file holds for spool-form data: unstuffed, CRLF → LF."""
    lines = data.split(b'\r\n')
    return b'\n'.join(l[1:] if l.startswith(b'.') else l for l in lines)


class Maildir(DeliveryCase):

    def setUp(self):
        super().setUp()
        self.p = self.start_petrel([], start=False)
        self.mail = os.path.join(self.p.workdir, 'mail')

    def start(self, routes):
        self.p.overrides['routes'] = routes
        self.p.start()
        return self.p

    def box(self, user):
        return os.path.join(self.mail, user)

    def test_maildir_byte_exact(self):
        p = self.start([{'domain': 'local.test', 'maildir': os.path.join(self.mail, '%u')}])
        body = (b'line one\r\n.dot line\r\n..two dots\r\n.\r\n\r\n'
                b'tab\tand trailing space \r\nlast\r\n')
        content = make_message('maildir', body.decode())
        qid = self.submit(p, SENDER, ['alice@local.test', 'Bob@Local.Test'], content)
        wait_removed(p, qid)
        for user, rcpt in (('alice', 'alice@local.test'), ('bob', 'Bob@Local.Test')):
            files = maildir_files(self.box(user))
            self.assertEqual(len(files), 1, files)
            self.assertEqual(maildir_files(self.box(user), 'tmp'), [], 'tmp/ is empty')
            self.assertTrue(os.path.isdir(os.path.join(self.box(user), 'cur')))
            got = read(files[0])
            prefix = ('Return-Path: <%s>\nDelivered-To: %s\n' % (SENDER, rcpt)).encode()
            self.assertTrue(got.startswith(prefix), got[:200])
            received, rest = petrel.split_received(
                got[len(prefix):].replace(b'\n', b'\r\n'))
            self.assertTrue(received.startswith(b'Received: '), got[:300])
            self.assertIn(('id ' + qid).encode(), received)
            self.assertEqual(rest, content)
            self.assertNotIn(b'\r', got, 'LF line endings only')
            self.assertEqual(got, prefix + maildir_form(received + petrel.stuff(content)))
            name = os.path.basename(files[0])
            m = NAME_RE.match(name)
            self.assertIsNotNone(m, name)
            self.assertEqual(int(m.group(6)), len(got), 'S= is the size of the file')
            self.assertDelivered(p, qid, rcpt, attempt=1, route='maildir')

    def test_large_maildir_message_byte_exact(self):
        # 3 MB with dot lines everywhere, so stuffing falls on the 64 KiB read boundaries.
        p = self.start([{'domain': 'local.test', 'maildir': os.path.join(self.mail, '%u')}])
        content = make_message('big', big_body(3 * 1024 * 1024, 11))
        qid = self.submit(p, SENDER, 'big@local.test', content)
        wait_removed(p, qid, timeout=30)
        [f] = maildir_files(self.box('big'))
        got = read(f)
        prefix = ('Return-Path: <%s>\nDelivered-To: big@local.test\n' % SENDER).encode()
        received, rest = petrel.split_received(got[len(prefix):].replace(b'\n', b'\r\n'))
        self.assertEqual(rest, content)

    def test_maildir_domain_template_and_shared_box(self):
        p = self.start([{'domain': 'a.test', 'maildir': os.path.join(self.mail, '%d', '%u')},
                        {'domain': 'b.test', 'maildir': os.path.join(self.mail, 'shared')}])
        qid = self.submit(p, SENDER, ['x@a.test', 'y@A.TEST', 'p@b.test', 'q@b.test'],
                          make_message('templates'))
        wait_removed(p, qid)
        self.assertEqual(len(maildir_files(os.path.join(self.mail, 'a.test', 'x'))), 1)
        self.assertEqual(len(maildir_files(os.path.join(self.mail, 'a.test', 'y'))), 1)
        shared = maildir_files(os.path.join(self.mail, 'shared'))
        self.assertEqual(len(shared), 2)
        self.assertEqual(sorted(re.search(rb'^Delivered-To: (.*)$', read(f), re.M).group(1)
                                for f in shared), [b'p@b.test', b'q@b.test'])

    def test_unsafe_local_part_is_refused(self):
        p = self.start([{'domain': 'local.test', 'maildir': os.path.join(self.mail, '%u')},
                        {'domain': ORIGIN, 'maildir': os.path.join(self.mail, 'bounces')}])
        bad_rcpt = '"../../escape/x"@local.test'
        qid = self.submit(p, SENDER, [bad_rcpt, 'ok@local.test'], make_message('unsafe'))
        wait_removed(p, qid)
        self.assertEqual(len(maildir_files(self.box('ok'))), 1)
        self.assertEqual(sorted(os.listdir(self.mail)), ['bounces', 'ok'])
        self.assertFalse(os.path.exists(os.path.join(self.p.workdir, 'escape')))
        bad = [d for d in deliveries(p, qid) if d.rcpt == bad_rcpt]
        self.assertEqual([(d.status, d.dsn) for d in bad], [('bounced', '5.1.1')], bad)
        [(_, dsn_id, _, _, _)] = dsns(p, qid)
        wait_removed(p, dsn_id)
        self.assertEqual(len(maildir_files(os.path.join(self.mail, 'bounces'))), 1)

    def test_bounce_delivered_to_maildir_is_a_dsn(self):
        # The DSN of a remote 550 goes to the sender's domain, here a Maildir.
        cap = self.capture(rcpt_reply=script({'nobody@far.test': '550 5.1.1 user unknown'}))
        p = self.start([relay_route('far.test', cap.address),
                        {'domain': ORIGIN, 'maildir': os.path.join(self.mail, '%u')}])
        mid = '<bounce-%s@client.test>' % os.urandom(4).hex()
        qid = self.submit(p, SENDER, 'nobody@far.test', make_message('bounce me', msgid=mid))
        wait_removed(p, qid)
        [(_, dsn_id, _, action, _)] = dsns(p, qid)
        self.assertEqual(action, 'failed')
        wait_removed(p, dsn_id)
        [f] = maildir_files(self.box('sender'))
        data = read(f)
        self.assertTrue(data.startswith(b'Return-Path: <>\nDelivered-To: %s\n'
                                        % SENDER.encode()), data[:200])
        per_msg, [r], msg = dsn_fields(data)
        self.assertEqual(r['final-recipient'].replace(' ', ''), 'rfc822;nobody@far.test')
        self.assertEqual((r['action'], r['status']), ('failed', '5.1.1'))
        self.assertIn(mid.encode(), data)
        self.assertTrue(msg['Message-ID'])
        self.assertEqual(msg['To'].strip('<> '), SENDER)
        wait_queue_empty(p)

    def test_postmaster_without_domain(self):
        # RCPT TO:<Postmaster> (RFC 5321 4.5.1) goes by the route of the first local domain.
        p = self.start([{'domain': 'localhost', 'maildir': os.path.join(self.mail, '%u')}])
        qid = self.submit(p, SENDER, 'Postmaster', make_message('to the postmaster'))
        wait_removed(p, qid)
        [f] = maildir_files(self.box('postmaster'))
        self.assertIn(b'\nSubject: to the postmaster\n', read(f))

    def test_discard_route(self):
        p = self.start([{'domain': 'void.test', 'discard': True}])
        qid = self.submit(p, SENDER, ['a@void.test', 'b@void.test'], make_message('void'))
        wait_removed(p, qid)
        ds = deliveries(p, qid)
        self.assertEqual(sorted((d.rcpt, d.status, d.route) for d in ds),
                         [('a@void.test', 'sent', 'discard'), ('b@void.test', 'sent', 'discard')])
        self.assertEqual(dsns(p), [])
        self.assertEqual(p.queue_all(), [])

    def test_mixed_routes_one_message(self):
        cap = self.capture()
        p = self.start([{'domain': 'local.test', 'maildir': os.path.join(self.mail, '%u')},
                        {'domain': 'void.test', 'discard': True},
                        relay_route('far.test', cap.address)])
        content = make_message('mixed')
        qid = self.submit(p, SENDER, ['l@local.test', 'v@void.test', 'f@far.test'], content)
        wait_removed(p, qid)
        self.assertEqual(len(maildir_files(self.box('l'))), 1)
        self.assertEqual(cap.delivered_rcpts(), ['f@far.test'])
        self.assertEqual(petrel.split_received(cap.accepted()[0].data)[1], content)
        self.assertEqual(sorted(d.route for d in deliveries(p, qid)),
                         ['discard', 'maildir', 'relay'])

    def test_maildir_below_a_file_bounces(self):
        # A file where the Maildir's parent should be: ENOTDIR, permanent (maildir.h).
        blocker = os.path.join(self.mail, 'blocked')
        os.makedirs(self.mail)
        with open(blocker, 'w') as f:
            f.write('not a directory\n')
        p = self.start([{'domain': 'local.test', 'maildir': os.path.join(blocker, '%u')},
                        {'domain': ORIGIN, 'discard': True}])
        qid = self.submit(p, SENDER, 'u@local.test', make_message('blocked'))
        wait_removed(p, qid)
        [d] = deliveries(p, qid)
        self.assertEqual(d.status, 'bounced', d)
        self.assertTrue(d.dsn.startswith('5.'), d)
        wait_for(lambda: len(dsns(p, qid)) == 1, 5, 'the DSN')


if __name__ == '__main__':
    petrel.main()
