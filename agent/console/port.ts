/**
 * Streams the console runs on: a serial port (or pty) through serialport, or the
 * process's own stdin/stdout. The binding is injectable so tests use
 * `@serialport/binding-mock`, the way zigbee-herdsman opens its adapters.
 */

import { Duplex } from 'node:stream';
import type { SerialPort, SerialPortMock } from 'serialport';
import { AgentError } from '../../base/errors.ts';

/** A serialport binding: the platform's native one, or MockBinding in tests. */
type ConsoleBinding = typeof SerialPort.binding | typeof SerialPortMock.binding;

export interface SerialConsoleOptions {
  /** Device path, e.g. `/dev/ttyS1`, `/dev/ttyUSB0`, or a pty such as `/dev/pts/3`. */
  readonly path: string;
  /** Default 115200. A pty ignores it. */
  readonly baudRate?: number;
  /** Default: serialport's native binding for this platform. */
  readonly binding?: ConsoleBinding;
}

/**
 * Opens a serial device as a Duplex for {@link Console}. Resolves once the port is open.
 * Close it with `port.close()` after stopping the console.
 * @throws AgentError CONSOLE_PORT_UNAVAILABLE when the device cannot be opened.
 */
export async function openSerialConsoleStream(options: SerialConsoleOptions): Promise<SerialPort> {
  // SerialPort's option type omits `binding`, but its constructor honours it (it spreads
  // our options over the detected binding); a non-literal object passes the type check.
  const portOptions = {
    path: options.path,
    baudRate: options.baudRate ?? 115200,
    autoOpen: false,
    ...(options.binding ? { binding: options.binding } : {}),
  };
  // Loaded here, not at the top: serialport and its native binding cost about 12 MB and 60 ms
  // of start-up, and only a terminal whose console is a serial line needs them.
  const { SerialPort: Port } = await import('serialport');
  let port: SerialPort;
  try {
    port = new Port(portOptions);
  } catch (e) {
    throw portError(options.path, e);
  }
  await new Promise<void>((resolve, reject) => {
    port.open((err) => (err ? reject(portError(options.path, err)) : resolve()));
  });
  keepBothPollEvents(port);
  return port;
}

const UV_READABLE = 1;
const UV_WRITABLE = 2;

/**
 * @serialport/bindings-cpp 13 restarts its fd poll with only the event just asked for
 * (poller.cpp passes `events`, not the union it keeps), so a read starting while a write
 * waits for the line to drain drops the writable watch: output then stalls until the
 * technician presses a key. Asking for every event that still has a waiter keeps both.
 * The mock binding has no poller and is left alone.
 */
function keepBothPollEvents(port: SerialPort): void {
  const poller = (port.port as unknown as { poller?: PollerLike } | undefined)?.poller;
  if (!poller || typeof poller.poll !== 'function') return;
  const poll = poller.poll.bind(poller);
  poller.poll = (flag = 0) =>
    poll(
      flag |
        (poller.listenerCount('readable') > 0 ? UV_READABLE : 0) |
        (poller.listenerCount('writable') > 0 ? UV_WRITABLE : 0),
    );
}

interface PollerLike {
  poll(flag?: number): void;
  listenerCount(event: string): number;
}

function portError(path: string, cause: unknown): AgentError {
  const why = cause instanceof Error ? cause.message : String(cause);
  return new AgentError(
    'CONSOLE_PORT_UNAVAILABLE',
    `cannot open the console port ${path}: ${why}`,
    { path },
    { cause },
  );
}

/** The parts of process.stdin a console needs; injectable for tests. */
export interface StdinLike extends NodeJS.ReadableStream {
  isTTY?: boolean;
  setRawMode?(mode: boolean): unknown;
  isRaw?: boolean;
}

/**
 * Joins stdin and stdout into one Duplex. When stdin is a terminal it is put in raw
 * mode so keystrokes arrive byte by byte and the console does its own echo (Ctrl-C then
 * reaches the console as a byte instead of killing the agent). `destroy()` restores the
 * terminal, and so does process exit, so a crash never leaves the shell raw. Destroying
 * it leaves the process's stdin and stdout open.
 */
export function stdioStream(
  stdin: StdinLike = process.stdin,
  stdout: NodeJS.WritableStream = process.stdout,
): Duplex {
  const wasRaw = stdin.isRaw ?? false;
  const raw = stdin.isTTY === true && typeof stdin.setRawMode === 'function';
  let restored = false;
  const restore = (): void => {
    if (restored) return;
    restored = true;
    if (raw) stdin.setRawMode?.(wasRaw);
  };
  const duplex = new Duplex({
    read() {
      stdin.resume();
    },
    write(chunk: Buffer, _encoding, callback) {
      stdout.write(chunk, (err) => callback(err ?? null));
    },
    destroy(err, callback) {
      stdin.off('data', onData);
      stdin.off('end', onEnd);
      stdin.pause();
      restore();
      process.off('exit', restore);
      callback(err);
    },
  });
  const onData = (chunk: Buffer | string): void => {
    if (!duplex.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk)) stdin.pause();
  };
  const onEnd = (): void => {
    duplex.push(null);
  };
  if (raw) stdin.setRawMode?.(true);
  process.on('exit', restore);
  stdin.on('data', onData);
  stdin.on('end', onEnd);
  return duplex;
}
