#!/usr/bin/python3
"""
test_cli.py: the command line and the process: --version, --help, --check (exit 0 on a valid
file, 1 with "FILE:LINE:COL: key: message" errors), usage errors (exit 2), start-up failures
(exit 1 with a message), and signals (SIGTERM/SIGINT: exit 0; SIGHUP: keeps running).
"""

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402

USERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'users')
from petrel import PETREL, PetrelTestCase, make_message  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLE = os.path.normpath(os.path.join(HERE, '..', '..', 'config', 'petrel.yaml'))
RUN_TIMEOUT = 10


def run(*args, cwd=None):
    # --allow-root: the tests run as root in CI and their configs have no user:.
    return subprocess.run([PETREL, '--allow-root'] + list(args), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=cwd)


class Cli(PetrelTestCase):
    START = False
    TEST_TIMEOUT = 40

    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix='petrel-cli-')
        self.addCleanup(subprocess.run, ['rm', '-rf', self.dir], timeout=10)

    def write(self, text, name='petrel.yaml'):
        path = os.path.join(self.dir, name)
        with open(path, 'w') as f:
            f.write(text)
        return path

    def check_errors(self, text, expected):
        """--check on `text` exits 1 and reports each (line, key) in `expected` as
        FILE:LINE:COL: KEY: message."""
        path = self.write(text)
        r = run('-c', path, '--check')
        self.assertEqual(r.returncode, 1, 'stdout=%r stderr=%r' % (r.stdout, r.stderr))
        self.assertNotIn('configuration is valid', r.stdout)
        got = re.findall(r'^%s:(\d+):(\d+): (\S+): (.+)$' % re.escape(path), r.stderr, re.M)
        self.assertTrue(got, 'no FILE:LINE:COL: error in %r' % r.stderr)
        for line, key in expected:
            self.assertTrue(any(int(g[0]) == line and g[2] == key for g in got),
                            'no error at line %d for %s in %r' % (line, key, r.stderr))
        return r.stderr

    # -- informational --
    def test_version(self):
        for opt in ('--version', '-V'):
            r = run(opt)
            self.assertEqual(r.returncode, 0)
            self.assertRegex(r.stdout, r'^petrel \d+\.\d+\.\d+\n$')

    def test_help(self):
        for opt in ('--help', '-h'):
            r = run(opt)
            self.assertEqual(r.returncode, 0)
            self.assertIn('usage: petrel', r.stdout)
            self.assertIn('--check', r.stdout)

    def test_unknown_option_2(self):
        r = run('--no-such-option')
        self.assertEqual(r.returncode, 2)
        self.assertIn('usage:', r.stderr)

    def test_unexpected_argument_2(self):
        r = run('-c', SAMPLE, 'extra')
        self.assertEqual(r.returncode, 2)
        self.assertIn("unexpected argument 'extra'", r.stderr)

    def test_missing_option_argument_2(self):
        r = run('-c')
        self.assertEqual(r.returncode, 2)

    # -- --check --
    def test_check_sample_config(self):
        self.assertTrue(os.path.exists(SAMPLE), SAMPLE)
        r = run('-c', SAMPLE, '--check', cwd=self.dir)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('configuration is valid', r.stdout)
        self.assertFalse(os.path.exists(os.path.join(self.dir, 'var')),
                         '--check creates no spool')

    def test_check_empty_file_valid(self):
        r = run('-c', self.write(''), '--check')
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_check_full_valid_file(self):
        path = self.write('hostname: mx.example.org\nspool: /var/spool/petrel\n'
                          'durability: none\nlog_level: debug\n'
                          'listen:\n  - address: "*:25"\n    role: relay\n'
                          '  - address: "[::1]:587"\n    role: submission\n'
                          'relay:\n  networks: [192.0.2.0/24, "2001:db8::/32"]\n'
                          '  local_domains: [example.org, Example.NET.]\n'
                          'limits:\n  max_message_size: 10M\n  max_recipients: 100\n'
                          '  max_connections: 5\n  max_connections_per_ip: 1\n'
                          '  max_errors: 1\n  timeouts: { command: 5m, data: 1h30m }\n'
                          'auth:\n  users_file: %s\n' % USERS)
        r = run('-c', path, '--check')
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_check_missing_file(self):
        path = os.path.join(self.dir, 'nope.yaml')
        r = run('-c', path, '--check')
        self.assertEqual(r.returncode, 1)
        self.assertIn('%s: cannot open' % path, r.stderr)

    def test_check_bad_number(self):
        self.check_errors('limits:\n  max_errors: ten\n', [(2, 'limits.max_errors')])

    def test_check_unknown_key(self):
        self.check_errors('hostname: a.example\nno_such_key: 1\n', [(2, 'no_such_key')])

    def test_check_unknown_nested_key(self):
        self.check_errors('limits:\n  max_errors: 3\n  max_bananas: 3\n',
                          [(3, 'limits.max_bananas')])

    def test_check_bad_enum(self):
        self.check_errors('durability: sometimes\n', [(1, 'durability')])
        self.check_errors('log_level: chatty\n', [(1, 'log_level')])

    def test_check_recipients_minimum(self):
        err = self.check_errors('limits:\n  max_recipients: 50\n',
                                [(2, 'limits.max_recipients')])
        self.assertIn('100', err)

    def test_check_bad_listen(self):
        self.check_errors('listen:\n  - address: 127.0.0.1:2525\n    role: relay\n'
                          '  - address: not-an-address\n    role: relay\n',
                          [(4, 'listen[1].address')])
        self.check_errors('listen:\n  - address: 127.0.0.1:2525\n    role: boss\n',
                          [(3, 'listen[0].role')])

    def test_check_bad_network(self):
        self.check_errors('relay:\n  networks: [10.0.0.0/8, 10.0.0.0/33]\n',
                          [(2, 'relay.networks[1]')])

    def test_check_bad_duration_and_size(self):
        self.check_errors('limits:\n  max_message_size: 12Q\n  timeouts:\n    command: 5x\n',
                          [(2, 'limits.max_message_size'), (4, 'limits.timeouts.command')])

    def test_check_wrong_type(self):
        self.check_errors('listen: 127.0.0.1:25\n', [(1, 'listen')])
        self.check_errors('limits: 3\n', [(1, 'limits')])

    def test_check_all_errors_reported(self):
        err = self.check_errors('durability: maybe\nlimits:\n  max_errors: -1\n'
                                'log_level: loud\n',
                                [(1, 'durability'), (3, 'limits.max_errors'), (4, 'log_level')])
        self.assertGreaterEqual(len(err.strip().splitlines()), 3)

    def test_check_yaml_syntax_error(self):
        path = self.write('hostname: a\nlisten: [\n')
        r = run('-c', path, '--check')
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r'^%s:\d+(:\d+)?: ' % re.escape(path))

    # -- start-up failures --
    def test_listen_address_in_use_exit_1(self):
        holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(holder.close)
        holder.bind(('127.0.0.1', 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        p = petrel.Petrel(name='in-use')
        self.addCleanup(p.cleanup)
        p.write_config(port)
        r = run('-c', p.config_path)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn('127.0.0.1:%d' % port, r.stderr)
        self.assertIn('Address already in use', r.stderr)

    def test_listen_address_not_local_exit_1(self):
        p = petrel.Petrel({'listen': [{'address': '192.0.2.1:2525', 'role': 'relay'}]},
                          name='not-local')
        self.addCleanup(p.cleanup)
        p.write_config(0)
        r = run('-c', p.config_path)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn('192.0.2.1:2525', r.stderr)

    def test_spool_not_creatable_exit_1(self):
        blocker = self.write('a file, not a directory', name='blocker')
        p = petrel.Petrel({'spool': os.path.join(blocker, 'spool')}, name='bad-spool')
        self.addCleanup(p.cleanup)
        p.write_config(petrel.free_port())
        r = run('-c', p.config_path)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn('spool', r.stderr)

    # -- signals --
    def test_sigterm_exit_0(self):
        p = self.new_petrel()
        c = self.connect(p)
        c.send_mail('a@example.org', 'user@localhost', make_message('before TERM'))
        self.assertEqual(p.stop(signal.SIGTERM), 0)
        self.assertIn('petrel stopped', p.log())

    def test_sigint_exit_0(self):
        p = self.new_petrel()
        self.assertEqual(p.stop(signal.SIGINT), 0)

    def test_sighup_keeps_running(self):
        p = self.new_petrel()
        os.kill(p.pid, signal.SIGHUP)
        p.wait_log(r'SIGHUP')
        self.assertTrue(p.alive())
        c = self.connect(p)
        c.send_mail('a@example.org', 'user@localhost', make_message('after HUP'))
        self.assertEqual(p.stop(), 0)

    def test_relative_spool_is_relative_to_cwd(self):
        p = self.new_petrel({'spool': 'rel-spool'})
        c = self.connect(p)
        qid = c.send_mail('a@example.org', 'user@localhost', make_message('relative'))
        self.assertEqual(os.path.dirname(p.spool_path(qid)),
                         os.path.join(p.workdir, 'rel-spool', 'slots'))

    def test_startup_log_lines(self):
        p = self.new_petrel()
        p.wait_log(r'listening address=127\.0\.0\.1:%d role=relay' % p.port)
        p.wait_log(r'spool ready dir=\S+ durability=fsync messages=0\b')
        p.wait_log(r'petrel \d+\.\d+\.\d+ started hostname=%s ' % re.escape(petrel.HOSTNAME))


if __name__ == '__main__':
    petrel.main()
