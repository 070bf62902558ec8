#!/usr/bin/python3
"""
test_delivery.py: outbound delivery by `relay:` routes, end to end. petrel accepts a message,
delivers it to a next hop on 127.0.0.1 (Postfix's smtp-sink, or nexthop.CaptureServer scripted
by the test), and the test checks what arrived there: the envelope and the data byte for byte,
each message exactly once, retries after 4xx, a DSN to the sender after 5xx (and none for the
null sender), an empty queue afterwards (no slot file holds a message).
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import make_message  # noqa: E402
from nexthop import (CLOSE, ORIGIN, DeliveryCase, Hole, big_body, deliveries,  # noqa: E402
                     dsn_fields, dsns, queue_config, relay_route, script,
                     wait_for, wait_queue_empty, wait_removed)

SENDER = 'sender@' + ORIGIN



class RelayDelivery(DeliveryCase):

    def test_smtp_sink_receives_every_message_once(self):
        sink = self.sink()
        p = self.start_petrel([relay_route('*', sink.address)])
        sent = {}
        for i in range(12):
            mid = '<sink-%d-%s@client.test>' % (i, os.urandom(4).hex())
            rcpts = ['r%d@far.test' % i] if i % 3 else ['r%d@far.test' % i, 'x%d@far.test' % i]
            qid = self.submit(p, SENDER, rcpts, make_message('sink %d' % i, msgid=mid))
            sent[mid] = (qid, rcpts)
        wait_removed(p, [q for q, _ in sent.values()])
        wait_for(lambda: len(sink.messages()) >= len(sent), 10, 'smtp-sink dumps')
        msgs = sink.messages()
        ids = sink.message_ids()
        self.assertEqual(sorted(ids), sorted(sent), 'every Message-ID exactly once at the sink')
        for meta, body in msgs:
            mid = re.search(rb'^Message-ID: (<[^>]+>)', body, re.M).group(1).decode()
            qid, rcpts = sent[mid]
            self.assertEqual(meta['X-Mail-Args'][0].split()[0], '<%s>' % SENDER, meta)
            self.assertEqual([a.split()[0] for a in meta['X-Rcpt-Args']],
                             ['<%s>' % r for r in rcpts], meta)
            self.assertIn(('id ' + qid).encode(), body, 'petrel\'s Received: header')
            for r in rcpts:
                self.assertDelivered(p, qid, r, attempt=1, route='relay')
        self.assertEqual(p.queue_all(), [])

    def test_envelope_and_data_exact(self):
        cap = self.capture()
        p = self.start_petrel([relay_route('*', cap.address)])
        body = (b'first line\r\n'
                b'.dot at the start\r\n'
                b'..two dots\r\n'
                b'.\r\n'                         # a line that is a lone dot
                b'...\r\n'
                b' .space dot\r\n'
                b'trailing spaces   \r\n'
                b'tab\there\r\n'
                + b'L' * 990 + b'\r\n'
                b'\r\n'
                b'.\r\n'
                b'last line\r\n')
        content = make_message('exact', body.decode())
        rcpts = ['Alpha@far.test', 'beta+tag@FAR.test', '"quoted local"@far.test']
        sender = 'Sender.Name+x@' + ORIGIN
        qid = self.submit(p, sender, rcpts, content)
        wait_removed(p, qid)
        txns = cap.accepted()
        self.assertEqual(len(txns), 1, txns)
        t = txns[0]
        self.assertTrue(t.mail.startswith('MAIL FROM:<%s>' % sender), t.mail)
        self.assertEqual([re.match(r'RCPT TO:<(.*)>', l).group(1) for l in t.rcpt_lines], rcpts)
        self.assertEqual(t.rcpts, rcpts)
        self.assertEqual(t.helo, petrel.HOSTNAME)
        # petrel's Received: header, then the message exactly as the client sent it.
        received, rest = petrel.split_received(t.data)
        self.assertTrue(received.startswith(b'Received: '), t.data[:200])
        self.assertIn(('id ' + qid).encode(), received)
        self.assertEqual(rest, content, 'data byte for byte after unstuffing')
        self.assertEqual(t.raw, petrel.stuff(t.data), 'dot-stuffed on the wire')
        m = re.search(r' SIZE=(\d+)', t.mail)
        if m:
            self.assertGreaterEqual(int(m.group(1)), len(t.data))

    def test_no_8bit_data_to_a_7bit_next_hop(self):
        # RFC 6152 3: 8-bit data must not go to a server that does not offer 8BITMIME; the
        # relay converts it or bounces it (5.6.3).
        cap = self.capture(extensions=('PIPELINING', 'ENHANCEDSTATUSCODES'))
        p = self.start_petrel([relay_route('far.test', cap.address),
                               {'domain': ORIGIN, 'discard': True}])
        qid = self.submit(p, SENDER, 'u@far.test', make_message('8bit', 'b\u00fcro\r\n'),
                          mail_params='BODY=8BITMIME')
        wait_removed(p, qid)
        for t in cap.accepted():
            self.assertFalse(any(b > 127 for b in t.data), '8-bit octets sent to a 7-bit hop')
        if not cap.accepted():
            [d] = deliveries(p, qid)
            self.assertEqual((d.status, d.dsn), ('bounced', '5.6.3'), d)

    def test_8bitmime_passed_on(self):
        cap = self.capture()
        p = self.start_petrel([relay_route('*', cap.address)])
        content = make_message('8bit', 'caf\u00e9 \u00fcber \u65e5\u672c\r\n')
        qid = self.submit(p, SENDER, 'u@far.test', content, mail_params='BODY=8BITMIME')
        wait_removed(p, qid)
        t = cap.accepted()[0]
        self.assertIn(' BODY=8BITMIME', t.mail)
        self.assertEqual(petrel.split_received(t.data)[1], content)

    def test_451_then_accepted_delivered_once(self):
        cap = self.capture(rcpt_reply=script({'slow@far.test': ['451 4.3.0 try again later']}))
        p = self.start_petrel([relay_route('*', cap.address)])
        qid = self.submit(p, SENDER, 'slow@far.test', make_message('retry'))
        wait_removed(p, qid)
        ds = deliveries(p, qid)
        self.assertEqual([(d.status, d.attempt, d.dsn) for d in ds],
                         [('deferred', 1, '4.3.0'), ('sent', 2, '2.0.0')], ds)
        self.assertIn('451 4.3.0 try again later', ds[0].reply)
        self.assertEqual(cap.attempts_of('slow@far.test'), 2)
        self.assertEqual(cap.delivered_rcpts(), ['slow@far.test'])
        self.assertEqual(dsns(p), [], 'no DSN: delay warnings are off')

    def test_550_for_one_of_three_bounces_that_one(self):
        cap = self.capture(rcpt_reply=script({'bad@far.test': '550 5.1.1 no such user here'}))
        p = self.start_petrel([relay_route('*', cap.address)])
        mid = '<three-%s@client.test>' % os.urandom(4).hex()
        qid = self.submit(p, SENDER, ['good1@far.test', 'bad@far.test', 'good2@far.test'],
                          make_message('three', msgid=mid))
        wait_removed(p, qid)
        # The DSN is a new message from <> to the sender, delivered by the origin.test route
        # (here the same capture server).
        [(orig, dsn_id, to, action, n)] = dsns(p, qid)
        self.assertEqual((orig, to, action, n), (qid, SENDER, 'failed', 1))
        wait_removed(p, dsn_id)
        txns = cap.accepted()
        self.assertEqual(len(txns), 2, txns)
        orig_txn = [t for t in txns if t.sender == SENDER]
        dsn_txn = [t for t in txns if t.sender == '']
        self.assertEqual(len(orig_txn), 1, txns)
        self.assertEqual(len(dsn_txn), 1, txns)
        self.assertEqual(orig_txn[0].rcpts, ['good1@far.test', 'good2@far.test'])
        self.assertEqual(orig_txn[0].refused[0][0], 'bad@far.test')
        self.assertEqual(dsn_txn[0].rcpts, [SENDER])
        per_msg, per_rcpt, msg = dsn_fields(petrel.split_received(dsn_txn[0].data)[1])
        self.assertEqual(len(per_rcpt), 1, per_rcpt)
        r = per_rcpt[0]
        self.assertEqual(r['final-recipient'].replace(' ', '').lower(), 'rfc822;bad@far.test')
        self.assertEqual(r['action'], 'failed')
        self.assertRegex(r['status'], r'^5\.\d{1,3}\.\d{1,3}$')
        self.assertEqual(r['status'], '5.1.1')
        self.assertIn('550', r.get('diagnostic-code', ''))
        self.assertIn('petrel.test', per_msg.get('reporting-mta', ''))
        self.assertEqual(msg['To'].strip('<> '), SENDER)
        self.assertIn(mid.encode(), dsn_txn[0].data, 'the original header section is included')
        self.assertNotIn(b'good1@far.test', dsn_txn[0].data.split(b'\r\n\r\n', 1)[0])
        for good in ('good1@far.test', 'good2@far.test'):
            self.assertDelivered(p, qid, good, attempt=1)
        [b] = [d for d in deliveries(p, qid) if d.rcpt == 'bad@far.test']
        self.assertEqual((b.status, b.dsn), ('bounced', '5.1.1'))
        wait_queue_empty(p)

    def test_next_hop_down_then_up(self):
        hole = Hole()
        self.addCleanup(hole.release)
        p = self.start_petrel([relay_route('*', '127.0.0.1:%d' % hole.port)])
        qid = self.submit(p, SENDER, 'later@far.test', make_message('down then up'))
        wait_for(lambda: len([d for d in deliveries(p, qid) if d.status == 'deferred']) >= 2,
                 15, 'two deferrals while the next hop is down')
        hole.release()
        cap = self.capture(port=hole.port)
        wait_removed(p, qid, timeout=20)
        ds = deliveries(p, qid)
        self.assertEqual([d.status for d in ds if d.status != 'deferred'], ['sent'], ds)
        self.assertTrue(all(d.dsn.startswith('4.') for d in ds[:-1]), ds)
        self.assertEqual(ds[-1].attempt, len(ds))
        self.assertEqual(cap.delivered_rcpts(), ['later@far.test'])
        self.assertEqual(dsns(p), [])

    def test_greeting_421_then_delivered(self):
        cap = self.capture(greeting=lambda n: '421 4.3.2 busy, come back later' if n == 1
                           else '220 capture.test ESMTP')
        p = self.start_petrel([relay_route('*', cap.address)])
        qid = self.submit(p, SENDER, 'g@far.test', make_message('greeting'))
        wait_removed(p, qid)
        ds = deliveries(p, qid)
        self.assertEqual([(d.status, d.attempt) for d in ds], [('deferred', 1), ('sent', 2)],
                         ds)
        self.assertIn('421', ds[0].reply)
        self.assertEqual(cap.delivered_rcpts(), ['g@far.test'])
        self.assertEqual(len(cap.transactions), 1, 'no MAIL after a 421 greeting')

    def test_greeting_554_is_not_a_bounce(self):
        cap = self.capture(greeting=lambda n: '554 5.3.2 not now' if n == 1
                           else '220 capture.test ESMTP')
        p = self.start_petrel([relay_route('*', cap.address)])
        qid = self.submit(p, SENDER, 'g@far.test', make_message('greeting 554'))
        wait_removed(p, qid)
        ds = deliveries(p, qid)
        self.assertEqual([(d.status, d.attempt) for d in ds], [('deferred', 1), ('sent', 2)],
                         ds)
        self.assertEqual(cap.delivered_rcpts(), ['g@far.test'])

    def test_ehlo_refused_helo_fallback(self):
        cap = self.capture(ehlo_reply='502 5.5.2 EHLO not implemented')
        p = self.start_petrel([relay_route('*', cap.address)])
        content = make_message('helo')
        qid = self.submit(p, SENDER, 'h@far.test', content)
        wait_removed(p, qid)
        t = cap.accepted()[0]
        self.assertEqual(cap.connections[0].commands[:2], ['EHLO petrel.test',
                                                           'HELO petrel.test'])
        self.assertEqual(t.mail, 'MAIL FROM:<%s>' % SENDER, 'no ESMTP parameters after HELO')
        self.assertEqual(petrel.split_received(t.data)[1], content)

    def test_null_sender_permanent_failure_no_dsn(self):
        cap = self.capture(rcpt_reply=script({'gone@far.test': '550 5.1.1 gone'}))
        p = self.start_petrel([relay_route('*', cap.address)])
        qid = self.submit(p, '', 'gone@far.test', make_message('null sender'))
        wait_removed(p, qid)
        [d] = deliveries(p, qid)
        self.assertEqual((d.status, d.dsn), ('bounced', '5.1.1'))
        self.assertEqual(dsns(p), [], 'a null-sender message never gets a DSN')
        self.assertEqual(p.queue_all(), [])
        self.assertEqual(len(cap.transactions), 1)
        self.assertEqual(cap.accepted(), [])

    def test_mail_refused_bounces_every_recipient(self):
        cap = self.capture(mail_reply=lambda s, n: '553 5.7.1 sender rejected'
                           if s == SENDER else None)
        p = self.start_petrel([relay_route('*', cap.address)])
        qid = self.submit(p, SENDER, ['a@far.test', 'b@far.test'], make_message('refused'))
        wait_removed(p, qid)
        ds = deliveries(p, qid)
        self.assertEqual(sorted((d.rcpt, d.status, d.dsn) for d in ds),
                         [('a@far.test', 'bounced', '5.7.1'), ('b@far.test', 'bounced', '5.7.1')])
        [(_, dsn_id, to, action, n)] = dsns(p, qid)
        self.assertEqual((to, action, n), (SENDER, 'failed', 2))
        wait_removed(p, dsn_id)
        [t] = cap.accepted()
        self.assertEqual(t.sender, '')
        _, per_rcpt, _ = dsn_fields(petrel.split_received(t.data)[1])
        self.assertEqual(sorted(r['final-recipient'].split(';')[1].strip() for r in per_rcpt),
                         ['a@far.test', 'b@far.test'])

    def test_data_451_retried_data_554_bounced(self):
        def data_reply(t):
            if b'Subject: soft' in t.data and sum(
                    1 for x in cap.transactions if x.data and b'Subject: soft' in x.data) == 1:
                return '451 4.3.0 queue full, try later'
            if b'Subject: hard' in t.data:
                return '554 5.6.0 content rejected'
            return None
        cap = self.capture(data_reply=data_reply)
        p = self.start_petrel([relay_route('*', cap.address)])
        soft = self.submit(p, SENDER, 's@far.test', make_message('soft'))
        hard = self.submit(p, SENDER, 'h@far.test', make_message('hard'))
        wait_removed(p, [soft, hard])
        self.assertEqual([(d.status, d.attempt) for d in deliveries(p, soft)],
                         [('deferred', 1), ('sent', 2)])
        self.assertEqual([(d.status, d.dsn) for d in deliveries(p, hard)],
                         [('bounced', '5.6.0')])
        [(_, dsn_id, _, action, _)] = dsns(p, hard)
        self.assertEqual(action, 'failed')
        self.assertEqual(dsns(p, soft), [])
        wait_removed(p, dsn_id)
        soft_ok = [t for t in cap.accepted() if b'Subject: soft' in t.data]
        self.assertEqual(len(soft_ok), 1)

    def test_large_message_byte_exact(self):
        cap = self.capture()
        p = self.start_petrel([relay_route('*', cap.address)])
        content = make_message('big', big_body(3 * 1024 * 1024, 7))
        qid = self.submit(p, SENDER, 'big@far.test', content)
        wait_removed(p, qid, timeout=30)
        [t] = cap.accepted()
        self.assertEqual(petrel.split_received(t.data)[1], content)

    def test_connection_lost_after_the_data_retried(self):
        # The next hop drops the connection instead of answering the data: no 250, so petrel
        # must try again (RFC 5321 6.1), and the second copy is the one delivered.
        cap = self.capture(data_reply=lambda t: CLOSE if len(cap.transactions) == 1 else None)
        p = self.start_petrel([relay_route('*', cap.address)])
        qid = self.submit(p, SENDER, 'u@far.test', make_message('dropped'))
        wait_removed(p, qid)
        ds = deliveries(p, qid)
        self.assertEqual([(d.status, d.attempt) for d in ds], [('deferred', 1), ('sent', 2)])
        self.assertEqual(ds[0].dsn, '4.4.2')
        self.assertEqual(len(cap.accepted()), 1)

    def test_recipient_limit_of_the_next_hop(self):
        # 452 4.5.3 past 100 recipients per transaction: the rest go in later transactions.
        cap = self.capture(max_rcpts=100)
        p = self.start_petrel([relay_route('*', cap.address)])
        rcpts = ['u%03d@far.test' % i for i in range(250)]
        qid = self.submit(p, SENDER, rcpts, make_message('many'))
        wait_removed(p, qid, timeout=30)
        self.assertEqual(sorted(cap.delivered_rcpts()), rcpts, 'each exactly once')
        self.assertGreaterEqual(len(cap.accepted()), 3)
        self.assertTrue(all(len(t.rcpts) <= 100 for t in cap.accepted()))
        self.assertEqual(dsns(p), [])

    def test_replies_without_enhanced_codes(self):
        cap = self.capture(extensions=('PIPELINING',),
                           rcpt_reply=script({'bad@far.test': '550 no such user'}),
                           data_reply=lambda t: '250 ok')
        p = self.start_petrel([relay_route('*', cap.address)])
        qid = self.submit(p, SENDER, ['bad@far.test', 'good@far.test'], make_message('plain'))
        wait_removed(p, qid)
        ds = {d.rcpt: d for d in deliveries(p, qid)}
        self.assertEqual((ds['bad@far.test'].status, ds['bad@far.test'].dsn), ('bounced', '5.0.0'))
        self.assertEqual((ds['good@far.test'].status, ds['good@far.test'].dsn), ('sent', '2.0.0'))
        [(_, dsn_id, _, _, _)] = dsns(p, qid)
        wait_removed(p, dsn_id)
        [t] = [t for t in cap.accepted() if t.sender == '']
        _, [r], _ = dsn_fields(petrel.split_received(t.data)[1])
        self.assertEqual(r['status'], '5.0.0')
        self.assertIn('550 no such user', r.get('diagnostic-code', ''))

    def test_message_too_big_for_the_next_hop(self):
        cap = self.capture(extensions=('PIPELINING', 'SIZE 2000'))
        p = self.start_petrel([relay_route('far.test', cap.address),
                               {'domain': ORIGIN, 'discard': True}])
        qid = self.submit(p, SENDER, 'u@far.test', make_message('big', 'x' * 70 + '\r\n') * 40)
        wait_removed(p, qid)
        [d] = deliveries(p, qid)
        self.assertEqual((d.status, d.dsn), ('bounced', '5.3.4'), d)
        self.assertEqual(cap.transactions, [], 'not even MAIL')
        self.assertEqual(len(dsns(p, qid)), 1)

    def test_smtputf8(self):
        utf8 = self.capture(extensions=('PIPELINING', '8BITMIME', 'SMTPUTF8'))
        ascii_only = self.capture(extensions=('PIPELINING', '8BITMIME'))
        p = self.start_petrel([relay_route('utf8.test', utf8.address),
                               relay_route('ascii.test', ascii_only.address),
                               {'domain': ORIGIN, 'discard': True}])
        content = make_message('utf8', 'gr\u00fc\u00dfe\r\n')
        q1 = self.submit(p, SENDER, 'j\u00f6rg@utf8.test', content,
                         mail_params='SMTPUTF8 BODY=8BITMIME')
        q2 = self.submit(p, SENDER, 'j\u00f6rg@ascii.test', content,
                         mail_params='SMTPUTF8 BODY=8BITMIME')
        wait_removed(p, [q1, q2])
        [t] = utf8.accepted()
        self.assertIn(' SMTPUTF8', t.mail)
        self.assertEqual(t.rcpts, ['j\u00f6rg@utf8.test'])
        self.assertEqual(petrel.split_received(t.data)[1], content)
        [d] = deliveries(p, q2)
        self.assertEqual((d.status, d.dsn), ('bounced', '5.6.7'), d)
        self.assertEqual(ascii_only.transactions, [])

    def test_dsn_fields_from_envid_orcpt_and_ret_full(self):
        cap = self.capture(extensions=('PIPELINING',),
                           rcpt_reply=lambda a, n: '550 5.1.1 unknown' if a.startswith('bad')
                           else None)
        p = self.start_petrel([relay_route('*', cap.address)])
        full = make_message('ret full', 'the whole body\r\n.with a dot\r\n')
        q1 = self.submit(p, SENDER, 'bad1@far.test', full,
                         mail_params='RET=FULL ENVID=my+2Benvelope',
                         rcpt_params='ORCPT=rfc822;Original+40far.test')
        q2 = self.submit(p, SENDER, 'bad2@far.test', make_message('ret hdrs', 'secret\r\n'))
        wait_removed(p, [q1, q2])
        ids = {orig: dsn for orig, dsn, _, _, _ in dsns(p)}
        wait_removed(p, [ids[q1], ids[q2]])
        by_rcpt = {}
        for t in cap.accepted():
            per_msg, [r], msg = dsn_fields(petrel.split_received(t.data)[1])
            by_rcpt[r['final-recipient'].split(';')[1].strip()] = (per_msg, r, msg, t.data)
        per_msg, r, msg, data = by_rcpt['bad1@far.test']
        self.assertEqual(per_msg.get('original-envelope-id'), 'my+envelope')
        self.assertEqual(r.get('original-recipient', '').replace(' ', ''),
                         'rfc822;Original@far.test')
        parts = [x.get_content_type() for x in msg.get_payload()]
        self.assertEqual(parts[2], 'message/rfc822', parts)
        self.assertIn(b'\r\n\r\nthe whole body\r\n.with a dot\r\n', data, 'the whole original')
        _, r2, msg2, data2 = by_rcpt['bad2@far.test']
        parts = [x.get_content_type() for x in msg2.get_payload()]
        self.assertEqual(parts[2], 'text/rfc822-headers', parts)
        self.assertNotIn(b'secret', data2, 'headers only without RET=FULL')

    def test_dsn_of_an_8bit_message_is_8bitmime(self):
        cap = self.capture(rcpt_reply=lambda a, n: '550 5.1.1 unknown'
                           if a.startswith('bad') else None)
        p = self.start_petrel([relay_route('*', cap.address)])
        qid = self.submit(p, SENDER, 'bad@far.test', make_message('caf\u00e9', 'b\u00fcro\r\n'),
                          mail_params='BODY=8BITMIME RET=FULL')
        wait_removed(p, qid)
        [(_, dsn_id, _, _, _)] = dsns(p, qid)
        wait_removed(p, dsn_id)
        [t] = cap.accepted()
        self.assertEqual(t.sender, '')
        self.assertIn(' BODY=8BITMIME', t.mail, 'the DSN carries 8-bit text')
        self.assertIn('caf\u00e9'.encode(), t.data)

    def test_dsn_to_a_utf8_sender_uses_smtputf8(self):
        # RFC 6531 3.4: an envelope with a UTF-8 address needs SMTPUTF8 on MAIL; the DSN's
        # recipient is the original (UTF-8) sender.
        cap = self.capture(extensions=('PIPELINING', '8BITMIME', 'SMTPUTF8'),
                           rcpt_reply=lambda a, n: '550 5.1.1 unknown'
                           if a.startswith('bad') else None)
        p = self.start_petrel([relay_route('*', cap.address)])
        sender = 'j\u00f6rg@' + ORIGIN
        qid = self.submit(p, sender, 'bad@far.test', make_message('utf8 sender'),
                          mail_params='SMTPUTF8')
        wait_removed(p, qid)
        [(_, dsn_id, to, _, _)] = dsns(p, qid)
        self.assertEqual(to, sender)
        wait_removed(p, dsn_id)
        [t] = cap.accepted()
        self.assertEqual(t.rcpts, [sender])
        self.assertIn(' SMTPUTF8', t.mail, 'MAIL FROM:<> of the DSN: %r' % t.mail)

    def test_bounce_of_a_bounce_is_dropped(self):
        # The sender's own address refuses the DSN: the DSN (from <>) bounces without a DSN.
        cap = self.capture(rcpt_reply=lambda a, n: '550 5.1.1 unknown'
                           if a.startswith('bad') else None)
        p = self.start_petrel([relay_route('*', cap.address)])
        qid = self.submit(p, 'bad-sender@' + ORIGIN, 'bad@far.test', make_message('double'))
        wait_removed(p, qid)
        [(_, dsn_id, _, _, _)] = dsns(p, qid)
        wait_removed(p, dsn_id)
        [d] = deliveries(p, dsn_id)
        self.assertEqual((d.rcpt, d.status), ('bad-sender@' + ORIGIN, 'bounced'))
        self.assertEqual(dsns(p, dsn_id), [])
        wait_queue_empty(p)
        self.assertEqual(cap.accepted(), [])


class Protocol(DeliveryCase):
    """What petrel's SMTP client sends, by what the next hop offers."""

    def test_pipelining_when_offered(self):
        cap = self.capture(extensions=('PIPELINING', 'ENHANCEDSTATUSCODES'))
        p = self.start_petrel([relay_route('*', cap.address)])
        qid = self.submit(p, SENDER, ['a@far.test', 'b@far.test'], make_message('pipe'))
        wait_removed(p, qid)
        batches = cap.connections[0].batches
        self.assertIn(['MAIL FROM:<%s>' % SENDER, 'RCPT TO:<a@far.test>',
                       'RCPT TO:<b@far.test>', 'DATA'], batches)

    def test_no_pipelining_one_command_per_reply(self):
        cap = self.capture(extensions=('ENHANCEDSTATUSCODES',))
        p = self.start_petrel([relay_route('*', cap.address)])
        qid = self.submit(p, SENDER, ['a@far.test', 'b@far.test'], make_message('lockstep'))
        wait_removed(p, qid)
        conn = cap.connections[0]
        self.assertEqual(conn.commands[:5], ['EHLO petrel.test', 'MAIL FROM:<%s>' % SENDER,
                                             'RCPT TO:<a@far.test>', 'RCPT TO:<b@far.test>',
                                             'DATA'])
        self.assertTrue(all(len(b) == 1 for b in conn.batches), conn.batches)

    def test_dsn_parameters_only_when_offered(self):
        with_dsn = self.capture(extensions=('PIPELINING', 'DSN'))
        without = self.capture(extensions=('PIPELINING',))
        p = self.start_petrel([relay_route('dsn.test', with_dsn.address),
                               relay_route('nodsn.test', without.address),
                               relay_route(ORIGIN, with_dsn.address)])
        q1 = self.submit(p, SENDER, 'a@dsn.test', make_message('d1'),
                         mail_params='RET=HDRS ENVID=env+2Did',
                         rcpt_params='NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@dsn.test')
        q2 = self.submit(p, SENDER, 'a@nodsn.test', make_message('d2'),
                         mail_params='RET=HDRS ENVID=env+2Did',
                         rcpt_params='NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@nodsn.test')
        wait_removed(p, [q1, q2])
        [t1] = with_dsn.accepted()
        [t2] = without.accepted()
        self.assertIn(' RET=HDRS', t1.mail)
        self.assertIn(' ENVID=env+2Did', t1.mail)
        self.assertEqual(t1.rcpt_lines,
                         ['RCPT TO:<a@dsn.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@dsn.test'])
        self.assertNotIn('RET=', t2.mail)
        self.assertNotIn('ENVID=', t2.mail)
        self.assertEqual(t2.rcpt_lines, ['RCPT TO:<a@nodsn.test>'])

    def test_notify_never_suppresses_the_bounce(self):
        cap = self.capture(extensions=('PIPELINING',),
                           rcpt_reply=script({'never@far.test': '550 5.1.1 no',
                                              'failure@far.test': '550 5.1.1 no'}))
        p = self.start_petrel([relay_route('*', cap.address)])
        q1 = self.submit(p, SENDER, 'never@far.test', make_message('n1'),
                         rcpt_params='NOTIFY=NEVER')
        q2 = self.submit(p, SENDER, 'failure@far.test', make_message('n2'),
                         rcpt_params='NOTIFY=FAILURE')
        wait_removed(p, [q1, q2])
        self.assertEqual(dsns(p, q1), [], 'NOTIFY=NEVER: no DSN')
        self.assertEqual(len(dsns(p, q2)), 1, 'NOTIFY=FAILURE: a DSN')

    def test_connection_reused_with_rset_after_a_failed_transaction(self):
        cap = self.capture(mail_reply=lambda s, n: '550 5.7.1 not you'
                           if s.startswith('refused@') else None)
        cap.close_gate()    # hold the first final reply until every message is queued
        p = self.start_petrel([relay_route('far.test', cap.address),
                               {'domain': ORIGIN, 'discard': True}],
                              queue=queue_config(concurrency_per_destination=1))
        qids = [self.submit(p, SENDER, 'a@far.test', make_message('m1'))]
        wait_for(lambda: len(cap.transactions) == 1, 10, 'the first transaction')
        qids.append(self.submit(p, 'refused@' + ORIGIN, 'b@far.test', make_message('m2')))
        qids.append(self.submit(p, SENDER, 'c@far.test', make_message('m3')))
        qids.append(self.submit(p, SENDER, 'd@far.test', make_message('m4')))
        cap.open_gate()
        wait_removed(p, qids)
        self.assertEqual(len(cap.connections), 1, 'one connection for the whole destination')
        cmds = [c.split(':')[0].split(' ')[0] for c in cap.connections[0].commands]
        mails = [i for i, c in enumerate(cmds) if c == 'MAIL']
        self.assertEqual(len(mails), 4, cap.connections[0].commands)
        self.assertNotIn('RSET', cmds[:mails[1]], 'no RSET after a good transaction')
        self.assertIn('RSET', cmds[mails[1]:mails[2]], 'RSET after the refused MAIL')
        self.assertEqual(cap.delivered_rcpts(), ['a@far.test', 'c@far.test', 'd@far.test'])
        [d] = deliveries(p, qids[1])
        self.assertEqual((d.status, d.dsn), ('bounced', '5.7.1'))

    def test_reused_connection_names_its_server(self):
        # The log's relay= (and a DSN's Remote-MTA) name the server on a reused connection too.
        cap = self.capture(rcpt_reply=script({'bad@far.test': '550 5.1.1 no such user'}))
        cap.close_gate()
        p = self.start_petrel([relay_route('*', cap.address)],
                              queue=queue_config(concurrency_per_destination=1))
        first = self.submit(p, SENDER, 'a@far.test', make_message('first'))
        wait_for(lambda: len(cap.transactions) == 1, 10, 'the first transaction')
        second = self.submit(p, SENDER, 'bad@far.test', make_message('second'))
        cap.open_gate()
        wait_removed(p, [first, second])
        [(_, dsn_id, _, _, _)] = dsns(p, second)
        wait_removed(p, dsn_id)
        self.assertEqual(len(cap.connections), 1)
        want = '127.0.0.1[127.0.0.1]:%d' % cap.port
        self.assertEqual([(d.id, d.relay) for d in deliveries(p)],
                         [(first, want), (second, want), (dsn_id, want)])
        dsn = [t for t in cap.accepted() if t.sender == ''][0]
        _, [r], _ = dsn_fields(petrel.split_received(dsn.data)[1])
        self.assertIn('127.0.0.1', r.get('remote-mta', ''), r)

    def test_concurrency_per_destination(self):
        cap = self.capture()
        barrier = self.capture()
        p = self.start_petrel([relay_route('far.test', cap.address),
                               relay_route('barrier.test', barrier.address)],
                              queue=queue_config(concurrency_per_destination=2))
        cap.close_gate()
        qids = [self.submit(p, SENDER, 'r%d@far.test' % i, make_message('c%d' % i))
                for i in range(6)]
        wait_for(lambda: cap.waiting_count() == 2, 10, 'two deliveries at the gate')
        # Anything dispatched before this message has connected by the time it arrives.
        b = self.submit(p, SENDER, 'x@barrier.test', make_message('barrier'))
        wait_removed(p, b)
        self.assertEqual(len(cap.connections), 2, 'at most 2 sessions to one destination')
        self.assertEqual(cap.waiting_count(), 2)
        cap.open_gate()
        wait_removed(p, qids)
        self.assertEqual(len(cap.connections), 2, 'the other 4 reuse the 2 connections')
        self.assertEqual(sorted(cap.delivered_rcpts()), ['r%d@far.test' % i for i in range(6)])

    def test_1000_recipients_50_domains_one_relay(self):
        # 50 units (one per domain) share one destination, its 3 slots and its connections.
        cap = self.capture()
        p = self.start_petrel([relay_route('*', cap.address)],
                              queue=queue_config(concurrency_per_destination=3))
        rcpts = ['u%03d@d%02d.test' % (i, i % 50) for i in range(1000)]
        c = self.connect(p, timeout=30)
        self.assertReply(c.ehlo(), 250)
        self.assertReply(c.mail(SENDER), 250, '2.1.0')
        c.send(''.join('RCPT TO:<%s>\r\n' % r for r in rcpts))
        self.assertEqual({x.code for x in c.read_replies(1000, timeout=30)}, {250})
        _, r = c.data(make_message('thousand'), timeout=30)
        wait_removed(p, r.queue_id, timeout=40)
        self.assertEqual(sorted(cap.delivered_rcpts()), sorted(rcpts), 'each exactly once')
        self.assertEqual(len(cap.accepted()), 50, 'one transaction per domain')
        self.assertLessEqual(cap.max_open, 3, 'sessions open at once')

    def test_server_closing_after_each_message(self):
        # A server that takes one message per connection (421 to the next MAIL): everything
        # still arrives exactly once.
        cap = self.capture(max_per_connection=1)
        p = self.start_petrel([relay_route('*', cap.address)],
                              queue=queue_config(concurrency_per_destination=1))
        cap.close_gate()
        qids = [self.submit(p, SENDER, 'r%d@far.test' % i, make_message('m%d' % i))
                for i in range(4)]
        cap.open_gate()
        wait_removed(p, qids, timeout=30)
        self.assertEqual(sorted(cap.delivered_rcpts()), ['r%d@far.test' % i for i in range(4)])
        self.assertEqual(dsns(p), [])

    def test_relay_to_own_listener_is_a_loop(self):
        port = petrel.free_port()
        p = self.start_petrel([relay_route('far.test', '127.0.0.1:%d' % port),
                               {'domain': ORIGIN, 'discard': True}], port=port)
        qid = self.submit(p, SENDER, 'x@far.test', make_message('loop'))
        wait_removed(p, qid)
        [d] = deliveries(p, qid)
        self.assertEqual((d.status, d.dsn), ('bounced', '5.4.6'), d)
        self.assertEqual(len(dsns(p, qid)), 1)

    def test_too_many_received_headers_is_a_loop(self):
        cap = self.capture()
        p = self.start_petrel([relay_route('*', cap.address)])
        hop = 'Received: from a.test by b.test; Mon, 1 Jan 2024 00:00:00 +0000\r\n'
        # petrel adds one: 49 + 1 = 50 is still fine, 50 + 1 = 51 is a loop.
        ok = self.submit(p, SENDER, 'ok@far.test', (hop * 49).encode() + make_message(
            '49', body=hop * 60))      # Received: lines in the body do not count
        loop = self.submit(p, SENDER, 'loop@far.test', (hop * 50).encode() + make_message('50'))
        wait_removed(p, [ok, loop])
        self.assertDelivered(p, ok, 'ok@far.test')
        [d] = deliveries(p, loop)
        self.assertEqual((d.status, d.dsn), ('bounced', '5.4.6'), d)
        [(_, dsn_id, _, _, _)] = dsns(p, loop)
        wait_removed(p, dsn_id)
        self.assertEqual(sorted(r for t in cap.accepted() for r in t.rcpts),
                         ['ok@far.test', SENDER])


if __name__ == '__main__':
    petrel.main()
