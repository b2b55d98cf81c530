from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

import yaml
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel

from api.deps import Admin, CurrentUser, RuntimeDep
from api.routes.ringback import Who
from api.schemas import Request as StrictRequest
from voice.errors import BadRequest, NotFound

router = APIRouter(tags=["hotline"])
MAX_DOCUMENT_BYTES = 512 * 1024


class MenuOut(BaseModel):
    number: str
    version: int
    menu: dict[str, Any]


class HotlineRecord(BaseModel):
    call_id: str
    caller_id: str
    started_at: datetime
    ended_at: datetime | None
    path: list[str]
    outcome: str
    queue: str | None
    operator_id: str | None
    wait_s: float | None
    menu_version: int


class AgentStateIn(StrictRequest):
    state: Literal["available", "away"]


class AgentOut(BaseModel):
    username: str
    state: str


class QueueOut(BaseModel):
    name: str
    settings: dict[str, Any]
    agents: list[AgentOut]
    waiting: int


async def read_document(request: Request) -> Any:
    """A JSON or YAML body (by Content-Type), size-limited; 422 when it is neither."""
    body = await request.body()
    if len(body) > MAX_DOCUMENT_BYTES:
        raise BadRequest("the document is larger than 512 kB", code="too_large", status=422)
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip()
    try:
        if kind in ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"):
            return yaml.safe_load(body.decode("utf-8"))
        return json.loads(body)
    except (ValueError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise BadRequest(
            "the body is not valid JSON (or YAML with Content-Type: application/yaml)",
            code="invalid_menu",
            status=422,
        ) from exc


# --------------------------------------------------------------------------------- menus


@router.get("/v1/hotlines", response_model=list[MenuOut])
async def hotlines(_: Who, runtime: RuntimeDep) -> list[MenuOut]:
    menus = []
    for number, _version in await runtime.hotline.numbers():
        found = await runtime.hotline.menu(number)
        if found is not None:
            menus.append(MenuOut(number=number, version=found[0], menu=found[1]))
    return menus


@router.get("/v1/hotlines/{number}", response_model=MenuOut)
async def get_hotline(number: str, _: Who, runtime: RuntimeDep) -> MenuOut:
    found = await runtime.hotline.menu(number)
    if found is None:
        raise NotFound(f"no hotline {number!r}", code="hotline_not_found")
    return MenuOut(number=number, version=found[0], menu=found[1])


@router.put("/v1/hotlines/{number}", response_model=MenuOut)
async def put_hotline(number: str, request: Request, _: Admin, runtime: RuntimeDep) -> MenuOut:
    """Publish a menu (JSON, or YAML with `Content-Type: application/yaml`). An invalid
    document is a 422 naming the bad path, and the previous version stays live."""
    document = await read_document(request)
    version = await runtime.hotline.publish(number, document)
    return MenuOut(number=number, version=version, menu=document)


@router.get("/v1/hotlines/{number}/stats")
async def hotline_stats(number: str, _: Admin, runtime: RuntimeDep) -> dict[str, Any]:
    if await runtime.hotline.menu(number) is None:
        raise NotFound(f"no hotline {number!r}", code="hotline_not_found")
    return await runtime.hotline.stats(number)


@router.get("/v1/hotlines/{number}/calls", response_model=list[HotlineRecord])
async def hotline_calls(
    number: str, _: Admin, runtime: RuntimeDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[HotlineRecord]:
    """One record per call: caller, times, menu path, outcome, operator (for billing)."""
    return [HotlineRecord(**r) for r in await runtime.hotline.records(number, limit)]


@router.get("/v1/hotline-data/{provider}")
async def get_provider_data(provider: str, _: Admin, runtime: RuntimeDep) -> dict[str, Any]:
    source = runtime.hotline.providers.get(provider)
    if source is None:
        raise NotFound(f"no data provider {provider!r}", code="provider_not_found")
    return await source.document()  # type: ignore[attr-defined]


@router.put("/v1/hotline-data/{provider}")
async def put_provider_data(
    provider: str, request: Request, _: Admin, runtime: RuntimeDep
) -> dict[str, Any]:
    """Replace the weather or directory data: `{"entries": {key: {field: value}}}`."""
    source = runtime.hotline.providers.get(provider)
    if source is None:
        raise NotFound(f"no data provider {provider!r}", code="provider_not_found")
    count = await source.replace(await read_document(request))  # type: ignore[attr-defined]
    return {"provider": provider, "entries": count}


# -------------------------------------------------------------------------------- queues


@router.put("/v1/queues/{name}")
async def configure_queue(
    name: str, request: Request, _: Admin, runtime: RuntimeDep
) -> dict[str, Any]:
    """Queue settings: strategy (longest_idle, ring_all, round_robin), agent_ring_s,
    wrap_up_s, announce_every_s, max_wait_s, music_tone_id, language."""
    settings = await runtime.hotline.agents.configure(name, await read_document(request))
    return settings.document()


@router.get("/v1/queues/{name}", response_model=QueueOut)
async def get_queue(name: str, who: Who, runtime: RuntimeDep) -> QueueOut:
    desk = runtime.hotline.agents
    agents = await desk.agents(name)
    if not who.admin and all(a.user_id != who.user.id for a in agents):  # type: ignore[union-attr]
        raise NotFound(f"you are not an agent of queue {name!r}", code="not_an_agent")
    return QueueOut(
        name=name,
        settings=(await desk.settings(name)).document(),
        agents=[AgentOut(username=a.username, state=a.state.value) for a in agents],
        waiting=len(await desk.waiting(name)),
    )


@router.post("/v1/queues/{name}/agents", status_code=201, response_model=AgentOut)
async def join_queue(name: str, user: CurrentUser, runtime: RuntimeDep) -> AgentOut:
    """Become an agent of this queue (state `away` until you set yourself available)."""
    state = await runtime.hotline.agents.join(name, user)
    return AgentOut(username=user.username, state=state.value)


@router.delete("/v1/queues/{name}/agents/me", status_code=204)
async def leave_queue(name: str, user: CurrentUser, runtime: RuntimeDep) -> Response:
    await runtime.hotline.agents.leave(name, user)
    return Response(status_code=204)


class AgentMe(BaseModel):
    username: str
    state: str | None
    after_call: str | None = None
    queues: list[str]


@router.get("/v1/agents/me", response_model=AgentMe)
async def get_agent_state(user: CurrentUser, runtime: RuntimeDep) -> AgentMe:
    """Whether you are an operator, of which queues, and your state (null: not an agent);
    `after_call` is the state you chose for after the call in progress."""
    desk = runtime.hotline.agents
    state, queues = await desk.status(user.id)
    after = await desk.after_call(user.id)
    return AgentMe(
        username=user.username,
        state=state.value if state else None,
        after_call=after.value if after else None,
        queues=queues,
    )


@router.put("/v1/agents/me", response_model=AgentOut)
async def set_agent_state(body: AgentStateIn, user: CurrentUser, runtime: RuntimeDep) -> AgentOut:
    """`available` or `away`, in every queue you belong to (also by the events socket:
    `{"type": "agent.state", "state": "available"}`)."""
    await runtime.hotline.agents.set_state(user, body.state)
    return AgentOut(username=user.username, state=body.state)
