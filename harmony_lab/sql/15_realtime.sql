-- The `realtime` schema of a Supabase project, as the Realtime server's tenant migrations leave it:
-- realtime.messages (the table Realtime Authorization's policies are written on, and the table
-- Broadcast from Database writes to), realtime.topic(), realtime.send(), realtime.send_binary(),
-- realtime.broadcast_changes() and the grants. Re-applying is safe: objects are created when missing, functions replaced.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'supabase_realtime_admin') THEN
    BEGIN
      CREATE ROLE supabase_realtime_admin NOINHERIT NOLOGIN NOREPLICATION;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN
      NULL;  -- created concurrently by another session: fine
    END;
  END IF;
END
$$;

CREATE SCHEMA IF NOT EXISTS realtime;
GRANT USAGE ON SCHEMA realtime TO anon, authenticated, service_role;

-- Partitioned by the insert time, like Supabase's: one partition per day, and a default partition for
-- rows no daily partition covers.
CREATE TABLE IF NOT EXISTS realtime.messages (
  topic       text NOT NULL,
  extension   text NOT NULL,
  payload     jsonb,
  event       text,
  private     boolean DEFAULT false,
  updated_at  timestamp without time zone NOT NULL DEFAULT now(),
  inserted_at timestamp without time zone NOT NULL DEFAULT now(),
  id          uuid NOT NULL DEFAULT gen_random_uuid(),
  PRIMARY KEY (id, inserted_at)
) PARTITION BY RANGE (inserted_at);
CREATE TABLE IF NOT EXISTS realtime.messages_default PARTITION OF realtime.messages DEFAULT;
-- Daily partitions from yesterday to three days ahead (as Supabase's janitor creates them; the
-- server's janitor keeps creating them and drops the ones past the 72-hour retention). Created here
-- too, so rows written right away (the seed's triggers) land in their day's partition.
DO $$
DECLARE
  d date;
  part text;
BEGIN
  FOR d IN SELECT generate_series(current_date - 1, current_date + 3, interval '1 day')::date LOOP
    part := 'messages_' || to_char(d, 'YYYY_MM_DD');
    IF to_regclass('realtime.' || part) IS NULL THEN
      BEGIN
        EXECUTE format('CREATE TABLE realtime.%I PARTITION OF realtime.messages FOR VALUES FROM (%L) TO (%L)',
                       part, d, d + 1);
        EXECUTE format('ALTER TABLE realtime.%I OWNER TO supabase_realtime_admin', part);
      EXCEPTION WHEN duplicate_table OR check_violation THEN
        NULL;  -- created concurrently, or that day's rows already sit in the default partition
      END;
    END IF;
  END LOOP;
END
$$;
-- Binary broadcasts (realtime.send_binary) carry their payload in binary_payload; a row has one of
-- the two payloads, never both.
ALTER TABLE realtime.messages ADD COLUMN IF NOT EXISTS binary_payload bytea;
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_constraint
                 WHERE conrelid = 'realtime.messages'::regclass AND conname = 'messages_payload_exclusive') THEN
    BEGIN
      ALTER TABLE realtime.messages ADD CONSTRAINT messages_payload_exclusive
        CHECK (payload IS NULL OR binary_payload IS NULL) NOT VALID;
    EXCEPTION WHEN duplicate_object THEN
      NULL;  -- added concurrently by another session: fine
    END;
  END IF;
END
$$;
CREATE INDEX IF NOT EXISTS messages_inserted_at_topic_index
  ON realtime.messages (inserted_at DESC, topic) WHERE extension = 'broadcast' AND private IS TRUE;

ALTER TABLE realtime.messages ENABLE ROW LEVEL SECURITY;
ALTER TABLE realtime.messages OWNER TO supabase_realtime_admin;
ALTER TABLE realtime.messages_default OWNER TO supabase_realtime_admin;
GRANT SELECT, INSERT, UPDATE ON realtime.messages TO anon, authenticated, service_role;

-- The topic of the channel being authorised (set by the server) or sent to (set by realtime.send).
CREATE OR REPLACE FUNCTION realtime.topic() RETURNS text
LANGUAGE sql STABLE
AS $$
  SELECT nullif(current_setting('realtime.topic', true), '')::text;
$$;

-- Broadcast `payload` as `event` to the subscribers of `topic` (private channels only unless
-- `private` is false). Runs as the caller, so realtime.messages' INSERT policies apply; a failure is
-- a WARNING, never an error of the calling transaction. A payload without "id" gets the message id.
CREATE OR REPLACE FUNCTION realtime.send(payload jsonb, event text, topic text, private boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
  generated_id uuid;
  final_payload jsonb;
BEGIN
  BEGIN
    generated_id := gen_random_uuid();
    IF payload ? 'id' THEN
      final_payload := payload;
    ELSE
      final_payload := jsonb_set(payload, '{id}', to_jsonb(generated_id));
    END IF;
    EXECUTE format('SET LOCAL realtime.topic TO %L', topic);
    INSERT INTO realtime.messages (id, payload, event, topic, private, extension)
    VALUES (generated_id, final_payload, event, topic, private, 'broadcast');
  EXCEPTION
    WHEN OTHERS THEN
      RAISE WARNING 'WarnSendingBroadcastMessage: %', SQLERRM;
  END;
END;
$$;

-- Broadcast the bytes `payload` as `event` to `topic`: like realtime.send, with the payload stored in
-- binary_payload (delivered to clients that speak the binary protocol, realtime-js).
CREATE OR REPLACE FUNCTION realtime.send_binary(payload bytea, event text, topic text, private boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
  generated_id uuid;
BEGIN
  BEGIN
    generated_id := gen_random_uuid();
    EXECUTE format('SET LOCAL realtime.topic TO %L', topic);
    INSERT INTO realtime.messages (id, binary_payload, event, topic, private, extension)
    VALUES (generated_id, payload, event, topic, private, 'broadcast');
  EXCEPTION
    WHEN OTHERS THEN
      RAISE WARNING 'WarnSendingBroadcastMessage: %', SQLERRM;
  END;
END;
$$;

-- For row triggers: broadcast a row change to `topic_name` (always a private broadcast) as
-- {operation, schema, table, record, old_record}.
CREATE OR REPLACE FUNCTION realtime.broadcast_changes(
  topic_name text, event_name text, operation text, table_name text, table_schema text,
  new record, old record, level text DEFAULT 'ROW'
) RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
  row_data jsonb := '{}'::jsonb;
BEGIN
  IF level = 'STATEMENT' THEN
    RAISE EXCEPTION 'function can only be triggered for each row, not for each statement';
  END IF;
  IF operation = 'INSERT' OR operation = 'UPDATE' OR operation = 'DELETE' THEN
    row_data := jsonb_build_object('old_record', old, 'record', new, 'operation', operation,
                                   'table', table_name, 'schema', table_schema);
    PERFORM realtime.send(row_data, event_name, topic_name);
  ELSE
    RAISE EXCEPTION 'Unexpected operation type: %', operation;
  END IF;
EXCEPTION
  WHEN OTHERS THEN
    RAISE EXCEPTION 'Failed to process the row: %', SQLERRM;
END;
$$;

ALTER FUNCTION realtime.topic() OWNER TO supabase_realtime_admin;
ALTER FUNCTION realtime.send(jsonb, text, text, boolean) OWNER TO supabase_realtime_admin;
ALTER FUNCTION realtime.send_binary(bytea, text, text, boolean) OWNER TO supabase_realtime_admin;
ALTER FUNCTION realtime.broadcast_changes(text, text, text, text, text, record, record, text)
  OWNER TO supabase_realtime_admin;
GRANT EXECUTE ON FUNCTION realtime.topic(), realtime.send(jsonb, text, text, boolean),
  realtime.send_binary(bytea, text, text, boolean),
  realtime.broadcast_changes(text, text, text, text, text, record, record, text)
  TO anon, authenticated, service_role;

-- Broadcast from Database: the Realtime server reads the rows written to realtime.messages through
-- logical replication of this publication (rows of the partitions appear as realtime.messages).
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'supabase_realtime_messages_publication') THEN
    CREATE PUBLICATION supabase_realtime_messages_publication FOR TABLE realtime.messages
      WITH (publish = 'insert', publish_via_partition_root = true);
  END IF;
END
$$;
