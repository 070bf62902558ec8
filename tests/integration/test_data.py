#!/usr/bin/python3
"""
test_data.py: message content and envelope limits: a 10 MB message stored byte for byte,
dot-stuffing, 100 recipients and the max_recipients limit, SIZE and max_message_size, BDAT
(CHUNKING, RFC 3030), SMTPUTF8 (RFC 6531), and a connection dropped in the middle of DATA.
"""

import hashlib
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import PetrelTestCase, make_message, stuff  # noqa: E402

MAX = 1024 * 1024


def big_text(size):
    """CRLF text of about `size` bytes with lines that need dot-stuffing sprinkled in."""
    lines = []
    total = 0
    i = 0
    while total < size:
        if i % 97 == 0:
            line = b'.'                         # a lone dot: would end DATA unstuffed
        elif i % 31 == 0:
            line = b'..two dots %d' % i
        elif i % 13 == 0:
            line = b'.leading dot line %d' % i
        else:
            line = b'line %08d ' % i + b'abcdefghijklmnopqrstuvwxyz0123456789' * 2
        lines.append(line)
        total += len(line) + 2
        i += 1
    return b'\r\n'.join(lines) + b'\r\n'


class Data(PetrelTestCase):
    """Default limits (35M, 1000 recipients)."""
    TEST_TIMEOUT = 60

    def transaction(self, rcpts=('user@localhost',), params=''):
        c = self.connect(timeout=30)
        self.assertReply(c.ehlo(), 250)
        self.assertReply(c.mail('a@example.org', params), 250, '2.1.0')
        for r in rcpts:
            self.assertReply(c.rcpt(r), 250, '2.1.5')
        return c

    def test_10mb_message_byte_exact(self):
        text = b'Subject: big\r\nMessage-ID: <big@client.test>\r\n\r\n' + big_text(10 * MAX)
        content = stuff(text)
        self.assertIn(b'\r\n..\r\n', content)
        c = self.transaction()
        self.assertReply(c.cmd('DATA'), 354)
        c.send(content + b'.\r\n')
        r = c.read_reply(timeout=60)
        self.assertReply(r, 250, '2.0.0')
        m = self.petrel.message(r.queue_id)
        self.assertEqual(len(m.body), len(content))
        self.assertEqual(hashlib.sha256(m.body).hexdigest(), hashlib.sha256(content).hexdigest(),
                         'stored exactly as received, dot-stuffed')
        self.petrel.wait_log(r'message accepted id=%s .* size=%d' % (r.queue_id, len(content)))

    def test_100_recipients_all_in_envelope(self):
        rcpts = ['user%03d@localhost' % i for i in range(100)]
        c = self.transaction(rcpts)
        _, r = c.data(make_message('hundred'))
        self.assertReply(r, 250, '2.0.0')
        m = self.petrel.message(r.queue_id)
        self.assertEqual([x['addr'] for x in m.rcpts], rcpts)
        self.petrel.wait_log(r'message accepted id=%s .*nrcpt=100 ' % r.queue_id)

    def test_duplicate_recipients_kept(self):
        c = self.transaction(['user@localhost', 'user@localhost'])
        _, r = c.data(make_message('dup'))
        self.assertReply(r, 250, '2.0.0')
        self.assertEqual(len(self.petrel.message(r.queue_id).rcpts), 2)

    def test_smtputf8_with_param(self):
        c = self.connect()
        self.assertReply(c.ehlo(), 250)
        self.assertReply(c.cmd('MAIL FROM:<j\u00f6rg@example.org> SMTPUTF8'), 250, '2.1.0')
        self.assertReply(c.cmd('RCPT TO:<\u7528\u6237@localhost>'), 250, '2.1.5')
        _, r = c.data(make_message('utf8', '\u00fcnic\u00f6de\r\n'))
        self.assertReply(r, 250, '2.0.0')
        m = self.petrel.message(r.queue_id)
        self.assertEqual(m.sender, 'j\u00f6rg@example.org')
        self.assertEqual(m.rcpts[0]['addr'], '\u7528\u6237@localhost')
        self.assertIn('smtputf8', m.flags)

    def test_smtputf8_domain_with_param(self):
        c = self.connect()
        self.assertReply(c.ehlo(), 250)
        self.assertReply(c.cmd('MAIL FROM:<a@\u00e9xample.org> SMTPUTF8'), 250, '2.1.0')
        self.assertReply(c.cmd('RCPT TO:<b@b\u00fccher.example>'), 250, '2.1.5')

    def test_smtputf8_without_param_553(self):
        c = self.connect()
        self.assertReply(c.ehlo(), 250)
        self.assertReply(c.cmd('MAIL FROM:<j\u00f6rg@example.org>'), 553, '5.6.7')
        self.assertReply(c.cmd('MAIL FROM:<a@example.org>'), 250, '2.1.0')
        self.assertReply(c.cmd('RCPT TO:<\u7528\u6237@localhost>'), 553, '5.6.7')

    # -- BDAT --
    def test_bdat_single_last(self):
        content = make_message('bdat one')
        c = self.transaction()
        c.send(b'BDAT %d LAST\r\n' % len(content) + content)
        r = c.read_reply()
        self.assertReply(r, 250, '2.0.0', 'Ok: queued as')
        self.assertEqual(self.petrel.message(r.queue_id).body, content)

    def test_bdat_several_chunks(self):
        content = make_message('bdat many', 'x' * 500 + '\r\n' + 'y' * 500 + '\r\n')
        chunks = [content[:7], content[7:200], content[200:201], content[201:]]
        c = self.transaction()
        total = 0
        for ch in chunks[:-1]:
            total += len(ch)
            c.send(b'BDAT %d\r\n' % len(ch) + ch)
            self.assertEqual(c.read_reply().lines, ['250 2.0.0 %d octets received' % total])
        c.send(b'BDAT %d LAST\r\n' % len(chunks[-1]) + chunks[-1])
        r = c.read_reply()
        self.assertReply(r, 250, '2.0.0')
        self.assertEqual(self.petrel.message(r.queue_id).body, content)

    def test_bdat_0_last(self):
        content = make_message('bdat zero')
        c = self.transaction()
        c.send(b'BDAT %d\r\n' % len(content) + content)
        self.assertReply(c.read_reply(), 250, '2.0.0')
        c.send(b'BDAT 0 LAST\r\n')
        r = c.read_reply()
        self.assertReply(r, 250, '2.0.0')
        self.assertIsNotNone(r.queue_id, r)
        self.assertEqual(self.petrel.message(r.queue_id).body, content)

    def test_bdat_0_last_only(self):
        c = self.transaction()
        c.send(b'BDAT 0 LAST\r\n')
        r = c.read_reply()
        self.assertReply(r, 250, '2.0.0')
        self.assertEqual(self.petrel.message(r.queue_id).body, b'')

    def test_bdat_dot_lines_stored_stuffed(self):
        text = b'Subject: dots\r\n\r\n.\r\n..two\r\n.leading\r\nmid . dot\r\n'
        c = self.transaction()
        c.send(b'BDAT %d LAST\r\n' % len(text) + text)
        r = c.read_reply()
        self.assertReply(r, 250, '2.0.0')
        self.assertEqual(self.petrel.message(r.queue_id).body, stuff(text))

    def test_bdat_dot_at_chunk_edges(self):
        """A line's leading dot as the first octet of a chunk, and a chunk that ends with the
        CR of a CRLF: stuffing and line ends do not depend on where chunks are cut."""
        text = b'Subject: edges\r\n\r\nab\r\n.c\r\n.\r\nend\r\n'
        cut1 = text.index(b'.c')
        cut2 = text.index(b'\r\n.\r\n') + 1
        chunks = [text[:cut1], text[cut1:cut2], text[cut2:]]
        c = self.transaction()
        for ch in chunks[:-1]:
            c.send(b'BDAT %d\r\n' % len(ch) + ch)
            self.assertReply(c.read_reply(), 250, '2.0.0')
        c.send(b'BDAT %d LAST\r\n' % len(chunks[-1]) + chunks[-1])
        r = c.read_reply()
        self.assertReply(r, 250, '2.0.0')
        self.assertEqual(self.petrel.message(r.queue_id).body, stuff(text))

    def test_bdat_final_crlf_added(self):
        text = b'Subject: no final crlf\r\n\r\nlast line'
        c = self.transaction()
        c.send(b'BDAT %d LAST\r\n' % len(text) + text)
        r = c.read_reply()
        self.assertReply(r, 250, '2.0.0')
        self.assertEqual(self.petrel.message(r.queue_id).body, text + b'\r\n')

    def test_bdat_content_looks_like_commands(self):
        """Octets inside a chunk are never commands, even 'QUIT' or '.'."""
        text = b'Subject: c\r\n\r\n.\r\nQUIT\r\nRSET\r\n'
        c = self.transaction()
        c.send(b'BDAT %d LAST\r\n' % len(text) + text + b'NOOP\r\n')
        r = c.read_reply()
        self.assertReply(r, 250, '2.0.0')
        self.assertReply(c.read_reply(), 250, '2.0.0')
        self.assertEqual(self.petrel.message(r.queue_id).body, stuff(text))

    def test_bdat_then_data_503(self):
        c = self.transaction()
        c.send(b'BDAT 5\r\nHello')
        self.assertReply(c.read_reply(), 250, '2.0.0')
        self.assertReply(c.cmd('DATA'), 503, '5.5.1')
        c.send(b'BDAT 9 LAST\r\n, world\r\n')
        r = c.read_reply()
        self.assertReply(r, 250, '2.0.0')
        self.assertEqual(self.petrel.message(r.queue_id).body, b'Hello, world\r\n')

    def test_bdat_before_rcpt_503_chunk_consumed(self):
        c = self.connect()
        self.assertReply(c.ehlo(), 250)
        self.assertReply(c.mail('a@example.org'), 250, '2.1.0')
        c.send(b'BDAT 12\r\nNOOP\r\nQUIT\r\nNOOP\r\n')
        self.assertReply(c.read_reply(), 503, '5.5.1')
        self.assertReply(c.read_reply(), 250, '2.0.0')   # the NOOP after the chunk
        self.assertTrue(c.is_open(), 'the QUIT inside the chunk was not obeyed')
        self.assertReply(c.rcpt('user@localhost'), 250, '2.1.5')   # transaction still there

    def test_bdat_before_mail_503_chunk_consumed(self):
        c = self.connect()
        self.assertReply(c.ehlo(), 250)
        c.send(b'BDAT 6 LAST\r\nQUIT\r\nNOOP\r\n')
        self.assertReply(c.read_reply(), 503, '5.5.1')
        self.assertReply(c.read_reply(), 250, '2.0.0')
        self.assertTrue(c.is_open())

    def test_bdat_bad_size_closes(self):
        c = self.transaction()
        c.send(b'BDAT x12\r\n')
        self.assertReply(c.read_reply(), 501, '5.5.4')
        self.assertReply(c.read_reply(), 421, '4.7.0')
        self.assertClosed(c)

    def test_bdat_bare_lf_refused(self):
        before = self.petrel.queue_ids()
        text = b'Subject: lf\r\n\r\nbare\nlf\r\n'
        c = self.transaction()
        c.send(b'BDAT %d LAST\r\n' % len(text) + text)
        self.assertReply(c.read_reply(), 550, '5.6.11')
        self.assertReply(c.cmd('NOOP'), 250, '2.0.0')
        self.assertEqual(self.petrel.queue_ids(), before)

    def test_rset_after_bdat_chunk(self):
        before = self.petrel.queue_ids()
        c = self.transaction()
        c.send(b'BDAT 5\r\nHello')
        self.assertReply(c.read_reply(), 250, '2.0.0')
        self.assertReply(c.cmd('RSET'), 250, '2.0.0')
        self.assertReply(c.mail('b@example.org'), 250, '2.1.0')
        self.assertReply(c.rcpt('user@localhost'), 250, '2.1.5')
        _, r = c.data(make_message('after bdat rset'))
        self.assertReply(r, 250, '2.0.0')
        self.assertEqual(sorted(set(self.petrel.queue_ids()) - set(before)), [r.queue_id])
        self.assertNotIn(b'Hello', self.petrel.message(r.queue_id).body[:5])

    # -- dropped connections --
    def drop_mid(self, bdat):
        before = self.petrel.queue_ids()
        c = self.transaction()
        body = (b'y' * 998 + b'\r\n') * 300        # 300 KB: past the spool flush threshold
        if bdat:
            c.send(b'BDAT %d LAST\r\n' % (len(body) * 2) + body)
        else:
            self.assertReply(c.cmd('DATA'), 354)
            c.send(body)
        time.sleep(0.3)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b'\x01\x00\x00\x00\x00\x00\x00\x00')
        c.close()                                # RST: the rude way
        self.petrel.wait_log(r'smtp disconnected reason=\S+')
        self.assertEqual(self.petrel.queue_ids(), before, 'nothing queued')
        self.assertEqual(len(self.petrel.queue_all()), len(before), 'no stray slot file')

    def test_dropped_mid_data_leaves_nothing(self):
        self.drop_mid(bdat=False)

    def test_dropped_mid_bdat_leaves_nothing(self):
        self.drop_mid(bdat=True)


class SizeLimits(PetrelTestCase):
    CONFIG = {'limits': {'max_message_size': '1M', 'max_recipients': 100}}

    def transaction(self, params=''):
        c = self.connect(timeout=20)
        self.assertReply(c.ehlo(), 250)
        self.assertReply(c.mail('a@example.org', params), 250, '2.1.0')
        self.assertReply(c.rcpt('user@localhost'), 250, '2.1.5')
        return c

    def test_ehlo_advertises_size(self):
        c = self.connect()
        self.assertIn('250-SIZE 1048576', c.ehlo().lines)

    def test_size_param_over_limit_552(self):
        c = self.connect()
        self.assertReply(c.ehlo(), 250)
        self.assertReply(c.mail('a@example.org', 'SIZE=%d' % (MAX + 1)), 552, '5.3.4')
        self.assertReply(c.mail('a@example.org', 'SIZE=18446744073709551615'), 552, '5.3.4')
        self.assertReply(c.mail('a@example.org', 'SIZE=%d' % MAX), 250, '2.1.0')

    def test_size_param_20_digits_552(self):
        """RFC 1870 section 3: size-value ::= 1*20DIGIT. A 20-digit value beyond 2^64 is valid
        syntax and simply too large: 552 5.3.4, not a 501 syntax error."""
        c = self.connect()
        self.assertReply(c.ehlo(), 250)
        self.assertReply(c.mail('a@example.org', 'SIZE=99999999999999999999'), 552, '5.3.4')

    def test_body_over_limit_552_after_data(self):
        before = self.petrel.queue_ids()
        c = self.transaction()
        self.assertReply(c.cmd('DATA'), 354)
        c.send(b'Subject: big\r\n\r\n' + (b'z' * 998 + b'\r\n') * 2000 + b'.\r\nNOOP\r\n')
        self.assertReply(c.read_reply(), 552, '5.3.4')
        self.assertReply(c.read_reply(), 250, '2.0.0')
        self.assertEqual(self.petrel.queue_ids(), before)
        self.assertEqual(self.petrel.spool_strays(), [])

    def test_body_at_limit_accepted(self):
        head = b'Subject: exact\r\n\r\n'
        n, rest = divmod(MAX - len(head), 512)
        content = head + (b'q' * 510 + b'\r\n') * n + b'r' * (rest - 2) + b'\r\n'
        self.assertEqual(len(content), MAX)
        c = self.transaction('SIZE=%d' % MAX)
        self.assertReply(c.cmd('DATA'), 354)
        c.send(content + b'.\r\n')
        r = c.read_reply()
        self.assertReply(r, 250, '2.0.0')
        self.assertEqual(self.petrel.message(r.queue_id).body, content)

    def test_size_limit_ignores_stuffing_dots(self):
        """RFC 1870 section 3: the message size does not count "the SMTP DATA command's
        terminating dot or doubled quoting dots". A message of exactly the limit whose lines
        begin with '.' is within the limit."""
        head = b'Subject: dots\r\n\r\n'
        n, rest = divmod(MAX - len(head), 512)
        text = head + (b'.' + b'q' * 509 + b'\r\n') * n + b'r' * (rest - 2) + b'\r\n'
        self.assertEqual(len(text), MAX)
        c = self.transaction('SIZE=%d' % MAX)
        _, r = c.data(stuff(text))
        self.assertReply(r, 250, '2.0.0')
        self.assertEqual(self.petrel.message(r.queue_id).body, stuff(text))

    def test_body_one_octet_over_limit_552(self):
        head = b'Subject: over\r\n\r\n'
        n, rest = divmod(MAX - len(head), 512)
        content = head + (b'w' * 510 + b'\r\n') * n + b'r' * (rest - 1) + b'\r\n'
        self.assertEqual(len(content), MAX + 1)
        c = self.transaction()
        self.assertReply(c.cmd('DATA'), 354)
        c.send(content + b'.\r\n')
        self.assertReply(c.read_reply(), 552, '5.3.4')
        self.assertReply(c.cmd('NOOP'), 250, '2.0.0')

    def test_body_over_limit_lying_size_param(self):
        c = self.transaction('SIZE=1000')
        self.assertReply(c.cmd('DATA'), 354)
        c.send((b'v' * 998 + b'\r\n') * 1100 + b'.\r\n')
        self.assertReply(c.read_reply(), 552, '5.3.4')

    def test_bdat_over_limit_552(self):
        before = self.petrel.queue_ids()
        c = self.transaction()
        chunk = (b'u' * 998 + b'\r\n') * 600
        c.send(b'BDAT %d\r\n' % len(chunk) + chunk)
        self.assertReply(c.read_reply(), 250, '2.0.0')
        c.send(b'BDAT %d LAST\r\n' % len(chunk) + chunk + b'NOOP\r\n')
        self.assertReply(c.read_reply(), 552, '5.3.4')
        self.assertReply(c.read_reply(), 250, '2.0.0')
        self.assertEqual(self.petrel.queue_ids(), before)

    def test_bdat_single_chunk_over_limit_552(self):
        c = self.transaction()
        chunk = (b't' * 998 + b'\r\n') * 1100
        c.send(b'BDAT %d LAST\r\n' % len(chunk) + chunk + b'NOOP\r\n')
        self.assertReply(c.read_reply(), 552, '5.3.4')
        self.assertReply(c.read_reply(), 250, '2.0.0')

    def test_too_many_recipients_452(self):
        c = self.connect()
        self.assertReply(c.ehlo(), 250)
        self.assertReply(c.mail('a@example.org'), 250, '2.1.0')
        c.send(b''.join(b'RCPT TO:<r%d@localhost>\r\n' % i for i in range(102)))
        rs = c.read_replies(102)
        self.assertEqual([(r.code, r.enhanced) for r in rs],
                         [(250, '2.1.5')] * 100 + [(452, '4.5.3')] * 2)
        self.assertTrue(c.is_open(), '452 is not an error that closes the session')
        _, r = c.data(make_message('hundred'))
        self.assertReply(r, 250, '2.0.0')
        m = self.petrel.message(r.queue_id)
        self.assertEqual([x['addr'] for x in m.rcpts], ['r%d@localhost' % i for i in range(100)])


if __name__ == '__main__':
    petrel.main()
