-- Creates the invoices table: one row per amount a merchant asks to be paid.
--
-- Locking: creates a new, empty table; takes no lock on any existing object.
-- Rewrites: nothing.
-- Needs: PostgreSQL 13 or later (gen_random_uuid() is built in from 13).

create table invoices (
    id          uuid        primary key default gen_random_uuid(),
    amount_sats bigint      not null check (amount_sats > 0),
    memo        text        not null default '',
    created_at  timestamptz not null default now(),
    -- An invoice that is not fully paid by this time reports status "expired".
    expires_at  timestamptz not null default now() + interval '30 minutes'
);

comment on table invoices is 'Amounts merchants ask to be paid; paywatch pushes each payment to the invoice''s WebSocket room.';
