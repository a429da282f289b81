-- Small deterministic seed (fixed UUIDs, ids and timestamps). harmony_lab.local.schema exports the
-- same ids as constants. Re-applying inserts nothing new (ON CONFLICT DO NOTHING).
--
-- channel 1 #general      text  alice(owner) bob carol dave erin frank
-- channel 2 #random       text  bob(owner) alice carol dave          (not erin, frank)
-- channel 3 #engineering  text  carol(owner) alice erin frank        (not bob, dave)
-- channel 4 alice-bob     dm    alice bob
-- channel 5 carol-dave    dm    carol dave

INSERT INTO auth.users (id, email, raw_user_meta_data, created_at) VALUES
  ('00000000-0000-4000-a000-000000000001', 'alice@harmony.test',
   '{"username": "alice", "display_name": "Alice Liddell"}', '2025-01-01 09:00:00+00'),
  ('00000000-0000-4000-a000-000000000002', 'bob@harmony.test',
   '{"username": "bob", "display_name": "Bob Builder"}', '2025-01-01 09:01:00+00'),
  ('00000000-0000-4000-a000-000000000003', 'carol@harmony.test',
   '{"username": "carol", "display_name": "Carol Danvers"}', '2025-01-01 09:02:00+00'),
  ('00000000-0000-4000-a000-000000000004', 'dave@harmony.test',
   '{"username": "dave", "display_name": "Dave Bowman"}', '2025-01-01 09:03:00+00'),
  ('00000000-0000-4000-a000-000000000005', 'erin@harmony.test',
   '{"username": "erin", "display_name": "Erin Brockovich"}', '2025-01-01 09:04:00+00'),
  ('00000000-0000-4000-a000-000000000006', 'frank@harmony.test',
   '{"username": "frank", "display_name": "Frank Poole"}', '2025-01-01 09:05:00+00')
ON CONFLICT (id) DO NOTHING;

-- The on_auth_user_created trigger made the profiles; this covers a database where the users
-- existed before the trigger did.
INSERT INTO public.profiles (id, username, display_name, status, updated_at)
SELECT u.id, u.raw_user_meta_data ->> 'username', u.raw_user_meta_data ->> 'display_name', 'offline',
       u.created_at
FROM auth.users u
WHERE u.email LIKE '%@harmony.test'
ON CONFLICT (id) DO NOTHING;

INSERT INTO public.channels (id, name, kind, topic, created_by, created_at) VALUES
  (1, 'general', 'text', 'Everything and anything', '00000000-0000-4000-a000-000000000001',
   '2025-01-01 10:00:00+00'),
  (2, 'random', 'text', 'Off-topic', '00000000-0000-4000-a000-000000000002', '2025-01-01 10:01:00+00'),
  (3, 'engineering', 'text', 'Builds, bugs and benchmarks', '00000000-0000-4000-a000-000000000003',
   '2025-01-01 10:02:00+00'),
  (4, 'alice-bob', 'dm', NULL, '00000000-0000-4000-a000-000000000001', '2025-01-01 10:03:00+00'),
  (5, 'carol-dave', 'dm', NULL, '00000000-0000-4000-a000-000000000003', '2025-01-01 10:04:00+00')
ON CONFLICT (id) DO NOTHING;

INSERT INTO public.channel_members (channel_id, user_id, role, joined_at) VALUES
  (1, '00000000-0000-4000-a000-000000000001', 'owner',  '2025-01-01 10:00:00+00'),
  (1, '00000000-0000-4000-a000-000000000002', 'member', '2025-01-01 10:00:00+00'),
  (1, '00000000-0000-4000-a000-000000000003', 'member', '2025-01-01 10:00:00+00'),
  (1, '00000000-0000-4000-a000-000000000004', 'member', '2025-01-01 10:00:00+00'),
  (1, '00000000-0000-4000-a000-000000000005', 'member', '2025-01-01 10:00:00+00'),
  (1, '00000000-0000-4000-a000-000000000006', 'member', '2025-01-01 10:00:00+00'),
  (2, '00000000-0000-4000-a000-000000000002', 'owner',  '2025-01-01 10:01:00+00'),
  (2, '00000000-0000-4000-a000-000000000001', 'member', '2025-01-01 10:01:00+00'),
  (2, '00000000-0000-4000-a000-000000000003', 'member', '2025-01-01 10:01:00+00'),
  (2, '00000000-0000-4000-a000-000000000004', 'member', '2025-01-01 10:01:00+00'),
  (3, '00000000-0000-4000-a000-000000000003', 'owner',  '2025-01-01 10:02:00+00'),
  (3, '00000000-0000-4000-a000-000000000001', 'admin',  '2025-01-01 10:02:00+00'),
  (3, '00000000-0000-4000-a000-000000000005', 'member', '2025-01-01 10:02:00+00'),
  (3, '00000000-0000-4000-a000-000000000006', 'member', '2025-01-01 10:02:00+00'),
  (4, '00000000-0000-4000-a000-000000000001', 'member', '2025-01-01 10:03:00+00'),
  (4, '00000000-0000-4000-a000-000000000002', 'member', '2025-01-01 10:03:00+00'),
  (5, '00000000-0000-4000-a000-000000000003', 'member', '2025-01-01 10:04:00+00'),
  (5, '00000000-0000-4000-a000-000000000004', 'member', '2025-01-01 10:04:00+00')
ON CONFLICT (channel_id, user_id) DO NOTHING;

INSERT INTO public.messages (id, channel_id, user_id, content, created_at, updated_at, reply_to) VALUES
  (1, 1, '00000000-0000-4000-a000-000000000001', 'Welcome to Harmony, everyone!',
   '2025-01-01 11:00:00+00', '2025-01-01 11:00:00+00', NULL),
  (2, 1, '00000000-0000-4000-a000-000000000002', 'Glad to be here.',
   '2025-01-01 11:01:00+00', '2025-01-01 11:01:00+00', 1),
  (3, 1, '00000000-0000-4000-a000-000000000005', 'Hello from Erin 👋',
   '2025-01-01 11:02:00+00', '2025-01-01 11:02:00+00', 1),
  (4, 2, '00000000-0000-4000-a000-000000000004', 'Anyone seen HAL lately?',
   '2025-01-01 11:03:00+00', '2025-01-01 11:03:00+00', NULL),
  (5, 2, '00000000-0000-4000-a000-000000000003', 'He is being difficult again.',
   '2025-01-01 11:04:00+00', '2025-01-01 11:04:00+00', 4),
  (6, 3, '00000000-0000-4000-a000-000000000003', 'CI is green on main.',
   '2025-01-01 11:05:00+00', '2025-01-01 11:05:00+00', NULL),
  (7, 3, '00000000-0000-4000-a000-000000000006', 'Benchmarks attached in the PR.',
   '2025-01-01 11:06:00+00', '2025-01-01 11:06:00+00', 6),
  (8, 4, '00000000-0000-4000-a000-000000000001', 'Bob, lunch tomorrow?',
   '2025-01-01 11:07:00+00', '2025-01-01 11:07:00+00', NULL),
  (9, 4, '00000000-0000-4000-a000-000000000002', 'Sure, noon works.',
   '2025-01-01 11:08:00+00', '2025-01-01 11:08:00+00', 8),
  (10, 5, '00000000-0000-4000-a000-000000000003', 'Dave, the pod bay doors…',
   '2025-01-01 11:09:00+00', '2025-01-01 11:09:00+00', NULL)
ON CONFLICT (id) DO NOTHING;

INSERT INTO public.message_reactions (message_id, user_id, emoji, created_at) VALUES
  (1, '00000000-0000-4000-a000-000000000002', '🎉', '2025-01-01 11:10:00+00'),
  (1, '00000000-0000-4000-a000-000000000003', '👍', '2025-01-01 11:10:30+00'),
  (6, '00000000-0000-4000-a000-000000000001', '✅', '2025-01-01 11:11:00+00')
ON CONFLICT DO NOTHING;

INSERT INTO public.notifications (id, user_id, kind, payload, read_at, created_at) VALUES
  (1, '00000000-0000-4000-a000-000000000001', 'reply', '{"message_id": 2, "channel_id": 1}',
   NULL, '2025-01-01 11:01:00+00'),
  (2, '00000000-0000-4000-a000-000000000002', 'dm', '{"message_id": 8, "channel_id": 4}',
   '2025-01-01 11:08:00+00', '2025-01-01 11:07:00+00'),
  (3, '00000000-0000-4000-a000-000000000004', 'dm', '{"message_id": 10, "channel_id": 5}',
   NULL, '2025-01-01 11:09:00+00')
ON CONFLICT (id) DO NOTHING;

INSERT INTO public.megolm_session_shares
  (id, session_id, sender_id, recipient_id, channel_id, encrypted_key, created_at) VALUES
  (1, 'sess-alice-bob-1', '00000000-0000-4000-a000-000000000001', '00000000-0000-4000-a000-000000000002',
   4, 'b64:QUxJQ0UtVE8tQk9CLUtFWQ==', '2025-01-01 10:03:30+00'),
  (2, 'sess-carol-dave-1', '00000000-0000-4000-a000-000000000003', '00000000-0000-4000-a000-000000000004',
   5, 'b64:Q0FST0wtVE8tREFWRS1LRVk=', '2025-01-01 10:04:30+00')
ON CONFLICT (id) DO NOTHING;

-- Identity sequences continue after the seeded ids (never moved backwards).
DO $$
DECLARE
  t text;
  seq text;
  top bigint;
  last bigint;
BEGIN
  FOREACH t IN ARRAY ARRAY['channels', 'messages', 'notifications', 'megolm_session_shares'] LOOP
    seq := pg_get_serial_sequence(format('public.%I', t), 'id');
    EXECUTE format('SELECT max(id) FROM public.%I', t) INTO top;
    EXECUTE format('SELECT last_value FROM %s', seq) INTO last;
    IF top IS NOT NULL AND top >= last THEN
      PERFORM setval(seq, top);
    END IF;
  END LOOP;
END
$$;
