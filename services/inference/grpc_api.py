"""gRPC API (grpcio aio): admuse.v1.DecideService per proto/admuse/v1/decide.proto, and the
standard grpc.health.v1.Health service (no key needed; SERVING once state is restored).

The API key travels in metadata `x-api-key`. Errors map to status codes as the proto says.
The generated modules come from `make proto`.
"""

from __future__ import annotations

import asyncio
import contextlib

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common.logging import get_logger
from services.inference.decide import (
    BadRequest,
    Inference,
    NoCreatives,
    NotReady,
    UnknownCampaign,
    validate_request,
)

try:
    from services.inference.generated.admuse.v1 import decide_pb2, decide_pb2_grpc
except ImportError as exc:  # pragma: no cover - a checkout without `make proto`
    raise ImportError(
        "gRPC code is not generated: run `make proto` (it writes "
        "services/inference/generated/admuse/v1/decide_pb2*.py)"
    ) from exc

__all__ = ["SERVICE_NAME", "DecideServicer", "serve_grpc"]

SERVICE_NAME = "admuse.v1.DecideService"
_log = get_logger(__name__)


class DecideServicer(decide_pb2_grpc.DecideServiceServicer):
    def __init__(self, svc: Inference) -> None:
        self._svc = svc

    async def Decide(
        self, request: decide_pb2.DecideRequest, context: grpc.aio.ServicerContext
    ) -> decide_pb2.DecideResponse:
        svc = self._svc
        key = next((v for k, v in context.invocation_metadata() or () if k == "x-api-key"), None)
        if not svc.key_ok(key if isinstance(key, str) else None):
            svc.metrics.decide_errors.labels("UNAUTHENTICATED").inc()
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "missing or unknown API key: send one in metadata x-api-key",
            )
        ctx = dict(request.context)
        try:
            validate_request(request.campaign_id, request.user_id, ctx)
            result = await svc.decide(request.campaign_id, request.user_id, ctx, api="grpc")
        except BadRequest as exc:
            await self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, exc)
        except UnknownCampaign as exc:
            await self._abort(context, grpc.StatusCode.NOT_FOUND, exc)
        except NoCreatives as exc:
            await self._abort(context, grpc.StatusCode.FAILED_PRECONDITION, exc)
        except NotReady as exc:
            await self._abort(context, grpc.StatusCode.UNAVAILABLE, exc)
        attributes = {
            k: decide_pb2.AttributeValue(text=v)
            if isinstance(v, str)
            else decide_pb2.AttributeValue(number=float(v))
            for k, v in result["attributes"].items()
        }
        return decide_pb2.DecideResponse(
            decision_id=result["decision_id"] or "",
            campaign_id=result["campaign_id"],
            creative_id=result["creative_id"] or "",
            propensity=result.get("propensity") or 0.0,
            arm=result.get("arm") or "",
            policy=result.get("policy") or "",
            policy_version=result.get("policy_version") or "",
            model_version=result.get("model_version") or "",
            segment=result["segment"],
            render_url=result["render_url"] or "",
            attributes=attributes,
            status=result["status"],
            message=result.get("message") or "",
        )

    async def _abort(
        self, context: grpc.aio.ServicerContext, code: grpc.StatusCode, exc: Exception
    ) -> None:
        self._svc.metrics.decide_errors.labels(code.name).inc()
        await context.abort(code, str(exc))


async def serve_grpc(svc: Inference) -> None:
    """Serve until cancelled; health turns SERVING when the service is ready."""
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    decide_pb2_grpc.add_DecideServiceServicer_to_server(DecideServicer(svc), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    # Server reflection: `grpcurl list`, Postman and other clients discover the API.
    reflection.enable_server_reflection(
        (
            SERVICE_NAME,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    address = f"{svc.settings.http_host}:{svc.settings.grpc_port}"
    port = server.add_insecure_port(address)
    await server.start()
    _log.info("grpc_listening", port=port)
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    serving = health_pb2.HealthCheckResponse.SERVING
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, not_serving)
    try:
        await svc.ready_event.wait()
        for name in ("", SERVICE_NAME):
            await health_servicer.set(name, serving)
        await server.wait_for_termination()
    finally:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await health_servicer.enter_graceful_shutdown()
            await server.stop(grace=5)
