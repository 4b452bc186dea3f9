/**
 * The simulator's live links, by terminal (client certificate CN). A command is pushed only on a
 * link that has said Hello, because the agent's channel refuses unsolicited messages before its
 * HelloAck and would drop the link; the newest such link wins.
 */
import type { ServerConnection } from '../protocol/server.ts';

/** Live links per terminal. */
export class TerminalLinks {
  private readonly byTerminal = new Map<string, ServerConnection[]>();
  private readonly greeted = new WeakSet<ServerConnection>();

  /** Tracks a new link until it closes. */
  add(terminalId: string, conn: ServerConnection): void {
    this.byTerminal.set(terminalId, [...(this.byTerminal.get(terminalId) ?? []), conn]);
    conn.once('close', () => {
      const left = (this.byTerminal.get(terminalId) ?? []).filter((c) => c !== conn);
      if (left.length) this.byTerminal.set(terminalId, left);
      else this.byTerminal.delete(terminalId);
    });
  }

  /** Marks a link as past its Hello: commands may now be pushed on it. */
  greet(conn: ServerConnection): void {
    this.greeted.add(conn);
  }

  /** The newest open, greeted link of a terminal. */
  live(terminalId: string): ServerConnection | undefined {
    return (this.byTerminal.get(terminalId) ?? [])
      .filter((c) => !c.closed && this.greeted.has(c))
      .at(-1);
  }

  /** Terminals with at least one open link. */
  terminals(): string[] {
    return [...this.byTerminal.keys()];
  }

  /** Destroys the links of one terminal, or all links. */
  drop(terminalId?: string): void {
    for (const [t, links] of this.byTerminal) {
      if (terminalId === undefined || t === terminalId) for (const c of links) c.destroy();
    }
  }

  clear(): void {
    this.byTerminal.clear();
  }
}
