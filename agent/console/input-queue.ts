/**
 * Turns the bytes a terminal sends into line events handled strictly one at a time.
 *
 * Bytes wait in a queue while a line is being handled (a command running, a PIN being
 * verified), and are fed to the line editor only afterwards, in the mode the handler
 * left behind. So what a byte stream does never depends on how it was chunked or how
 * fast it came, and output never interleaves. When the queue grows past a high-water
 * mark the stream is paused, which pushes back on a socket and bounds memory.
 */

import type { Duplex } from 'node:stream';
import type { LineEditor, LineEvent } from './line-editor.ts';

const highWater = 64 * 1024;
const lowWater = 16 * 1024;

export interface InputQueueOptions {
  readonly stream: Duplex;
  readonly editor: LineEditor;
  /** Sends the editor's echo back to the terminal. */
  readonly echo: (text: string) => void;
  /** Handles one event; must not throw. The next bytes wait until it resolves. */
  readonly handle: (event: LineEvent) => Promise<void>;
}

/** The queue between a stream's 'data' events and the console's line handler. */
export class InputQueue {
  private chunks: Buffer[] = [];
  private offset = 0;
  private queued = 0;
  private paused = false;
  private closed = false;
  private pumping = false;
  private pumpDone: Promise<void> = Promise.resolve();

  constructor(private readonly o: InputQueueOptions) {}

  /** True while bytes are being processed or a line is being handled. */
  get busy(): boolean {
    return this.pumping;
  }

  /** Queues bytes and starts processing if idle. */
  push(chunk: Buffer): void {
    if (this.closed) return;
    this.chunks.push(chunk);
    this.queued += chunk.length;
    if (!this.paused && this.queued > highWater) {
      this.paused = true;
      this.o.stream.pause();
    }
    if (!this.pumping) {
      this.pumping = true;
      this.pumpDone = this.pump().finally(() => (this.pumping = false));
    }
  }

  /** Drops what is queued and stops; resolves when the current handler has finished. */
  close(): Promise<void> {
    this.closed = true;
    this.chunks = [];
    return this.pumpDone;
  }

  private async pump(): Promise<void> {
    while (!this.closed && this.chunks.length > 0) {
      const chunk = this.chunks[0] as Buffer;
      const step = this.o.editor.feedUntilEvent(chunk, this.offset);
      if (step.next >= chunk.length) {
        this.chunks.shift();
        this.queued -= chunk.length;
        this.offset = 0;
      } else {
        this.offset = step.next;
      }
      if (step.echo) this.o.echo(step.echo);
      if (this.paused && this.queued < lowWater) {
        this.paused = false;
        this.o.stream.resume();
      }
      if (step.event) await this.o.handle(step.event);
    }
  }
}
