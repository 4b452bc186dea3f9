/**
 * `pos-agent conformance`: the CLI entry of the conformance kit. The kit itself is imported
 * only when the command runs, so the other commands never load it.
 */
import { createPrivateKey, createPublicKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { usageError, type CliCommand, type CliValues } from '../cli/cli-command.ts';
import { EXIT } from '../cli/exit-codes.ts';
import { publicKeyFromRaw } from '../policy/keys.ts';

function read(values: CliValues, name: string): string {
  const file = values[name];
  if (typeof file !== 'string' || !file) throw usageError(`--${name} FILE is required`);
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw usageError(`cannot read --${name} ${file}: ${(e as Error).message}`);
  }
}

/** The terminal id is the client certificate's CN unless --terminal says otherwise. */
function terminalIdOf(certPem: string, given: unknown): string {
  if (typeof given === 'string' && given) return given;
  const cn = /(?:^|\n)CN=([^\n]+)/.exec(new X509Certificate(certPem).subject)?.[1];
  if (!cn) throw usageError('the certificate has no CN: give --terminal ID');
  return cn;
}

/** A command key file: PEM (SPKI) or the raw 32 bytes in base64. */
function commandKeyOf(text: string): KeyObject {
  return text.includes('BEGIN')
    ? createPublicKey(text)
    : publicKeyFromRaw(Buffer.from(text.trim(), 'base64'));
}

function hostPort(v: unknown): { host: string; port: number } {
  const m = typeof v === 'string' ? /^(.+):(\d{1,5})$/.exec(v) : null;
  const port = Number(m?.[2]);
  if (!m || port < 1 || port > 65535) throw usageError('--acquirer must be HOST:PORT');
  return { host: m[1]!.replace(/^\[(.*)\]$/, '$1'), port };
}

export const conformanceCommand: CliCommand = {
  name: 'conformance',
  args: '--acquirer HOST:PORT --ca F --cert F --key F (--activation-code C | --command-key F) [--terminal ID] [--servername N] [--terminal-key F] [--min-commands N] [--timeout-ms MS] [--json]',
  summary: "play a terminal against an acquirer host and print docs/protocol.md's pass/fail table",
  options: {
    acquirer: { type: 'string' },
    ca: { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
    terminal: { type: 'string' },
    servername: { type: 'string' },
    'activation-code': { type: 'string' },
    'command-key': { type: 'string' },
    'terminal-key': { type: 'string' },
    'min-commands': { type: 'string' },
    'timeout-ms': { type: 'string' },
    json: { type: 'boolean' },
  },
  async run({ values, io }) {
    const { host, port } = hostPort(values.acquirer);
    const cert = read(values, 'cert');
    const ca = read(values, 'ca');
    const key = read(values, 'key');
    const code = values['activation-code'];
    const commandKey = values['command-key']
      ? commandKeyOf(read(values, 'command-key'))
      : undefined;
    if (!code && !commandKey) throw usageError('give --activation-code CODE or --command-key FILE');
    const minCommands = Number(values['min-commands'] ?? 2);
    const timeoutMs = Number(values['timeout-ms'] ?? 10_000);
    if (!Number.isInteger(minCommands) || minCommands < 0)
      throw usageError('--min-commands must be 0 or more');
    if (!Number.isInteger(timeoutMs) || timeoutMs < 100)
      throw usageError('--timeout-ms must be 100 or more');
    const { runConformance } = await import('./kit.ts');
    const { formatResults } = await import('./report.ts');
    const rows = await runConformance({
      target: { host, port, ca, cert, key, servername: values.servername as string | undefined },
      terminalId: terminalIdOf(cert, values.terminal),
      activationCode: typeof code === 'string' ? code : undefined,
      commandKey,
      terminalKey: values['terminal-key']
        ? createPrivateKey(read(values, 'terminal-key'))
        : undefined,
      timeoutMs,
      heartbeats: 3,
      minCommands,
    });
    io.out(values.json ? JSON.stringify(rows, null, 2) : formatResults(rows));
    return rows.every((r) => r.ok !== false) ? EXIT.OK : EXIT.CHECK_FAILED;
  },
};
