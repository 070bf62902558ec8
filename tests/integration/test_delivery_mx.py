#!/usr/bin/python3
"""
test_delivery_mx.py: `mx: true` routes against a private dnsmasq (MX, A and null MX records on a
free 127.0.0.1 port): MX preference order and fallback to the next MX, the implicit MX (A record)
when there is none, null MX (556 5.1.10) and NXDOMAIN (550 5.1.2) bounces, our own host name as
the best MX (a loop), a temporary DNS failure (deferred), and one message to 1,000 recipients in
50 domains, each delivered exactly once.

Addresses: the next hop listens on 127.0.0.1 only; an MX that "refuses connections" points at
127.0.0.2, where nothing listens.
"""

import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import make_message  # noqa: E402
from nexthop import (ORIGIN, DeliveryCase, deliveries, dsn_fields, dsns,  # noqa: E402
                     maildir_files, mx_route, queue_config, read, wait_queue_empty,
                     wait_removed)

SENDER = 'sender@' + ORIGIN


class MX(DeliveryCase):
    TEST_TIMEOUT = 60

    def setUp(self):
        super().setUp()
        self.cap = self.capture()

    def petrel_for(self, dns, routes=None, queue=None):
        p = self.start_petrel([], queue=queue, start=False,
                              dns={'nameservers': [dns.nameserver]})
        self.bounces = os.path.join(p.workdir, 'bounces')
        p.overrides['routes'] = (routes or []) + [
            {'domain': ORIGIN, 'maildir': self.bounces},
            mx_route('*', self.cap.port)]
        p.start()
        return p

    def bounce_of(self, p, qid):
        [(_, dsn_id, to, action, n)] = dsns(p, qid)
        self.assertEqual((to, action), (SENDER, 'failed'))
        wait_removed(p, dsn_id)
        [f] = maildir_files(self.bounces)
        return dsn_fields(read(f))

    def test_best_mx_refuses_second_mx_delivers(self):
        dns = self.dnsmasq(mx=[('a.test', 'mx1.a.test', 10), ('a.test', 'mx2.a.test', 20)],
                           hosts={'mx1.a.test': '127.0.0.2', 'mx2.a.test': '127.0.0.1'})
        p = self.petrel_for(dns)
        content = make_message('mx fallback')
        qid = self.submit(p, SENDER, 'u@a.test', content)
        wait_removed(p, qid)
        d = self.assertDelivered(p, qid, 'u@a.test', attempt=1, route='mx')
        self.assertEqual(d.relay, 'mx2.a.test[127.0.0.1]:%d' % self.cap.port)
        p.wait_log(r'smtp-out target failed host=mx1\.a\.test ')
        self.assertEqual(self.cap.delivered_rcpts(), ['u@a.test'])
        self.assertEqual(petrel.split_received(self.cap.accepted()[0].data)[1], content)

    def test_best_mx_preferred(self):
        # The better MX works: the worse one (refusing) is never needed.
        dns = self.dnsmasq(mx=[('b.test', 'mx9.b.test', 90), ('b.test', 'mx1.b.test', 5)],
                           hosts={'mx9.b.test': '127.0.0.2', 'mx1.b.test': '127.0.0.1'})
        p = self.petrel_for(dns)
        qid = self.submit(p, SENDER, 'u@b.test', make_message('best'))
        wait_removed(p, qid)
        d = self.assertDelivered(p, qid, 'u@b.test', attempt=1)
        self.assertEqual(d.relay, 'mx1.b.test[127.0.0.1]:%d' % self.cap.port)
        self.assertNotIn('host=mx9.b.test', p.log())

    def test_no_mx_uses_the_a_record(self):
        dns = self.dnsmasq(hosts={'nomx.test': '127.0.0.1'})
        p = self.petrel_for(dns)
        qid = self.submit(p, SENDER, 'u@nomx.test', make_message('implicit mx'))
        wait_removed(p, qid)
        d = self.assertDelivered(p, qid, 'u@nomx.test', attempt=1)
        self.assertEqual(d.relay, 'nomx.test[127.0.0.1]:%d' % self.cap.port)
        self.assertEqual(self.cap.delivered_rcpts(), ['u@nomx.test'])

    def test_null_mx_bounces_5_1_10(self):
        dns = self.dnsmasq(null_mx=['nullmx.test'], hosts={'nullmx.test': '127.0.0.1'})
        p = self.petrel_for(dns)
        qid = self.submit(p, SENDER, 'u@nullmx.test', make_message('null mx'))
        wait_removed(p, qid)
        [d] = deliveries(p, qid)
        self.assertEqual((d.status, d.dsn), ('bounced', '5.1.10'), d)
        self.assertTrue(d.reply.startswith('556 5.1.10'), d)
        _, [r], _ = self.bounce_of(p, qid)
        self.assertEqual(r['final-recipient'].replace(' ', ''), 'rfc822;u@nullmx.test')
        self.assertEqual((r['action'], r['status']), ('failed', '5.1.10'))
        self.assertEqual(self.cap.transactions, [], 'nothing sent to the A record')

    def test_nxdomain_bounces_5_1_2(self):
        dns = self.dnsmasq(hosts={'exists.test': '127.0.0.1'})
        p = self.petrel_for(dns)
        qid = self.submit(p, SENDER, 'u@nowhere.test', make_message('nxdomain'))
        wait_removed(p, qid)
        [d] = deliveries(p, qid)
        self.assertEqual((d.status, d.dsn), ('bounced', '5.1.2'), d)
        _, [r], _ = self.bounce_of(p, qid)
        self.assertEqual((r['action'], r['status']), ('failed', '5.1.2'))

    def test_mx_hosts_without_addresses_bounce_5_4_4(self):
        # dns.h: when no exchanger has an address (every lookup NXDOMAIN/NODATA): permanent.
        dns = self.dnsmasq(mx=[('noaddr.test', 'ghost.noaddr.test', 10)],
                           hosts={'other.test': '127.0.0.1'})
        p = self.petrel_for(dns)
        qid = self.submit(p, SENDER, 'u@noaddr.test', make_message('no address'))
        wait_removed(p, qid)
        [d] = deliveries(p, qid)
        self.assertEqual((d.status, d.dsn), ('bounced', '5.4.4'), d)
        self.assertEqual(self.cap.transactions, [])

    def test_dns_failure_is_temporary(self):
        # dnsmasq answers REFUSED outside its local domains: a temporary failure (4.4.3).
        dns = self.dnsmasq(hosts={'exists.test': '127.0.0.1'})
        p = self.petrel_for(dns, queue=queue_config(retry='1h'))
        qid = self.submit(p, SENDER, 'u@elsewhere.example', make_message('tempfail'))
        p.wait_log(r'%s delivery to=<u@elsewhere\.example> .*status=deferred dsn=4\.4\.3' % qid)
        self.assertEqual(p.queue_ids(), [qid])
        self.assertEqual(dsns(p), [])

    def test_sigterm_during_a_dns_lookup(self):
        # A nameserver that never answers: the lookup is under way when SIGTERM comes; petrel
        # stops at once (nothing was sent anywhere) and the message stays queued.
        mute = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(mute.close)
        mute.bind(('127.0.0.1', 0))
        mute.settimeout(10)
        p = self.start_petrel([mx_route('*', self.cap.port)],
                              dns={'nameservers': ['127.0.0.1:%d' % mute.getsockname()[1]]})
        qid = self.submit(p, SENDER, 'u@slow-dns.test', make_message('dns'))
        mute.recvfrom(512)                  # the MX query has been sent
        self.assertEqual(p.stop(), 0)       # within the fixture's deadline, not c-ares' 75 s
        self.assertEqual(p.queue_ids(), [qid])
        self.assertEqual(deliveries(p, qid), [])
        p.restart()
        p.wait_log(r'spool message id=%s ' % qid)

    def test_own_hostname_as_best_mx_is_a_loop(self):
        # petrel.test (our hostname) is the best MX of loop.test: the worse MX must not be used
        # (RFC 5321 5.1). For ok.test a better MX than ours exists: delivered there.
        dns = self.dnsmasq(mx=[('loop.test', petrel.HOSTNAME, 10),
                               ('loop.test', 'backup.test', 20),
                               ('ok.test', petrel.HOSTNAME, 10),
                               ('ok.test', 'primary.test', 5)],
                           hosts={petrel.HOSTNAME: '127.0.0.3', 'backup.test': '127.0.0.1',
                                  'primary.test': '127.0.0.1'})
        p = self.petrel_for(dns)
        loop = self.submit(p, SENDER, 'u@loop.test', make_message('loop'))
        ok = self.submit(p, SENDER, 'u@ok.test', make_message('ok'))
        wait_removed(p, [loop, ok])
        [d] = deliveries(p, loop)
        self.assertEqual((d.status, d.dsn), ('bounced', '5.4.6'), d)
        d = self.assertDelivered(p, ok, 'u@ok.test')
        self.assertTrue(d.relay.startswith('primary.test['), d)
        self.assertEqual(self.cap.delivered_rcpts(), ['u@ok.test'])

    def test_mx_pointing_at_our_own_listener_is_a_loop(self):
        dns = self.dnsmasq(mx=[('self.test', 'me.test', 10)], hosts={'me.test': '127.0.0.1'})
        port = petrel.free_port()
        p = self.start_petrel([mx_route('self.test', port),
                               {'domain': ORIGIN, 'discard': True}],
                              dns={'nameservers': [dns.nameserver]}, port=port)
        qid = self.submit(p, SENDER, 'u@self.test', make_message('self'))
        wait_removed(p, qid)
        [d] = deliveries(p, qid)
        self.assertEqual((d.status, d.dsn), ('bounced', '5.4.6'), d)

    def test_relay_by_host_name(self):
        dns = self.dnsmasq(hosts={'smarthost.test': '127.0.0.1'})
        p = self.petrel_for(dns, routes=[
            {'domain': 'far.example', 'relay': 'smarthost.test:%d' % self.cap.port,
             'tls': 'none'}])
        qid = self.submit(p, SENDER, 'u@far.example', make_message('smarthost'))
        wait_removed(p, qid)
        d = self.assertDelivered(p, qid, 'u@far.example', route='relay')
        self.assertEqual(d.relay, 'smarthost.test[127.0.0.1]:%d' % self.cap.port)
        self.assertEqual(self.cap.delivered_rcpts(), ['u@far.example'])

    def test_1000_recipients_in_50_domains(self):
        domains = ['d%02d.test' % i for i in range(50)]
        dns = self.dnsmasq(mx=[(d, 'hub.test', 10) for d in domains],
                           hosts={'hub.test': '127.0.0.1'})
        # Few sessions at once, so units wait for a slot (per destination and in all).
        p = self.petrel_for(dns, queue=queue_config(concurrency=4,
                                                    concurrency_per_destination=2))
        rcpts = ['u%03d@%s' % (i, domains[i % 50]) for i in range(1000)]
        c = self.connect(p, timeout=30)
        self.assertReply(c.ehlo(), 250)
        self.assertReply(c.mail(SENDER), 250, '2.1.0')
        c.send(''.join('RCPT TO:<%s>\r\n' % r for r in rcpts))     # pipelined
        replies = c.read_replies(1000, timeout=30)
        self.assertEqual({(r.code, r.enhanced) for r in replies}, {(250, '2.1.5')})
        r354, r = c.data(make_message('one thousand'), timeout=30)
        qid = r.queue_id
        self.assertTrue(qid, r)
        wait_removed(p, qid, timeout=45)
        got = self.cap.delivered_rcpts()
        self.assertEqual(len(got), 1000, 'deliveries at the next hop')
        self.assertEqual(sorted(got), sorted(rcpts), 'every recipient exactly once')
        for t in self.cap.accepted():
            self.assertEqual(len({a.split('@')[1] for a in t.rcpts}), 1,
                             'one domain per transaction')
        sent = [d for d in deliveries(p, qid) if d.status == 'sent']
        self.assertEqual(len(sent), 1000)
        self.assertEqual(len({d.rcpt for d in sent}), 1000)
        self.assertEqual(dsns(p), [])
        wait_queue_empty(p)


if __name__ == '__main__':
    petrel.main()
