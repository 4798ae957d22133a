-- Adds the AFTER INSERT trigger that tells paywatch a payment row exists.
--
-- The notification carries the new row's id and nothing else: PostgreSQL
-- delivers it only when the inserting transaction commits (a rolled-back
-- INSERT notifies nobody), and paywatch treats the payload as a hint, reloading
-- the row from this table before pushing anything. Keeping the payload to an id
-- also keeps it far below NOTIFY's 8000-byte limit, which would otherwise abort
-- the writer's INSERT.
--
-- Locking: CREATE TRIGGER takes a SHARE ROW EXCLUSIVE lock on payments for the
-- instant of creation (blocks concurrent writes to payments while this
-- migration's transaction is open). Rewrites: nothing.
-- Cost to writers: every notifying commit takes PostgreSQL's cluster-wide
-- notify-queue lock, so committing writers are serialised at that point.

create function paywatch_notify_payment() returns trigger
language plpgsql
as $$
begin
    perform pg_notify('paywatch_payments', new.id::text);
    return null;
end
$$;

comment on function paywatch_notify_payment() is 'NOTIFY paywatch_payments with the inserted payment id (the only payload).';

create trigger payments_notify
    after insert on payments
    for each row
    execute function paywatch_notify_payment();
