import { createRequire } from 'node:module';
import type * as NodeCron from 'node-cron';
import { describe, it, expect } from 'vitest';
import { parseConfig, applyEnv, redactedConfig } from '../../agent/config.ts';
import { AgentError } from '../../base/errors.ts';

describe('configuration', () => {
  it('defaults run: an empty object is a whole valid config', () => {
    const c = parseConfig({});
    expect(c.terminalId).toBe('T0001');
    expect(c.acquirer.maxFrameBytes).toBe(1024 * 1024);
    expect(c.console.technicians).toEqual([]);
  });

  it('lists every error with its path at once', () => {
    try {
      parseConfig({
        terminalId: 'bad id',
        acquirer: { port: 70000, maxFrameBytes: 3 },
        console: { mode: 'telnet' },
        unknownKey: 1,
      });
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(AgentError);
      const problems = (e as AgentError).context.problems as string[];
      const paths = problems.map((p) => p.split(':')[0]);
      expect(paths).toEqual(
        expect.arrayContaining([
          'terminalId',
          'acquirer.port',
          'acquirer.maxFrameBytes',
          'console.mode',
          'unknownKey',
        ]),
      );
      expect((e as AgentError).code).toBe('CONFIG_INVALID');
    }
  });

  it('environment overrides win over the file', () => {
    const c = parseConfig(
      applyEnv(
        { terminalId: 'T0001' },
        { POS_TERMINAL_ID: 'T0042', POS_ACQUIRER_PORT: '9443', POS_SERIAL_PATH: '/dev/ttyS1' },
      ),
    );
    expect(c.terminalId).toBe('T0042');
    expect(c.acquirer.port).toBe(9443);
    expect(c.console).toMatchObject({ mode: 'serial', serialPath: '/dev/ttyS1' });
  });

  it('a non-numeric port from the environment is refused, not coerced', () => {
    expect(() => parseConfig(applyEnv({}, { POS_ACQUIRER_PORT: 'https' }))).toThrow(
      /acquirer.port/,
    );
  });

  it('config show never prints a PIN hash', () => {
    const c = parseConfig({
      console: {
        technicians: [
          {
            id: 'tech',
            pinHash: `scrypt$16384$8$1$${Buffer.alloc(16).toString('base64')}$${Buffer.alloc(32, 1).toString('base64')}`,
          },
        ],
      },
    });
    expect(JSON.stringify(redactedConfig(c))).not.toContain('scrypt$');
  });

  it('is strict at every level: an unknown key names its path, with the likely meant key', () => {
    const problems = (input: unknown) => {
      try {
        parseConfig(input);
        return [];
      } catch (e) {
        return (e as AgentError).context.problems as string[];
      }
    };
    expect(problems({ acquirer: { prot: 18443 } })).toEqual([
      'acquirer.prot: unknown key (did you mean port?)',
    ]);
    expect(problems({ console: { serailPath: '/dev/ttyS1' } })).toEqual([
      'console.serailPath: unknown key (did you mean serialPath?)',
    ]);
    expect(problems({ console: { technicians: [{ id: 'a', pinHash: GOOD, pin: '1' }] } })).toEqual([
      'console.technicians.0.pin: unknown key',
    ]);
    for (const section of [
      'log',
      'acquirer',
      'settlement',
      'offline',
      'risk',
      'commands',
      'activation',
      'selftest',
      'maintenance',
      'console',
      'storage',
      'paymentSocket',
    ])
      expect(problems({ [section]: { zzz: 1 } }), section).toEqual([`${section}.zzz: unknown key`]);
  });

  it('the default schedules are cron expressions (zod does not re-check a default)', () => {
    const { settlement } = parseConfig({});
    const { validate } = createRequire(import.meta.url)('node-cron') as typeof NodeCron;
    expect(validate(settlement.cutoverCron)).toBe(true);
    expect(validate(settlement.heartbeatCron)).toBe(true);
    // The same values set in the file go through the check and pass it.
    expect(parseConfig({ settlement: { ...settlement } }).settlement).toEqual(settlement);
  });

  it('checks cron expressions, time zones, PIN hashes, ports, paths and cross-field rules, all at once', () => {
    try {
      parseConfig({
        timeZone: 'Mars/Olympus',
        settlement: { cutoverCron: '0 0 25 * * *', heartbeatCron: 'every minute' },
        acquirer: { port: 0, caFile: '' },
        console: {
          mode: 'serial',
          technicians: [
            { id: 'tech', pinHash: 'plain1234' },
            { id: 'TECH', pinHash: GOOD },
          ],
          maxFailures: 5,
          lockoutAfter: 2,
        },
        dataDir: 'a\u0000b',
      });
      expect.unreachable();
    } catch (e) {
      const problems = (e as AgentError).context.problems as string[];
      expect(problems.map((p) => p.split(':')[0]).sort()).toEqual(
        [
          'timeZone',
          'settlement.cutoverCron',
          'settlement.heartbeatCron',
          'acquirer.port',
          'acquirer.caFile',
          'console.technicians.0.pinHash',
          'console.technicians.1.id',
          'console.serialPath',
          'console.lockoutAfter',
          'dataDir',
        ].sort(),
      );
    }
    expect(() => parseConfig({ dataDir: '/tmp/' + 'x'.repeat(100) })).toThrow(
      /paymentSocket.path: .* longer than the 107 bytes/,
    );
  });
});

const GOOD = `scrypt$1024$8$1$${Buffer.alloc(16).toString('base64')}$${Buffer.alloc(32, 1).toString('base64')}`;
