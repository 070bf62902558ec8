#!/usr/bin/python3
"""
test_systemd.py: petrel as a systemd service, and its privileges.

- The unit: `systemd-analyze verify` on the unit meson generated (PETREL_UNIT, with ExecStart=
  pointed at the binary under test), its hardening (`systemd-analyze security --offline`), the
  checked-in systemd/petrel.service being the same unit for -Dprefix=/usr, and the sysusers.d
  and tmpfiles.d snippets applied to a scratch root.
- sd_notify (NOTIFY_SOCKET on a datagram socket this script binds, by path and in the abstract
  namespace): READY=1 once the port accepts, RELOADING=1 with MONOTONIC_USEC then READY=1 on
  SIGHUP, STOPPING=1 on SIGTERM, and nothing else.
- Privileges (as root; skipped otherwise): `user: nobody` shows in every id of /proc/PID/status,
  the spool it creates (or takes over from a root run) is nobody's, mail is still spooled; root
  without user: refuses to start unless --allow-root; the model of systemd/petrel.service
  (started as nobody with the ambient capability CAP_NET_BIND_SERVICE, through setpriv) binds a
  port below 1024 and then holds no capability.

A test whose tool is missing (systemd-analyze, setpriv, openssl) is skipped with the reason.
"""

import os
import random
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import PetrelTestCase, SMTPClient, make_message  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, '..', '..'))
UNIT = os.environ.get('PETREL_UNIT') or os.path.normpath(
    os.path.join(os.path.dirname(petrel.PETREL), '..', 'systemd', 'petrel.service'))
ANALYZE = shutil.which('systemd-analyze')
SYSUSERS = shutil.which('systemd-sysusers')
TMPFILES = shutil.which('systemd-tmpfiles')
SETPRIV = shutil.which('setpriv')
OPENSSL = shutil.which('openssl')
TOOL_TIMEOUT = 30
NOTIFY_TIMEOUT = 15.0
USER = 'nobody'


def is_root():
    return os.geteuid() == 0


def monotonic_usec():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def proc_status(pid):
    """/proc/PID/status as {field: [values]}."""
    out = {}
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            k, _, v = line.partition(':')
            out[k] = v.split()
    return out


def free_low_port():
    """A free 127.0.0.1 port below 1024 (binding it needs root or CAP_NET_BIND_SERVICE)."""
    for port in random.sample(range(600, 1024), 200):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(('127.0.0.1', port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise unittest.SkipTest('no free port below 1024')


def unit_settings(text):
    """A unit file as {(section, key): [values]} (comments and blank lines dropped)."""
    out, section = {}, None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith('#'):
            continue
        if line.startswith('['):
            section = line.strip('[]')
            continue
        k, _, v = line.partition('=')
        out.setdefault((section, k), []).append(v)
    return out


# ---- sd_notify ----

class NotifySink:
    """The systemd side of sd_notify: a datagram socket, by path or abstract name."""

    def __init__(self, abstract=False):
        self.dir = None
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = 'petrel-test-%d-%s' % (os.getpid(), os.urandom(4).hex())
            self.sock.bind('\0' + name)
            self.address = '@' + name
        else:
            self.dir = tempfile.mkdtemp(prefix='petrel-notify-')
            os.chmod(self.dir, 0o755)       # a petrel that dropped to nobody still sends here
            self.address = os.path.join(self.dir, 'notify')
            self.sock.bind(self.address)
            os.chmod(self.address, 0o777)

    def next(self, timeout=NOTIFY_TIMEOUT):
        """The next message as {KEY: VALUE}; AssertionError if none comes in time."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except socket.timeout:
            raise AssertionError('no sd_notify message within %.0f s' % timeout)
        text = data.decode('utf-8')
        msg = dict(line.split('=', 1) for line in text.split('\n') if line)
        msg['_raw'] = text
        return msg

    def pending(self):
        """Messages already waiting (without blocking)."""
        out = []
        self.sock.setblocking(False)
        try:
            while True:
                out.append(self.sock.recv(4096).decode('utf-8'))
        except BlockingIOError:
            pass
        return out

    def close(self):
        self.sock.close()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)


class SystemdCase(PetrelTestCase):
    START = False
    TEST_TIMEOUT = 60

    def spawn(self, p, args=('--allow-root',), prefix=(), env=None, port=None):
        """Start petrel like the fixture does (same files, same bookkeeping), but with our
        own argv and environment, and without waiting for the port."""
        p.port = port or petrel.free_port()
        p.write_config(p.port)
        p.log_offset = p.log_size()
        e = dict(os.environ)
        e.update(env or {})
        with open(p.log_path, 'ab') as log:
            p.proc = subprocess.Popen(list(prefix) + [petrel.PETREL, '-c', p.config_path] +
                                      list(args), stdin=subprocess.DEVNULL, stdout=log,
                                      stderr=log, cwd=p.workdir, env=e)
        petrel._running.append(p)
        p.returncode = None
        return p

    def wait_accepting(self, p, deadline=petrel.START_DEADLINE):
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if p.proc.poll() is not None:
                self.fail('petrel exited with %d at start-up:\n%s'
                          % (p.proc.returncode, p.log_tail()))
            try:
                c = SMTPClient(p.port, timeout=5)
            except OSError:
                time.sleep(0.02)
                continue
            c.line('QUIT')
            c.read_reply()
            c.close()
            return
        self.fail('petrel did not accept within %.0f s:\n%s' % (deadline, p.log_tail()))

    def sink(self, abstract=False):
        s = NotifySink(abstract)
        self.addCleanup(s.close)
        return s

    def user_petrel(self, config=None, start=True):
        """A petrel whose directory the user can get through (mkdtemp makes it 0700)."""
        p = self.new_petrel(config, start=False)
        os.chmod(p.workdir, 0o755)
        if start:
            p.start()
        return p


# ---- the unit ----

class Unit(SystemdCase):
    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix='petrel-unit-')
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def read_unit(self):
        if not os.path.exists(UNIT):
            self.fail('no generated unit at %s (meson configure_file)' % UNIT)
        with open(UNIT) as f:
            return f.read()

    def analyzable_unit(self):
        """The generated unit with its petrel path replaced by the binary under test (verify
        checks that ExecStart= names an executable)."""
        text = self.read_unit()
        m = re.search(r'^ExecStart=(\S+/petrel) ', text, re.M)
        self.assertIsNotNone(m, 'no ExecStart=.../petrel in %s' % UNIT)
        path = os.path.join(self.tmp, 'petrel.service')
        with open(path, 'w') as f:
            f.write(text.replace(m.group(1), os.path.abspath(petrel.PETREL)))
        return path

    def analyze(self, *args):
        return subprocess.run([ANALYZE] + list(args), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=TOOL_TIMEOUT)

    def require_analyze(self):
        if ANALYZE is None:
            self.skipTest('systemd-analyze is not installed (apt-get install systemd)')
        # Can verify run in this container at all? A unit that cannot be wrong says.
        probe = os.path.join(self.tmp, 'petrel-probe.service')
        with open(probe, 'w') as f:
            f.write('[Service]\nType=oneshot\nExecStart=/bin/true\n')
        r = self.analyze('verify', '--man=no', probe)
        if r.returncode != 0:
            self.skipTest('systemd-analyze verify cannot run here: %s'
                          % (r.stderr.strip() or r.stdout.strip())[:300])

    def test_verify(self):
        self.require_analyze()
        path = self.analyzable_unit()
        r = self.analyze('verify', '--man=no', path)
        out = (r.stdout + r.stderr).strip()
        self.assertEqual(r.returncode, 0, out)
        self.assertEqual(out, '', 'systemd-analyze verify has remarks:\n' + out)

    def test_security_exposure(self):
        self.require_analyze()
        r = self.analyze('security', '--offline=true', self.analyzable_unit())
        m = re.search(r'Overall exposure level for petrel\.service: ([\d.]+) (\w+)', r.stdout)
        if m is None:
            self.skipTest('systemd-analyze security --offline is not available: %s'
                          % (r.stderr.strip()[:200]))
        self.assertIn(m.group(2), ('SAFE', 'OK'), 'exposure %s %s:\n%s'
                      % (m.group(1), m.group(2), r.stdout))

    def test_settings(self):
        u = unit_settings(self.read_unit())
        svc = lambda k: u.get(('Service', k), [])  # noqa: E731
        self.assertEqual(svc('Type'), ['notify'])
        start = svc('ExecStart')
        self.assertEqual(len(start), 1)
        self.assertRegex(start[0], r'^/\S*/bin/petrel -c /\S*etc/petrel/petrel\.yaml$')
        self.assertEqual(svc('ExecReload'), ['/bin/kill -HUP $MAINPID'])
        self.assertEqual(svc('User'), ['petrel'])
        self.assertEqual(svc('AmbientCapabilities'), ['CAP_NET_BIND_SERVICE'])
        self.assertEqual(svc('CapabilityBoundingSet'), ['CAP_NET_BIND_SERVICE'])
        for key, want in [('NoNewPrivileges', 'yes'), ('ProtectSystem', 'strict'),
                          ('ReadWritePaths', '/var/spool/petrel'), ('PrivateTmp', 'yes'),
                          ('ProtectHome', 'yes'), ('PrivateDevices', 'yes'),
                          ('RestrictAddressFamilies', 'AF_INET AF_INET6 AF_UNIX'),
                          ('RestrictNamespaces', 'yes'), ('LockPersonality', 'yes'),
                          ('MemoryDenyWriteExecute', 'yes'),
                          ('SystemCallArchitectures', 'native')]:
            self.assertEqual(svc(key), [want], key)
        nofile = int(svc('LimitNOFILE')[0])
        self.assertGreater(nofile, 10000, 'above the default limits.max_connections')

    def test_reference_copy_is_the_usr_rendering(self):
        """systemd/petrel.service in the tree is petrel.service.in for -Dprefix=/usr."""
        with open(os.path.join(SOURCE, 'systemd', 'petrel.service.in')) as f:
            rendered = f.read().replace('@bindir@', '/usr/bin').replace('@sysconfdir@', '/etc')
        with open(os.path.join(SOURCE, 'systemd', 'petrel.service')) as f:
            self.assertEqual(f.read(), rendered,
                             'regenerate systemd/petrel.service from petrel.service.in')
        self.assertIsNone(re.search(r'@[a-z_]+@', self.read_unit()),
                          'an unsubstituted @variable@ in the generated unit')

    def test_sysusers_and_tmpfiles(self):
        if SYSUSERS is None or TMPFILES is None:
            self.skipTest('systemd-sysusers or systemd-tmpfiles is not installed')
        if not is_root():
            self.skipTest('creating files owned by petrel needs root')
        root = os.path.join(self.tmp, 'root')
        os.makedirs(os.path.join(root, 'etc'))
        r = subprocess.run([SYSUSERS, '--root=' + root,
                            os.path.join(SOURCE, 'systemd', 'petrel.sysusers')],
                           capture_output=True, text=True, timeout=TOOL_TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(root, 'etc', 'passwd')) as f:
            m = re.search(r'^petrel:x:(\d+):(\d+):petrel mail relay:/var/spool/petrel:', f.read(),
                          re.M)
        self.assertIsNotNone(m, 'no petrel user')
        r = subprocess.run([TMPFILES, '--root=' + root, '--create',
                            os.path.join(SOURCE, 'systemd', 'petrel.tmpfiles')],
                           capture_output=True, text=True, timeout=TOOL_TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stderr)
        st = os.stat(os.path.join(root, 'var', 'spool', 'petrel'))
        self.assertTrue(stat.S_ISDIR(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o750)
        self.assertEqual((st.st_uid, st.st_gid), (int(m.group(1)), int(m.group(2))))


# ---- sd_notify ----

class Notify(SystemdCase):
    def lifecycle(self, abstract):
        sink = self.sink(abstract)
        p = self.new_petrel(start=False)
        self.spawn(p, env={'NOTIFY_SOCKET': sink.address})
        ready = sink.next()
        # READY=1 means the port accepts: connect right away, no retry.
        c = self.connect(p)
        self.assertEqual(c.greeting.code, 220)
        self.assertEqual(ready.get('READY'), '1', ready['_raw'])
        self.assertRegex(ready.get('STATUS', ''), r'^petrel \S+ running: listeners=1 queued=0$')
        c.send_mail('a@example.org', 'user@localhost', make_message('notify'))
        self.assertEqual(sink.pending(), [], 'nothing between READY=1 and SIGHUP')

        before = monotonic_usec()
        os.kill(p.pid, signal.SIGHUP)
        reloading = sink.next()
        after = monotonic_usec()
        self.assertEqual(reloading.get('RELOADING'), '1', reloading['_raw'])
        usec = int(reloading['MONOTONIC_USEC'])
        self.assertTrue(before <= usec <= after, '%d not in [%d, %d]' % (usec, before, after))
        ready = sink.next()
        self.assertEqual(ready.get('READY'), '1', ready['_raw'])
        self.assertIn('running', ready.get('STATUS', ''))
        self.assertTrue(p.alive())

        self.assertEqual(p.stop(signal.SIGTERM), 0)
        stopping = sink.next(1)
        self.assertEqual(stopping.get('STOPPING'), '1', stopping['_raw'])
        self.assertIn('stopping', stopping.get('STATUS', ''))
        self.assertEqual(sink.pending(), [], 'nothing after STOPPING=1')

    def test_path_socket(self):
        self.lifecycle(abstract=False)

    def test_abstract_socket(self):
        self.lifecycle(abstract=True)

    def test_sigint_stopping(self):
        sink = self.sink()
        p = self.new_petrel(start=False)
        self.spawn(p, env={'NOTIFY_SOCKET': sink.address})
        self.assertEqual(sink.next().get('READY'), '1')
        self.assertEqual(p.stop(signal.SIGINT), 0)
        self.assertEqual(sink.next(1).get('STOPPING'), '1')

    def test_reload_status_says_what_happened(self):
        if OPENSSL is None:
            self.skipTest('openssl is not installed')
        d = tempfile.mkdtemp(prefix='petrel-notify-tls-')
        self.addCleanup(shutil.rmtree, d, True)
        cert, key = os.path.join(d, 'cert.pem'), os.path.join(d, 'key.pem')
        r = subprocess.run([OPENSSL, 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
                            'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert,
                            '-subj', '/CN=' + petrel.HOSTNAME, '-days', '2'],
                           capture_output=True, timeout=TOOL_TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stderr)
        sink = self.sink()
        p = self.new_petrel({'tls': {'certificate': cert, 'key': key}}, start=False)
        self.spawn(p, env={'NOTIFY_SOCKET': sink.address})
        self.assertEqual(sink.next().get('READY'), '1')
        os.kill(p.pid, signal.SIGHUP)
        self.assertEqual(sink.next().get('RELOADING'), '1')
        self.assertIn('reloaded', sink.next().get('STATUS', ''))
        with open(key, 'w') as f:
            f.write('not a key\n')
        os.kill(p.pid, signal.SIGHUP)
        self.assertEqual(sink.next().get('RELOADING'), '1')
        ready = sink.next()
        self.assertEqual(ready.get('READY'), '1', 'READY=1 even when the reload failed')
        self.assertIn('refused', ready.get('STATUS', ''))
        c = self.connect(p)
        self.assertEqual(c.greeting.code, 220, 'still serving with the old certificate')

    def test_no_socket_no_trouble(self):
        """Without NOTIFY_SOCKET (the fixture's way) nothing is sent and nothing is logged;
        with a dead one, petrel says so and runs anyway."""
        p = self.new_petrel()
        self.assertNotIn('notify', p.log())
        q = self.new_petrel(start=False)
        self.spawn(q, env={'NOTIFY_SOCKET': '/nonexistent/petrel/notify'})
        self.wait_accepting(q)
        q.wait_log(r'warn notify failed socket="/nonexistent/petrel/notify"')
        self.assertEqual(q.stop(), 0)


# ---- privileges ----

class UserConfig(SystemdCase):
    """user: is checked when the file is loaded, as anyone: --check finds a typo."""

    def test_unknown_user_is_a_config_error(self):
        p = self.new_petrel({'user': 'petrel-no-such-user'}, start=False)
        p.write_config(petrel.free_port())
        r = subprocess.run([petrel.PETREL, '-c', p.config_path, '--check'],
                           capture_output=True, text=True, timeout=TOOL_TIMEOUT)
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r":\d+:\d+: user: bad user name 'petrel-no-such-user': "
                                   r"no such user")


class Privileges(SystemdCase):
    def setUp(self):
        super().setUp()
        if not is_root():
            self.skipTest('switching users needs root')
        import pwd
        pw = pwd.getpwnam(USER)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid

    def assert_ids(self, pid):
        st = proc_status(pid)
        self.assertEqual(st['Uid'], [str(self.uid)] * 4, 'real, effective, saved, fs uid')
        self.assertEqual(st['Gid'], [str(self.gid)] * 4, 'real, effective, saved, fs gid')
        self.assertLessEqual(set(st['Groups']), {str(self.gid)}, 'supplementary groups')
        for cap in ('CapPrm', 'CapEff', 'CapAmb', 'CapInh'):
            self.assertEqual(int(st[cap][0], 16), 0, cap)

    def assert_owned(self, path):
        st = os.lstat(path)
        self.assertEqual((st.st_uid, st.st_gid), (self.uid, self.gid), path)

    def test_runs_as_user(self):
        p = self.user_petrel({'user': USER})
        self.assert_ids(p.pid)
        p.wait_log(r'petrel running as user=%s uid=%d group=\S+ gid=%d'
                   % (USER, self.uid, self.gid))
        for sub in ('', 'slots', 'state'):
            self.assert_owned(os.path.join(p.spool, sub))
        c = self.connect(p)
        qid = c.send_mail('a@example.org', 'user@localhost', make_message('as nobody'))
        self.assertIsNotNone(qid)
        self.assert_owned(p.spool_path(qid))
        self.assertEqual(p.message(qid).sender, 'a@example.org')
        # Threads started after the switch: every one of them is the user too.
        for tid in os.listdir('/proc/%d/task' % p.pid):
            with open('/proc/%d/task/%s/status' % (p.pid, tid)) as f:
                uids = [l.split()[1:] for l in f if l.startswith('Uid:')][0]
            self.assertEqual(uids, [str(self.uid)] * 4, 'thread %s' % tid)
        self.assertEqual(p.stop(), 0)

    def test_takes_over_a_root_spool(self):
        """A spool left by a run as root (--allow-root) is given to the user, message and all,
        and the message is still recovered and delivered from it."""
        p = self.user_petrel()
        c = self.connect(p)
        qid = c.send_mail('a@example.org', 'user@localhost', make_message('root era'))
        c.close()
        self.assertEqual(p.stop(), 0)
        self.assertEqual(os.stat(p.spool_path(qid)).st_uid, 0)
        p.overrides['user'] = USER
        p.restart()
        p.wait_log(r'spool dir=\S+ given to user=%s' % USER)
        p.wait_log(r'spool ready dir=\S+ durability=fsync messages=1\b')
        for sub in ('', 'slots', 'state'):
            self.assert_owned(os.path.join(p.spool, sub))
        self.assert_owned(p.spool_path(qid))
        self.assert_ids(p.pid)
        self.assertEqual(p.stop(), 0)

    def test_root_without_user_refuses(self):
        p = self.new_petrel(start=False)
        p.write_config(petrel.free_port())
        r = subprocess.run([petrel.PETREL, '-c', p.config_path], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=TOOL_TIMEOUT, cwd=p.workdir)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn('refusing to run as root without user:', r.stderr)
        self.assertIn('--allow-root', r.stderr)
        self.assertFalse(os.path.exists(p.spool), 'refused before touching anything')
        with self.assertRaises(OSError):
            socket.create_connection(('127.0.0.1', p.port), timeout=2).close()
        # --check does not run anything: it stays fine as root (systemd's ExecStartPre=).
        r = subprocess.run([petrel.PETREL, '-c', p.config_path, '--check'],
                           capture_output=True, text=True, timeout=TOOL_TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stderr)
        # And --allow-root runs it as root, with a warning.
        self.spawn(p, args=('--allow-root',))
        self.wait_accepting(p)
        p.wait_log(r'warn petrel running as root \(--allow-root\)')
        self.assertEqual(proc_status(p.pid)['Uid'], ['0'] * 4)
        self.assertEqual(p.stop(), 0)

    def test_tls_key_unreadable_by_the_user_is_reported(self):
        """The key is read as root at start; a SIGHUP reload reads it as the user: petrel
        warns at start when that will fail, and a failed reload keeps the old certificate."""
        if OPENSSL is None:
            self.skipTest('openssl is not installed')
        d = tempfile.mkdtemp(prefix='petrel-priv-tls-')
        self.addCleanup(shutil.rmtree, d, True)
        os.chmod(d, 0o755)
        cert, key = os.path.join(d, 'cert.pem'), os.path.join(d, 'key.pem')
        r = subprocess.run([OPENSSL, 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
                            'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert,
                            '-subj', '/CN=' + petrel.HOSTNAME, '-days', '2'],
                           capture_output=True, timeout=TOOL_TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stderr)
        os.chmod(key, 0o600)                    # root's alone
        os.chmod(cert, 0o644)
        sink = self.sink()
        p = self.user_petrel({'user': USER, 'tls': {'certificate': cert, 'key': key}},
                             start=False)
        self.spawn(p, env={'NOTIFY_SOCKET': sink.address})
        self.assertEqual(sink.next().get('READY'), '1')
        p.wait_log(r'warn petrel tls\.certificate or tls\.key is not readable by uid=%d'
                   % self.uid)
        os.kill(p.pid, signal.SIGHUP)
        self.assertEqual(sink.next().get('RELOADING'), '1')
        self.assertIn('refused', sink.next().get('STATUS', ''))
        # Readable by the user's group (the documented way): the reload works.
        os.chown(key, 0, self.gid)
        os.chmod(key, 0o640)
        os.kill(p.pid, signal.SIGHUP)
        self.assertEqual(sink.next().get('RELOADING'), '1')
        self.assertIn('reloaded', sink.next().get('STATUS', ''))
        self.assertEqual(p.stop(), 0)

    # -- the model of systemd/petrel.service: User=, AmbientCapabilities= --

    def setpriv(self, *caps):
        if SETPRIV is None:
            self.skipTest('setpriv is not installed (util-linux)')
        argv = [SETPRIV, '--reuid=%d' % self.uid, '--regid=%d' % self.gid, '--clear-groups']
        if caps:
            argv += ['--inh-caps=' + ','.join('+' + c for c in caps),
                     '--ambient-caps=' + ','.join('+' + c for c in caps)]
        return argv + ['--']

    def test_started_as_the_user_with_ambient_capability(self):
        port = free_low_port()
        p = self.user_petrel({'user': USER,
                              'listen': [{'address': '127.0.0.1:{port}', 'role': 'relay'}]},
                             start=False)
        os.makedirs(p.spool, 0o750)             # as tmpfiles.d/petrel.conf would
        os.chown(p.spool, self.uid, self.gid)
        self.spawn(p, args=(), prefix=self.setpriv('net_bind_service'), port=port)
        try:
            self.wait_accepting(p)
        except AssertionError:
            if 'setpriv:' in p.log():
                self.skipTest('setpriv cannot raise ambient capabilities here:\n' + p.log())
            raise
        p.wait_log(r'petrel capabilities dropped now that the listeners are bound')
        self.assert_ids(p.pid)
        c = self.connect(p)
        qid = c.send_mail('a@example.org', 'user@localhost', make_message('systemd model'))
        self.assert_owned(p.spool_path(qid))
        self.assertEqual(p.stop(), 0)

    def test_another_user_cannot_switch(self):
        p = self.user_petrel({'user': 'daemon'}, start=False)
        p.write_config(petrel.free_port())
        r = subprocess.run(self.setpriv() + [petrel.PETREL, '-c', p.config_path],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=TOOL_TIMEOUT, cwd=p.workdir)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn('user: daemon', r.stderr)
        self.assertIn('not as root: it cannot switch users', r.stderr)

    def test_without_the_capability_a_low_port_fails(self):
        """Not root and no CAP_NET_BIND_SERVICE: the bind fails, clearly, exit 1."""
        port = free_low_port()
        p = self.user_petrel({'listen': [{'address': '127.0.0.1:{port}', 'role': 'relay'}]},
                             start=False)
        p.port = port
        p.write_config(port)
        r = subprocess.run(self.setpriv() + [petrel.PETREL, '-c', p.config_path],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=TOOL_TIMEOUT, cwd=p.workdir)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn('127.0.0.1:%d' % port, r.stderr)
        self.assertIn('Permission denied', r.stderr)


if __name__ == '__main__':
    petrel.main()
