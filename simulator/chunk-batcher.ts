/**
 * Detail chunks that arrive together are stored in one durable commit. A windowed upload puts
 * several chunks on the link at once; stored one commit each, the acquirer spent most of an
 * upload waiting on the disk. Chunks queue until the event loop has read what arrived, then
 * are all handled inside one transaction and answered, in arrival order, only after its
 * COMMIT: an ack still means "stored durably", so exactly-once is unchanged. Any other message
 * first flushes the queue, so every message takes effect in the order it arrived.
 */
import type { HandlerResult } from './handler-context.ts';

interface Queued {
  /** Handles the chunk (inside the shared transaction); never throws for a bad chunk. */
  handle: () => HandlerResult;
  /** Sends the answer (after the commit). */
  answer: (result: HandlerResult) => void;
}

export class ChunkBatcher {
  private queue: Queued[] = [];
  private scheduled = false;

  constructor(
    /** Runs `fn` in one durable transaction of the acquirer's ledger. */
    private readonly atomically: <T>(fn: () => T) => T,
    /** The answer to every queued chunk when the shared commit fails (none was stored). */
    private readonly failed: (err: unknown) => HandlerResult,
  ) {}

  add(item: Queued): void {
    this.queue.push(item);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  /** Stores and answers every queued chunk now. */
  flush(): void {
    const items = this.queue;
    if (items.length === 0) return;
    this.queue = [];
    let results: HandlerResult[];
    try {
      results = this.atomically(() => items.map((i) => i.handle()));
    } catch (e) {
      results = items.map(() => this.failed(e));
    }
    items.forEach((item, i) => item.answer(results[i]!));
  }

  /** Forgets the queue unanswered (the simulator stops: as if it died before storing them). */
  discard(): void {
    this.queue = [];
  }
}
