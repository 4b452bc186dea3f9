import type { z } from 'zod';

/**
 * Turns zod's issues into the lines an operator reads: `path: what is wrong`, and for a
 * typo'd key the key probably meant (`acquirer.prot: unknown key (did you mean port?)`).
 */

/** Every problem of a config object as `path: what is wrong`; empty when it is valid. */
export function configProblems(issues: readonly z.core.$ZodIssue[], schema: z.ZodType): string[] {
  return issues.flatMap((i) => {
    const where = i.path.map(String);
    if (i.code === 'unrecognized_keys') {
      return i.keys.map((k) => {
        const hint = closest(k, knownKeys(schema, where));
        return `${[...where, k].join('.')}: unknown key${hint ? ` (did you mean ${hint}?)` : ''}`;
      });
    }
    return [`${where.length ? where.join('.') : '(root)'}: ${i.message}`];
  });
}

/** The keys the schema allows at a path, for "did you mean". */
function knownKeys(schema: z.ZodType, where: readonly string[]): string[] {
  let node: unknown = schema;
  for (const step of ['', ...where]) {
    // Look through defaults, prefaults, optionals and arrays to the object beneath.
    for (let guard = 0; guard < 8; guard++) {
      const n = node as { unwrap?: () => unknown; element?: unknown; shape?: object };
      if (n.shape) break;
      if (n.element) node = n.element;
      else if (typeof n.unwrap === 'function') node = n.unwrap();
      else return [];
    }
    if (step === '' || /^\d+$/.test(step)) continue;
    node = (node as { shape: Record<string, unknown> }).shape[step];
    if (!node) return [];
  }
  let n = node as { unwrap?: () => unknown; element?: unknown; shape?: object };
  for (let guard = 0; guard < 8 && !n.shape; guard++) {
    if (n.element) n = n.element as typeof n;
    else if (typeof n.unwrap === 'function') n = n.unwrap() as typeof n;
    else return [];
  }
  return n.shape ? Object.keys(n.shape) : [];
}

/** The known key closest to a typo, if it is close (one edit for short keys, two for long). */
function closest(typo: string, keys: readonly string[]): string | undefined {
  const limit = typo.length <= 4 ? 1 : 2;
  let best: string | undefined;
  let bestD = limit + 1;
  for (const k of keys) {
    const d = editDistance(typo.toLowerCase(), k.toLowerCase());
    if (d < bestD) [best, bestD] = [k, d];
  }
  return best;
}

/** Edit distance counting a swap of two neighbours as one edit (prot -> port). */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}
