"""SIP trunks (admin): connections to a carrier or a PBX that carry numbers in and out."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Path
from pydantic import Field

from api.deps import Admin, RuntimeDep
from api.schemas import Ok
from api.schemas import Request as StrictRequest
from voice.errors import BadRequest, NotFound
from voice.sip.trunks import Trunk

router = APIRouter(prefix="/v1/sip/trunks", tags=["sip"])
TrunkName = Path(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")


class TrunkIn(StrictRequest):
    proxy: str = Field(pattern=r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$", max_length=255)
    username: str = Field("", max_length=64, pattern=r"^[^\s:@]*$")
    password: str = Field("", max_length=128)
    keep_registered: bool = Field(False, alias="register")  # "register" is taken by pydantic
    expires: int = Field(600, ge=60, le=3600)
    caller_id: str | None = Field(None, pattern=r"^\+?[0-9]{2,20}$")
    prefixes: list[str] = Field(default_factory=lambda: [""], max_length=50)
    inbound_to: str | None = Field(None, max_length=80, pattern=r"^[A-Za-z0-9:._+-]+$")


def _out(runtime: Any, trunk: Trunk) -> dict[str, Any]:
    status = runtime.sip.trunk_status(trunk.name) if runtime.sip is not None else "sip_off"
    return {**trunk.public(), "status": status}


@router.get("")
async def list_trunks(_: Admin, runtime: RuntimeDep) -> list[dict[str, Any]]:
    stored = await runtime.store.trunks()
    return [_out(runtime, Trunk.from_json(config)) for config in stored.values()]


@router.put("/{name}")
async def put_trunk(
    body: TrunkIn, _: Admin, runtime: RuntimeDep, name: str = TrunkName
) -> dict[str, Any]:
    for prefix in body.prefixes:
        if not re.fullmatch(r"\+?[0-9]{0,20}", prefix):
            raise BadRequest("prefixes are digits, optionally after +", code="bad_prefix")
    fields = body.model_dump(exclude={"keep_registered", "prefixes"})
    trunk = Trunk(
        name=name,
        **fields,
        register=body.keep_registered,
        prefixes=tuple(body.prefixes or [""]),
    )
    await runtime.store.put_trunk(name, trunk.to_json())
    if runtime.sip is not None:
        await runtime.sip.trunk_changed(name)  # here, and on the other nodes
    return _out(runtime, trunk)


@router.delete("/{name}", response_model=Ok)
async def delete_trunk(_: Admin, runtime: RuntimeDep, name: str = TrunkName) -> Ok:
    if not await runtime.store.delete_trunk(name):
        raise NotFound("no such trunk", code="trunk_not_found")
    if runtime.sip is not None:
        await runtime.sip.trunk_changed(name)
    return Ok()
