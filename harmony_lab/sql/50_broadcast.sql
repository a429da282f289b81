-- Realtime Authorization and Broadcast from Database for Harmony, beside the Postgres Changes path:
-- each chat channel has a private topic `channel:<name>` and each DM `dm:<name>`; only members may
-- join (read) and send or track presence (write) on it, and row triggers broadcast messages,
-- reactions and typing into it with realtime.broadcast_changes.

-- The private topic of a channel, and the channel of a topic (NULL for any other topic).
CREATE OR REPLACE FUNCTION public.channel_topic(p_channel_id bigint) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''
AS $$
  SELECT CASE c.kind WHEN 'dm' THEN 'dm:' ELSE 'channel:' END || c.name
  FROM public.channels c WHERE c.id = p_channel_id
$$;

CREATE OR REPLACE FUNCTION public.topic_channel_id(p_topic text) RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''
AS $$
  SELECT c.id FROM public.channels c
  WHERE p_topic IS NOT NULL
    AND ((c.kind = 'dm' AND p_topic = 'dm:' || c.name) OR (c.kind = 'text' AND p_topic = 'channel:' || c.name))
  LIMIT 1
$$;

-- Whether the caller (auth.uid()) is a member of the channel behind `p_topic`.
CREATE OR REPLACE FUNCTION public.is_topic_member(p_topic text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''
AS $$
  SELECT EXISTS (
    SELECT 1 FROM public.channel_members m
    WHERE m.channel_id = public.topic_channel_id(p_topic) AND m.user_id = auth.uid()
  )
$$;

GRANT EXECUTE ON FUNCTION public.channel_topic(bigint), public.topic_channel_id(text),
  public.is_topic_member(text) TO anon, authenticated, service_role;

DROP POLICY IF EXISTS harmony_members_receive ON realtime.messages;
CREATE POLICY harmony_members_receive ON realtime.messages FOR SELECT TO authenticated
  USING (realtime.messages.extension IN ('broadcast', 'presence')
         AND (SELECT public.is_topic_member(realtime.topic())));
DROP POLICY IF EXISTS harmony_members_send ON realtime.messages;
CREATE POLICY harmony_members_send ON realtime.messages FOR INSERT TO authenticated
  WITH CHECK (realtime.messages.extension IN ('broadcast', 'presence')
              AND (SELECT public.is_topic_member(realtime.topic())));

-- Row triggers: a change of a message, reaction or typing indicator is broadcast to the channel's
-- topic with the operation as event (INSERT / UPDATE / DELETE), payload {operation, schema, table,
-- record, old_record}.
CREATE OR REPLACE FUNCTION public.broadcast_channel_row() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ''
AS $$
DECLARE
  v_channel bigint;
  v_row record;
BEGIN
  IF TG_OP = 'DELETE' THEN v_row := OLD; ELSE v_row := NEW; END IF;
  IF TG_TABLE_NAME = 'message_reactions' THEN
    SELECT msg.channel_id INTO v_channel FROM public.messages msg WHERE msg.id = v_row.message_id;
  ELSE
    v_channel := v_row.channel_id;
  END IF;
  IF v_channel IS NOT NULL THEN
    PERFORM realtime.broadcast_changes(public.channel_topic(v_channel), TG_OP, TG_OP, TG_TABLE_NAME,
                                       TG_TABLE_SCHEMA, NEW, OLD);
  END IF;
  RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS messages_broadcast ON public.messages;
CREATE TRIGGER messages_broadcast AFTER INSERT OR UPDATE OR DELETE ON public.messages
  FOR EACH ROW EXECUTE FUNCTION public.broadcast_channel_row();
DROP TRIGGER IF EXISTS message_reactions_broadcast ON public.message_reactions;
CREATE TRIGGER message_reactions_broadcast AFTER INSERT OR UPDATE OR DELETE ON public.message_reactions
  FOR EACH ROW EXECUTE FUNCTION public.broadcast_channel_row();
DROP TRIGGER IF EXISTS typing_indicators_broadcast ON public.typing_indicators;
CREATE TRIGGER typing_indicators_broadcast AFTER INSERT OR UPDATE OR DELETE ON public.typing_indicators
  FOR EACH ROW EXECUTE FUNCTION public.broadcast_channel_row();
