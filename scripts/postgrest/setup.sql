-- PostgREST side of scripts/bench-http.sh: the seeded records as three tables of JSONB
-- documents, with row-level security by a tenant claim of the JWT and expression indexes
-- on the filtered fields. Run as a superuser in a database of its own (the LEAKPROOF
-- variant changes built-in functions of that database only). Idempotent.

DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgrst_authenticator') THEN
    CREATE ROLE pgrst_authenticator LOGIN NOINHERIT PASSWORD 'bench';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgrst_anon') THEN
    CREATE ROLE pgrst_anon NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgrst_user') THEN
    CREATE ROLE pgrst_user NOLOGIN;
  END IF;
END
$$;
GRANT pgrst_anon, pgrst_user TO pgrst_authenticator;

DROP SCHEMA IF EXISTS pgrst CASCADE;
CREATE SCHEMA pgrst;
GRANT USAGE ON SCHEMA pgrst TO pgrst_user, pgrst_anon;

-- The tenant of the request, read once per statement (an InitPlan).
CREATE FUNCTION pgrst.jwt_tenant() RETURNS uuid LANGUAGE sql STABLE AS
$$ SELECT NULLIF(current_setting('request.jwt.claims', true)::json->>'tenant_id', '')::uuid $$;

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['users', 'projects', 'resources'] LOOP
    EXECUTE format($f$
      CREATE TABLE pgrst.%1$I (
        tenant_id  uuid NOT NULL DEFAULT pgrst.jwt_tenant(),
        id         uuid NOT NULL DEFAULT gen_random_uuid(),
        data       jsonb NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant_id, id))$f$, t);
    EXECUTE format('CREATE INDEX ON pgrst.%I (tenant_id, created_at, id)', t);
    EXECUTE format('ALTER TABLE pgrst.%I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE pgrst.%I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant ON pgrst.%I USING (tenant_id = (SELECT pgrst.jwt_tenant())) WITH CHECK (tenant_id = (SELECT pgrst.jwt_tenant()))', t);
    EXECUTE format('GRANT SELECT, INSERT ON pgrst.%I TO pgrst_user', t);
  END LOOP;
END
$$;

-- Expression indexes on the filtered JSON fields (same fields DDMS declares indexed).
CREATE INDEX projects_status ON pgrst.projects (tenant_id, (data->>'status'), created_at, id);
CREATE INDEX projects_budget ON pgrst.projects (tenant_id, ((data->>'budget')::numeric));
CREATE INDEX users_email ON pgrst.users (tenant_id, (data->>'email'));
CREATE INDEX users_age ON pgrst.users (tenant_id, ((data->>'age')::numeric));

-- Computed fields, so that numeric filters and sorts compare numbers (PostgREST's
-- `data->>budget=gte.100` would compare text). Inlined by the planner: the expression
-- indexes above match them.
CREATE FUNCTION pgrst.budget(pgrst.projects) RETURNS numeric LANGUAGE sql IMMUTABLE AS
$$ SELECT ($1.data->>'budget')::numeric $$;
CREATE FUNCTION pgrst.age(pgrst.users) RETURNS numeric LANGUAGE sql IMMUTABLE AS
$$ SELECT ($1.data->>'age')::numeric $$;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA pgrst TO pgrst_user, pgrst_anon;
