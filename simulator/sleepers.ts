/** Delays that stop() cuts short, so a slow handler never outlives the simulator. */
export class Sleepers {
  private readonly sleepers = new Set<{ timer: NodeJS.Timeout; wake: () => void }>();

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const s = {
        timer: setTimeout(() => {
          this.sleepers.delete(s);
          resolve();
        }, ms),
        wake: resolve,
      };
      this.sleepers.add(s);
    });
  }

  /** Wakes every sleeper now and forgets them. */
  wakeAll(): void {
    for (const s of this.sleepers) {
      clearTimeout(s.timer);
      s.wake();
    }
    this.sleepers.clear();
  }
}
