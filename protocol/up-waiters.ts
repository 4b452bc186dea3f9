import { AgentError } from '../base/errors.ts';

interface UpWaiter {
  resolve: () => void;
  reject: (err: AgentError) => void;
  timer: NodeJS.Timeout;
}

/** Callers of the channel's waitUntilUp(), each with its own timeout. */
export class UpWaiters {
  private readonly waiters = new Set<UpWaiter>();

  /** Resolves on settle(); @throws PROTOCOL_TIMEOUT after `timeoutMs`. */
  wait(timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new AgentError('PROTOCOL_TIMEOUT', 'the acquirer link is not up', { timeoutMs }));
      }, timeoutMs);
      const waiter: UpWaiter = { resolve, reject, timer };
      this.waiters.add(waiter);
    });
  }

  /** Resolves every waiter, or rejects them all with `err`. */
  settle(err?: AgentError): void {
    for (const w of this.waiters) {
      clearTimeout(w.timer);
      if (err) w.reject(err);
      else w.resolve();
    }
    this.waiters.clear();
  }
}
