import { describe, expect, it } from 'vitest';
import { LineEditor, type LineEvent } from '../../agent/console/line-editor.ts';

const line = (text: string): LineEvent => ({ kind: 'line', text });
const bytes = (...b: number[]): Buffer => Buffer.from(b);

/** Feeds every chunk and collects all echo and events. */
function run(
  editor: LineEditor,
  ...chunks: Array<string | Buffer>
): { echo: string; events: LineEvent[] } {
  let echo = '';
  const events: LineEvent[] = [];
  for (const c of chunks) {
    const r = editor.feed(c);
    echo += r.echo;
    events.push(...r.events);
  }
  return { echo, events };
}

describe('line ends', () => {
  it('ends a line on CR, on LF and on CRLF, echoing CRLF', () => {
    for (const end of ['\r', '\n', '\r\n']) {
      const e = new LineEditor();
      const r = run(e, `status${end}`);
      expect(r.events).toEqual([line('status')]);
      expect(r.echo).toBe('status\r\n');
    }
  });

  it('takes CRLF as one line end when CR and LF arrive in different chunks', () => {
    const e = new LineEditor();
    const r = run(e, 'a\r', '\nb\r', '\n');
    expect(r.events).toEqual([line('a'), line('b')]);
  });

  it('still reports an empty line for LF CR, and for CR CR', () => {
    expect(run(new LineEditor(), 'a\n\r').events).toEqual([line('a'), line('')]);
    expect(run(new LineEditor(), 'a\r\r\n').events).toEqual([line('a'), line('')]);
  });

  it('gives the same result whatever the chunking', () => {
    const input = Buffer.from('help\r\nlo\x7fog\x1b[Aout\r\n\xe4\xb8\xad\r', 'latin1');
    const whole = run(new LineEditor(), input);
    for (let split = 1; split < input.length; split++) {
      const parts = run(new LineEditor(), input.subarray(0, split), input.subarray(split));
      expect(parts.events).toEqual(whole.events);
      expect(parts.echo).toBe(whole.echo);
    }
    const oneByOne = run(new LineEditor(), ...[...input].map((b) => bytes(b)));
    expect(oneByOne.events).toEqual(whole.events);
  });

  it('stops at the first event with feedUntilEvent and says where to continue', () => {
    const e = new LineEditor();
    const input = Buffer.from('ab\rcd\r');
    const first = e.feedUntilEvent(input);
    expect(first).toEqual({ echo: 'ab\r\n', event: line('ab'), next: 3 });
    const second = e.feedUntilEvent(input, first.next);
    expect(second.event).toEqual(line('cd'));
    expect(second.next).toBe(input.length);
  });
});

describe('editing', () => {
  it('erases one character visually on backspace and on DEL', () => {
    for (const erase of [0x08, 0x7f]) {
      const e = new LineEditor();
      const r = run(e, 'helq', bytes(erase), 'p\r');
      expect(r.events).toEqual([line('help')]);
      expect(r.echo).toBe('helq\b \bp\r\n');
    }
  });

  it('does nothing on backspace at the start of a line', () => {
    const r = run(new LineEditor(), bytes(0x7f, 0x08), 'x\r');
    expect(r.echo).toBe('x\r\n');
    expect(r.events).toEqual([line('x')]);
  });

  it('erases a wide character over two columns', () => {
    const r = run(new LineEditor(), '中', bytes(0x7f), '\r');
    expect(r.echo).toBe('中\b\b  \b\b\r\n');
    expect(r.events).toEqual([line('')]);
  });

  it('cancels the line on Ctrl-C with ^C and a new line', () => {
    const e = new LineEditor();
    const r = run(e, 'settle', bytes(0x03), 'status\r');
    expect(r.events).toEqual([{ kind: 'cancel' }, line('status')]);
    expect(r.echo).toBe('settle^C\r\nstatus\r\n');
  });

  it('kills the whole line on Ctrl-U and the last word on Ctrl-W', () => {
    const u = run(new LineEditor(), 'abc', bytes(0x15), 'ok\r');
    expect(u.events).toEqual([line('ok')]);
    expect(u.echo).toBe('abc\b\b\b   \b\b\bok\r\n');
    const w = run(new LineEditor(), 'journal tail ', bytes(0x17), 'head\r');
    expect(w.events).toEqual([line('journal head')]);
  });

  it('ignores other control bytes', () => {
    const r = run(
      new LineEditor(),
      bytes(0x00, 0x01, 0x02, 0x04, 0x07, 0x09, 0x0b, 0x0c, 0x1c, 0x1f),
      'ok\r',
    );
    expect(r.events).toEqual([line('ok')]);
    expect(r.echo).toBe('ok\r\n');
  });
});

describe('escape sequences', () => {
  it('keeps arrow keys, function keys and other CSI/SS3 sequences out of the line', () => {
    // At the end of a line with no history, these move nothing and insert nothing.
    const seqs = [
      '\x1b[A',
      '\x1b[B',
      '\x1b[C',
      '\x1b[1;5C',
      '\x1b[3~',
      '\x1b[15~',
      '\x1bOP',
      '\x1bOA',
      '\x1b[?1049h',
    ];
    for (const s of seqs) {
      const r = run(new LineEditor(), 'he', s, 'lp\r');
      expect(r.events, JSON.stringify(s)).toEqual([line('help')]);
      expect(r.echo).toBe('help\r\n');
    }
  });

  it('skips OSC and DCS strings up to BEL or ST', () => {
    const r = run(new LineEditor(), 'a\x1b]0;title\x07b\x1bPq#0;2;0;0;0\x1b\\c\r');
    expect(r.events).toEqual([line('abc')]);
  });

  it('never lets a stray ESC swallow the line end', () => {
    expect(run(new LineEditor(), 'ok\x1b\r').events).toEqual([line('ok')]);
    expect(run(new LineEditor(), 'ok\x1b[12;\r').events).toEqual([line('ok')]);
    expect(run(new LineEditor(), 'ok\x1b]unterminated\r').events).toEqual([line('ok')]);
  });

  it('splits escape sequences across chunks', () => {
    // ESC [ 1 ; 5 D is Ctrl-Left: the cursor steps back over the a, and b lands before it.
    const r = run(new LineEditor(), 'a\x1b', '[', '1;', '5D', 'b\r');
    expect(r.events).toEqual([line('ba')]);
  });
});

describe('cursor movement and history', () => {
  const LEFT = ['\x1b[D', '\x1bOD', '\x02'];
  const RIGHT = ['\x1b[C', '\x1bOC', '\x06'];
  // xterm (normal and application mode), screen and rxvt, picocom passes them through.
  const HOME = ['\x1b[H', '\x1bOH', '\x1b[1~', '\x1b[7~', '\x01'];
  const END = ['\x1b[F', '\x1bOF', '\x1b[4~', '\x1b[8~', '\x05'];

  it('inserts where the cursor is after left, and echoes only BS and text', () => {
    for (const left of LEFT) {
      const r = run(new LineEditor(), 'stus', left, left, 'at\r');
      expect(r.events, JSON.stringify(left)).toEqual([line('status')]);
      // "stus", two BS, then each inserted letter with the rest "us" redrawn and two BS back.
      expect(r.echo).toBe('stus\b\baus\b\btus\b\b\r\n');
    }
  });

  it('moves right again, and home and end jump', () => {
    for (const [i, home] of HOME.entries()) {
      const end = END[i]!;
      const right = RIGHT[i % 3]!;
      const r = run(new LineEditor(), 'tatus', home, 's', right, end, ' --json\r');
      expect(r.events, JSON.stringify([home, end])).toEqual([line('status --json')]);
    }
  });

  it('erases before the cursor with backspace and under it with Delete', () => {
    const r = run(new LineEditor(), 'statxus', '\x1b[D', '\x1b[D', '\x7f', '\r');
    expect(r.events).toEqual([line('status')]);
    const d = run(new LineEditor(), 'statxus', '\x1b[D\x1b[D\x1b[D', '\x1b[3~', '\r');
    expect(d.events).toEqual([line('status')]);
    // Step over the x, then erase it as a backspace would: redraw "us", blank one column.
    expect(d.echo).toBe('statxus\b\b\bx\bus \b\b\b\r\n');
  });

  it('walks the history with up and down, keeping the line being typed', () => {
    const e = new LineEditor();
    e.remember('status');
    e.remember('journal tail 5');
    e.remember('journal tail 5');
    const r = run(e, 'ba', '\x1b[A', '\x1b[A', '\x1b[A', '\x1b[B', '\r');
    expect(r.events).toEqual([line('journal tail 5')]);
    const back = run(e, 'ba', '\x1bOA', '\x1bOB', 'tch\r');
    expect(back.events).toEqual([line('batch')]);
    // Replacing a longer line by a shorter one blanks the leftover columns.
    const echo = run(e, '\x1b[A', '\x1b[A', '\r').echo;
    expect(echo).toBe(
      'journal tail 5' + '\b'.repeat(14) + 'status' + ' '.repeat(8) + '\b'.repeat(8) + '\r\n',
    );
  });

  it('never walks the history while masked, and forgets it on clearHistory', () => {
    const e = new LineEditor();
    e.remember('status');
    e.masked = true;
    expect(run(e, '12\x1b[A34\r').events).toEqual([line('1234')]);
    e.masked = false;
    e.clearHistory();
    expect(run(e, '\x1b[A\r').events).toEqual([line('')]);
  });
});

describe('masked mode', () => {
  it('echoes * per character and never the characters', () => {
    const e = new LineEditor({ masked: true });
    const r = run(e, '49', '21', bytes(0x7f), '1\r');
    expect(r.events).toEqual([line('4921')]);
    expect(r.echo).toBe('****\b \b*\r\n');
    expect(r.echo).not.toMatch(/[0-9]/);
  });

  it('masks wide characters as one *', () => {
    const r = run(new LineEditor({ masked: true }), '中', bytes(0x7f), '\r');
    expect(r.echo).toBe('*\b \b\r\n');
  });
});

describe('line length', () => {
  it('drops bytes past the limit, rings once, and refuses the line at its end', () => {
    const e = new LineEditor({ maxLineBytes: 8 });
    const r = run(e, 'abcdefgh', 'ijklmnop', '\r');
    expect(r.events).toEqual([{ kind: 'too-long', maxBytes: 8 }]);
    expect(r.echo).toBe('abcdefgh\x07\r\n');
    expect(run(e, 'ok\r').events).toEqual([line('ok')]);
  });

  it('accepts a line of exactly the limit, counting UTF-8 bytes', () => {
    expect(run(new LineEditor({ maxLineBytes: 8 }), 'abcdefgh\r').events).toEqual([
      line('abcdefgh'),
    ]);
    expect(run(new LineEditor({ maxLineBytes: 6 }), '中文\r').events).toEqual([line('中文')]);
    expect(run(new LineEditor({ maxLineBytes: 5 }), '中文\r').events).toEqual([
      { kind: 'too-long', maxBytes: 5 },
    ]);
  });

  it('keeps refusing after backspace once the limit was hit, and Ctrl-U or Ctrl-C start afresh', () => {
    const e = new LineEditor({ maxLineBytes: 4 });
    expect(run(e, 'abcdef', bytes(0x7f, 0x7f, 0x7f), '\r').events).toEqual([
      { kind: 'too-long', maxBytes: 4 },
    ]);
    expect(run(e, 'abcdef', bytes(0x15), 'ok\r').events).toEqual([line('ok')]);
    expect(run(e, 'abcdef', bytes(0x03), 'ok\r').events).toEqual([{ kind: 'cancel' }, line('ok')]);
  });

  it('bounds memory: a megabyte without a line end keeps only the limit', () => {
    const e = new LineEditor({ maxLineBytes: 64 });
    run(e, Buffer.alloc(1 << 20, 0x61));
    expect(e.text.length).toBe(64);
  });
});

describe('UTF-8', () => {
  it('accepts multi-byte characters, also split across chunks', () => {
    const zh = Buffer.from('商户中文', 'utf8');
    const r = run(new LineEditor(), zh.subarray(0, 4), zh.subarray(4), 'é😀\r');
    expect(r.events).toEqual([line('商户中文é😀')]);
  });

  it('drops invalid UTF-8 without losing the valid bytes around it', () => {
    const cases: Buffer[] = [
      bytes(0x80), // lone continuation
      bytes(0xc0, 0xaf), // overlong
      bytes(0xe0, 0x80, 0xaf), // overlong
      bytes(0xed, 0xa0, 0x80), // surrogate
      bytes(0xf4, 0x90, 0x80, 0x80), // above U+10FFFF
      bytes(0xf5, 0xff, 0xfe), // impossible bytes
      bytes(0xe4, 0xb8), // truncated
    ];
    for (const bad of cases) {
      const r = run(new LineEditor(), 'a', bad, 'b\r');
      expect(r.events, bad.toString('hex')).toEqual([line('ab')]);
    }
  });

  it('restarts on a lead byte that interrupts a character', () => {
    const r = run(new LineEditor(), bytes(0xe4, 0xe4, 0xb8, 0xad), '\r');
    expect(r.events).toEqual([line('中')]);
  });

  it('keeps C1 controls, bidi overrides and zero-width marks out of lines', () => {
    const r = run(new LineEditor(), 'a\u0085\u009b\u202e\u200b\u0301b\r');
    expect(r.events).toEqual([line('ab')]);
  });
});
