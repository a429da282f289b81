"""Names the demo's processes share: the environment that carries a running stack to notebooks.

``harmony-lab lab`` (and Binder's ``start``) set these for the kernels they start; ``stack()`` reads
them. Kept apart from both sides so neither imports the other.
"""

from __future__ import annotations

from typing import Final

ENV_URL: Final = "HARMONY_LAB_URL"
ENV_ANON: Final = "HARMONY_LAB_ANON_KEY"
ENV_SERVICE: Final = "HARMONY_LAB_SERVICE_ROLE_KEY"
ENV_DSN: Final = "HARMONY_LAB_DSN"
ENV_SECRET: Final = "HARMONY_LAB_JWT_SECRET"
ENV_TRAFFIC: Final = "HARMONY_LAB_TRAFFIC"
"""Set (to the rate) in the environment of notebooks when a background simulator already runs."""
ENV_KEYS: Final = (ENV_URL, ENV_ANON, ENV_SERVICE, ENV_DSN, ENV_SECRET)

NOTEBOOK_USER: Final = "alice"
"""The seed user the notebooks act as; background traffic never simulates her (she gets mentions and DMs)."""
