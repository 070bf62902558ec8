#!/usr/bin/python3
"""
test_transcripts.py: SMTP conversations as data (curl's tests/data, OpenSMTPD's smtpscript).
Each cases/*.txt file is one test. Its lines:

  # comment                      (and blank lines: ignored)
  config {"limits": {...}}       first line only: JSON overrides; the case gets its own petrel
  send TEXT                      TEXT and CRLF, in one write
  sendraw TEXT                   TEXT exactly, in one write (no CRLF added)
  pause SECONDS                  wait (only to separate writes into segments)
  expect CODE [ENH [TEXT]]       read one whole reply: exact code, exact enhanced code if
                                 given ("-" for none), and the last line containing TEXT
  expect-closed                  the server closes the connection (nothing else comes)
  spool +N                       the spool holds exactly N more messages than at the start
  spool-none-contains TEXT       no queued message contains TEXT
  spool-last-body TEXT           the newest message of this case is exactly TEXT (without
                                 petrel's Received: header)

TEXT escapes: \\r \\n \\t \\0 \\xNN \\\\, and {C*N} for N copies of C (e.g. {x*600}).
"""

import glob
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import PetrelTestCase  # noqa: E402

CASES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'cases')


def unescape(text):
    text = re.sub(r'\{(.+?)\*(\d+)\}', lambda m: m.group(1) * int(m.group(2)), text)
    out = bytearray()
    i = 0
    raw = text.encode('utf-8')
    while i < len(raw):
        ch = raw[i:i + 1]
        if ch != b'\\' or i + 1 == len(raw):
            out += ch
            i += 1
            continue
        nxt = raw[i + 1:i + 2]
        if nxt == b'x':
            out.append(int(raw[i + 2:i + 4], 16))
            i += 4
            continue
        out += {b'r': b'\r', b'n': b'\n', b't': b'\t', b'0': b'\0', b'\\': b'\\'}[nxt]
        i += 2
    return bytes(out)


class Transcripts(PetrelTestCase):
    CONFIG = {'durability': 'none'}

    def run_case(self, path):
        with open(path, encoding='utf-8') as f:
            lines = [l.rstrip('\n') for l in f]
        lines = [l for l in lines if l.strip() and not l.lstrip().startswith('#')]
        p = self.petrel
        if lines and lines[0].startswith('config '):
            p = self.new_petrel(dict(self.CONFIG, **json.loads(lines.pop(0)[7:])),
                                name=os.path.basename(path))
        before = set(p.queue_ids())
        c = self.connect(p, greet=False, timeout=5)
        queued = []
        for n, line in enumerate(lines, 1):
            verb, _, arg = line.partition(' ')
            where = '%s: step %d: %s' % (os.path.basename(path), n, line[:80])
            if verb == 'send':
                c.send(unescape(arg) + b'\r\n')
            elif verb == 'sendraw':
                c.send(unescape(arg))
            elif verb == 'pause':
                time.sleep(float(arg))
            elif verb == 'expect':
                code, _, rest = arg.partition(' ')
                enh, _, text = rest.partition(' ')
                try:
                    r = c.read_reply()
                except (OSError, petrel.ConnectionClosed) as e:
                    self.fail('%s: no reply (%r); unread bytes %r' % (where, e, c.buf[:200]))
                if r.queue_id:
                    queued.append(r.queue_id)
                self.assertEqual(r.code, int(code), '%s: got %r' % (where, r))
                if enh:
                    self.assertEqual(r.enhanced, '' if enh == '-' else enh,
                                     '%s: got %r' % (where, r))
                if text:
                    self.assertIn(text, r.lines[-1], '%s: got %r' % (where, r))
            elif verb == 'expect-closed':
                try:
                    rest = c.wait_closed(5)
                except Exception as e:          # noqa: BLE001
                    self.fail('%s: not closed (%r)' % (where, e))
                self.assertEqual(rest, b'', '%s: unexpected bytes before the close' % where)
            elif verb == 'spool':
                self.assertEqual(len(set(p.queue_ids()) - before), int(arg.lstrip('+')),
                                 where)
            elif verb == 'spool-none-contains':
                needle = unescape(arg)
                for m in p.messages():
                    self.assertNotIn(needle, m.data, '%s: in %s' % (where, m.id))
            elif verb == 'spool-last-body':
                self.assertTrue(queued, '%s: nothing was queued' % where)
                self.assertEqual(p.message(queued[-1]).body, unescape(arg), where)
            else:
                self.fail('%s: unknown step' % where)


def _make(path):
    def test(self):
        self.run_case(path)
    test.__doc__ = None
    return test


for _path in sorted(glob.glob(os.path.join(CASES, '*.txt'))):
    _name = 'test_' + re.sub(r'\W', '_', os.path.basename(_path)[:-4])
    setattr(Transcripts, _name, _make(_path))


if __name__ == '__main__':
    petrel.main()
