#!/usr/bin/python3
"""
test_auth.py: SMTP AUTH (RFC 4954) of the real petrel: PLAIN and LOGIN with and without initial
responses, every error reply, the per-address failure throttle, submission listeners,
sender_login_match, the relay policy with and without AUTH (never an open relay), and that
petrel's log never holds a password or an AUTH payload.

Users: tests/integration/data/users (alice/wonderland, bob/builder). The AUTH throttle counts per
client address, so every test that fails a login connects from its own 127.0.1.x address (the
whole of 127/8 is loopback on Linux): one test's failures never slow or block another's.
Helpers (certificates made with openssl req, the TLS client) come from test_tls.py.
"""

import itertools
import os
import smtplib
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import HOSTNAME, IO_TIMEOUT, make_message  # noqa: E402
from test_tls import (SECRETS, SWAKS, TLSTestCase, USERS, b64, basic_config,  # noqa: E402
                      client_context, keywords, plain_response, tag)

WRONG = 'not-the-password'
# The wrong passwords and the credentials sent here, on top of test_tls's SECRETS.
AUTH_SECRETS = SECRETS + [
    WRONG, b64(WRONG), plain_response('alice', WRONG), plain_response('nobody', WRONG),
    plain_response('Alice', 'wonderland'), plain_response('alice', 'wonderland', 'alice'),
    plain_response('alice', 'wonderland', 'bob'), plain_response('alice', 'x' * 1000)]

_sources = itertools.count(2)


def new_source():
    """A loopback address of its own (127.0.1.2, 127.0.1.3, ...) for one client."""
    n = next(_sources)
    return '127.0.%d.%d' % (1 + n // 250, 2 + n % 250)


class AuthTestCase(TLSTestCase):
    """After every test: petrel's log of the test holds none of AUTH_SECRETS."""
    SECRETS = AUTH_SECRETS

    def authed(self, user='alice', password=None, port=None, **kw):
        """A STARTTLS session logged in with AUTH PLAIN."""
        c, _ = self.tls_session(port, **kw)
        self.assertReply(c.cmd('AUTH PLAIN ' + plain_response(user, password or
                                                             {'alice': 'wonderland',
                                                              'bob': 'builder'}[user])),
                         235, '2.7.0')
        return c


# ---- the SASL exchange ----

class Auth(AuthTestCase):
    """STARTTLS relay listener, relay.networks outside 127/8, auth.require_tls (default),
    log_level debug (the most talkative log must still hold no secret)."""

    @classmethod
    def config(cls):
        return basic_config(log_level='debug')

    def test_not_offered_before_tls_and_538(self):
        c = self.tls_client()
        r = c.ehlo()
        self.assertFalse([k for k in keywords(r) if k.startswith('AUTH')], r)
        self.assertReply(c.cmd('AUTH PLAIN ' + plain_response('alice', 'wonderland')),
                         538, '5.7.11')
        self.assertReply(c.cmd('AUTH LOGIN'), 538, '5.7.11')
        self.assertReply(c.starttls(), 220, '2.0.0')
        r = c.ehlo()
        self.assertIn('AUTH PLAIN LOGIN', keywords(r))

    def test_plain_initial_response(self):
        c, _ = self.tls_session()
        r = c.cmd('AUTH PLAIN ' + plain_response('alice', 'wonderland'))
        self.assertEqual(r.lines, ['235 2.7.0 Authentication successful'])
        self.wait_test_log(r'smtp auth user="alice" mech=PLAIN result=ok')

    def test_plain_after_334(self):
        c, _ = self.tls_session()
        r = c.cmd('AUTH PLAIN')
        self.assertEqual(r.lines, ['334 '])
        self.assertReply(c.cmd(plain_response('bob', 'builder')), 235, '2.7.0')

    def test_plain_with_own_authzid(self):
        c, _ = self.tls_session()
        self.assertReply(c.cmd('AUTH PLAIN ' + plain_response('alice', 'wonderland', 'alice')),
                         235, '2.7.0')

    def test_plain_mechanism_name_any_case(self):
        c, _ = self.tls_session()
        self.assertReply(c.cmd('auth plain ' + plain_response('alice', 'wonderland')),
                         235, '2.7.0')

    def test_login(self):
        c, _ = self.tls_session()
        self.assertEqual(c.cmd('AUTH LOGIN').lines, ['334 VXNlcm5hbWU6'])       # Username:
        self.assertEqual(c.cmd(b64('alice')).lines, ['334 UGFzc3dvcmQ6'])       # Password:
        self.assertReply(c.cmd(b64('wonderland')), 235, '2.7.0')
        self.wait_test_log(r'smtp auth user="alice" mech=LOGIN result=ok')

    def test_login_with_initial_response(self):
        c, _ = self.tls_session()
        self.assertEqual(c.cmd('AUTH LOGIN ' + b64('bob')).lines, ['334 UGFzc3dvcmQ6'])
        self.assertReply(c.cmd(b64('builder')), 235, '2.7.0')

    def test_cancel(self):
        c, _ = self.tls_session(source=new_source())
        self.assertEqual(c.cmd('AUTH PLAIN').lines, ['334 '])
        self.assertReply(c.cmd('*'), 501, '5.0.0')
        self.assertReply(c.cmd('AUTH LOGIN'), 334)
        self.assertReply(c.cmd(b64('alice')), 334)
        self.assertReply(c.cmd('*'), 501, '5.0.0')                  # at the password
        self.assertReply(c.cmd('AUTH LOGIN'), 334)
        self.assertReply(c.cmd('*'), 501, '5.0.0')
        # Cancelling is not a failed login, and the session goes on.
        self.assertReply(c.cmd('AUTH PLAIN ' + plain_response('alice', 'wonderland')),
                         235, '2.7.0')

    def test_bad_base64(self):
        c, _ = self.tls_session(source=new_source())
        for bad in ('AUTH PLAIN QR==', 'AUTH PLAIN YWxpY2U', 'AUTH PLAIN YWxp'):
            self.assertReply(c.cmd(bad), 501, '5.5.2', None)
        self.assertReply(c.cmd('AUTH PLAIN'), 334)
        self.assertReply(c.cmd('@@@@'), 501, '5.5.2')
        self.assertReply(c.cmd('AUTH LOGIN'), 334)
        self.assertReply(c.cmd('%%%'), 501, '5.5.2')
        self.assertReply(c.cmd('AUTH LOGIN ' + b64('alice')), 334)
        self.assertReply(c.cmd('!!'), 501, '5.5.2')
        self.assertReply(c.cmd('NOOP'), 250, '2.0.0')
        self.assertReply(c.cmd('AUTH PLAIN ' + plain_response('alice', 'wonderland')),
                         235, '2.7.0')

    def test_initial_response_with_non_base64_characters(self):
        """RFC 4954 §6: a response that cannot be base64-decoded is 501 5.5.2, whether it came
        after a 334 or as the initial response, whatever made it undecodable."""
        c, _ = self.tls_session(source=new_source())
        self.assertReply(c.cmd('AUTH PLAIN'), 334)
        self.assertReply(c.cmd('not+base64!'), 501, '5.5.2')
        self.assertReply(c.cmd('AUTH PLAIN not+base64!'), 501, '5.5.2')
        self.assertReply(c.cmd('AUTH LOGIN ###'), 501, '5.5.2')
        self.assertReply(c.cmd('AUTH PLAIN ' + plain_response('alice', 'wonderland')),
                         235, '2.7.0')

    def test_equals_is_the_empty_response(self):
        """'=' is an empty response (RFC 4954 §4): an empty PLAIN message is malformed, an
        empty LOGIN user name too; an empty password is a wrong password."""
        c, _ = self.tls_session(source=new_source())
        self.assertReply(c.cmd('AUTH PLAIN ='), 501, '5.5.2')
        self.assertReply(c.cmd('AUTH PLAIN'), 334)
        self.assertReply(c.cmd('='), 501, '5.5.2')
        self.assertReply(c.cmd('AUTH LOGIN'), 334)
        self.assertReply(c.cmd('='), 501, '5.5.2')
        self.assertReply(c.cmd('AUTH LOGIN ' + b64('alice')), 334)
        self.assertReply(c.cmd('='), 535, '5.7.8')

    def test_unknown_mechanism(self):
        c, _ = self.tls_session()
        self.assertReply(c.cmd('AUTH CRAM-MD5'), 504, '5.5.4')
        self.assertReply(c.cmd('AUTH XOAUTH2 ' + b64('user=alice\x01auth=Bearer x\x01\x01')),
                         504, '5.5.4')
        self.assertReply(c.cmd('AUTH PLAIN ' + plain_response('alice', 'wonderland')),
                         235, '2.7.0')

    def test_twice(self):
        c = self.authed()
        self.assertReply(c.cmd('AUTH PLAIN ' + plain_response('bob', 'builder')), 503, '5.5.1')
        self.assertReply(c.cmd('AUTH LOGIN'), 503, '5.5.1')
        r = c.ehlo()
        self.assertFalse([k for k in keywords(r) if k.startswith('AUTH')],
                         'AUTH offered again after a login: %r' % r)

    def test_in_transaction(self):
        c, _ = self.tls_session()
        self.assertReply(c.mail('a@example.org'), 250, '2.1.0')
        self.assertReply(c.cmd('AUTH PLAIN ' + plain_response('alice', 'wonderland')),
                         503, '5.5.1')
        self.assertReply(c.rcpt('user@localhost'), 250, '2.1.5')
        self.assertReply(c.cmd('AUTH LOGIN'), 503, '5.5.1')
        self.assertReply(c.cmd('RSET'), 250)
        self.assertReply(c.cmd('AUTH PLAIN ' + plain_response('alice', 'wonderland')),
                         235, '2.7.0')

    def test_before_ehlo(self):
        c = self.tls_client()
        self.assertReply(c.ehlo(), 250)
        self.assertReply(c.starttls(), 220)
        self.assertReply(c.cmd('AUTH PLAIN ' + plain_response('alice', 'wonderland')),
                         503, '5.5.1')
        self.assertReply(c.helo(), 250)                       # HELO is not enough (ESMTP verb)
        self.assertReply(c.cmd('AUTH PLAIN ' + plain_response('alice', 'wonderland')),
                         503, '5.5.1')
        self.assertReply(c.ehlo(), 250)
        self.assertReply(c.cmd('AUTH PLAIN ' + plain_response('alice', 'wonderland')),
                         235, '2.7.0')

    def test_mail_auth_parameter(self):
        t = tag()
        c = self.authed()
        self.assertReply(c.mail('alice@localhost', 'AUTH=<>'), 250, '2.1.0')
        self.assertReply(c.rcpt('someone@example.com'), 250, '2.1.5')
        r354, r = c.data(make_message(t))
        self.assertIsNotNone(r and r.queue_id, r)
        c2 = self.authed('bob')
        self.assertReply(c2.mail('bob@localhost', 'AUTH=bob@localhost'), 250, '2.1.0')

    def test_received_esmtpsa(self):
        t = tag()
        c = self.authed()
        c.send_mail('alice@localhost', 'someone@example.com', make_message(t), ehlo=False)
        m = self.one(t)
        self.assertReceivedTLS(m, 'ESMTPSA', c.tls_version)
        self.assertEqual([r['addr'] for r in m.rcpts], ['someone@example.com'])

    def test_wrong_password(self):
        c, _ = self.tls_session(source=new_source())
        t0 = time.monotonic()
        r = c.cmd('AUTH PLAIN ' + plain_response('alice', WRONG))
        self.assertEqual(r.lines, ['535 5.7.8 Authentication credentials invalid'])
        self.assertGreaterEqual(time.monotonic() - t0, 0.9, 'the 535 came without a delay')
        # A failed login grants nothing.
        self.assertReply(c.mail('alice@localhost'), 250, '2.1.0')
        self.assertReply(c.rcpt('someone@example.com'), 554, '5.7.1')
        self.wait_test_log(r'smtp auth user="alice" mech=PLAIN result=failed')

    def test_unknown_user_and_login_failures(self):
        c, _ = self.tls_session(source=new_source())
        self.assertReply(c.cmd('AUTH PLAIN ' + plain_response('nobody', WRONG)), 535, '5.7.8')
        self.assertReply(c.cmd('AUTH LOGIN ' + b64('alice')), 334)
        self.assertReply(c.cmd(b64(WRONG)), 535, '5.7.8')
        self.assertReply(c.cmd('AUTH PLAIN ' + plain_response('alice', 'wonderland')),
                         235, '2.7.0')

    def test_authzid_of_another_user_refused(self):
        """We act for nobody else: alice's password with authzid bob is a failure."""
        c, _ = self.tls_session(source=new_source())
        self.assertReply(c.cmd('AUTH PLAIN ' + plain_response('alice', 'wonderland', 'bob')),
                         535, '5.7.8')

    def test_user_names_are_case_sensitive(self):
        c, _ = self.tls_session(source=new_source())
        self.assertReply(c.cmd('AUTH PLAIN ' + plain_response('Alice', 'wonderland')),
                         535, '5.7.8')

    def test_python_smtplib_login(self):
        """smtplib picks PLAIN; then LOGIN as smtplib sends it (user as initial response)."""
        t = tag()
        for mech in ('PLAIN', 'LOGIN'):
            with smtplib.SMTP('127.0.0.1', self.petrel.port, local_hostname='client.test',
                              timeout=IO_TIMEOUT) as s:
                s.starttls(context=client_context())
                s.ehlo()
                s.user, s.password = 'bob', 'builder'
                code, _ = s.auth(mech, getattr(s, 'auth_' + mech.lower()))
                self.assertEqual(code, 235, mech)
                self.assertEqual(s.sendmail('bob@localhost', ['x@example.org'],
                                            make_message(t + mech)), {})
                s.close()                   # no QUIT: that is test_tls's business
            self.assertReceivedTLS(self.one(t + mech), 'ESMTPSA')

    def test_pipelined_after_auth(self):
        """AUTH with an initial response and a transaction in one write: the commands behind
        the AUTH wait for its verdict (the relaying RCPT needs it)."""
        t = tag()
        c, _ = self.tls_session()
        c.send('AUTH PLAIN %s\r\nMAIL FROM:<alice@localhost>\r\n'
               'RCPT TO:<someone@example.com>\r\nDATA\r\n'
               % plain_response('alice', 'wonderland'))
        self.assertReply(c.read_reply(), 235, '2.7.0')
        self.assertReply(c.read_reply(), 250, '2.1.0')
        self.assertReply(c.read_reply(), 250, '2.1.5')
        self.assertReply(c.read_reply(), 354)
        c.send(make_message(t) + b'.\r\n')
        self.assertIsNotNone(c.read_reply().queue_id)
        self.assertReceivedTLS(self.one(t), 'ESMTPSA')

    def test_login_pipelined(self):
        c, _ = self.tls_session()
        c.send('AUTH LOGIN\r\n%s\r\n%s\r\nNOOP\r\n' % (b64('bob'), b64('builder')))
        self.assertEqual([c.read_reply().lines for _ in range(2)],
                         [['334 VXNlcm5hbWU6'], ['334 UGFzc3dvcmQ6']])
        self.assertReply(c.read_reply(), 235, '2.7.0')
        self.assertReply(c.read_reply(), 250, '2.0.0')

    def test_responses_to_a_refused_auth_are_not_logged(self):
        """A client that sends its SASL responses although its AUTH was refused (pipelined,
        or not waiting for the 334): those lines are credentials, never to be logged, even
        as unknown commands."""
        user, password = b64('alice'), b64('wonderland')
        c = self.tls_client()
        self.assertReply(c.ehlo(), 250)
        c.send('AUTH LOGIN\r\n%s\r\n%s\r\n' % (user, password))      # before TLS: 538
        self.assertReply(c.read_reply(), 538, '5.7.11')
        self.assertEqual([r.code for r in c.read_replies(2)], [500, 500])
        self.assertReply(c.starttls(), 220)
        self.assertReply(c.ehlo(), 250)
        c.send('AUTH CRAM-MD5\r\n%s\r\n' % plain_response('alice', 'wonderland'))   # 504
        self.assertReply(c.read_reply(), 504, '5.5.4')
        self.assertEqual(c.read_reply().code, 500)
        self.assertReply(c.cmd('NOOP'), 250)
        log = self.log_of_test()
        for secret in (password, plain_response('alice', 'wonderland')):
            self.assertNotIn(secret, log, 'SASL response in the log')

    def test_overlong_response_ends_the_exchange(self):
        """A SASL response longer than 12288 octets gets 500 5.5.6, a final reply: the
        exchange is over, and the next line is a command again (not the LOGIN user name)."""
        c, _ = self.tls_session()
        self.assertReply(c.cmd('AUTH LOGIN'), 334)
        self.assertReply(c.cmd('A' * 13000), 500, '5.5.6')
        self.assertEqual(c.cmd('NOOP').lines, ['250 2.0.0 Ok'])
        self.assertReply(c.cmd('AUTH PLAIN'), 334)
        self.assertReply(c.cmd('A' * 13000), 500, '5.5.6')
        self.assertEqual(c.cmd('NOOP').lines, ['250 2.0.0 Ok'])

    def test_long_initial_response(self):
        """RFC 4954 §4: an AUTH line may be 12288 octets (longer than 512)."""
        c, _ = self.tls_session(source=new_source())
        r = c.cmd('AUTH PLAIN ' + plain_response('alice', 'x' * 1000))
        self.assertReply(r, 535, '5.7.8')          # read whole (not 500 5.5.6), a wrong password
        self.assertReply(c.cmd('NOOP'), 250)


# ---- relay policy ----

TRICKS = ['user%other.example@localhost', '"user@other.example"@localhost',
          '@a.example,@b.example:user@localhost', 'other.example!user@localhost',
          'user%other.example@LOCALHOST']


class RelayPolicy(AuthTestCase):
    """127.0.0.1 is outside relay.networks: only local domains without AUTH."""

    @classmethod
    def config(cls):
        return basic_config()

    def test_unauthenticated_client_is_no_relay(self):
        for tls in (False, True):
            with self.subTest(tls=tls):
                c = self.tls_client()
                self.assertReply(c.ehlo(), 250)
                if tls:
                    self.assertReply(c.starttls(), 220)
                    self.assertReply(c.ehlo(), 250)
                self.assertReply(c.mail('a@example.org'), 250, '2.1.0')
                self.assertReply(c.rcpt('someone@example.com'), 554, '5.7.1')
                self.assertReply(c.rcpt('user@localhost.example.com'), 554, '5.7.1')
                for addr in TRICKS:
                    self.assertReply(c.rcpt(addr), 554, '5.7.1', None)
                self.assertReply(c.rcpt('user@localhost'), 250, '2.1.5')
                self.assertReply(c.rcpt('user@LocalHost'), 250, '2.1.5')
                self.assertReply(c.rcpt('postmaster@localhost'), 250, '2.1.5')
                self.assertReply(c.rcpt('postmaster'), 250, '2.1.5')
                self.assertReply(c.rcpt('Postmaster'), 250, '2.1.5')

    def test_authenticated_client_may_relay(self):
        t = tag()
        c = self.authed()
        self.assertReply(c.mail('alice@localhost'), 250, '2.1.0')
        for addr in ['someone@example.com'] + TRICKS:
            self.assertReply(c.rcpt(addr), 250, '2.1.5', None)
        r354, r = c.data(make_message(t))
        self.assertIsNotNone(r and r.queue_id, r)
        m = self.one(t)
        # The source route is dropped (RFC 5321 §4.1.1.3 / appendix C); the rest are kept.
        want = [a.split(':', 1)[1] if a.startswith('@') else a for a in TRICKS]
        self.assertEqual([r['addr'] for r in m.rcpts], ['someone@example.com'] + want)


# ---- AUTH without TLS allowed ----

class AuthInTheClear(AuthTestCase):
    """auth.require_tls: false (and a certificate for STARTTLS)."""

    @classmethod
    def config(cls):
        return basic_config(auth={'users_file': USERS, 'require_tls': False})

    def test_offered_and_accepted_in_the_clear(self):
        t = tag()
        c = self.connect()
        r = c.ehlo()
        self.assertIn('AUTH PLAIN LOGIN', keywords(r))
        self.assertIn('STARTTLS', keywords(r))
        self.assertReply(c.cmd('AUTH PLAIN ' + plain_response('alice', 'wonderland')),
                         235, '2.7.0')
        c.send_mail('alice@localhost', 'someone@example.com', make_message(t), ehlo=False)
        m = self.one(t)
        self.assertEqual(m.envelope['protocol'], 'ESMTPA')
        self.assertIn(b' with ESMTPA id ', m.received)

    def test_starttls_forgets_the_login(self):
        """RFC 3207 §4.2: after STARTTLS the server MUST discard what it learnt from the
        client; a login made in the clear must not carry over into the TLS session."""
        c = self.tls_client()
        self.assertReply(c.ehlo(), 250)
        self.assertReply(c.cmd('AUTH PLAIN ' + plain_response('alice', 'wonderland')),
                         235, '2.7.0')
        self.assertReply(c.starttls(), 220)
        r = c.ehlo()
        self.assertIn('AUTH PLAIN LOGIN', keywords(r), 'the login survived STARTTLS')
        self.assertReply(c.mail('alice@localhost'), 250, '2.1.0')
        self.assertReply(c.rcpt('someone@example.com'), 554, '5.7.1')

    def test_swaks_auth_in_the_clear(self):
        self.need(SWAKS, 'swaks')
        t = tag()
        rc, out, err = self.run_tool([
            SWAKS, '--server', '127.0.0.1:%d' % self.petrel.port, '--timeout', '10',
            '--auth', 'LOGIN', '--auth-user', 'bob', '--auth-password', 'builder',
            '--from', 'bob@localhost', '--to', 'someone@example.com',
            '--header', 'Subject: ' + t])
        self.assertEqual(rc, 0, out + err)
        self.assertEqual(self.one(t).envelope['protocol'], 'ESMTPA')


# ---- AUTH not configured ----

class NoAuth(AuthTestCase):

    @classmethod
    def config(cls):
        cfg = basic_config()
        del cfg['auth']
        return cfg

    def test_auth_not_offered_502(self):
        c, r = self.tls_session()
        self.assertFalse([k for k in keywords(r) if k.startswith('AUTH')], r)
        self.assertReply(c.cmd('AUTH PLAIN ' + plain_response('alice', 'wonderland')),
                         502, '5.5.1')
        self.assertReply(c.cmd('AUTH LOGIN'), 502, '5.5.1')
        self.assertReply(c.mail('a@example.org'), 250, '2.1.0')
        self.assertReply(c.rcpt('someone@example.com'), 554, '5.7.1')


# ---- submission ----

class Submission(AuthTestCase):
    """Port: submission with STARTTLS; ports['submissions']: submission with implicit TLS."""

    @classmethod
    def config(cls):
        cfg = basic_config()
        cfg['listen'] = [{'address': '127.0.0.1:{port}', 'role': 'submission',
                          'tls': 'starttls'},
                         cls.listener('submissions', 'submission', 'implicit')]
        return cfg

    def test_mail_before_auth_530(self):
        c = self.tls_client()
        self.assertReply(c.ehlo(), 250)
        self.assertReply(c.mail('a@example.org'), 530, '5.7.0')      # in the clear
        self.assertReply(c.starttls(), 220)
        self.assertReply(c.ehlo(), 250)
        self.assertReply(c.mail('a@example.org'), 530, '5.7.0')      # TLS, no AUTH
        self.assertReply(c.rcpt('user@localhost'), 503, '5.5.1')
        c2, _ = self.implicit_session(self.ports['submissions'])
        self.assertReply(c2.mail('a@example.org'), 530, '5.7.0')

    def test_after_auth_any_domain(self):
        t = tag()
        c = self.authed()
        c.send_mail('alice@localhost', ['someone@example.com', 'user@localhost',
                                        'x@sub.example.net'], make_message(t), ehlo=False)
        m = self.one(t)
        self.assertEqual([r['addr'] for r in m.rcpts],
                         ['someone@example.com', 'user@localhost', 'x@sub.example.net'])
        self.assertReceivedTLS(m, 'ESMTPSA')

    def test_swaks_submission(self):
        self.need(SWAKS, 'swaks')
        t = tag()
        rc, out, err = self.run_tool([
            SWAKS, '--server', '127.0.0.1:%d' % self.ports['submissions'], '--timeout', '10',
            '--tlsc', '--auth', 'PLAIN', '--auth-user', 'bob', '--auth-password', 'builder',
            '--from', 'bob@localhost', '--to', 'someone@example.com',
            '--header', 'Subject: ' + t])
        self.assertEqual(rc, 0, out + err)
        self.assertReceivedTLS(self.one(t), 'ESMTPSA')
        rc, out, err = self.run_tool([
            SWAKS, '--server', '127.0.0.1:%d' % self.ports['submissions'], '--timeout', '10',
            '--tlsc', '--from', 'bob@localhost', '--to', 'someone@example.com'])
        self.assertNotEqual(rc, 0)
        self.assertIn('530 5.7.0', out)


# ---- sender_login_match ----

class SenderLoginMatch(AuthTestCase):

    @classmethod
    def config(cls):
        return basic_config(auth={'users_file': USERS, 'sender_login_match': True})

    def test_sender_must_be_the_login(self):
        c = self.authed('alice')
        for sender in ('alice@localhost', 'alice@' + HOSTNAME, 'alice@LOCALHOST', ''):
            self.assertReply(c.mail(sender), 250, '2.1.0', None)
            self.assertReply(c.cmd('RSET'), 250)
        for sender in ('alice@example.com', 'bob@localhost', 'alice2@localhost',
                       'alic@localhost', 'x.alice@localhost'):
            self.assertReply(c.mail(sender), 553, '5.7.1', None)
        c2 = self.authed('bob')
        self.assertReply(c2.mail('bob@localhost'), 250, '2.1.0')

    def test_unauthenticated_sender_not_checked(self):
        c, _ = self.tls_session()
        self.assertReply(c.mail('anyone@example.org'), 250, '2.1.0')
        self.assertReply(c.rcpt('user@localhost'), 250, '2.1.5')


# ---- the failure throttle ----

class Throttle(AuthTestCase):
    """max_failures 3: two delayed 535s, then 421 and the address is blocked."""

    @classmethod
    def config(cls):
        cfg = basic_config(auth={'users_file': USERS, 'max_failures': 3,
                                 'failure_window': '15m'})
        cfg['listen'] = cfg['listen'] + [cls.listener('implicit', 'relay', 'implicit')]
        return cfg

    def test_delays_then_421_and_blocked(self):
        src = new_source()
        c, _ = self.implicit_session(self.ports['implicit'], source=src)
        # 1st failure: the 535 waits ~1 s; what was pipelined behind it waits too.
        t0 = time.monotonic()
        c.send('AUTH PLAIN %s\r\nNOOP\r\n' % plain_response('alice', WRONG))
        r = c.read_reply()
        d1 = time.monotonic() - t0
        self.assertReply(r, 535, '5.7.8')
        self.assertReply(c.read_reply(), 250, '2.0.0')
        # 2nd failure (LOGIN): ~2 s.
        self.assertReply(c.cmd('AUTH LOGIN ' + b64('alice')), 334)
        t0 = time.monotonic()
        self.assertReply(c.cmd(b64(WRONG)), 535, '5.7.8')
        d2 = time.monotonic() - t0
        self.assertGreaterEqual(d1, 0.9, 'first 535 without its delay')
        self.assertGreaterEqual(d2, 1.9, 'second 535 without its (doubled) delay')
        # 3rd failure reaches max_failures: 421 and the connection closes.
        r = c.cmd('AUTH PLAIN ' + plain_response('nobody', WRONG))
        self.assertEqual(r.lines, ['421 4.7.0 Too many failed authentications, try again later'])
        self.assertClosed(c)
        # The address stays blocked, even for the right password.
        c2, _ = self.implicit_session(self.ports['implicit'], source=src)
        self.assertReply(c2.cmd('AUTH PLAIN ' + plain_response('alice', 'wonderland')),
                         421, '4.7.0')
        self.assertClosed(c2)
        self.wait_test_log(r'smtp auth refused reason=throttled')
        # Another address is not.
        c3, _ = self.implicit_session(self.ports['implicit'], source=new_source())
        self.assertReply(c3.cmd('AUTH PLAIN ' + plain_response('alice', 'wonderland')),
                         235, '2.7.0')

    def test_421_reaches_a_starttls_client(self):
        """The same 421, after STARTTLS: the client must read it before the close."""
        src = new_source()
        c, _ = self.tls_session(source=src)
        self.assertReply(c.cmd('AUTH PLAIN ' + plain_response('alice', WRONG)), 535, '5.7.8')
        self.assertReply(c.cmd('AUTH PLAIN ' + plain_response('alice', WRONG)), 535, '5.7.8')
        try:
            r = c.cmd('AUTH PLAIN ' + plain_response('alice', WRONG))
        except petrel.ConnectionClosed:
            self.fail('the connection closed without the 421')
        self.assertReply(r, 421, '4.7.0')
        self.assertClosed(c)

    def test_cancel_and_syntax_errors_are_not_failures(self):
        c, _ = self.tls_session(source=new_source())
        for _ in range(4):
            self.assertReply(c.cmd('AUTH PLAIN'), 334)
            self.assertReply(c.cmd('*'), 501, '5.0.0')
            self.assertReply(c.cmd('AUTH PLAIN QR=='), 501, '5.5.2')
        self.assertReply(c.cmd('AUTH PLAIN ' + plain_response('alice', 'wonderland')),
                         235, '2.7.0')

    def test_hang_up_while_the_535_waits(self):
        """A client that leaves during the throttle delay (and one during the password
        check): petrel frees the session and goes on."""
        ids = []
        for password in (WRONG, 'wonderland'):
            c, _ = self.implicit_session(self.ports['implicit'], source=new_source())
            ids.append(self.session_id(c))
            c.send('AUTH PLAIN %s\r\n' % plain_response('alice', password))
            c.close()
        for sid in ids:                              # the failed one after its delay
            self.wait_test_log(r'^\S+ info %s smtp disconnected ' % sid)
        c, _ = self.implicit_session(self.ports['implicit'], source=new_source())
        self.assertReply(c.cmd('AUTH PLAIN ' + plain_response('alice', 'wonderland')),
                         235, '2.7.0')

    def test_success_does_not_reset(self):
        """A good login between failures does not wipe the address's count (auth.h)."""
        src = new_source()
        c, _ = self.implicit_session(self.ports['implicit'], source=src)
        self.assertReply(c.cmd('AUTH PLAIN ' + plain_response('alice', WRONG)), 535, '5.7.8')
        self.assertReply(c.cmd('AUTH PLAIN ' + plain_response('alice', WRONG)), 535, '5.7.8')
        c2, _ = self.implicit_session(self.ports['implicit'], source=src)
        self.assertReply(c2.cmd('AUTH PLAIN ' + plain_response('alice', 'wonderland')),
                         235, '2.7.0')
        self.assertReply(c.cmd('AUTH PLAIN ' + plain_response('alice', WRONG)), 421, '4.7.0')
        self.assertClosed(c)


if __name__ == '__main__':
    petrel.main()
