import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

/**
 * Structured logs. Card data never reaches a log: callers log masked PANs only, and
 * these paths are redacted as a second line of defence in case one slips through.
 */
const redactedPaths = [
  'pan',
  'card.pan',
  '*.pan',
  'cvv',
  '*.cvv',
  'track2',
  '*.track2',
  'pinBlock',
  '*.pinBlock',
  'pin',
  '*.pin',
  'secret',
  '*.secret',
  'privateKey',
  '*.privateKey',
];

export function createLogger(
  options: { level?: string; name?: string } = {},
  destination?: DestinationStream,
): Logger {
  const opts = {
    name: options.name ?? 'pos-agent',
    level: options.level ?? 'info',
    redact: { paths: redactedPaths, censor: '[redacted]' },
  };
  return destination ? pino(opts, destination) : pino(opts);
}

/** A logger that drops everything, for tests and tools that print their own output. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
