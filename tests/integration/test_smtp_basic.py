#!/usr/bin/python3
"""
test_smtp_basic.py: one SMTP conversation feature per test, each reply asserted with its exact
code and enhanced status code (RFC 5321, RFC 3463, RFC 2034), plus a real client (smtplib).
"""

import os
import smtplib
import socket
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402

USERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'users')
from petrel import HOSTNAME, PetrelTestCase, make_message  # noqa: E402


class Basic(PetrelTestCase):
    CONFIG = {'limits': {'max_message_size': '1M'}}

    def session(self, ehlo=True):
        c = self.connect()
        if ehlo:
            self.assertReply(c.ehlo(), 250)
        return c

    def transaction(self):
        c = self.session()
        self.assertReply(c.mail('a@example.org'), 250, '2.1.0')
        self.assertReply(c.rcpt('user@localhost'), 250, '2.1.5')
        return c

    # -- a real client --
    def test_smtplib_sendmail(self):
        msg = make_message('smtplib', 'Hello from smtplib.\r\n')
        with smtplib.SMTP('127.0.0.1', self.petrel.port, timeout=10) as s:
            code, _ = s.ehlo('client.test')
            self.assertEqual(code, 250)
            refused = s.sendmail('a@example.org', ['user@localhost', 'other@example.com'], msg)
            self.assertEqual(refused, {})
        ids = [m for m in self.petrel.messages() if m.body == msg]
        self.assertEqual(len(ids), 1, 'exactly one spooled copy')
        m = ids[0]
        self.assertEqual(m.sender, 'a@example.org')
        self.assertEqual([r['addr'] for r in m.rcpts], ['user@localhost', 'other@example.com'])
        self.assertEqual(m.envelope['helo'], 'client.test')
        self.assertEqual(m.envelope['protocol'], 'ESMTP')
        self.assertEqual(m.envelope['client'], '127.0.0.1')
        self.assertIn(b'by ' + HOSTNAME.encode() + b' (petrel) with ESMTP id ' + m.id.encode(),
                      m.received)

    # -- greeting, EHLO, HELO --
    def test_greeting(self):
        c = self.connect()
        self.assertEqual(c.greeting.lines, ['220 %s ESMTP petrel' % HOSTNAME])

    def test_ehlo_extensions(self):
        c = self.connect()
        r = c.ehlo('client.test')
        self.assertEqual(r.code, 250)
        self.assertTrue(r.lines[0].startswith('250-%s' % HOSTNAME), r)
        for l in r.lines[:-1]:
            self.assertEqual(l[:4], '250-', r)
        self.assertEqual(r.lines[-1][:4], '250 ', r)
        exts = [l[4:] for l in r.lines[1:]]
        for e in ('PIPELINING', 'SIZE 1048576', '8BITMIME', 'ENHANCEDSTATUSCODES', 'SMTPUTF8',
                  'CHUNKING'):
            self.assertIn(e, exts)
        names = [e.split(' ')[0] for e in exts]
        self.assertNotIn('STARTTLS', names, 'STARTTLS is not offered yet')
        self.assertNotIn('AUTH', names, 'AUTH is not offered yet')
        self.assertEqual(len(names), len(set(names)), 'no extension twice')

    def test_helo(self):
        c = self.connect()
        r = c.helo('client.test')
        self.assertEqual(r.lines, ['250 %s' % HOSTNAME])
        self.assertReply(c.mail('a@example.org'), 250, '2.1.0')
        self.assertReply(c.rcpt('user@localhost'), 250, '2.1.5')
        _, r = c.data(make_message('helo'))
        self.assertReply(r, 250, '2.0.0')
        m = self.petrel.message(r.queue_id)
        self.assertEqual(m.envelope['protocol'], 'SMTP')
        self.assertIn(b'with SMTP id', m.received)

    def test_ehlo_twice_resets(self):
        c = self.transaction()
        self.assertReply(c.ehlo('again.test'), 250)
        self.assertReply(c.cmd('DATA'), 503, '5.5.1')   # the transaction is gone

    def test_helo_without_domain_501(self):
        c = self.connect()
        self.assertReply(c.cmd('HELO'), 501, '5.5.4')
        self.assertReply(c.cmd('EHLO'), 501, '5.5.4')

    def test_helo_bad_domain_501(self):
        c = self.connect()
        self.assertReply(c.cmd('EHLO bad_domain!'), 501, '5.5.4')

    def test_helo_address_literal(self):
        c = self.connect()
        self.assertReply(c.cmd('EHLO [127.0.0.1]'), 250)
        self.assertReply(c.cmd('EHLO [IPv6:::1]'), 250)

    def test_verbs_case_insensitive(self):
        c = self.connect()
        self.assertReply(c.cmd('ehlo client.test'), 250)
        self.assertReply(c.cmd('mail from:<a@example.org>'), 250, '2.1.0')
        self.assertReply(c.cmd('Rcpt To:<user@localhost>'), 250, '2.1.5')
        self.assertReply(c.cmd('data'), 354)
        c.send(make_message('case') + b'.\r\n')
        self.assertReply(c.read_reply(), 250, '2.0.0')

    # -- a whole transaction, reply by reply --
    def test_mail_250_2_1_0(self):
        c = self.session()
        self.assertReply(c.mail('a@example.org'), 250, '2.1.0')

    def test_mail_space_after_colon_tolerated(self):
        c = self.session()
        self.assertReply(c.cmd('MAIL FROM: <a@example.org>'), 250, '2.1.0')

    def test_rcpt_250_2_1_5(self):
        c = self.transaction()
        self.assertReply(c.rcpt('second@localhost'), 250, '2.1.5')

    def test_data_354_then_250_queued(self):
        c = self.transaction()
        r = c.cmd('DATA')
        self.assertEqual(r.code, 354)
        self.assertEqual(r.enhanced, '', 'no enhanced code on 354 (RFC 2034 section 3)')
        content = make_message('data')
        c.send(content + b'.\r\n')
        r = c.read_reply()
        self.assertReply(r, 250, '2.0.0', 'Ok: queued as ')
        self.assertRegex(r.lines[-1], r'^250 2\.0\.0 Ok: queued as [0-9a-f]{16}$')
        self.assertIn(r.queue_id, self.petrel.queue_ids(), 'on disk when 250 is sent')
        m = self.petrel.message(r.queue_id)
        self.assertEqual(m.id, r.queue_id)
        self.assertEqual(m.body, content)
        self.assertTrue(m.data.startswith(b'Received: from client.test ([127.0.0.1])\r\n'))
        self.assertRegex(self.petrel.wait_log(
            r'smtp message accepted id=%s from=<a@example.org> nrcpt=1 size=\d+'
            % r.queue_id).group(0), 'accepted')

    def test_two_messages_one_session(self):
        c = self.session()
        a = c.send_mail('a@example.org', 'user@localhost', make_message('one'), ehlo=False)
        b = c.send_mail('a@example.org', 'user@localhost', make_message('two'), ehlo=False)
        self.assertNotEqual(a, b)
        self.assertIn(b'Subject: one', self.petrel.message(a).body)
        self.assertIn(b'Subject: two', self.petrel.message(b).body)

    def test_empty_message(self):
        c = self.transaction()
        self.assertReply(c.cmd('DATA'), 354)
        c.send(b'.\r\n')
        r = c.read_reply()
        self.assertReply(r, 250, '2.0.0')
        self.assertEqual(self.petrel.message(r.queue_id).body, b'')

    def test_null_sender(self):
        c = self.session()
        self.assertReply(c.cmd('MAIL FROM:<>'), 250, '2.1.0')
        self.assertReply(c.rcpt('user@localhost'), 250, '2.1.5')
        _, r = c.data(make_message('bounce'))
        self.assertReply(r, 250, '2.0.0')
        m = self.petrel.message(r.queue_id)
        self.assertEqual(m.envelope['from'], '<>')

    def test_postmaster(self):
        c = self.session()
        self.assertReply(c.mail('a@example.org'), 250, '2.1.0')
        self.assertReply(c.cmd('RCPT TO:<postmaster>'), 250, '2.1.5')
        self.assertReply(c.cmd('RCPT TO:<PostMaster>'), 250, '2.1.5')
        _, r = c.data(make_message('pm'))
        self.assertReply(r, 250, '2.0.0')
        m = self.petrel.message(r.queue_id)
        self.assertEqual([x['addr'] for x in m.rcpts], ['postmaster', 'postmaster'])

    def test_postmaster_on_mail_is_bad_sender(self):
        c = self.session()
        self.assertReply(c.cmd('MAIL FROM:<postmaster>'), 501, '5.1.7')

    def test_mail_params_size_body_smtputf8(self):
        c = self.session()
        self.assertReply(c.mail('a@example.org', 'SIZE=1000 BODY=8BITMIME SMTPUTF8'),
                         250, '2.1.0')
        self.assertReply(c.rcpt('user@localhost'), 250, '2.1.5')
        _, r = c.data(make_message('8bit', 'caf\u00e9\r\n'))
        self.assertReply(r, 250, '2.0.0')
        m = self.petrel.message(r.queue_id)
        self.assertEqual(m.envelope.get('body'), '8BITMIME')
        self.assertIn('smtputf8', m.flags)
        self.assertIn('caf\u00e9'.encode(), m.body)

    def test_body_7bit(self):
        c = self.session()
        self.assertReply(c.mail('a@example.org', 'BODY=7BIT'), 250, '2.1.0')

    def test_body_binarymime_555(self):
        c = self.session()
        self.assertReply(c.mail('a@example.org', 'BODY=BINARYMIME'), 555, '5.5.4')

    def test_dsn_params_kept(self):
        c = self.session()
        self.assertReply(c.mail('a@example.org', 'RET=HDRS ENVID=abc123'), 250, '2.1.0')
        self.assertReply(c.rcpt('user@localhost',
                                'NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;user@localhost'),
                         250, '2.1.5')
        _, r = c.data(make_message('dsn'))
        self.assertReply(r, 250, '2.0.0')
        m = self.petrel.message(r.queue_id)
        self.assertEqual(m.envelope.get('ret'), 'HDRS')
        self.assertEqual(m.envelope.get('envid'), 'abc123')
        self.assertEqual(m.rcpts[0]['addr'], 'user@localhost')
        self.assertEqual(m.rcpts[0].get('orcpt'), 'rfc822;user@localhost')
        self.assertEqual(sorted(m.rcpts[0].get('notify', '').split(',')),
                         ['FAILURE', 'SUCCESS'])

    def test_rset_250_2_0_0(self):
        c = self.transaction()
        self.assertReply(c.cmd('RSET'), 250, '2.0.0')
        self.assertReply(c.cmd('DATA'), 503, '5.5.1')   # the transaction is gone
        self.assertReply(c.mail('b@example.org'), 250, '2.1.0')

    def test_noop_250_2_0_0(self):
        c = self.connect()
        self.assertReply(c.cmd('NOOP'), 250, '2.0.0')
        self.assertReply(c.cmd('NOOP anything at all'), 250, '2.0.0')

    def test_quit_221_2_0_0_and_close(self):
        c = self.session()
        self.assertReply(c.cmd('QUIT'), 221, '2.0.0')
        self.assertClosed(c)

    def test_quit_drops_transaction(self):
        before = self.petrel.queue_ids()
        c = self.transaction()
        self.assertReply(c.cmd('QUIT'), 221, '2.0.0')
        self.assertClosed(c)
        self.assertEqual(self.petrel.queue_ids(), before)

    def test_vrfy_252_2_5_0(self):
        c = self.session()
        self.assertReply(c.cmd('VRFY user'), 252, '2.5.0')
        self.assertReply(c.cmd('VRFY <user@localhost>'), 252, '2.5.0')

    def test_expn_502_5_5_1(self):
        c = self.session()
        self.assertReply(c.cmd('EXPN staff'), 502, '5.5.1')

    def test_help_214_2_0_0(self):
        c = self.connect()
        self.assertReply(c.cmd('HELP'), 214, '2.0.0')
        self.assertReply(c.cmd('HELP MAIL'), 214, '2.0.0')

    def test_rfc821_relics_502_5_5_1(self):
        c = self.session()
        for cmd in ('SEND FROM:<a@example.org>', 'SOML FROM:<a@example.org>',
                    'SAML FROM:<a@example.org>', 'TURN'):
            with self.subTest(cmd=cmd):
                self.assertReply(c.cmd(cmd), 502, '5.5.1')

    def test_starttls_auth_not_offered_502(self):
        c = self.session()
        self.assertReply(c.cmd('STARTTLS'), 502, '5.5.1')
        self.assertReply(c.cmd('AUTH PLAIN AGFAYg=='), 502, '5.5.1')
        self.assertReply(c.cmd('NOOP'), 250, '2.0.0')   # still in sync: no TLS, no SASL

    # -- 503: wrong order --
    def test_mail_before_helo_503(self):
        c = self.connect()
        self.assertReply(c.mail('a@example.org'), 503, '5.5.1')

    def test_rcpt_before_mail_503(self):
        c = self.session()
        self.assertReply(c.rcpt('user@localhost'), 503, '5.5.1')

    def test_rcpt_before_helo_503(self):
        c = self.connect()
        self.assertReply(c.rcpt('user@localhost'), 503, '5.5.1')

    def test_data_before_rcpt_503(self):
        c = self.session()
        self.assertReply(c.cmd('DATA'), 503, '5.5.1')
        self.assertReply(c.mail('a@example.org'), 250, '2.1.0')
        self.assertReply(c.cmd('DATA'), 503, '5.5.1')
        self.assertReply(c.rcpt('user@localhost'), 250, '2.1.5')   # still usable

    def test_nested_mail_503(self):
        c = self.transaction()
        self.assertReply(c.mail('b@example.org'), 503, '5.5.1')

    # -- 500 / 501 / 555: syntax --
    def test_unknown_verb_500_5_5_1(self):
        c = self.session()
        self.assertReply(c.cmd('FOOBAR'), 500, '5.5.1')
        self.assertReply(c.cmd('MAILFROM:<a@example.org>'), 500, '5.5.1')

    def test_empty_line_500(self):
        c = self.session()
        self.assertReply(c.cmd(''), 500, '5.5.1')
        self.assertReply(c.cmd('NOOP'), 250, '2.0.0')

    def test_mail_without_argument_501_5_5_4(self):
        c = self.session()
        self.assertReply(c.cmd('MAIL'), 501, '5.5.4')

    def test_mail_bad_sender_501_5_1_7(self):
        c = self.session()
        for arg in ('MAIL FROM:<a b@example.org>', 'MAIL FROM:<@example.org>',
                    'MAIL FROM:<a@>', 'MAIL FROM:<a@example..org>', 'MAIL FROM:<a@example.org'):
            with self.subTest(cmd=arg):
                self.assertReply(c.cmd(arg), 501, '5.1.7')

    def test_rcpt_bad_recipient_501_5_1_3(self):
        c = self.session()
        self.assertReply(c.mail('a@example.org'), 250, '2.1.0')
        for arg in ('RCPT TO:<a b@localhost>', 'RCPT TO:<@localhost>', 'RCPT TO:<user@>',
                    'RCPT TO:<>'):
            with self.subTest(cmd=arg):
                self.assertReply(c.cmd(arg), 501, '5.1.3')

    def test_path_without_brackets_rejected(self):
        c = self.session()
        r = c.cmd('MAIL FROM:a@example.org')
        self.assertEqual(r.code, 501, r)

    def test_data_with_argument_501(self):
        c = self.transaction()
        self.assertReply(c.cmd('DATA now'), 501, '5.5.4')
        self.assertReply(c.cmd('RSET please'), 501, '5.5.4')

    def test_unknown_param_555_5_5_4(self):
        c = self.session()
        self.assertReply(c.mail('a@example.org', 'FOO=BAR'), 555, '5.5.4')
        self.assertReply(c.mail('a@example.org'), 250, '2.1.0')
        self.assertReply(c.rcpt('user@localhost', 'XYZZY'), 555, '5.5.4')

    def test_param_bad_value_501_5_5_4(self):
        c = self.session()
        self.assertReply(c.mail('a@example.org', 'SIZE=abc'), 501, '5.5.4')
        self.assertReply(c.mail('a@example.org', 'BODY=9BIT'), 501, '5.5.4')
        self.assertReply(c.mail('a@example.org', 'SIZE=1 SIZE=2'), 501, '5.5.4')

    def test_size_over_limit_552_5_3_4(self):
        c = self.session()
        self.assertReply(c.mail('a@example.org', 'SIZE=%d' % (1024 * 1024 + 1)), 552, '5.3.4')
        self.assertReply(c.mail('a@example.org', 'SIZE=%d' % (1024 * 1024)), 250, '2.1.0')

    def test_path_too_long_501(self):
        c = self.session()
        self.assertReply(c.mail('%s@example.org' % ('a' * 65)), 501, '5.5.4')

    def test_nul_in_command_501_5_5_2(self):
        c = self.session()
        self.assertReply(c.cmd(b'NOOP a\x00b'), 501, '5.5.2')
        self.assertReply(c.cmd(b'MAIL FROM:<a\x00@example.org>'), 501, '5.5.2')
        self.assertReply(c.cmd('NOOP'), 250, '2.0.0')

    def test_8bit_in_command_501_5_5_2(self):
        c = self.session()
        self.assertReply(c.cmd(b'EHLO caf\xc3\xa9.test'), 501, '5.5.2')
        self.assertReply(c.cmd(b'MAIL FROM:<a@example.org> SIZE=1\xff'), 501, '5.5.2')

    def test_non_ascii_address_without_smtputf8_553_5_6_7(self):
        c = self.session()
        self.assertReply(c.cmd('MAIL FROM:<j\u00f6rg@example.org>'), 553, '5.6.7')
        self.assertReply(c.mail('a@example.org'), 250, '2.1.0')
        self.assertReply(c.cmd('RCPT TO:<j\u00f6rg@localhost>'), 553, '5.6.7')
        self.assertReply(c.rcpt('user@localhost'), 250, '2.1.5')

    def test_malformed_utf8_in_address_501(self):
        c = self.session()
        r = c.cmd(b'MAIL FROM:<j\xc3@example.org> SMTPUTF8')
        self.assertEqual(r.code, 501, r)

    # -- relay policy for a relay client --
    def test_relay_client_may_send_anywhere(self):
        c = self.transaction()
        self.assertReply(c.rcpt('someone@example.com'), 250, '2.1.5')
        self.assertReply(c.rcpt('x%y@example.com'), 250, '2.1.5')

    def test_local_domain_case_insensitive(self):
        c = self.transaction()
        self.assertReply(c.rcpt('user@LOCALHOST'), 250, '2.1.5')
        self.assertReply(c.rcpt('user@%s' % HOSTNAME.upper()), 250, '2.1.5')

    def test_quoted_local_part(self):
        c = self.transaction()
        self.assertReply(c.cmd('RCPT TO:<"john smith"@localhost>'), 250, '2.1.5')
        _, r = c.data(make_message('quoted'))
        self.assertReply(r, 250, '2.0.0')
        m = self.petrel.message(r.queue_id)
        self.assertEqual([x['addr'] for x in m.rcpts], ['user@localhost', '"john smith"@localhost'])


class NonRelayClient(PetrelTestCase):
    """127.0.0.1 outside relay.networks: only local domains and postmaster."""
    CONFIG = {'relay': {'networks': ['10.0.0.0/8'], 'local_domains': ['localhost', HOSTNAME]}}

    def transaction(self):
        c = self.connect()
        self.assertReply(c.ehlo(), 250)
        self.assertReply(c.mail('a@example.org'), 250, '2.1.0')
        return c

    def test_connected_log_says_no_relay(self):
        self.connect()
        self.petrel.wait_log(r'smtp connected address=127\.0\.0\.1 port=\d+ relay=no')

    def test_relay_denied_554_5_7_1(self):
        c = self.transaction()
        self.assertReply(c.rcpt('someone@example.com'), 554, '5.7.1')
        self.assertReply(c.rcpt('someone@localhost.example.com'), 554, '5.7.1')

    def test_local_domain_accepted(self):
        c = self.transaction()
        self.assertReply(c.rcpt('user@localhost'), 250, '2.1.5')
        self.assertReply(c.rcpt('user@%s' % HOSTNAME), 250, '2.1.5')
        self.assertReply(c.rcpt('user@LocalHost'), 250, '2.1.5')
        _, r = c.data(make_message('local'))
        self.assertReply(r, 250, '2.0.0')

    def test_postmaster_always_accepted(self):
        c = self.transaction()
        self.assertReply(c.cmd('RCPT TO:<postmaster>'), 250, '2.1.5')
        self.assertReply(c.cmd('RCPT TO:<Postmaster@localhost>'), 250, '2.1.5')
        _, r = c.data(make_message('pm'))
        self.assertReply(r, 250, '2.0.0')

    def test_percent_hack_denied(self):
        c = self.transaction()
        self.assertReply(c.rcpt('user%other.example@localhost'), 554, '5.7.1')

    def test_bang_path_denied(self):
        c = self.transaction()
        self.assertReply(c.rcpt('other.example!user@localhost'), 554, '5.7.1')

    def test_quoted_at_denied(self):
        c = self.transaction()
        self.assertReply(c.cmd('RCPT TO:<"user@other.example"@localhost>'), 554, '5.7.1')

    def test_source_route_denied(self):
        c = self.transaction()
        self.assertReply(c.cmd('RCPT TO:<@a.example,@b.example:user@localhost>'), 554, '5.7.1')

    def test_source_route_to_remote_denied(self):
        c = self.transaction()
        self.assertReply(c.cmd('RCPT TO:<@localhost:user@example.com>'), 554, '5.7.1')

    def test_nothing_spooled_for_denied(self):
        before = self.petrel.queue_ids()
        c = self.transaction()
        self.assertReply(c.rcpt('someone@example.com'), 554, '5.7.1')
        self.assertReply(c.cmd('DATA'), 503, '5.5.1')
        self.assertEqual(self.petrel.queue_ids(), before)


class Submission(PetrelTestCase):
    """A submission listener (RFC 6409) requires AUTH: without it every MAIL is refused with
    530 5.7.0 (AUTH itself needs TLS, which is not configured here)."""
    CONFIG = {'listen': [{'address': '127.0.0.1:{port}', 'role': 'submission'}],
              'auth': {'users_file': USERS}}

    def test_listening_role_logged(self):
        self.petrel.wait_log(r'listening address=127\.0\.0\.1:%d role=submission'
                             % self.petrel.port)

    def test_mail_530_5_7_0(self):
        c = self.connect()
        self.assertReply(c.ehlo(), 250)
        self.assertReply(c.mail('a@example.org'), 530, '5.7.0')
        self.assertReply(c.rcpt('user@localhost'), 503, '5.5.1')
        self.assertReply(c.cmd('NOOP'), 250, '2.0.0')
        self.assertEqual(self.petrel.queue_ids(), [])


def _have_ipv6_loopback():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(('::1', 0))
        s.close()
        return True
    except OSError:
        return False


@unittest.skipUnless(_have_ipv6_loopback(), 'no IPv6 loopback (::1) here')
class IPv6(PetrelTestCase):
    """A second listener on [::1]; relay.networks holds only 127.0.0.0/8, so ::1 is not a
    relay client."""
    CONFIG = {'listen': [{'address': '127.0.0.1:{port}', 'role': 'relay'},
                         {'address': '[::1]:{port}', 'role': 'relay'}]}

    def test_ipv6_client(self):
        self.petrel.wait_log(r'listening address=\[::1\]:%d role=relay' % self.petrel.port)
        c = self.track(petrel.SMTPClient(self.petrel.port, host='::1'))
        self.assertEqual(c.greeting.lines, ['220 %s ESMTP petrel' % HOSTNAME])
        self.assertReply(c.ehlo(), 250)
        self.assertReply(c.mail('a@example.org'), 250, '2.1.0')
        self.assertReply(c.rcpt('someone@example.com'), 554, '5.7.1')
        self.assertReply(c.rcpt('user@localhost'), 250, '2.1.5')
        _, r = c.data(make_message('v6'))
        self.assertReply(r, 250, '2.0.0')
        m = self.petrel.message(r.queue_id)
        self.assertEqual(m.envelope['client'], 'IPv6:::1')
        self.assertTrue(m.received.startswith(b'Received: from client.test ([IPv6:::1])\r\n'))


if __name__ == '__main__':
    petrel.main()
