"""The Harmony schema as SQL files (applied by :func:`harmony_lab.local.schema.apply_schema`)."""
