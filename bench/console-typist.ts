/**
 * The technician at the other end of the console's line, in a process of its own: it types into
 * a Unix socket the agent's console serves, as bytes from a serial port reach the agent (kernel
 * I/O, read when the agent's event loop polls). For each command it reports when its last key
 * was written (the machine-wide monotonic clock, in ms) and how long until it read the prompt
 * that ends the answer on its own event loop.
 *
 * Driven over IPC by bench/console-latency.ts: `{ op: 'type', line, until }` answers one line;
 * `{ op: 'loop', line, until, count? }` types it again and again, 2 to 10 ms of think time
 * between answers, until `{ op: 'stop' }` or `count` samples, then answers with every sample.
 */
import net from 'node:net';

export type TypistRequest =
  | { op: 'type'; line: string; until: string }
  | { op: 'loop'; line: string; until: string; count?: number }
  | { op: 'stop' };

/** One command: when its CR was written to the line, and the ms until the prompt was read. */
export interface Typed {
  sentMs: number;
  readMs: number;
}

export type TypistReply = ({ op: 'typed' } & Typed) | { op: 'samples'; typed: Typed[] };

const socketPath = process.argv[2]!;
const line = net.connect(socketPath);
let screen = '';
let onScreen: (() => void) | undefined;
line.setEncoding('utf8');
line.on('data', (text: string) => {
  screen += text;
  onScreen?.();
});
line.on('error', (e) => {
  process.stderr.write(`typist: ${e.message}\n`);
  process.exit(1);
});

function send(reply: TypistReply): void {
  process.send!(reply);
}

/** Types `text` + CR and resolves when the screen ends with `until`. */
function type(text: string, until: RegExp): Promise<Typed> {
  screen = '';
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const timer = setTimeout(
      () => reject(new Error(`no ${until} after ${text}: ${screen}`)),
      60_000,
    );
    onScreen = () => {
      if (!until.test(screen)) return;
      const readMs = Number(process.hrtime.bigint() - t0) / 1e6;
      clearTimeout(timer);
      onScreen = undefined;
      resolve({ sentMs: Number(t0) / 1e6, readMs });
    };
    line.write(`${text}\r`);
  });
}

const think = () => new Promise((r) => setTimeout(r, 2 + Math.random() * 8));

let looping = false;

async function loop(text: string, until: RegExp, count = Infinity): Promise<void> {
  const samples: Typed[] = [];
  looping = true;
  while (looping && samples.length < count) {
    await think();
    if (looping) samples.push(await type(text, until));
  }
  send({ op: 'samples', typed: samples });
}

process.on('message', (m: TypistRequest) => {
  const fail = (e: Error) => {
    process.stderr.write(`typist: ${e.message}\n`);
    process.exit(1);
  };
  if (m.op === 'type')
    type(m.line, new RegExp(m.until)).then((t) => send({ op: 'typed', ...t }), fail);
  else if (m.op === 'loop') loop(m.line, new RegExp(m.until), m.count).catch(fail);
  else looping = false;
});
process.on('disconnect', () => process.exit(0));
