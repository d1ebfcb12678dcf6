"""The SOAP-over-HTTP application in process (httpx's ASGI transport, no sockets): handlers
run at most max_concurrency at once, a JSON route's body and admin token are checked before
anything runs, and the caller's certificate reaches an operation as RequestContext."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import trustme
from lxml import etree

from bridge.adapters.http.request import RequestContext, request_context
from bridge.adapters.soap import QUERY_WSDL_FILE, SOAP_ENV_NAMESPACE
from bridge.adapters.soap.http_server import SoapCall, SoapEndpoint, SoapOperation, SoapService

NS = "urn:test:echo"


def _envelope(payload: str) -> bytes:
    return (
        f'<e:Envelope xmlns:e="{SOAP_ENV_NAMESPACE}"><e:Body>{payload}</e:Body></e:Envelope>'
    ).encode()


def _service(operation: SoapOperation, **options) -> SoapService:
    service = SoapService(
        SoapEndpoint({f"{{{NS}}}Echo": operation}, name="echo"),
        path="/echo",
        wsdl_file=QUERY_WSDL_FILE,
        **options,
    )
    service.listening_at("http://test")
    return service


def _post_all(service: SoapService, bodies: list[bytes]) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=service)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await asyncio.gather(*(client.post("/echo", content=b) for b in bodies))

    return asyncio.run(run())


def test_handlers_run_at_most_max_concurrency_at_once():
    running, peak, lock = 0, 0, threading.Lock()

    def echo(payload: etree._Element) -> etree._Element:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)  # long enough for the others to queue up behind the limit
        with lock:
            running -= 1
        answer = etree.Element(f"{{{NS}}}EchoResponse")
        answer.text = payload.text
        return answer

    service = _service(SoapOperation(echo), max_concurrency=2)
    bodies = [_envelope(f'<x:Echo xmlns:x="{NS}">{n}</x:Echo>') for n in range(8)]
    answers = _post_all(service, bodies)
    assert [a.status_code for a in answers] == [200] * 8
    assert [f">{n}</" in a.text for n, a in enumerate(answers)] == [True] * 8
    assert peak == 2


def test_an_operation_with_the_call_sees_the_callers_certificate_and_header():
    ca = trustme.CA()
    leaf = ca.issue_cert("customs.example.eu", "10.1.2.3", common_name="customs-de")
    scope = {
        "type": "http",
        "client": ("192.0.2.7", 50123),
        "headers": [(b"SOAPAction", b'"urn:x"'), (b"x-one", b"a"), (b"X-One", b"b")],
        "extensions": {"tls": {"client_cert_chain": [leaf.cert_chain_pems[0].bytes().decode()]}},
    }
    caller = request_context(scope)
    assert caller.peer_subject is not None and caller.peer_subject.startswith("CN=customs-de,")
    assert caller.peer_common_names == ("customs-de",)
    assert caller.peer_san == ("customs.example.eu", "10.1.2.3")
    assert caller.identities == ("customs.example.eu", "10.1.2.3", "customs-de")
    assert (caller.client_address, caller.tls) == ("192.0.2.7", True)
    assert caller.headers["soapaction"] == '"urn:x"' and caller.headers["x-one"] == "a, b"

    seen: list[SoapCall] = []

    def echo(payload: etree._Element, call: SoapCall) -> etree._Element:
        seen.append(call)
        return etree.Element(f"{{{NS}}}EchoResponse")

    endpoint = SoapEndpoint({f"{{{NS}}}Echo": SoapOperation(echo, with_call=True)}, name="e")
    body = (
        f'<e:Envelope xmlns:e="{SOAP_ENV_NAMESPACE}"><e:Header><h:Who xmlns:h="urn:h">me'
        f'</h:Who></e:Header><e:Body><x:Echo xmlns:x="{NS}"/></e:Body></e:Envelope>'
    ).encode()
    assert endpoint.answer(body, "urn:x", caller).status == 200
    (call,) = seen
    assert call.caller is caller and call.action == "urn:x"
    assert call.header is not None and call.header.findtext("{urn:h}Who") == "me"
    # Plain HTTP, or no certificate: nobody in particular.
    assert request_context({"type": "http", "headers": []}) == RequestContext()


def test_json_routes_check_the_token_and_the_size_before_running():
    calls: list[bytes] = []

    def change(body: bytes) -> tuple[int, object]:
        calls.append(body)
        return 200, {"changed": True}

    service = _service(SoapOperation(lambda p: p), admin_token="s3cret")
    service.add_json("/admin/change", post=change)
    service.add_json("/open", get=lambda: {"ok": True}, admin=False)

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=service)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            bearer = {"Authorization": "Bearer s3cret"}
            return [
                await client.post("/admin/change", content=b"{}"),
                await client.post("/admin/change", content=b"{}", headers={"Authorization": "x"}),
                await client.post(
                    "/admin/change", content=b"{}", headers={"Authorization": "Bearer nope"}
                ),
                await client.post("/admin/change", content=b"x" * 70_000, headers=bearer),
                await client.get("/admin/change", headers=bearer),
                await client.get("/open"),
                await client.post("/admin/change", content=b"{}", headers=bearer),
            ]

    answers = asyncio.run(run())
    assert [a.status_code for a in answers] == [401, 401, 401, 413, 405, 200, 200]
    assert answers[0].headers["www-authenticate"].startswith("Bearer")
    assert calls == [b"{}"]  # only the last one ran
