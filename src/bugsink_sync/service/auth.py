"""Admin authentication: `Authorization: Bearer <JWT>`, HS256 only, `exp` required.

The algorithm is pinned, so a token signed with `none` or any other algorithm is refused
whatever its header says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jwt

ALGORITHM = "HS256"


class AuthProblem(Exception):
    """Why a request is refused: `status` 401 (who are you?) or 403 (not allowed)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        self.message = message
        super().__init__(message)


@dataclass(frozen=True)
class AdminPolicy:
    """Who counts as an admin: claim `role_claim` equal to `admin_value`."""

    secret: str
    role_claim: str = "role"
    admin_value: str = "admin"

    def check(self, authorization: str | None) -> dict[str, Any]:
        """The token's claims if the header carries a valid admin token; else AuthProblem."""
        claims = self._decode(_bearer(authorization))
        if claims.get(self.role_claim) != self.admin_value:
            raise AuthProblem(
                403,
                "FORBIDDEN",
                f"this endpoint needs a token with {self.role_claim}={self.admin_value}",
            )
        return claims

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self.secret, algorithms=[ALGORITHM], options={"require": ["exp"]}
            )
        except jwt.ExpiredSignatureError:
            raise AuthProblem(401, "TOKEN_EXPIRED", "the token has expired") from None
        except jwt.MissingRequiredClaimError:
            raise AuthProblem(401, "INVALID_TOKEN", "the token has no exp claim") from None
        except jwt.InvalidAlgorithmError:
            raise AuthProblem(
                401, "INVALID_TOKEN", f"only {ALGORITHM} tokens are accepted"
            ) from None
        except jwt.InvalidTokenError:
            raise AuthProblem(401, "INVALID_TOKEN", "the token is not valid") from None
        return claims


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise AuthProblem(401, "UNAUTHORIZED", "send Authorization: Bearer <admin JWT>")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthProblem(401, "UNAUTHORIZED", "send Authorization: Bearer <admin JWT>")
    return token.strip()
