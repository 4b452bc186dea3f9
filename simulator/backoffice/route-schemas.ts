/**
 * JSON schemas of every input the back office takes (fastify validates them before a handler
 * runs), the route generics that go with them, and the fixed flash messages.
 */
const csrf = { _csrf: { type: 'string', maxLength: 200 } } as const;
const text = { type: 'string', minLength: 3, maxLength: 200, pattern: '\\S' } as const;

export const listQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    q: { type: 'string', maxLength: 64, default: '' },
    page: { type: 'integer', minimum: 1, maximum: 100_000, default: 1 },
    done: { type: 'string', maxLength: 40 },
  },
} as const;
export const idParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' } },
} as const;
export const reviewParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', pattern: '^RV-[A-F0-9]{12}$' } },
} as const;
export const doneQuery = {
  type: 'object',
  additionalProperties: false,
  properties: { done: { type: 'string', maxLength: 40 } },
} as const;
export const reasonBody = {
  type: 'object',
  required: ['reason', '_csrf'],
  additionalProperties: false,
  properties: { reason: text, ...csrf },
} as const;
export const noteBody = {
  type: 'object',
  required: ['note', '_csrf'],
  additionalProperties: false,
  properties: { note: text, ...csrf },
} as const;
export const decideBody = {
  type: 'object',
  required: ['decision', 'note', '_csrf'],
  additionalProperties: false,
  properties: { decision: { type: 'string', enum: ['approve', 'reject'] }, note: text, ...csrf },
} as const;
export const unlockCodeBody = {
  type: 'object',
  required: ['challenge', '_csrf'],
  additionalProperties: false,
  properties: {
    // The terminal's challenge alphabet (agent/policy/unlock-code.ts), ten characters.
    challenge: { type: 'string', pattern: '^\\s*[A-HJ-NP-Za-hj-np-z2-9]{10}\\s*$' },
    ...csrf,
  },
} as const;
export const BRANDS = ['Lakala', 'PAX', 'Newland', 'Sunmi'] as const;
export const newTerminalBody = {
  type: 'object',
  required: ['brand', 'model', '_csrf'],
  additionalProperties: false,
  properties: {
    brand: { type: 'string', enum: BRANDS },
    model: { type: 'string', minLength: 1, maxLength: 40, pattern: '^[A-Za-z0-9 ._-]+$' },
    ...csrf,
  },
} as const;

/** Route generics matching the schemas. */
export type Id = { Params: { id: string } };
export type Done = { Querystring: { done?: string } };
export type ListQ = { Querystring: { q: string; page: number; done?: string } };

/** Fixed messages for ?done=..., so nothing a request carries is echoed into a page. */
export const DONE: Record<string, string> = {
  requested: 'Deactivation requested. The acquirer reviews it; this page follows it live.',
  decided: 'Decision recorded and sent to the terminal as a signed command.',
  flagged: 'Risk flag sent: the terminal locks itself as soon as it receives it.',
  cleared: 'Risk flag cleared: a signed unlock is on its way to the terminal.',
  locked: 'Lock sent to the terminal.',
  unlocked: 'Unlock sent to the terminal.',
  created: 'New terminal registered; give its activation code to the technician who installs it.',
};

/** The flash option for a ?done= value, if it names one of ours. */
export function flashFor(done: string | undefined): { flash?: { kind: 'ok'; text: string } } {
  const text = done ? DONE[done] : undefined;
  return text ? { flash: { kind: 'ok', text } } : {};
}
