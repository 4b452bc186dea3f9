/**
 * Numbered schema migrations, run once each at open inside a transaction. A shipped
 * migration is never edited: a change to the schema is a new number.
 */
export interface Migration {
  version: number;
  sql: string;
}

export const migrations: readonly Migration[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
      );

      -- One hash chain over everything the terminal did: transactions (kind 'txn') and
      -- events (kind 'event': transitions, refusals, commands, batch steps, logins).
      -- Rows never change once written; the triggers stop honest mistakes, the chain
      -- exposes dishonest ones.
      CREATE TABLE journal (
        seq          INTEGER PRIMARY KEY,
        kind         TEXT    NOT NULL CHECK (kind IN ('txn', 'event')),
        created_at   INTEGER NOT NULL,
        local_id     TEXT,
        type         TEXT    CHECK (type IN ('sale', 'refund', 'void', 'reversal')),
        original_seq INTEGER REFERENCES journal (seq),
        amount       INTEGER CHECK (amount IS NULL OR amount > 0),
        currency     TEXT,
        category     TEXT,
        fee          INTEGER CHECK (fee IS NULL OR fee >= 0),
        fee_version  TEXT,
        masked_pan   TEXT,
        pan_token    TEXT,
        auth_code    TEXT,
        status       TEXT    CHECK (status IN ('approved', 'declined', 'pending-offline')),
        batch_id     TEXT,
        event        TEXT,
        detail       TEXT,
        prev_hash    TEXT    NOT NULL,
        hash         TEXT    NOT NULL,
        CHECK ((kind = 'txn' AND type IS NOT NULL AND amount IS NOT NULL AND status IS NOT NULL
                 AND batch_id IS NOT NULL AND local_id IS NOT NULL)
            OR (kind = 'event' AND event IS NOT NULL))
      );
      CREATE UNIQUE INDEX journal_local_id ON journal (local_id) WHERE local_id IS NOT NULL;
      CREATE INDEX journal_batch ON journal (batch_id, seq) WHERE kind = 'txn';
      CREATE INDEX journal_original ON journal (original_seq) WHERE original_seq IS NOT NULL;
      CREATE INDEX journal_event ON journal (event, seq) WHERE kind = 'event';
      CREATE TRIGGER journal_immutable_update BEFORE UPDATE ON journal
        BEGIN SELECT RAISE(ABORT, 'journal rows are immutable'); END;
      CREATE TRIGGER journal_immutable_delete BEFORE DELETE ON journal
        BEGIN SELECT RAISE(ABORT, 'journal rows are immutable'); END;

      CREATE TABLE batches (
        batch_id        TEXT    PRIMARY KEY,
        number          INTEGER NOT NULL UNIQUE,
        state           TEXT    NOT NULL CHECK (state IN ('open', 'closed', 'sent', 'acked',
                                  'out-of-balance', 'detail-uploaded', 'resolved')),
        business_date   TEXT,
        opened_at       INTEGER NOT NULL,
        closed_at       INTEGER,
        first_seq       INTEGER,
        last_seq        INTEGER,
        txn_count       INTEGER,
        totals          TEXT,
        digest          TEXT,
        settlement_id   TEXT,
        acquirer_totals TEXT,
        updated_at      INTEGER NOT NULL
      );
      -- Exactly one open batch at any time.
      CREATE UNIQUE INDEX batches_one_open ON batches (state) WHERE state = 'open';

      CREATE TABLE lifecycle (
        id         INTEGER PRIMARY KEY CHECK (id = 1),
        state      TEXT    NOT NULL CHECK (state IN ('unactivated', 'active', 'deactivation-pending',
                                  'deactivating', 'deactivated')),
        locks      TEXT    NOT NULL,
        reason     TEXT,
        version    INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      );

      CREATE TABLE lifecycle_transitions (
        id           INTEGER PRIMARY KEY,
        at           INTEGER NOT NULL,
        event        TEXT    NOT NULL,
        from_state   TEXT    NOT NULL,
        to_state     TEXT    NOT NULL,
        locks_before TEXT    NOT NULL,
        locks_after  TEXT    NOT NULL,
        source       TEXT    NOT NULL,
        cause        TEXT    NOT NULL,
        journal_seq  INTEGER NOT NULL REFERENCES journal (seq)
      );

      CREATE TABLE fee_schedules (
        version        TEXT    PRIMARY KEY,
        effective_from INTEGER NOT NULL,
        spec           TEXT    NOT NULL,
        installed_at   INTEGER NOT NULL
      );

      CREATE TABLE unlock_challenges (
        challenge  TEXT    PRIMARY KEY,
        source     TEXT    NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        used_at    INTEGER
      );
    `,
  },
  {
    // Store-and-forward (docs/protocol.md, "Offline advices"): every offline approval, and
    // every refund, void or reversal of one, is queued for the acquirer as an advice. The
    // queue is filled by a trigger in the same SQLite transaction as the journal row, so no
    // code path can journal an offline sale without queueing it. The acquirer's answer is a
    // journal event row whose original_seq names the advised row (hash-chained like any other
    // row); this table only keeps the delivery bookkeeping (attempts, last error, backoff)
    // and a copy of the outcome for fast reads. The advised row itself is never updated.
    version: 2,
    sql: `
      CREATE TABLE advice_queue (
        seq             INTEGER PRIMARY KEY REFERENCES journal (seq),
        advice_key      TEXT    NOT NULL UNIQUE,
        enqueued_at     INTEGER NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        last_attempt_at INTEGER,
        next_attempt_at INTEGER NOT NULL DEFAULT 0,
        last_error      TEXT,
        outcome         TEXT    CHECK (outcome IN ('accepted', 'declined', 'expired')),
        outcome_seq     INTEGER REFERENCES journal (seq)
      );
      CREATE INDEX advice_queue_pending ON advice_queue (seq) WHERE outcome IS NULL;
      CREATE INDEX advice_queue_answered ON advice_queue (outcome_seq) WHERE outcome_seq IS NOT NULL;
      CREATE TRIGGER advice_enqueue AFTER INSERT ON journal
        WHEN NEW.kind = 'txn' AND NEW.status != 'declined'
         AND (NEW.status = 'pending-offline'
              OR (NEW.original_seq IS NOT NULL
                  AND EXISTS (SELECT 1 FROM advice_queue q WHERE q.seq = NEW.original_seq)))
        BEGIN
          INSERT INTO advice_queue (seq, advice_key, enqueued_at)
            VALUES (NEW.seq, NEW.seq || ':' || substr(NEW.hash, 1, 16), NEW.created_at);
        END;
      -- A journal from before this version: offline sales of the open batch are forwarded;
      -- those of closed batches were already settled (or are queued) in their batch totals.
      INSERT INTO advice_queue (seq, advice_key, enqueued_at)
        SELECT j.seq, j.seq || ':' || substr(j.hash, 1, 16), j.created_at
          FROM journal j JOIN batches b ON b.batch_id = j.batch_id AND b.state = 'open'
         WHERE j.kind = 'txn' AND j.status = 'pending-offline';
    `,
  },
  {
    // A batch the acquirer refused for good (settled with another digest, a dispute that a
    // detail upload cannot end) goes to 'disputed', a visible problem state that settlement
    // no longer retries, with the acquirer's words in `problem`. SQLite cannot change a CHECK
    // in place: the table is rebuilt with its rows and its one-open index.
    version: 3,
    sql: `
      CREATE TABLE batches_v3 (
        batch_id        TEXT    PRIMARY KEY,
        number          INTEGER NOT NULL UNIQUE,
        state           TEXT    NOT NULL CHECK (state IN ('open', 'closed', 'sent', 'acked',
                                  'out-of-balance', 'detail-uploaded', 'resolved', 'disputed')),
        business_date   TEXT,
        opened_at       INTEGER NOT NULL,
        closed_at       INTEGER,
        first_seq       INTEGER,
        last_seq        INTEGER,
        txn_count       INTEGER,
        totals          TEXT,
        digest          TEXT,
        settlement_id   TEXT,
        acquirer_totals TEXT,
        updated_at      INTEGER NOT NULL,
        problem         TEXT
      );
      INSERT INTO batches_v3 (batch_id, number, state, business_date, opened_at, closed_at,
          first_seq, last_seq, txn_count, totals, digest, settlement_id, acquirer_totals, updated_at)
        SELECT batch_id, number, state, business_date, opened_at, closed_at, first_seq, last_seq,
               txn_count, totals, digest, settlement_id, acquirer_totals, updated_at FROM batches;
      DROP TABLE batches;
      ALTER TABLE batches_v3 RENAME TO batches;
      CREATE UNIQUE INDEX batches_one_open ON batches (state) WHERE state = 'open';
    `,
  },
];
