#!/usr/bin/python3
"""
test_hostile.py: clients that break the rules: over-long lines, bare LF/CR (SMTP smuggling),
NUL and 8-bit bytes, too many errors, too many connections, idle and slowloris clients, and a
client that floods pipelined commands without reading its replies.
"""

import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import PetrelTestCase, make_message  # noqa: E402

SMUGGLED = (b'MAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@localhost>\r\nDATA\r\n'
            b'Subject: smuggled\r\n\r\nSMUGGLED-BODY\r\n')


def rss_kib(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0


class Hostile(PetrelTestCase):
    CONFIG = {'durability': 'none'}

    def session(self):
        c = self.connect()
        self.assertReply(c.ehlo(), 250)
        return c

    def in_data(self):
        c = self.session()
        self.assertReply(c.mail('a@example.org'), 250, '2.1.0')
        self.assertReply(c.rcpt('user@localhost'), 250, '2.1.5')
        self.assertReply(c.cmd('DATA'), 354)
        return c

    def assertNothingSmuggled(self, before):
        after = self.petrel.queue_ids()
        for qid in set(after) - set(before):
            m = self.petrel.message(qid)
            self.assertNotIn(b'SMUGGLED-BODY', m.data, 'smuggled message %s spooled' % qid)
            self.fail('a message was spooled: %s %r' % (qid, m.data[:300]))
        self.assertEqual(self.petrel.spool_strays(), [], 'no stray slot file')

    # -- command lines --
    def test_command_512_octets_ok_513_too_long(self):
        c = self.session()
        self.assertReply(c.cmd('NOOP ' + 'x' * 505), 250, '2.0.0')      # 510 + CRLF = 512
        self.assertReply(c.cmd('NOOP ' + 'x' * 506), 500, '5.5.6')      # 513
        self.assertReply(c.cmd('NOOP'), 250, '2.0.0')

    def test_line_too_long_resyncs(self):
        c = self.session()
        c.send(b'MAIL FROM:<a@example.org> ' + b'X' * 1000 + b'\r\nMAIL FROM:<b@example.org>\r\n')
        self.assertReply(c.read_reply(), 500, '5.5.6')
        self.assertReply(c.read_reply(), 250, '2.1.0')
        self.assertReply(c.rcpt('user@localhost'), 250, '2.1.5')
        _, r = c.data(make_message('after long line'))
        self.assertReply(r, 250, '2.0.0')
        self.assertEqual(self.petrel.message(r.queue_id).sender, 'b@example.org')

    def test_huge_line_in_pieces_one_reply(self):
        """100 KB without CRLF, sent in pieces: one 500 5.5.6, the tail is discarded up to its
        CRLF, and a command hidden in the tail is never run."""
        c = self.session()
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(10):
            c.send(b'A' * 10000)
            time.sleep(0.02)
        c.send(b' QUIT\r\nNOOP\r\nVRFY x\r\n')
        self.assertReply(c.read_reply(), 500, '5.5.6')
        self.assertReply(c.read_reply(), 250, '2.0.0')
        self.assertReply(c.read_reply(), 252, '2.5.0')
        self.assertTrue(c.is_open(), 'the hidden QUIT was not obeyed')

    def test_nul_bytes_in_command(self):
        c = self.session()
        self.assertReply(c.cmd(b'\x00' * 100), 501, '5.5.2')
        self.assertReply(c.cmd(b'NOOP\x00'), 501, '5.5.2')
        self.assertReply(c.mail('a@example.org'), 250, '2.1.0')
        self.assertReply(c.cmd(b'RCPT TO:<user\x00@localhost>'), 501, '5.5.2')
        self.assertReply(c.cmd('NOOP'), 250, '2.0.0')

    def test_8bit_bytes_in_command(self):
        c = self.session()
        self.assertReply(c.cmd(b'NOOP \xff\xfe\x80'), 501, '5.5.2')
        self.assertReply(c.cmd(b'HELO \xc3\xa9t\xc3\xa9'), 501, '5.5.2')
        r = c.cmd(b'\xff\xfe\xfd\xfc')
        self.assertIn((r.code, r.enhanced), [(500, '5.5.1'), (501, '5.5.2')], r)
        self.assertReply(c.cmd('NOOP'), 250, '2.0.0')

    def test_telnet_and_tls_garbage(self):
        """A TLS ClientHello and telnet negotiation bytes instead of SMTP: refused, no crash."""
        c = self.connect()
        noise = bytes(b for b in os.urandom(256) if b not in b'\r\n')[:64]   # one line
        c.send(b'\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03' + noise + b'\r\n')
        c.send(b'\xff\xfb\x1f\xff\xfb\x20\r\n')
        for _ in range(2):
            r = c.read_reply()
            self.assertIn(r.code, (500, 501), r)
        self.assertReply(c.cmd('NOOP'), 250, '2.0.0')

    # -- DATA: text lines --
    def test_text_line_1000_ok_1001_refused(self):
        c = self.in_data()
        ok = make_message('1000', 'y' * 998 + '\r\n')
        c.send(ok + b'.\r\n')
        r = c.read_reply()
        self.assertReply(r, 250, '2.0.0')
        self.assertEqual(self.petrel.message(r.queue_id).body, ok)
        before = self.petrel.queue_ids()
        c = self.in_data()
        c.send(make_message('1001', 'y' * 999 + '\r\n') + b'.\r\n')
        self.assertReply(c.read_reply(), 550, '5.6.0')
        self.assertReply(c.cmd('NOOP'), 250, '2.0.0')
        self.assertEqual(self.petrel.queue_ids(), before)

    def test_text_line_2mb_no_desync(self):
        before = self.petrel.queue_ids()
        c = self.in_data()
        line = b'z' * (2 * 1024 * 1024)
        c.send(b'Subject: long\r\n\r\n' + line + b'\r\n.\r\nNOOP\r\n')
        self.assertReply(c.read_reply(timeout=30), 550, '5.6.0')
        self.assertReply(c.read_reply(), 250, '2.0.0')
        self.assertReply(c.mail('a@example.org'), 250, '2.1.0')
        self.assertNothingSmuggled(before)

    # -- DATA: bare LF / bare CR (SMTP smuggling, CVE-2023-51764 family) --
    def smuggle(self, separator):
        """Body, `separator`, a second transaction, and the real end of data."""
        c = self.in_data()
        c.send(b'Subject: carrier\r\n\r\nhello' + separator + SMUGGLED + b'.\r\n')
        return c

    def test_smuggle_lf_dot_lf_closes(self):
        before = self.petrel.queue_ids()
        c = self.smuggle(b'\n.\n')
        self.assertReply(c.read_reply(), 550, '5.6.11')
        self.assertClosed(c)
        self.assertNothingSmuggled(before)

    def test_smuggle_crlf_dot_lf_closes(self):
        before = self.petrel.queue_ids()
        c = self.smuggle(b'\r\n.\n')
        self.assertReply(c.read_reply(), 550, '5.6.11')
        self.assertClosed(c)
        self.assertNothingSmuggled(before)

    def test_smuggle_lf_dot_crlf_refused_at_real_end(self):
        before = self.petrel.queue_ids()
        c = self.smuggle(b'\n.\r\n')
        self.assertReply(c.read_reply(), 550, '5.6.11')
        self.assertReply(c.cmd('NOOP'), 250, '2.0.0')     # in sync: no reply for the smuggled
        self.assertNothingSmuggled(before)

    def test_smuggle_cr_dot_cr_refused(self):
        before = self.petrel.queue_ids()
        c = self.smuggle(b'\r.\r')
        self.assertReply(c.read_reply(), 550, '5.6.11')
        self.assertReply(c.cmd('NOOP'), 250, '2.0.0')
        self.assertNothingSmuggled(before)

    def test_smuggle_crlf_dot_cr_crlf_refused(self):
        before = self.petrel.queue_ids()
        c = self.smuggle(b'\r\n.\r\r\n')
        self.assertReply(c.read_reply(), 550, '5.6.11')
        self.assertReply(c.cmd('NOOP'), 250, '2.0.0')
        self.assertNothingSmuggled(before)

    def test_lf_after_real_end_is_an_empty_command(self):
        """After a real CRLF.CRLF a lone LF is an empty command line (500), and what follows
        is a legitimate second transaction: the reply count shows the framing."""
        c = self.smuggle(b'\r\n.\r\n\n')
        rs = c.read_replies(6)
        self.assertEqual([(r.code, r.enhanced) for r in rs],
                         [(250, '2.0.0'), (500, '5.5.1'), (250, '2.1.0'), (250, '2.1.5'),
                          (354, ''), (250, '2.0.0')], rs)
        self.assertNotIn(b'SMUGGLED', self.petrel.message(rs[0].queue_id).data)
        self.assertIn(b'SMUGGLED-BODY', self.petrel.message(rs[5].queue_id).body)

    def test_bare_lf_in_body_refused(self):
        before = self.petrel.queue_ids()
        c = self.in_data()
        c.send(b'Subject: lf\r\n\r\none\ntwo\r\n.\r\n')
        self.assertReply(c.read_reply(), 550, '5.6.11')
        self.assertReply(c.cmd('NOOP'), 250, '2.0.0')
        self.assertNothingSmuggled(before)

    def test_bare_cr_in_body_refused(self):
        before = self.petrel.queue_ids()
        c = self.in_data()
        c.send(b'Subject: cr\r\n\r\none\rtwo\r\n.\r\n')
        self.assertReply(c.read_reply(), 550, '5.6.11')
        self.assertReply(c.cmd('NOOP'), 250, '2.0.0')
        self.assertNothingSmuggled(before)

    def test_control_crlf_dot_crlf_is_two_messages(self):
        """The control case: with a real CRLF.CRLF both transactions are legitimate."""
        c = self.smuggle(b'\r\n.\r\n')
        rs = c.read_replies(5)
        self.assertEqual([(r.code, r.enhanced) for r in rs],
                         [(250, '2.0.0'), (250, '2.1.0'), (250, '2.1.5'), (354, ''),
                          (250, '2.0.0')], rs)
        self.assertIn(b'SMUGGLED-BODY', self.petrel.message(rs[4].queue_id).body)

    # -- errors --
    def test_max_errors_421(self):
        c = self.session()
        c.send(b'FOO\r\n' * 10 + b'NOOP\r\n')
        rs = c.read_replies(11)
        self.assertEqual([(r.code, r.enhanced) for r in rs],
                         [(500, '5.5.1')] * 10 + [(421, '4.7.0')], rs)
        self.assertEqual(c.wait_closed(5), b'', 'nothing after the 421')

    def test_max_errors_one_by_one(self):
        c = self.session()
        for i in range(9):
            self.assertReply(c.cmd('MAIL FROM:<bad address>'), 501, '5.1.7')
        self.assertReply(c.cmd('NOOP'), 250, '2.0.0')     # successes do not reset the count
        self.assertReply(c.cmd('EXPN list'), 502, '5.5.1')
        self.assertReply(c.read_reply(), 421, '4.7.0')
        self.assertClosed(c)

    def test_max_errors_drops_open_transaction(self):
        before = self.petrel.queue_ids()
        c = self.session()
        self.assertReply(c.mail('a@example.org'), 250, '2.1.0')
        self.assertReply(c.rcpt('user@localhost'), 250, '2.1.5')
        c.send(b'RCPT TO:<>\r\n' * 10)
        rs = c.read_replies(11)
        self.assertEqual(rs[-1].code, 421, rs)
        self.assertClosed(c)
        self.assertNothingSmuggled(before)

    # -- flooding --
    def test_flood_without_reading_does_not_hurt_others(self):
        flooder = self.session()
        flooder.sock.settimeout(1.0)
        sent = [0]
        stop = threading.Event()

        def flood():
            chunk = b'NOOP\r\n' * 10000
            deadline = time.monotonic() + 8
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    flooder.sock.send(chunk)
                    sent[0] += len(chunk)
                except socket.timeout:
                    continue        # petrel stopped reading us: good, keep pushing
                except OSError:
                    return
        rss0 = rss_kib(self.petrel.pid)
        t = threading.Thread(target=flood, daemon=True)
        t.start()
        try:
            time.sleep(1.0)         # let the flood fill every buffer
            other = self.connect()
            qid = other.send_mail('a@example.org', 'user@localhost', make_message('other'))
            self.assertIn(qid, self.petrel.queue_ids())
            self.assertReply(other.cmd('QUIT'), 221, '2.0.0')
            rss1 = rss_kib(self.petrel.pid)
        finally:
            stop.set()
            t.join(10)
        self.assertGreater(sent[0], 0)
        self.assertLess(rss1 - rss0, 64 * 1024,
                        'petrel buffered %d KiB for a client that does not read (sent %d bytes)'
                        % (rss1 - rss0, sent[0]))
        flooder.close()

    def test_flood_of_data_then_drop(self):
        """A client that sends 20 MB of body and drops: nothing spooled, no stray slot."""
        before = self.petrel.queue_ids()
        c = self.in_data()
        chunk = (b'x' * 78 + b'\r\n') * 1000
        for _ in range(250):
            c.send(chunk)
        c.close()
        self.petrel.wait_log(r'smtp disconnected reason=eof-in-transaction')
        self.assertNothingSmuggled(before)


class ErrorsLimit(PetrelTestCase):
    CONFIG = {'durability': 'none', 'limits': {'max_errors': 3}}

    def test_max_errors_3(self):
        c = self.connect()
        self.assertReply(c.cmd('FOO'), 500, '5.5.1')
        self.assertReply(c.cmd('MAIL FROM:<a@example.org>'), 503, '5.5.1')
        self.assertReply(c.cmd('BAR'), 500, '5.5.1')
        self.assertReply(c.read_reply(), 421, '4.7.0')
        self.assertClosed(c)

    def test_vrfy_and_help_are_not_errors(self):
        c = self.connect()
        self.assertReply(c.ehlo(), 250)
        for _ in range(5):
            self.assertReply(c.cmd('VRFY x'), 252, '2.5.0')
            self.assertReply(c.cmd('HELP'), 214, '2.0.0')
        self.assertReply(c.cmd('NOOP'), 250, '2.0.0')


class ConnectionLimits(PetrelTestCase):
    CONFIG = {'durability': 'none',
              'limits': {'max_connections_per_ip': 2, 'max_connections': 4}}

    def wait_slot(self, source='127.0.0.1'):
        """Open a connection once petrel has released a slot (bounded retry)."""
        deadline = time.monotonic() + 5
        while True:
            c = self.track(petrel.SMTPClient.__new__(petrel.SMTPClient))
            c.timeout, c.buf, c.eof = 5.0, b'', False
            c.sock = socket.create_connection((('127.0.0.1', self.petrel.port)), timeout=5,
                                              source_address=(source, 0))
            r = c.read_reply()
            if r.code == 220 or time.monotonic() > deadline:
                c.greeting = r
                return c
            c.close()
            time.sleep(0.05)

    def connect_from(self, source):
        c = self.track(petrel.SMTPClient.__new__(petrel.SMTPClient))
        c.timeout, c.buf, c.eof = 5.0, b'', False
        c.sock = socket.create_connection(('127.0.0.1', self.petrel.port), timeout=5,
                                          source_address=(source, 0))
        c.greeting = c.read_reply()
        return c

    def test_per_ip_limit_421(self):
        a = self.wait_slot()
        b = self.wait_slot()
        self.assertReply(a.greeting, 220)
        self.assertReply(b.greeting, 220)
        third = self.connect_from('127.0.0.1')
        self.assertReply(third.greeting, 421, '4.7.0', 'from your address')
        self.assertClosed(third)
        self.assertReply(a.cmd('NOOP'), 250, '2.0.0')     # the others are unharmed
        self.assertReply(a.cmd('QUIT'), 221, '2.0.0')
        self.assertClosed(a)
        again = self.wait_slot()
        self.assertReply(again.greeting, 220)
        self.assertReply(b.cmd('NOOP'), 250, '2.0.0')

    def test_per_ip_limit_is_per_address(self):
        a = self.wait_slot('127.0.0.1')
        b = self.wait_slot('127.0.0.1')
        other = self.wait_slot('127.0.0.2')
        self.assertEqual([x.greeting.code for x in (a, b, other)], [220, 220, 220])
        self.assertReply(other.cmd('NOOP'), 250, '2.0.0')

    def test_max_connections_421(self):
        conns = [self.wait_slot('127.0.0.%d' % n) for n in (1, 1, 2, 3)]
        self.assertEqual([c.greeting.code for c in conns], [220] * 4)
        fifth = self.connect_from('127.0.0.4')
        self.assertReply(fifth.greeting, 421, '4.7.0', 'Too many connections')
        self.assertClosed(fifth)
        for c in conns:
            self.assertReply(c.cmd('NOOP'), 250, '2.0.0')

    def test_refused_connections_do_not_leak_slots(self):
        for _ in range(20):
            a = self.wait_slot()
            b = self.wait_slot()
            x = self.connect_from('127.0.0.1')
            self.assertReply(x.greeting, 421, '4.7.0')
            for c in (a, b, x):
                c.close()
        last = self.wait_slot()
        self.assertReply(last.greeting, 220)


class Timeouts(PetrelTestCase):
    CONFIG = {'durability': 'none', 'limits': {'timeouts': {'command': '2s', 'data': '2s'}}}

    def test_idle_timeout_421_4_4_2(self):
        c = self.connect()
        self.assertReply(c.read_reply(timeout=10), 421, '4.4.2')
        self.assertClosed(c)

    def test_idle_in_transaction_timeout(self):
        before = self.petrel.queue_ids()
        c = self.connect()
        self.assertReply(c.ehlo(), 250)
        self.assertReply(c.mail('a@example.org'), 250, '2.1.0')
        self.assertReply(c.read_reply(timeout=10), 421, '4.4.2')
        self.assertClosed(c)
        self.assertEqual(self.petrel.queue_ids(), before)

    def test_data_timeout_nothing_spooled(self):
        before = self.petrel.queue_ids()
        c = self.connect()
        self.assertReply(c.ehlo(), 250)
        self.assertReply(c.mail('a@example.org'), 250, '2.1.0')
        self.assertReply(c.rcpt('user@localhost'), 250, '2.1.5')
        self.assertReply(c.cmd('DATA'), 354)
        c.send(b'Subject: half\r\n\r\nhalf a message\r\n')
        self.assertReply(c.read_reply(timeout=10), 421, '4.4.2')
        self.assertClosed(c)
        self.assertEqual(self.petrel.queue_ids(), before)
        self.assertEqual(self.petrel.spool_strays(), [])

    def test_slowloris_partial_line_421(self):
        """One byte every 0.4 s, never a CRLF: each byte resets the idle timer, but the
        command must be complete within timeouts.command."""
        c = self.connect()
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        deadline = time.monotonic() + 15
        got = None
        while time.monotonic() < deadline:
            try:
                c.send(b'N')
            except OSError:
                break
            try:
                got = c.read_reply(timeout=0.4)
                break
            except (socket.timeout, petrel.ConnectionClosed):
                if c.eof:
                    break
        self.assertIsNotNone(got, 'no reply: the partial command kept the connection open')
        self.assertReply(got, 421, '4.4.2')
        self.assertClosed(c)

    def test_activity_keeps_session(self):
        c = self.connect()
        for _ in range(4):
            time.sleep(1)
            self.assertReply(c.cmd('NOOP'), 250, '2.0.0')


if __name__ == '__main__':
    petrel.main()
