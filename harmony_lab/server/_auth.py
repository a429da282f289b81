"""JWT verification with the messages the real Realtime server uses (HS256 secret, ``role`` + ``exp``)."""

from __future__ import annotations

import math
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

import jwt

__all__ = ["AuthError", "TokenVerifier", "make_token"]

_WHITESPACE = re.compile(r"\s")


class AuthError(Exception):
    """A token was rejected.

    ``code`` is the Realtime error code used in join replies (``"InvalidJWTToken"``, ``"MalformedJWT"``…),
    ``message`` the human part; ``str(exc)`` is ``"code: message"`` as in a join error reason.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class TokenVerifier:
    """Verifies tokens signed with one HS256 secret; ``now`` is passed in (seconds since the epoch)."""

    secret: str
    algorithms: tuple[str, ...] = ("HS256",)

    def verify(self, token: Any, now: float) -> dict[str, Any]:
        """Claims of a valid token, else :class:`AuthError` with the real server's wording."""
        if not isinstance(token, str) or not token:
            raise AuthError("MalformedJWT", "The token provided is not a valid JWT")
        token = _WHITESPACE.sub("", urllib.parse.unquote(token))
        try:
            claims = jwt.decode(
                token,
                self.secret,
                algorithms=list(self.algorithms),
                options={"verify_exp": False, "verify_aud": False, "verify_iat": False, "verify_nbf": False},
            )
        except jwt.InvalidSignatureError:
            raise AuthError("JwtSignatureError", "Failed to validate JWT signature") from None
        except jwt.InvalidAlgorithmError:
            raise AuthError("JwtSignatureError", "Failed to validate JWT signature") from None
        except jwt.PyJWTError:
            raise AuthError("MalformedJWT", "The token provided is not a valid JWT") from None
        if not isinstance(claims, dict) or "role" not in claims or "exp" not in claims:
            raise AuthError("InvalidJWTToken", "Fields `role` and `exp` are required in JWT")
        exp = claims["exp"]
        if not isinstance(exp, int | float) or isinstance(exp, bool) or not math.isfinite(exp):
            raise AuthError("InvalidJWTToken", "Token expiration time is invalid")
        if exp <= now:
            raise AuthError("InvalidJWTToken", f"Token has expired {int(now - exp)} seconds ago")
        return claims


def make_token(secret: str, claims: dict[str, Any]) -> str:
    """Sign ``claims`` with HS256."""
    return jwt.encode(claims, secret, algorithm="HS256")
