"""Bearer tokens, roles and project isolation (DESIGN §5 "Auth")."""

from __future__ import annotations

import time
from enum import StrEnum

from aiohttp import web

from kms.crypto.envelope import hash_token
from kms.errors import Forbidden, Unauthenticated
from models import repo
from models.repo import Principal
from web.context import services


class Role(StrEnum):
    MEMBER = "member"
    SERVICE = "service"
    ADMIN = "admin"


#: Resolved tokens are cached briefly: one database read per token per interval.
_CACHE_TTL_S = 5.0
_cache: dict[str, tuple[float, Principal | None]] = {}


async def authenticate(request: web.Request) -> Principal:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("missing bearer token; send 'Authorization: Bearer <token>'")
    digest = hash_token(token.strip())
    now = time.monotonic()
    hit = _cache.get(digest)
    if hit is None or hit[0] < now:
        svc = services(request)

        def load() -> Principal | None:
            with svc.db.read() as s:
                return repo.find_principal(s, digest)

        principal = await svc.run(load)
        if len(_cache) > 10_000:
            _cache.clear()
        _cache[digest] = (now + _CACHE_TTL_S, principal)
    else:
        principal = hit[1]
    if principal is None:
        raise Unauthenticated("the bearer token is not valid; create one with `kms token create`")
    return principal


async def require(request: web.Request, *roles: Role) -> Principal:
    principal = await authenticate(request)
    if principal.role not in roles:
        wanted = " or ".join(roles)
        raise Forbidden(f"this endpoint needs a {wanted} token; this token has role {principal.role}")
    return principal
