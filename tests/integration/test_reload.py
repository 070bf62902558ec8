#!/usr/bin/env python3
"""
SIGHUP reloads the whole configuration (issue #6): new settings apply to new sessions, live
sessions finish on the old ones, nothing is dropped; a config with errors (or one that cannot be
applied: a port that cannot be bound, an unreadable file) is refused with the errors logged and
the old one kept; what only a restart can change is kept with a warning.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nexthop  # noqa: E402
import petrel  # noqa: E402
from petrel import free_port, make_message  # noqa: E402

USERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'users')
RELOADED = r'petrel reloaded config='
REFUSED = r'petrel reload refused'


class ReloadCase(nexthop.DeliveryCase):

    def reload(self, p, changes=None, outcome=RELOADED, replace=None):
        """Rewrite p's config (deep-merged changes, or whole top-level keys replaced) on the
        same port, SIGHUP, and wait for the log line of the outcome. Returns the log since."""
        if replace:
            p.overrides.update(replace)
        if changes:
            p.overrides = petrel.deep_merge(p.overrides, changes)
        p.write_config(p.port)
        return self.hup(p, outcome)

    def hup(self, p, outcome=RELOADED):
        mark = p.log_size()
        os.kill(p.pid, signal.SIGHUP)
        nexthop.wait_for(lambda: re.search(outcome, p.log_since(mark)), timeout=10,
                         what='a log line matching %r' % outcome)
        return p.log_since(mark)

    def ehlo_lines(self, c):
        r = c.ehlo()
        self.assertReply(r, 250)
        return r.lines

    def size_of(self, lines):
        for line in lines:
            m = re.match(r'250[- ]SIZE (\d+)', line)
            if m:
                return int(m.group(1))
        return None

    def send_one(self, c, tag, rcpt='user@localhost'):
        self.assertReply(c.mail('a@example.org'), 250, '2.1.0')
        self.assertReply(c.rcpt(rcpt), 250, '2.1.5')
        r354, r = c.data(make_message(tag))
        self.assertReply(r354, 354)
        self.assertIsNotNone(r)
        self.assertReply(r, 250, '2.0.0')
        return r.queue_id


class Settings(ReloadCase):

    def test_new_sessions_new_settings_live_sessions_old_ones(self):
        p = self.new_petrel({'hostname': 'before.test',
                             'limits': {'max_message_size': '10M'}})
        old = self.connect(p)
        self.assertIn('before.test', old.greeting.lines[0])
        self.assertEqual(self.size_of(self.ehlo_lines(old)), 10 * 1024 * 1024)
        self.assertReply(old.mail('a@example.org'), 250, '2.1.0')   # mid-transaction

        self.reload(p, {'hostname': 'after.test', 'limits': {'max_message_size': '20M'}})

        new = self.connect(p)
        self.assertIn('after.test', new.greeting.lines[0])
        lines = self.ehlo_lines(new)
        self.assertIn('after.test', lines[0])
        self.assertEqual(self.size_of(lines), 20 * 1024 * 1024)
        qid_new = self.send_one(new, 'reload-new')

        # The live session finishes its transaction, and still speaks as it started.
        self.assertReply(old.rcpt('user@localhost'), 250, '2.1.5')
        r354, r = old.data(make_message('reload-old'))
        self.assertReply(r, 250, '2.0.0')
        lines = self.ehlo_lines(old)
        self.assertIn('before.test', lines[0])
        self.assertEqual(self.size_of(lines), 10 * 1024 * 1024)
        self.assertEqual(sorted(p.queue_ids()), sorted([qid_new, r.queue_id]))
        # Received: names the host as each session knew it.
        self.assertIn(b'by before.test', p.message(r.queue_id).data)
        self.assertIn(b'by after.test', p.message(qid_new).data)

    def test_relay_networks_and_local_domains(self):
        p = self.new_petrel({'relay': {'networks': ['10.0.0.0/8'],
                                       'local_domains': ['localhost']}})
        c = self.connect(p)
        self.ehlo_lines(c)
        self.assertReply(c.mail('a@example.org'), 250)
        self.assertReply(c.rcpt('x@elsewhere.example'), 554, '5.7.1')   # not a relay client
        self.assertReply(c.rcpt('x@newlocal.test'), 554, '5.7.1')

        self.reload(p, replace={'relay': {'networks': ['127.0.0.0/8'],
                                          'local_domains': ['localhost', 'newlocal.test']}})
        c2 = self.connect(p)
        self.ehlo_lines(c2)
        self.assertReply(c2.mail('a@example.org'), 250)
        self.assertReply(c2.rcpt('x@elsewhere.example'), 250, '2.1.5')
        self.assertReply(c2.rcpt('x@newlocal.test'), 250, '2.1.5')
        # The session from before keeps the old policy.
        self.assertReply(c.rcpt('x@elsewhere.example'), 554, '5.7.1')

    def test_log_level(self):
        p = self.new_petrel({'log_level': 'warn'})
        c = self.connect(p)
        c.quit()
        self.assertNotIn('smtp connected', p.log())
        self.reload(p, {'log_level': 'info'})
        c = self.connect(p)
        c.quit()
        p.wait_log(r'smtp connected address=127\.0\.0\.1')


class Refused(ReloadCase):

    def test_config_with_errors_keeps_the_old_one(self):
        p = self.new_petrel({'hostname': 'kept.test'})
        live = self.connect(p)
        self.ehlo_lines(live)
        with open(p.config_path) as f:
            good = f.read()
        self.assertIn('durability: fsync', good)
        bad = good.replace('hostname: kept.test', 'hostname: changed.test').replace(
            'durability: fsync', 'durability: sometimes') + 'bogus_key: 1\n'
        with open(p.config_path, 'w') as f:
            f.write(bad)
        since = self.hup(p, REFUSED)
        # Every error, with file, line and key.
        self.assertRegex(since, r'reload refused: %s:\d+:\d+: durability: '
                         % re.escape(p.config_path))
        self.assertRegex(since, r'reload refused: %s:\d+:\d+: bogus_key: '
                         % re.escape(p.config_path))
        self.assertTrue(p.alive())
        c = self.connect(p)
        self.assertIn('kept.test', c.greeting.lines[0])
        self.ehlo_lines(c)
        self.send_one(c, 'after-bad-reload')
        self.send_one(live, 'live-after-bad-reload')

        # A syntax error, then a missing file: refused the same way.
        with open(p.config_path, 'w') as f:
            f.write('listen: [unclosed\n')
        self.assertRegex(self.hup(p, REFUSED), r'reload refused: .*syntax error')
        os.rename(p.config_path, p.config_path + '.away')
        self.assertRegex(self.hup(p, REFUSED), r'reload refused: .*cannot open')
        os.rename(p.config_path + '.away', p.config_path)

        # Mended: the next SIGHUP takes it.
        with open(p.config_path, 'w') as f:
            f.write(good.replace('hostname: kept.test', 'hostname: mended.test'))
        self.hup(p)
        self.assertIn('mended.test', self.connect(p).greeting.lines[0])

    def test_unbindable_listener_refuses_everything(self):
        p = self.new_petrel({'hostname': 'kept.test'})
        busy = socket.socket()
        self.addCleanup(busy.close)
        busy.bind(('127.0.0.1', 0))
        busy.listen(1)
        taken = busy.getsockname()[1]
        since = self.reload(p, {'hostname': 'changed.test',
                                'listen': [{'address': '127.0.0.1:{port}', 'role': 'relay'},
                                           {'address': '127.0.0.1:%d' % taken,
                                            'role': 'relay'}]}, outcome=REFUSED)
        self.assertIn('127.0.0.1:%d' % taken, since)
        self.assertIn('kept.test', self.connect(p).greeting.lines[0])

    def test_unreadable_users_file_refuses(self):
        p = self.new_petrel({'hostname': 'kept.test'})
        since = self.reload(p, {'hostname': 'changed.test',
                                'auth': {'users_file': USERS, 'require_tls': False}},
                            outcome=RELOADED)
        self.assertIn('users=2', since)
        os.makedirs(os.path.join(p.workdir, 'bad'), exist_ok=True)
        bad = os.path.join(p.workdir, 'bad', 'users')
        with open(bad, 'w') as f:
            f.write('carol:not-a-crypt-hash\n')
        since = self.reload(p, {'hostname': 'again.test', 'auth': {'users_file': bad}},
                            outcome=REFUSED)
        self.assertIn(bad, since)
        self.assertIn('changed.test', self.connect(p).greeting.lines[0])

    def test_restart_only_keys_are_kept_with_a_warning(self):
        p = self.new_petrel({'durability': 'fsync'})
        old_spool = p.spool
        since = self.reload(p, {'durability': 'none', 'hostname': 'applied.test',
                                'spool': os.path.join(p.workdir, 'other-spool')})
        self.assertRegex(since, r'warn petrel reload: spool, durability changed in .*; a '
                         r'restart applies them')
        c = self.connect(p)
        self.assertIn('applied.test', c.greeting.lines[0])
        self.ehlo_lines(c)
        qid = self.send_one(c, 'still-old-spool')
        self.assertEqual(os.path.dirname(petrel.find_slot(old_spool, qid)[0]),
                         os.path.join(old_spool, 'slots'))
        self.assertFalse(os.path.exists(os.path.join(p.workdir, 'other-spool')))


class Metrics(ReloadCase):

    def test_reload_outcomes_are_counted(self):
        port = free_port()
        p = self.new_petrel({'stats': {'address': '127.0.0.1:%d' % port}})

        def metrics():
            with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % port,
                                        timeout=5) as r:
                text = r.read().decode()
            return {m.group(1): float(m.group(2)) for m in
                    re.finditer(r'^(petrel_config_\w+) (\S+)$', text, re.M)}

        self.assertEqual(metrics(), {'petrel_config_reloads_total': 0,
                                     'petrel_config_reload_failures_total': 0,
                                     'petrel_config_last_reload_successful': 1})
        self.reload(p, {'hostname': 'm1.test'})
        with open(p.config_path, 'a') as f:
            f.write('bogus_key: 1\n')
        self.hup(p, REFUSED)
        self.assertEqual(metrics(), {'petrel_config_reloads_total': 1,
                                     'petrel_config_reload_failures_total': 1,
                                     'petrel_config_last_reload_successful': 0})
        self.reload(p, {'hostname': 'm2.test'})
        self.assertEqual(metrics()['petrel_config_last_reload_successful'], 1)
        self.assertEqual(metrics()['petrel_config_reloads_total'], 2)


class Listeners(ReloadCase):

    def test_listeners_added_and_removed(self):
        p = self.new_petrel()
        first = p.port
        live = self.connect(p)
        self.ehlo_lines(live)
        extra = free_port()
        self.reload(p, {'listen': [{'address': '127.0.0.1:{port}', 'role': 'relay'},
                                   {'address': '127.0.0.1:%d' % extra, 'role': 'relay'}]})
        c = self.track(petrel.SMTPClient(extra))
        self.assertReply(c.greeting, 220)
        self.ehlo_lines(c)
        self.send_one(c, 'on-the-new-port')

        # Only the new port now: the old one stops accepting, its live session goes on.
        p.overrides['listen'] = [{'address': '127.0.0.1:%d' % extra, 'role': 'relay'}]
        p.write_config(first)
        since = self.hup(p)
        self.assertIn('listener closed address=127.0.0.1:%d' % first, since)
        with self.assertRaises(OSError):
            socket.create_connection(('127.0.0.1', first), timeout=2).close()
        self.send_one(live, 'live-on-the-old-port')
        self.assertReply(petrel.SMTPClient(extra).greeting, 220)

    def test_role_change_applies_to_new_sessions(self):
        p = self.new_petrel({'auth': {'users_file': USERS, 'require_tls': False}})
        relay = self.connect(p)
        self.ehlo_lines(relay)
        self.reload(p, {'listen': [{'address': '127.0.0.1:{port}', 'role': 'submission'}]})
        sub = self.connect(p)
        self.ehlo_lines(sub)
        self.assertReply(sub.mail('a@example.org'), 530, '5.7.0')   # AUTH first, now
        self.assertReply(relay.mail('a@example.org'), 250, '2.1.0')  # still a relay session


class Auth(ReloadCase):

    def test_auth_turned_on_and_users_file_reread(self):
        p = self.new_petrel()
        c = self.connect(p)
        self.assertFalse(any('AUTH' in l for l in self.ehlo_lines(c)))
        users = os.path.join(p.workdir, 'users')
        with open(USERS) as f:
            alice = [l for l in f if l.startswith('alice:')]
        with open(users, 'w') as f:
            f.writelines(alice)
        self.reload(p, {'auth': {'users_file': users, 'require_tls': False}})
        c = self.connect(p)
        self.assertTrue(any('AUTH' in l for l in self.ehlo_lines(c)))
        self.assertReply(c.cmd('AUTH PLAIN AGFsaWNlAHdvbmRlcmxhbmQ='), 235, '2.7.0')  # alice
        c = self.connect(p)
        self.ehlo_lines(c)
        self.assertReply(c.cmd('AUTH PLAIN AGJvYgBidWlsZGVy'), 535, '5.7.8')  # bob: not yet

        with open(USERS) as f, open(users, 'w') as out:
            out.write(f.read())
        self.hup(p)
        c = self.connect(p)
        self.ehlo_lines(c)
        self.assertReply(c.cmd('AUTH PLAIN AGJvYgBidWlsZGVy'), 235, '2.7.0')  # bob now


class Routes(ReloadCase):

    def test_queued_mail_follows_the_new_route(self):
        # The default test route is a refused port (retry in 1 h): the message waits.
        p = self.new_petrel()
        qid = self.submit(p, 'a@example.org', 'rcpt@far.example', make_message('reroute'))
        nexthop.wait_for(lambda: re.search(r'%s delivery .*status=deferred' % qid, p.log()),
                         what='the first attempt to fail')
        sink = self.capture()
        self.reload(p, replace={'routes': [{'domain': '*', 'relay': sink.address,
                                            'tls': 'none'}]})
        r = subprocess.run([petrel.PETREL, '-c', p.config_path, 'queue', 'flush'],
                           capture_output=True, text=True, timeout=10, cwd=p.workdir)
        self.assertEqual(r.returncode, 0, r.stderr)
        nexthop.wait_for(lambda: len(sink.accepted()) == 1, what='delivery on the new route')
        self.assertEqual(sink.delivered_rcpts(), ['rcpt@far.example'])
        nexthop.wait_for(lambda: qid not in p.queue_ids(), what='the queue to empty')


class UnderLoad(ReloadCase):
    TEST_TIMEOUT = 90

    def test_sighup_under_load_fails_no_session(self):
        """Ten clients send 30 messages each over their own sessions (ending and opening
        sessions as they go) while petrel reloads again and again (alternating host names):
        every message gets its 250, once, and no session fails."""
        p = self.new_petrel({'hostname': 'load-a.test', 'durability': 'none'})
        clients, per = 10, 30
        results, errors = [], []
        lock = threading.Lock()
        started = threading.Barrier(clients + 1)

        def client(n):
            try:
                c = petrel.SMTPClient(p.port)
                started.wait(10)
                self.assertReply(c.ehlo(), 250)
                for i in range(per):
                    qid = self.send_one(c, 'load-%d-%d' % (n, i))
                    with lock:
                        results.append(qid)
                    # Some sessions end and come back: new sessions meet new configs.
                    if i % 10 == 9:
                        c.quit()
                        c.close()
                        c = petrel.SMTPClient(p.port)
                        self.assertReply(c.ehlo(), 250)
                c.quit()
                c.close()
            except BaseException as e:          # noqa: B902 -- reported below
                with lock:
                    errors.append('client %d: %r' % (n, e))

        threads = [threading.Thread(target=client, args=(n,), daemon=True)
                   for n in range(clients)]
        for t in threads:
            t.start()
        started.wait(10)
        reloads = 0
        # At least ten reloads, and more for as long as the clients are still sending.
        while reloads < 10 or (any(t.is_alive() for t in threads) and reloads < 200):
            self.reload(p, {'hostname': 'load-%s.test' % 'ab'[reloads % 2]})
            reloads += 1
            time.sleep(0.02)
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])
        self.assertEqual(len(results), clients * per)
        self.assertEqual(len(set(results)), clients * per)
        self.assertEqual(sorted(p.queue_ids()), sorted(results))
        self.assertEqual(p.log().count('petrel reloaded config='), reloads)
        self.assertIn('load-b.test', p.log())


if __name__ == '__main__':
    petrel.main()
