#!/usr/bin/python3
"""
test_clients.py: real SMTP clients against petrel: swaks (plain, --pipeline, --data, quitting
early) and curl (smtp:// upload). Each test is skipped, not passed, when its tool is missing.
"""

import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import PetrelTestCase, stuff  # noqa: E402

SWAKS = shutil.which('swaks')
CURL = shutil.which('curl')
TOOL_TIMEOUT = 30


def tag():
    return 'tag-' + os.urandom(6).hex()


class Clients(PetrelTestCase):

    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix='petrel-clients-')
        self.addCleanup(shutil.rmtree, self.dir, True)

    def tool(self, *args):
        r = subprocess.run(list(args), stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=TOOL_TIMEOUT)
        return r.returncode, r.stdout.decode('utf-8', 'replace'), \
            r.stderr.decode('utf-8', 'replace')

    def find(self, marker):
        """The spooled messages whose data contain `marker`."""
        return [m for m in self.petrel.messages() if marker.encode() in m.data]

    def server(self):
        return '127.0.0.1:%d' % self.petrel.port

    # -- swaks --
    def swaks(self, *extra):
        if not SWAKS:
            self.skipTest('swaks is not installed')
        return self.tool(SWAKS, '--server', self.server(), '--timeout', '10',
                         '--helo', 'client.test', *extra)

    def test_swaks_plain(self):
        t = tag()
        rc, out, err = self.swaks('--to', 'user@localhost', '--from', 'a@example.org',
                                  '--header', 'Subject: %s' % t)
        self.assertEqual(rc, 0, out + err)
        self.assertRegex(out, r'<-  250 2\.0\.0 Ok: queued as [0-9a-f]{16}')
        ms = self.find(t)
        self.assertEqual(len(ms), 1)
        self.assertEqual(ms[0].sender, 'a@example.org')
        self.assertEqual([r['addr'] for r in ms[0].rcpts], ['user@localhost'])
        self.assertEqual(ms[0].envelope['helo'], 'client.test')

    def test_swaks_pipeline(self):
        t = tag()
        rc, out, err = self.swaks('--pipeline', '--to', 'user@localhost,other@localhost',
                                  '--from', 'a@example.org', '--header', 'Subject: %s' % t)
        self.assertEqual(rc, 0, out + err)
        self.assertIn('PIPELINING', out)
        ms = self.find(t)
        self.assertEqual(len(ms), 1)
        self.assertEqual(sorted(r['addr'] for r in ms[0].rcpts),
                         ['other@localhost', 'user@localhost'])

    def test_swaks_data_with_dots(self):
        t = tag()
        rc, out, err = self.swaks('--to', 'user@localhost', '--from', 'a@example.org',
                                  '--data', 'Subject: %s\\n\\n.leading dot\\n..two\\n.\\nend\\n'
                                  % t)
        self.assertEqual(rc, 0, out + err)
        ms = self.find(t)
        self.assertEqual(len(ms), 1)
        self.assertEqual(ms[0].body, stuff(b'Subject: %s\r\n\r\n.leading dot\r\n..two\r\n.\r\n'
                                           b'end\r\n\r\n' % t.encode()))

    def test_swaks_null_sender(self):
        t = tag()
        rc, out, err = self.swaks('--to', 'postmaster', '--from', '<>',
                                  '--header', 'Subject: %s' % t)
        self.assertEqual(rc, 0, out + err)
        ms = self.find(t)
        self.assertEqual(len(ms), 1)
        self.assertEqual(ms[0].envelope['from'], '<>')
        self.assertEqual([r['addr'] for r in ms[0].rcpts], ['postmaster'])

    def test_swaks_quit_after_rcpt_spools_nothing(self):
        before = self.petrel.queue_ids()
        rc, out, err = self.swaks('--to', 'user@localhost', '--from', 'a@example.org',
                                  '--quit-after', 'RCPT')
        self.assertEqual(rc, 0, out + err)
        self.assertIn('221 2.0.0', out)
        self.assertEqual(self.petrel.queue_ids(), before)

    def test_swaks_relay_denied(self):
        """swaks sees the 554 from a non-relay petrel and fails."""
        if not SWAKS:
            self.skipTest('swaks is not installed')
        p = self.new_petrel({'relay': {'networks': ['10.0.0.0/8']}})
        rc, out, err = self.tool(SWAKS, '--server', '127.0.0.1:%d' % p.port, '--timeout', '10',
                                 '--to', 'someone@example.com', '--from', 'a@example.org')
        self.assertNotEqual(rc, 0)
        self.assertIn('554 5.7.1', out)
        self.assertEqual(p.queue_ids(), [])

    # -- curl --
    def curl(self, *extra):
        if not CURL:
            self.skipTest('curl is not installed')
        return self.tool(CURL, '-sS', '--max-time', '20', 'smtp://%s' % self.server(), *extra)

    def write(self, data):
        path = os.path.join(self.dir, 'mail-%s.eml' % os.urandom(4).hex())
        with open(path, 'wb') as f:
            f.write(data)
        return path

    def test_curl_upload(self):
        t = tag()
        data = b'Subject: %s\r\nFrom: a@example.org\r\n\r\nhello from curl\r\n.dot\r\n' \
            % t.encode()
        rc, out, err = self.curl('--mail-from', 'a@example.org', '--mail-rcpt',
                                 'user@localhost', '-T', self.write(data))
        self.assertEqual(rc, 0, out + err)
        ms = self.find(t)
        self.assertEqual(len(ms), 1)
        self.assertEqual(ms[0].body, stuff(data))
        self.assertEqual([r['addr'] for r in ms[0].rcpts], ['user@localhost'])

    def test_curl_several_recipients_crlf(self):
        t = tag()
        data = b'Subject: %s\n\nunix line ends, converted by --crlf\n' % t.encode()
        rc, out, err = self.curl('--crlf', '--mail-from', 'a@example.org',
                                 '--mail-rcpt', 'one@localhost', '--mail-rcpt', 'two@localhost',
                                 '-T', self.write(data))
        self.assertEqual(rc, 0, out + err)
        ms = self.find(t)
        self.assertEqual(len(ms), 1)
        self.assertEqual(ms[0].body, data.replace(b'\n', b'\r\n'))
        self.assertEqual([r['addr'] for r in ms[0].rcpts], ['one@localhost', 'two@localhost'])

    def test_curl_bare_lf_refused(self):
        """Without --crlf curl sends bare LFs: petrel refuses the message (550 5.6.11)."""
        t = tag()
        rc, out, err = self.curl('--mail-from', 'a@example.org', '--mail-rcpt',
                                 'user@localhost', '-T', self.write(b'Subject: %s\n\nlf\n'
                                                                    % t.encode()))
        self.assertNotEqual(rc, 0, 'curl reported success for a refused message')
        self.assertEqual(self.find(t), [])


if __name__ == '__main__':
    petrel.main()
