import { AgentError } from '../base/errors.ts';
import type { EnvelopeBody } from './messages.ts';

/** A message the terminal did not expect here, named by its body kind. */
export function unexpected(message: string, kind: string | null | undefined): AgentError {
  return new AgentError('PROTOCOL_UNEXPECTED', message, { kind: kind ?? null });
}

/** The one body field set; an envelope with none or several is malformed. */
export function checkOneBody(body: EnvelopeBody): string {
  const set = Object.keys(body).filter((k) => body[k as keyof EnvelopeBody] != null);
  if (set.length !== 1 || set[0] === undefined) {
    throw new AgentError('PROTOCOL_MALFORMED', 'an envelope body must set exactly one field', {
      fields: set,
    });
  }
  return set[0];
}
