from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import CurrentUser, RuntimeDep

router = APIRouter(tags=["system"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/metrics", include_in_schema=False)
async def metrics(runtime: RuntimeDep) -> Response:
    return Response(runtime.metrics.render(), media_type="text/plain; version=0.0.4")


@router.get("/v1/config")
async def client_config(_: CurrentUser, runtime: RuntimeDep) -> dict[str, object]:
    """What clients need to connect: the ICE servers to use (STUN/TURN URLs, as configured
    by `--ice-server`; empty on loopback and LAN) and the call-progress tone region."""
    return {"ice_servers": runtime.settings.ice_servers, "region": runtime.settings.region}
