-- Creates the payments table: one row per payment seen on chain, written by the
-- merchant's backend, a DBA or a test. paywatch only ever reads it.
--
-- Locking: creates a new, empty table and its indexes; the foreign key takes a
-- SHARE ROW EXCLUSIVE lock on invoices for the instant of creation (it blocks
-- writes to invoices while this migration's transaction is open).
-- Rewrites: nothing.

create table payments (
    id          bigint      generated always as identity primary key,
    invoice_id  uuid        null references invoices (id),
    -- Canonical CashAddr: lowercase, with its network prefix. paywatch verifies
    -- the checksum when it routes a payment; this check keeps the stored form
    -- canonical so that room look-ups by address are plain equality.
    address     text        null check (address ~ '^(bitcoincash|bchtest|bchreg):[02-9ac-hj-np-z]{42,112}$'),
    -- CashToken category id: 32 bytes as 64 lowercase hex.
    token_id    text        null check (token_id ~ '^[0-9a-f]{64}$'),
    txid        text        not null check (txid ~ '^[0-9a-f]{64}$'),
    amount_sats bigint      not null check (amount_sats > 0),
    memo        text        not null default '',
    paid_at     timestamptz not null default now(),
    -- The id of the inserting transaction. Identity ids are handed out at INSERT
    -- time, not at COMMIT, so they do not follow commit order; the transaction id
    -- does, relative to pg_snapshot_xmin(), and gives paywatch's catch-up sweep a
    -- cursor that cannot skip a row that commits late.
    xid         xid8        not null default pg_current_xact_id(),
    constraint payments_has_a_room check (invoice_id is not null or address is not null),
    constraint payments_token_needs_address check (token_id is null or address is not null)
);

-- Invoice snapshots and totals: all payments of one invoice.
create index payments_invoice_id_idx on payments (invoice_id) where invoice_id is not null;
-- Address snapshots: the most recent payments to one address, and to one
-- address in one token.
create index payments_address_idx on payments (address, id desc) where address is not null;
create index payments_address_token_idx on payments (address, token_id, id desc) where token_id is not null;
-- Catch-up sweep: rows in commit-safe order from a transaction-id watermark.
create index payments_xid_idx on payments (xid, id);

comment on table payments is 'Payments received; each committed INSERT is pushed to its invoice room and address rooms.';
comment on column payments.xid is 'Transaction that inserted the row (pg_current_xact_id()); commit-safe cursor for catch-up.';
