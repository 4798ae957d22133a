-- Adds invoices.address: the optional CashAddr the invoice is to be paid to.
-- The invoice page shows it as text and as a QR code of the payment URI.
-- paywatch stores it canonical (lowercase, with its network prefix), the same
-- form as payments.address, and this check keeps it so.
--
-- Locking: ALTER TABLE ... ADD COLUMN takes an ACCESS EXCLUSIVE lock on
-- invoices, which blocks its readers and writers until the migration's
-- transaction commits. Adding a nullable column with no default is a catalog
-- change only; the CHECK is then verified by one sequential scan of invoices
-- (every existing row holds NULL, which passes), so the lock lasts about as
-- long as reading the table once. The lock must first wait for every open
-- transaction that touched invoices, and everything queued behind it waits
-- too: run it when no long transaction is open, or with a lock_timeout.
-- Rewrites: nothing.

alter table invoices
    add column address text null
        constraint invoices_address_canonical
        check (address ~ '^(bitcoincash|bchtest|bchreg):[02-9ac-hj-np-z]{42,112}$');

comment on column invoices.address is 'Canonical CashAddr the invoice is to be paid to, if any; shown on the invoice page.';
