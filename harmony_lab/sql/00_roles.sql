-- Supabase-like API roles. Roles are cluster-wide, so creation is guarded (another database of the
-- same cluster, or an earlier apply_schema, may have created them already).
--   anon           requests without a user JWT
--   authenticated  requests with a user JWT; row level security decides what it sees
--   service_role   trusted back-end key: bypasses row level security
DO $$
DECLARE
  r record;
BEGIN
  FOR r IN SELECT * FROM (VALUES
      ('anon', 'NOLOGIN NOINHERIT'),
      ('authenticated', 'NOLOGIN NOINHERIT'),
      ('service_role', 'NOLOGIN NOINHERIT BYPASSRLS')) AS t(name, attrs)
  LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r.name) THEN
      BEGIN
        EXECUTE format('CREATE ROLE %I %s', r.name, r.attrs);
      EXCEPTION WHEN duplicate_object OR unique_violation THEN
        NULL;  -- created concurrently by another session: fine
      END;
    END IF;
  END LOOP;
END
$$;

-- An existing service_role (e.g. made by something else) must still bypass RLS.
DO $$
BEGIN
  IF NOT (SELECT rolbypassrls FROM pg_roles WHERE rolname = 'service_role') THEN
    ALTER ROLE service_role BYPASSRLS;
  END IF;
END
$$;
