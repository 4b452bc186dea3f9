import { describe, it, expect } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openSerialConsoleStream } from '../../agent/console/port.ts';

/**
 * serialport's native poller drops its writable watch when a read starts, so a console
 * writing a long answer to a slow line while the technician types could stall until the
 * next keystroke. port.ts keeps both watches; this drives exactly that race on a real pty.
 * (Without the fix about one run in ten stalls, so several runs are made.)
 */
describe('serial console port', () => {
  it('a long write blocked on a slow line completes while input arrives', async () => {
    for (let run = 0; run < 6; run++) {
      const a = path.join(tmpdir(), `pa-stall-a-${process.pid}-${run}`);
      const b = path.join(tmpdir(), `pa-stall-b-${process.pid}-${run}`);
      const socat = spawn('socat', [`pty,raw,echo=0,link=${a}`, `pty,raw,echo=0,link=${b}`]);
      socat.on('error', () => {});
      const start = Date.now();
      while (!existsSync(a) || !existsSync(b)) {
        if (Date.now() - start > 5000)
          throw new Error('socat did not make the pty pair; install socat');
        await new Promise((r) => setTimeout(r, 20));
      }
      const agentSide = await openSerialConsoleStream({ path: a });
      const technician = await openSerialConsoleStream({ path: b });
      try {
        const total = 400_000;
        let got = 0;
        technician.on('data', (d: Buffer) => (got += d.length));
        technician.pause();
        setTimeout(() => technician.resume(), 300);
        agentSide.on('data', () => {});
        agentSide.write(Buffer.alloc(total, 0x41));
        // Keystrokes arrive while the agent's write waits for the line to drain.
        for (let i = 0; i < 3; i++) setTimeout(() => technician.write('x'), 50 * (i + 1));
        const t0 = Date.now();
        while (got < total && Date.now() - t0 < 4000) await new Promise((r) => setTimeout(r, 25));
        expect(got, `run ${run}`).toBe(total);
      } finally {
        await new Promise((r) => agentSide.close(() => r(null)));
        await new Promise((r) => technician.close(() => r(null)));
        socat.kill();
      }
    }
  }, 60_000);
});
