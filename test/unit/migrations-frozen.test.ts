import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { migrations } from '../../storage/migrations.ts';

/**
 * A journal is refused at open when its schema differs, to the byte, from what its recorded
 * migrations make (storage/schema-check.ts). So a migration, once it has reached any terminal,
 * must never change: an edit would make every journal built by the old text look edited, and
 * every terminal would lock. A change to the schema is a new migration with a new number.
 * Adding a migration means adding its hash here; changing a line here means a migration was
 * edited, which this test exists to stop.
 */
const FROZEN: Record<number, string> = {
  1: '08885d9265a0fb39ea7e4c47d460f90b43a2a69545c254f05b6de3936a61ca74',
  2: 'eb798f36671a62a46be94e482d7eb89dbb12e31121b7004d867fb4504c13dd1b',
  3: 'c61d9924505213a1d5d0e9d8678a912b6dfbd3594de4641dd0da2d393626257d',
};

describe('shipped migrations are frozen', () => {
  it('every migration is numbered in order and its SQL is exactly the text that shipped', () => {
    expect(migrations.map((m) => m.version)).toEqual(
      Array.from({ length: migrations.length }, (_, i) => i + 1),
    );
    for (const m of migrations) {
      const sha = createHash('sha256').update(m.sql).digest('hex');
      expect(FROZEN[m.version], `migration ${m.version} has no frozen hash: add it`).toBeDefined();
      expect(sha, `migration ${m.version} was edited: add a new migration instead`).toBe(
        FROZEN[m.version],
      );
    }
  });
});
