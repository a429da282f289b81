"""Who the Inspector listens as: the token every channel joins with.

* ``anon``: the project's API key (anon / publishable) — no user.
* ``service_role``: the embedded stack's service-role key, a service-role key you pass, or one signed
  with the project's JWT secret.
* a user id: on the embedded stack ``LocalRealtime.token_for(user)``; on a hosted project a token
  signed with the JWT secret you pass (used once, never stored).
* a signed-in supabase-py client (``session=client``): its session's access token, refreshed as the
  client refreshes it.
* ``token=``: a JWT you already have.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jwt

__all__ = ["Identity", "sign"]

_MAX_SECRET = 4096
_MAX_TOKEN = 16_384


@dataclasses.dataclass(frozen=True, slots=True)
class Identity:
    """``label`` is what the UI shows; ``access_token`` is None for the API key itself."""

    label: str
    role: str
    access_token: str | None = None
    session: Any = None  # a supabase-py client whose auth the manager follows

    def __repr__(self) -> str:  # never the token
        return f"<Identity {self.label} role={self.role}>"


def sign(secret: str, sub: str | None, role: str, expires_in: float = 3600) -> str:
    """An HS256 JWT for ``role`` (and user ``sub``) signed with the project's JWT secret."""
    if not isinstance(secret, str) or not secret or len(secret) > _MAX_SECRET:
        raise ValueError("jwt_secret must be the project's JWT secret (a non-empty string)")
    now = int(time.time())
    claims: dict[str, Any] = {"role": role, "iat": now, "exp": int(now + expires_in)}
    if sub is not None:
        claims.update(sub=sub, aud="authenticated")
    return jwt.encode(claims, secret, algorithm="HS256")


def claims_of(token: str) -> dict[str, Any]:
    """The token's claims, unverified (the server verifies); a clear error for what is not a JWT."""
    if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN:
        raise ValueError(f"token must be a JWT string of at most {_MAX_TOKEN} characters")
    try:
        out = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise ValueError(f"token is not a JWT ({exc}); pass the access token of a session") from None
    if not isinstance(out, dict):
        raise ValueError("token's claims are not a JSON object")
    return out
