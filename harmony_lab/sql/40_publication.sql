-- The publication Supabase Realtime reads. Created when missing; when present, the Harmony tables
-- are added if absent (tables someone else added stay) and every operation is published.
-- Not dropped and re-created: a running change stream keeps working across re-applies.
DO $$
DECLARE
  t text;
  harmony text[] := ARRAY['profiles', 'channels', 'channel_members', 'messages', 'message_reactions',
                          'notifications', 'typing_indicators', 'megolm_session_shares'];
BEGIN
  IF EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'supabase_realtime' AND puballtables) THEN
    -- FOR ALL TABLES cannot be narrowed with ALTER; start over with an explicit list.
    DROP PUBLICATION supabase_realtime;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'supabase_realtime') THEN
    CREATE PUBLICATION supabase_realtime WITH (publish = 'insert, update, delete, truncate');
  ELSIF NOT EXISTS (
    SELECT 1 FROM pg_publication WHERE pubname = 'supabase_realtime'
      AND pubinsert AND pubupdate AND pubdelete AND pubtruncate
  ) THEN
    ALTER PUBLICATION supabase_realtime SET (publish = 'insert, update, delete, truncate');
  END IF;
  FOREACH t IN ARRAY harmony LOOP
    IF NOT EXISTS (
      SELECT 1 FROM pg_publication_tables
      WHERE pubname = 'supabase_realtime' AND schemaname = 'public' AND tablename = t
    ) THEN
      EXECUTE format('ALTER PUBLICATION supabase_realtime ADD TABLE public.%I', t);
    END IF;
  END LOOP;
END
$$;
