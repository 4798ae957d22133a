-- Creates the login role `paywatch serve` connects as, and grants it only what
-- serve needs. Read-only by default.
--
-- Run as a superuser, or as a role with CREATEROLE that also owns the database
-- and the tables (the role that ran `paywatch migrate`), in the paywatch
-- database, after `paywatch migrate`:
--
--     psql -h HOST -U OWNER -d paywatch -f sql/paywatch_reader.sql
--     psql -h HOST -U OWNER -d paywatch -v role=pw_reader -f sql/paywatch_reader.sql
--
-- Then set the role's password without it reaching the shell history or `ps`:
--
--     psql -h HOST -U OWNER -d paywatch -c '\password paywatch_reader'
--
-- and start the service with
-- DATABASE_URL=postgres://paywatch_reader:PASSWORD@HOST/paywatch.
--
-- Variables (set with -v NAME=VALUE):
--   role             name of the login role; default paywatch_reader.
--   dbname           the paywatch database; default the one psql connected
--                    to. The script stops if the two differ, because the
--                    table grants apply to the database psql is connected to.
--   create_invoices  on/off, default off. See "Invoice creation" below.
--
-- What the role gets, and nothing more:
--   CONNECT on the database         to log in.
--   USAGE on schema public          to see the tables in it.
--   SELECT on public.invoices       snapshots, totals, GET /api/invoices/{id}.
--   SELECT on public.payments       reload, sweep, snapshots.
--   SELECT on public._sqlx_migrations
--                                   serve refuses to start on a schema older
--                                   than the binary, and reads this to know.
-- LISTEN and pg_notify() (serve's start-up self-test) need no privilege.
-- The role gets no INSERT, UPDATE, DELETE or TRUNCATE on any table, no use
-- of the payments id sequence, no CREATE on the schema or the database, and
-- no role attributes (it is NOSUPERUSER NOCREATEDB NOCREATEROLE
-- NOREPLICATION NOBYPASSRLS). One privilege comes from PUBLIC and so cannot
-- be withheld from this role alone: PostgreSQL grants TEMPORARY on every
-- database to PUBLIC, so the role can create temporary tables, which only its
-- own session sees and which vanish with it. `REVOKE TEMPORARY ON DATABASE
-- paywatch FROM PUBLIC` removes that for every role.
--
-- Migrations are not this role's job. `paywatch migrate` runs as the owner
-- role, which creates and alters the tables; paywatch serve with this role
-- never migrates (with DATABASE_URL set it only checks the schema version).
--
-- Invoice creation. POST /api/invoices inserts into invoices, so it needs
-- INSERT there. The default role cannot, and the endpoint then answers 403
-- creation_not_permitted (creation_disabled if PAYWATCH_API_TOKEN is unset). To let
-- this role create invoices, run the script with -v create_invoices=on: it
-- adds INSERT on invoices' columns amount_sats, memo, expires_at and address
-- only, the ones the endpoint writes (id and created_at keep their defaults). Even then
-- the role can write no payment and can change or delete no row.
--
-- Running it again is harmless, and is how to update the role: it creates
-- the role only if it is missing, first revokes whatever it grants (and every
-- other privilege the running role had granted it on the tables, sequences,
-- schema and database), then grants the list above. So a re-run without
-- create_invoices=on takes invoice creation away again. Re-run it after a
-- migration that adds a table the service reads.
--
-- Before committing, the script checks the role's effective privileges and
-- stops (rolling everything back) if the role could still write a table or
-- use a sequence in schema public, create in the schema or the database, or
-- is a member of another role (whose privileges it could gain with SET ROLE). On PostgreSQL 14 and older, PUBLIC may create in schema
-- public by default; the check then fails, and the fix is
-- `REVOKE CREATE ON SCHEMA public FROM PUBLIC` (after granting CREATE to the
-- owner role if it relies on it).
--
-- Locking: everything runs in one transaction of a few milliseconds, and
-- takes no lock on invoices, payments or _sqlx_migrations: reads and writes
-- of them (SELECT, INSERT, UPDATE, DELETE) neither wait for it nor make it
-- wait. GRANT and REVOKE do rewrite the tables' catalog rows (their access
-- lists), so until the script commits, anything else that rewrites those rows
-- waits for it: ALTER TABLE, TRUNCATE, CREATE INDEX, VACUUM and ANALYZE
-- (autovacuum too) of those three tables. The same holds the other way: if
-- such a statement is in progress, the script waits for it, for at most the
-- lock_timeout of 5 s set below, then stops and changes nothing. Sessions
-- connected as the role see the new privileges from their next statement.
-- Rewrites: nothing.

\set ON_ERROR_STOP on

\if :{?role}
\else
    \set role paywatch_reader
\endif
\if :{?dbname}
\else
    \set dbname :DBNAME
\endif
\if :{?create_invoices}
\else
    \set create_invoices off
\endif

begin;

-- Give up rather than queue behind a long ALTER TABLE or VACUUM (see the header).
set local lock_timeout = '5s';

-- Custom settings carry the variables into the DO blocks below, where psql
-- does not substitute variables.
set local paywatch.role = :'role';
set local paywatch.dbname = :'dbname';
set local paywatch.create_invoices = :'create_invoices';

do $$
begin
    if current_setting('paywatch.dbname') <> current_database() then
        raise exception 'dbname is %, but psql is connected to database %',
            current_setting('paywatch.dbname'), current_database()
            using hint = 'Connect to the paywatch database itself: psql -d <dbname> ...';
    end if;
    if to_regclass('public._sqlx_migrations') is null
        or to_regclass('public.invoices') is null
        or to_regclass('public.payments') is null then
        raise exception 'public.invoices, public.payments or public._sqlx_migrations is missing'
            using hint = 'Run `paywatch migrate` first.';
    end if;
end
$$;

select format('create role %I', :'role')
where not exists (select from pg_roles where rolname = :'role')
\gexec

alter role :"role" with login nosuperuser nocreatedb nocreaterole noreplication nobypassrls;

revoke all on all tables in schema public from :"role";
revoke all on all sequences in schema public from :"role";
revoke all on schema public from :"role";
revoke all on database :"dbname" from :"role";

grant connect on database :"dbname" to :"role";
grant usage on schema public to :"role";
grant select on public.invoices, public.payments, public._sqlx_migrations to :"role";

\if :create_invoices
-- Optional: lets POST /api/invoices create invoices (see the header).
grant insert (amount_sats, memo, expires_at, address) on public.invoices to :"role";
\endif

-- Check what the role can actually do, whatever the grants came from.
do $$
declare
    r text := current_setting('paywatch.role');
    invoices_insert boolean := current_setting('paywatch.create_invoices')::boolean;
    found text;
begin
    select string_agg(format('%s on %s', p, c.oid::regclass), ', ')
    into found
    from pg_class c
    cross join unnest(array['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) p
    where c.relnamespace = 'public'::regnamespace
      and c.relkind in ('r', 'p', 'v', 'm', 'f')
      and case when p in ('INSERT', 'UPDATE', 'REFERENCES')
               then has_any_column_privilege(r, c.oid, p)
               else has_table_privilege(r, c.oid, p) end
      and not (invoices_insert and p = 'INSERT' and c.oid = 'public.invoices'::regclass);
    if found is not null then
        raise exception 'role % can still write: %', r, found;
    end if;
    if invoices_insert and (has_column_privilege(r, 'public.invoices', 'id', 'INSERT')
                            or has_column_privilege(r, 'public.invoices', 'created_at', 'INSERT')) then
        raise exception 'role % may set invoices.id or invoices.created_at', r;
    end if;
    select string_agg(format('%s on %s', p, c.oid::regclass), ', ')
    into found
    from pg_class c
    cross join unnest(array['USAGE', 'UPDATE']) p
    where c.relnamespace = 'public'::regnamespace
      and c.relkind = 'S'
      and has_sequence_privilege(r, c.oid, p);
    if found is not null then
        raise exception 'role % can still use a sequence: %', r, found;
    end if;
    if has_schema_privilege(r, 'public', 'CREATE') then
        raise exception 'role % can create objects in schema public', r
            using hint = 'PUBLIC has CREATE there on PostgreSQL 14 and older: REVOKE CREATE ON SCHEMA public FROM PUBLIC.';
    end if;
    if has_database_privilege(r, current_database(), 'CREATE') then
        raise exception 'role % can create schemas in database %', r, current_database()
            using hint = 'Revoke CREATE on the database from PUBLIC or from whichever role granted it.';
    end if;
    select string_agg(g.rolname, ', ')
    into found
    from pg_auth_members m
    join pg_roles g on g.oid = m.roleid
    where m.member = (select oid from pg_roles where rolname = r);
    if found is not null then
        raise exception 'role % is a member of %, whose privileges it could use', r, found;
    end if;
end
$$;

commit;
