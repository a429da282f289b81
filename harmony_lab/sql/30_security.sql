-- Grants like a Supabase project: the API roles get table privileges, row level security decides
-- which rows. service_role has BYPASSRLS (00_roles.sql).
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
GRANT ALL ON ALL TABLES IN SCHEMA public TO anon, authenticated, service_role;
GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO anon, authenticated, service_role;
GRANT ALL ON ALL FUNCTIONS IN SCHEMA public TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON SEQUENCES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON FUNCTIONS TO anon, authenticated, service_role;

-- Membership helpers. SECURITY DEFINER (owned by the schema owner, which is not subject to RLS)
-- so that policies on channel_members and friends can ask "is the caller a member?" without
-- re-entering channel_members' own policy (which would recurse).
CREATE OR REPLACE FUNCTION public.is_channel_member(p_channel_id bigint) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''
AS $$
  SELECT EXISTS (
    SELECT 1 FROM public.channel_members m
    WHERE m.channel_id = p_channel_id AND m.user_id = auth.uid()
  )
$$;

CREATE OR REPLACE FUNCTION public.can_read_message(p_message_id bigint) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''
AS $$
  SELECT EXISTS (
    SELECT 1 FROM public.messages msg
    JOIN public.channel_members m ON m.channel_id = msg.channel_id
    WHERE msg.id = p_message_id AND m.user_id = auth.uid()
  )
$$;

CREATE OR REPLACE FUNCTION public.is_text_channel(p_channel_id bigint) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''
AS $$
  SELECT EXISTS (SELECT 1 FROM public.channels c WHERE c.id = p_channel_id AND c.kind = 'text')
$$;

GRANT EXECUTE ON FUNCTION public.is_channel_member(bigint), public.can_read_message(bigint),
  public.is_text_channel(bigint) TO anon, authenticated, service_role;

ALTER TABLE public.profiles ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.channels ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.channel_members ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.messages ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.message_reactions ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.notifications ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.typing_indicators ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.megolm_session_shares ENABLE ROW LEVEL SECURITY;

-- Policies are dropped and re-created so that re-applying picks up changes.
-- `(select auth.uid())` is evaluated once per statement (an init plan), as Supabase recommends.

-- profiles: any signed-in user reads every profile; you write only your own.
DROP POLICY IF EXISTS profiles_select ON public.profiles;
CREATE POLICY profiles_select ON public.profiles FOR SELECT TO authenticated USING (true);
DROP POLICY IF EXISTS profiles_insert_own ON public.profiles;
CREATE POLICY profiles_insert_own ON public.profiles FOR INSERT TO authenticated
  WITH CHECK (id = (SELECT auth.uid()));
DROP POLICY IF EXISTS profiles_update_own ON public.profiles;
CREATE POLICY profiles_update_own ON public.profiles FOR UPDATE TO authenticated
  USING (id = (SELECT auth.uid())) WITH CHECK (id = (SELECT auth.uid()));

-- channels: members see their channels; anyone signed in may create one in their own name.
DROP POLICY IF EXISTS channels_select_member ON public.channels;
CREATE POLICY channels_select_member ON public.channels FOR SELECT TO authenticated
  USING (public.is_channel_member(id));
DROP POLICY IF EXISTS channels_insert_own ON public.channels;
CREATE POLICY channels_insert_own ON public.channels FOR INSERT TO authenticated
  WITH CHECK (created_by = (SELECT auth.uid()));

-- channel_members: members see who else is in their channels; you join text channels and leave
-- any channel yourself.
DROP POLICY IF EXISTS channel_members_select ON public.channel_members;
CREATE POLICY channel_members_select ON public.channel_members FOR SELECT TO authenticated
  USING (public.is_channel_member(channel_id));
DROP POLICY IF EXISTS channel_members_join_text ON public.channel_members;
CREATE POLICY channel_members_join_text ON public.channel_members FOR INSERT TO authenticated
  WITH CHECK (user_id = (SELECT auth.uid()) AND public.is_text_channel(channel_id));
DROP POLICY IF EXISTS channel_members_leave ON public.channel_members;
CREATE POLICY channel_members_leave ON public.channel_members FOR DELETE TO authenticated
  USING (user_id = (SELECT auth.uid()));

-- messages: members read their channels' messages and post as themselves; authors edit and
-- (soft-)delete their own.
DROP POLICY IF EXISTS messages_select_member ON public.messages;
CREATE POLICY messages_select_member ON public.messages FOR SELECT TO authenticated
  USING (public.is_channel_member(channel_id));
DROP POLICY IF EXISTS messages_insert_member ON public.messages;
CREATE POLICY messages_insert_member ON public.messages FOR INSERT TO authenticated
  WITH CHECK (user_id = (SELECT auth.uid()) AND public.is_channel_member(channel_id));
DROP POLICY IF EXISTS messages_update_own ON public.messages;
CREATE POLICY messages_update_own ON public.messages FOR UPDATE TO authenticated
  USING (user_id = (SELECT auth.uid())) WITH CHECK (user_id = (SELECT auth.uid()));
DROP POLICY IF EXISTS messages_delete_own ON public.messages;
CREATE POLICY messages_delete_own ON public.messages FOR DELETE TO authenticated
  USING (user_id = (SELECT auth.uid()));

-- message_reactions: visible to whoever can read the message; you add and remove your own.
DROP POLICY IF EXISTS message_reactions_select ON public.message_reactions;
CREATE POLICY message_reactions_select ON public.message_reactions FOR SELECT TO authenticated
  USING (public.can_read_message(message_id));
DROP POLICY IF EXISTS message_reactions_insert_own ON public.message_reactions;
CREATE POLICY message_reactions_insert_own ON public.message_reactions FOR INSERT TO authenticated
  WITH CHECK (user_id = (SELECT auth.uid()) AND public.can_read_message(message_id));
DROP POLICY IF EXISTS message_reactions_delete_own ON public.message_reactions;
CREATE POLICY message_reactions_delete_own ON public.message_reactions FOR DELETE TO authenticated
  USING (user_id = (SELECT auth.uid()));

-- typing_indicators: members see who types in their channels; you manage your own indicator.
DROP POLICY IF EXISTS typing_select_member ON public.typing_indicators;
CREATE POLICY typing_select_member ON public.typing_indicators FOR SELECT TO authenticated
  USING (public.is_channel_member(channel_id));
DROP POLICY IF EXISTS typing_insert_own ON public.typing_indicators;
CREATE POLICY typing_insert_own ON public.typing_indicators FOR INSERT TO authenticated
  WITH CHECK (user_id = (SELECT auth.uid()) AND public.is_channel_member(channel_id));
DROP POLICY IF EXISTS typing_update_own ON public.typing_indicators;
CREATE POLICY typing_update_own ON public.typing_indicators FOR UPDATE TO authenticated
  USING (user_id = (SELECT auth.uid())) WITH CHECK (user_id = (SELECT auth.uid()));
DROP POLICY IF EXISTS typing_delete_own ON public.typing_indicators;
CREATE POLICY typing_delete_own ON public.typing_indicators FOR DELETE TO authenticated
  USING (user_id = (SELECT auth.uid()));

-- notifications: only their owner reads, marks read or deletes them (the server writes them).
DROP POLICY IF EXISTS notifications_select_own ON public.notifications;
CREATE POLICY notifications_select_own ON public.notifications FOR SELECT TO authenticated
  USING (user_id = (SELECT auth.uid()));
DROP POLICY IF EXISTS notifications_update_own ON public.notifications;
CREATE POLICY notifications_update_own ON public.notifications FOR UPDATE TO authenticated
  USING (user_id = (SELECT auth.uid())) WITH CHECK (user_id = (SELECT auth.uid()));
DROP POLICY IF EXISTS notifications_delete_own ON public.notifications;
CREATE POLICY notifications_delete_own ON public.notifications FOR DELETE TO authenticated
  USING (user_id = (SELECT auth.uid()));

-- megolm_session_shares: a key share is visible to its recipient and its sender only; a member
-- shares keys for a channel they are in.
DROP POLICY IF EXISTS megolm_select_party ON public.megolm_session_shares;
CREATE POLICY megolm_select_party ON public.megolm_session_shares FOR SELECT TO authenticated
  USING (recipient_id = (SELECT auth.uid()) OR sender_id = (SELECT auth.uid()));
DROP POLICY IF EXISTS megolm_insert_sender ON public.megolm_session_shares;
CREATE POLICY megolm_insert_sender ON public.megolm_session_shares FOR INSERT TO authenticated
  WITH CHECK (sender_id = (SELECT auth.uid()) AND public.is_channel_member(channel_id));
