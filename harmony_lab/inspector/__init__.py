"""The Realtime Inspector: join channels, watch every message with its JSON, filter, send, listen as."""
