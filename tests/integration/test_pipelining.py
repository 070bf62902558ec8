#!/usr/bin/python3
"""
test_pipelining.py: PIPELINING (RFC 2920) and stream framing, on raw sockets: several commands
in one write, one command split across several writes, errors mixed with good commands, whole
transactions back to back. Replies must come in order, one per command, none lost.
"""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import PetrelTestCase, make_message, stuff  # noqa: E402

PAUSE = 0.15    # between the pieces of a split command (only to make separate segments)


class Pipelining(PetrelTestCase):

    def session(self):
        c = self.connect()
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.assertReply(c.ehlo(), 250)
        return c

    def assertReplies(self, replies, expected):
        got = [(r.code, r.enhanced) if e[1] is not None else (r.code, None)
               for r, e in zip(replies, expected)]
        self.assertEqual(got, expected, 'replies: %r' % (replies,))

    def test_transaction_pipelined_then_body_and_quit(self):
        c = self.session()
        c.send(b'MAIL FROM:<a@example.org>\r\nRCPT TO:<one@localhost>\r\n'
               b'RCPT TO:<two@localhost>\r\nDATA\r\n')
        self.assertReplies(c.read_replies(4), [(250, '2.1.0'), (250, '2.1.5'),
                                               (250, '2.1.5'), (354, '')])
        content = make_message('pipelined')
        c.send(content + b'.\r\nQUIT\r\n')
        r, bye = c.read_replies(2)
        self.assertReply(r, 250, '2.0.0')
        self.assertReply(bye, 221, '2.0.0')
        self.assertClosed(c)
        m = self.petrel.message(r.queue_id)
        self.assertEqual([x['addr'] for x in m.rcpts], ['one@localhost', 'two@localhost'])
        self.assertEqual(m.body, content)

    def test_whole_session_in_one_write(self):
        c = self.connect()
        content = make_message('one write')
        c.send(b'EHLO client.test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<user@localhost>\r\n'
               b'DATA\r\n' + content + b'.\r\nQUIT\r\n')
        ehlo, mail, rcpt, go, done, bye = c.read_replies(6)
        self.assertReply(ehlo, 250)
        self.assertGreater(len(ehlo.lines), 1)
        self.assertReplies([mail, rcpt, go, done, bye],
                           [(250, '2.1.0'), (250, '2.1.5'), (354, ''), (250, '2.0.0'),
                            (221, '2.0.0')])
        self.assertClosed(c)
        self.assertEqual(self.petrel.message(done.queue_id).body, content)

    def test_two_messages_back_to_back_in_one_write(self):
        c = self.session()
        a, b = make_message('first'), make_message('second')
        tx = lambda rcpt, content: (b'MAIL FROM:<a@example.org>\r\nRCPT TO:<' + rcpt +
                                    b'>\r\nDATA\r\n' + content + b'.\r\n')
        c.send(tx(b'one@localhost', a) + tx(b'two@localhost', b) + b'QUIT\r\n')
        rs = c.read_replies(9)
        self.assertReplies(rs, [(250, '2.1.0'), (250, '2.1.5'), (354, ''), (250, '2.0.0'),
                                (250, '2.1.0'), (250, '2.1.5'), (354, ''), (250, '2.0.0'),
                                (221, '2.0.0')])
        self.assertClosed(c)
        ma, mb = self.petrel.message(rs[3].queue_id), self.petrel.message(rs[7].queue_id)
        self.assertNotEqual(ma.id, mb.id)
        self.assertEqual((ma.body, [x['addr'] for x in ma.rcpts]), (a, ['one@localhost']))
        self.assertEqual((mb.body, [x['addr'] for x in mb.rcpts]), (b, ['two@localhost']))

    def test_twenty_transactions_in_one_write(self):
        c = self.session()
        contents = [make_message('burst %d' % i) for i in range(20)]
        c.send(b''.join(b'MAIL FROM:<a@example.org>\r\nRCPT TO:<user@localhost>\r\nDATA\r\n' +
                        m + b'.\r\n' for m in contents) + b'QUIT\r\n')
        rs = c.read_replies(20 * 4 + 1, timeout=30)
        expected = [(250, '2.1.0'), (250, '2.1.5'), (354, ''), (250, '2.0.0')] * 20
        self.assertReplies(rs, expected + [(221, '2.0.0')])
        ids = [r.queue_id for r in rs[3::4][:20]]
        self.assertEqual(len(set(ids)), 20)
        for qid, content in zip(ids, contents):
            self.assertEqual(self.petrel.message(qid).body, content)

    def test_command_split_across_writes(self):
        c = self.connect()
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.send(b'HEL')
        time.sleep(PAUSE)
        c.send(b'O x')
        time.sleep(PAUSE)
        c.send(b'\r\n')
        self.assertEqual(c.read_reply().lines, ['250 %s' % petrel.HOSTNAME])

    def test_crlf_split_between_writes(self):
        c = self.session()
        c.send(b'MAIL FROM:<a@exa')
        time.sleep(PAUSE)
        c.send(b'mple.org>\r')
        time.sleep(PAUSE)
        c.send(b'\nRCPT TO:<user@localhost>')
        time.sleep(PAUSE)
        c.send(b'\r\n')
        self.assertReplies(c.read_replies(2), [(250, '2.1.0'), (250, '2.1.5')])

    def test_end_of_data_split_across_writes(self):
        """The final CRLF.CRLF cut at every position, with a NOOP after it: the message is
        stored without the terminator and the NOOP is answered (RFC 5321 section 4.1.1.4)."""
        content = make_message('split end', 'line one\r\n.. stuffed\r\n')
        stream = content + b'.\r\nNOOP\r\n'
        end = len(content)
        for cuts in ((end - 2,), (end - 1,), (end,), (end + 1,), (end + 2,), (end + 3,),
                     (end - 1, end + 1), (end, end + 2), (end - 2, end, end + 1, end + 2)):
            with self.subTest(cuts=[c - end for c in cuts]):
                c = self.session()
                c.send(b'MAIL FROM:<a@example.org>\r\nRCPT TO:<user@localhost>\r\nDATA\r\n')
                self.assertReplies(c.read_replies(3), [(250, '2.1.0'), (250, '2.1.5'),
                                                       (354, '')])
                prev = 0
                for cut in cuts + (len(stream),):
                    c.send(stream[prev:cut])
                    prev = cut
                    time.sleep(PAUSE / 2)
                r = c.read_reply()
                self.assertReply(r, 250, '2.0.0')
                self.assertEqual(self.petrel.message(r.queue_id).body, content)
                self.assertReply(c.read_reply(timeout=3), 250, '2.0.0')
                c.close()

    def test_byte_at_a_time(self):
        c = self.connect()
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        content = make_message('bytes', 'a\r\n.b\r\n'.replace('.b', '..b'))
        session = (b'EHLO client.test\r\nMAIL FROM:<a@example.org>\r\n'
                   b'RCPT TO:<user@localhost>\r\nDATA\r\n' + content + b'.\r\nQUIT\r\n')
        for i in range(len(session)):
            c.send(session[i:i + 1])
        rs = c.read_replies(6)
        self.assertReplies(rs[1:], [(250, '2.1.0'), (250, '2.1.5'), (354, ''), (250, '2.0.0'),
                                    (221, '2.0.0')])
        self.assertEqual(self.petrel.message(rs[4].queue_id).body, content)

    def test_errors_then_good_commands(self):
        c = self.session()
        c.send(b'FOO\r\nMAIL FROM:<a@example.org>\r\nBAR baz\r\nRCPT TO:<bad address>\r\n'
               b'RCPT TO:<user@localhost>\r\nMAIL FROM:<b@example.org>\r\nDATA\r\n')
        self.assertReplies(c.read_replies(7), [(500, '5.5.1'), (250, '2.1.0'), (500, '5.5.1'),
                                               (501, '5.1.3'), (250, '2.1.5'), (503, '5.5.1'),
                                               (354, '')])
        c.send(make_message('after errors') + b'.\r\n')
        self.assertReply(c.read_reply(), 250, '2.0.0')

    def test_many_short_commands_order(self):
        c = self.session()
        cmds = [(b'NOOP', (250, '2.0.0')), (b'VRFY x', (252, '2.5.0')),
                (b'HELP', (214, '2.0.0')), (b'RSET', (250, '2.0.0')),
                (b'EXPN x', (502, '5.5.1'))]
        seq = [cmds[i % 4] for i in range(200)]   # no errors: EXPN counts against max_errors
        c.send(b''.join(cmd + b'\r\n' for cmd, _ in seq))
        self.assertReplies(c.read_replies(len(seq), timeout=20), [e for _, e in seq])
        self.assertReply(c.cmd('NOOP'), 250, '2.0.0')

    def test_pipelined_rset_between_transactions(self):
        c = self.session()
        c.send(b'MAIL FROM:<a@example.org>\r\nRCPT TO:<x@localhost>\r\nRSET\r\n'
               b'MAIL FROM:<b@example.org>\r\nRCPT TO:<y@localhost>\r\nDATA\r\n')
        self.assertReplies(c.read_replies(6), [(250, '2.1.0'), (250, '2.1.5'), (250, '2.0.0'),
                                               (250, '2.1.0'), (250, '2.1.5'), (354, '')])
        c.send(make_message('after rset') + b'.\r\n')
        r = c.read_reply()
        self.assertReply(r, 250, '2.0.0')
        m = self.petrel.message(r.queue_id)
        self.assertEqual((m.sender, [x['addr'] for x in m.rcpts]),
                         ('b@example.org', ['y@localhost']))

    def test_nothing_after_quit(self):
        before = self.petrel.queue_ids()
        c = self.session()
        c.send(b'QUIT\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<user@localhost>\r\nDATA\r\n'
               b'Subject: x\r\n\r\nx\r\n.\r\n')
        self.assertReply(c.read_reply(), 221, '2.0.0')
        rest = c.wait_closed(5)
        self.assertEqual(rest, b'', 'no reply after 221')
        self.assertEqual(self.petrel.queue_ids(), before)

    def test_half_close_after_pipelined_session(self):
        """The client sends everything and shuts down its side: the pipelined commands are
        still answered and the message is spooled."""
        c = self.connect()
        content = make_message('half close')
        c.send(b'EHLO client.test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<user@localhost>\r\n'
               b'DATA\r\n' + content + b'.\r\nQUIT\r\n')
        c.sock.shutdown(socket.SHUT_WR)
        rs = c.read_replies(6)
        self.assertReplies(rs[1:], [(250, '2.1.0'), (250, '2.1.5'), (354, ''), (250, '2.0.0'),
                                    (221, '2.0.0')])
        self.assertEqual(self.petrel.message(rs[4].queue_id).body, content)

    def test_bdat_pipelined(self):
        c = self.session()
        part1 = b'Subject: bdat\r\n\r\nfirst part, '
        part2 = b'second part.\r\n'
        c.send(b'MAIL FROM:<a@example.org>\r\nRCPT TO:<user@localhost>\r\n'
               b'BDAT %d\r\n' % len(part1) + part1 +
               b'BDAT %d LAST\r\n' % len(part2) + part2 + b'NOOP\r\n')
        rs = c.read_replies(5)
        self.assertReplies(rs, [(250, '2.1.0'), (250, '2.1.5'), (250, '2.0.0'), (250, '2.0.0'),
                                (250, '2.0.0')])
        self.assertEqual(rs[2].lines[-1], '250 2.0.0 %d octets received' % len(part1))
        self.assertIsNotNone(rs[3].queue_id, rs[3])
        self.assertEqual(self.petrel.message(rs[3].queue_id).body, part1 + part2)

    def test_dot_stuffing_preserved(self):
        c = self.session()
        text = (b'Subject: dots\r\n\r\n.\r\n..\r\n.leading\r\n...three\r\nend .\r\n. \r\n')
        content = stuff(text)
        c.send(b'MAIL FROM:<a@example.org>\r\nRCPT TO:<user@localhost>\r\nDATA\r\n' + content +
               b'.\r\n')
        rs = c.read_replies(4)
        self.assertReplies(rs, [(250, '2.1.0'), (250, '2.1.5'), (354, ''), (250, '2.0.0')])
        self.assertEqual(self.petrel.message(rs[3].queue_id).body, content,
                         'stored exactly as received, still dot-stuffed')


if __name__ == '__main__':
    petrel.main()
