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
          '(root)',
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
      console: { technicians: [{ id: 'tech', pinHash: 'scrypt$16384$8$1$c2FsdA==$aGFzaA==' }] },
    });
    expect(JSON.stringify(redactedConfig(c))).not.toContain('scrypt$');
  });
});
