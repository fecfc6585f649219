-- The role a replacing bulk load writes its sealed shadow tables as (ddms-diesel
-- bulk.rs, `SEAL`): PostgreSQL refuses COPY FROM into a table with row-level security
-- for a role it applies to, so the not-yet-published copies of the bulk tables load
-- with RLS off, a CHECK constraint pinning them to the one tenant being loaded, and
-- privileges for this role only. Like ddms_app it has no BYPASSRLS and no superuser;
-- it is granted nothing here: each load grants it SELECT and INSERT on its own shadow
-- tables, and the grant goes before they are published.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ddms_loader') THEN
    CREATE ROLE ddms_loader NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
  END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
  NULL; -- created concurrently by a migration of another database on this cluster
END
$$;

DO $$
BEGIN
  EXECUTE format('GRANT ddms_loader TO %I', current_user);
EXCEPTION WHEN others THEN
  NULL; -- superusers need no grant; a role that cannot be granted to itself is fine
END
$$;
