"""Conformance of the HubSpot sandbox with HubSpot's official Python client.

Drives a running sandbox (HUBSPOT_BASE_URL, HUBSPOT_TOKEN) through `hubspot-api-client`
12.0.0, changing nothing but the host, and checks webhook signatures with the client's own
`Signature` class. Records use unique emails, so the suite runs against a sandbox in any
state; it does reset the webhook target it borrows.
"""

import datetime
import json
import os
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from urllib3.util.retry import Retry

import hubspot
from hubspot.crm.contacts import (
    BatchInputSimplePublicObjectBatchInputUpsert,
    Filter,
    FilterGroup,
    PublicObjectSearchRequest,
    SimplePublicObjectBatchInputUpsert,
    SimplePublicObjectInput,
    SimplePublicObjectInputForCreate,
)
from hubspot.crm.contacts.exceptions import ApiException, NotFoundException
from hubspot.utils.signature import Signature

BASE_URL = os.environ.get("HUBSPOT_BASE_URL", "http://127.0.0.1:8091").rstrip("/")
TOKEN = os.environ.get("HUBSPOT_TOKEN", "pat-na1-sandbox-token")
# The sandbox's own control API (not HubSpot's) needs the token syncroot-sandbox printed.
CONTROL_TOKEN = os.environ.get("SANDBOX_CONTROL_TOKEN", "")
WEBHOOK_SECRET = "conformance-client-secret"


@pytest.fixture(scope="session")
def client():
    # Client.create passes extra keyword arguments onto every API's Configuration, and
    # Configuration.host is the base URL setter, so `host=` is the one change needed. The
    # urllib3 Retry (the client's own retry hook) absorbs 429s from the search endpoint's
    # 5-per-second limit.
    retry = Retry(total=6, status_forcelist=[429], allowed_methods=None, backoff_factor=0.2)
    return hubspot.Client.create(access_token=TOKEN, host=BASE_URL, retry=retry)


def unique_email(tag):
    return f"{tag}-{uuid.uuid4().hex[:10]}@conformance.test"


def create(client, **props):
    return client.crm.contacts.basic_api.create(SimplePublicObjectInputForCreate(properties=props))


def control(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{BASE_URL}/__sandbox{path}", data=data, method=method)
    req.add_header("Content-Type", "application/json")
    req.add_header("X-Sandbox-Token", CONTROL_TOKEN)
    with urllib.request.urlopen(req, timeout=10) as res:
        raw = res.read()
        return json.loads(raw) if raw else None


def test_create_then_get_by_id(client):
    email = unique_email("create")
    created = create(client, email=email, firstname="Ada", lastname="Lovelace")
    assert created.id.isdigit()
    assert created.properties["hs_object_id"] == created.id
    assert created.created_at is not None and created.updated_at is not None
    fetched = client.crm.contacts.basic_api.get_by_id(created.id, properties=["email", "firstname"])
    assert fetched.properties["email"] == email
    assert fetched.properties["firstname"] == "Ada"
    assert fetched.archived is False


def test_get_by_email_with_id_property(client):
    email = unique_email("byemail")
    created = create(client, email=email, company="Engines")
    fetched = client.crm.contacts.basic_api.get_by_id(email, id_property="email", properties=["company"])
    assert fetched.id == created.id
    assert fetched.properties["company"] == "Engines"


def test_update_changes_only_the_given_properties(client):
    created = create(client, email=unique_email("update"), firstname="Old", lastname="Keep")
    patch = SimplePublicObjectInput(properties={"firstname": "New"})
    client.crm.contacts.basic_api.update(created.id, patch)
    fetched = client.crm.contacts.basic_api.get_by_id(created.id, properties=["firstname", "lastname"])
    assert (fetched.properties["firstname"], fetched.properties["lastname"]) == ("New", "Keep")
    assert fetched.updated_at >= created.updated_at


def test_archive_hides_the_contact(client):
    created = create(client, email=unique_email("archive"))
    client.crm.contacts.basic_api.archive(created.id)
    with pytest.raises(NotFoundException):
        client.crm.contacts.basic_api.get_by_id(created.id)
    archived = client.crm.contacts.basic_api.get_by_id(created.id, archived=True)
    assert archived.archived is True


def test_duplicate_email_is_409_with_existing_id(client):
    email = unique_email("dup")
    first = create(client, email=email)
    with pytest.raises(ApiException) as caught:
        create(client, email=email)
    assert caught.value.status == 409
    body = json.loads(caught.value.body)
    assert body["category"] == "CONFLICT"
    assert f"Existing ID: {first.id}" in body["message"]


def test_batch_upsert_by_email_creates_and_updates(client):
    existing_email, new_email = unique_email("up-old"), unique_email("up-new")
    existing = create(client, email=existing_email, firstname="Before")
    inputs = [
        SimplePublicObjectBatchInputUpsert(id=existing_email, id_property="email", properties={"firstname": "After"}),
        SimplePublicObjectBatchInputUpsert(id=new_email, id_property="email", properties={"firstname": "Fresh"}),
    ]
    result = client.crm.contacts.batch_api.upsert(BatchInputSimplePublicObjectBatchInputUpsert(inputs=inputs))
    assert result.status == "COMPLETE"
    by_id = {r.id: r for r in result.results}
    assert by_id[existing.id].new is False
    created = [r for r in result.results if r.id != existing.id]
    assert len(created) == 1 and created[0].new is True
    fetched = client.crm.contacts.basic_api.get_by_id(new_email, id_property="email", properties=["firstname"])
    assert fetched.properties["firstname"] == "Fresh"


def search(client, *filters, limit=10):
    request = PublicObjectSearchRequest(filter_groups=[FilterGroup(filters=list(filters))], limit=limit)
    return client.crm.contacts.search_api.do_search(request)


def test_search_eq_on_email_is_case_insensitive(client):
    email = unique_email("search")
    created = create(client, email=email)
    found = search(client, Filter(property_name="email", operator="EQ", value=email.upper()))
    assert found.total == 1
    assert found.results[0].id == created.id


def test_search_gt_on_lastmodifieddate(client):
    marker = str(int(time.time() * 1000) - 1)
    created = create(client, email=unique_email("since"))
    found = search(
        client,
        Filter(property_name="lastmodifieddate", operator="GT", value=marker),
        Filter(property_name="email", operator="EQ", value=created.properties["email"]),
    )
    assert [r.id for r in found.results] == [created.id]
    past = search(client, Filter(property_name="lastmodifieddate", operator="GT", value=str(int(time.time() * 1000) + 60_000)))
    assert past.total == 0


def test_list_pages_with_after(client):
    ours = [create(client, email=unique_email(f"page{i}")).id for i in range(3)]
    first = client.crm.contacts.basic_api.get_page(limit=2)
    assert len(first.results) == 2
    assert first.paging.next.after and first.paging.next.link
    # `after` is documented as the id of the next record, so paging can start at ours
    # (and the walk stays short however many contacts the sandbox already holds).
    seen, after = [], ours[0]
    for _ in range(10):
        page = client.crm.contacts.basic_api.get_page(limit=2, after=after)
        assert len(page.results) <= 2
        seen.extend(r.id for r in page.results)
        if ours[-1] in seen or page.paging is None:
            break
        after = page.paging.next.after
    assert seen[:3] == ours


def test_rate_limit_headers_on_object_calls(client):
    _, status, headers = client.crm.contacts.basic_api.get_page_with_http_info(limit=1)
    assert status == 200
    for name in ("X-HubSpot-RateLimit-Max", "X-HubSpot-RateLimit-Remaining", "X-HubSpot-RateLimit-Daily-Remaining"):
        assert name in headers, name
    assert headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"


class _Capture(BaseHTTPRequestHandler):
    received = []

    def do_POST(self):  # noqa: N802 (http.server naming)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        _Capture.received.append((self.path, dict(self.headers), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook_receiver():
    _Capture.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hooks/hubspot?tenant=conformance"
    control("PUT", "/webhook", {"url": url, "secret": WEBHOOK_SECRET})
    try:
        yield _Capture
    finally:
        control("PUT", "/webhook", {"url": None})
        server.shutdown()


def wait_for_event(capture, object_id, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for path, headers, body in capture.received:
            if any(e.get("objectId") == object_id for e in json.loads(body)):
                return path, headers, body
        time.sleep(0.05)
    raise AssertionError(f"no webhook for object {object_id}")


def test_sdk_signature_class_accepts_sandbox_v3_signature(webhook_receiver):
    created = control("POST", "/ui/contacts", {"properties": {"email": unique_email("hook"), "firstname": "Ui"}})
    path, headers, body = wait_for_event(webhook_receiver, int(created["id"]))
    headers = {k.lower(): v for k, v in headers.items()}
    # HubSpot's own docs rebuild the URI as https://{host}{url}; the scheme here is http.
    uri = f"http://{headers['host']}{path}"
    assert Signature.is_valid(
        signature=headers["x-hubspot-signature-v3"],
        client_secret=WEBHOOK_SECRET,
        request_body=body.decode("utf-8"),
        http_uri=uri,
        http_method="POST",
        signature_version="v3",
        timestamp=headers["x-hubspot-request-timestamp"],
    )
    assert Signature.is_valid(
        signature=headers["x-hubspot-signature"],
        client_secret=WEBHOOK_SECRET,
        request_body=body.decode("utf-8"),
        signature_version="v1",
    )
    events = json.loads(body)
    ours = [e for e in events if e["objectId"] == int(created["id"])]
    assert ours[0]["subscriptionType"] == "contact.creation"
    assert all(e["changeSource"] == "CRM_UI" for e in ours)


def test_get_all_pages_over_a_seeded_population_and_returns_exactly_the_seeded_records(client):
    """50,000 contacts seeded through the control API in one call, then read back with the
    SDK's own paging (`crm.contacts.get_all`: `basic_api.get_page` along `paging.next.after`,
    100 a page). The burst quota is raised for the walk (500 calls) and put back after."""
    tag = uuid.uuid4().hex[:10]
    records = [
        {"email": f"Seed{i}-{tag}@Conformance.Test", "firstname": f"S{i}", "lastname": "Seeded"}
        for i in range(50_000)
    ]
    seeded = control("POST", "/seed", records)
    assert seeded["created"] == 50_000
    archived = seeded["ids"][:7]
    for record_id in archived:
        control("DELETE", f"/ui/contacts/{record_id}")
    limits = control("GET", "/limits")
    control("PUT", "/limits", {"burst_limit": 1_000_000})
    try:
        everything = client.crm.contacts.get_all(properties=["email", "firstname", "lastmodifieddate"])
    finally:
        control("PUT", "/limits", {"burst_limit": limits["burst_limit"]})
    ours = [c for c in everything if (c.properties.get("email") or "").endswith(f"-{tag}@conformance.test")]
    expected = seeded["ids"][7:]
    assert [c.id for c in ours] == expected, "every live seeded record once, in id order"
    assert all(c.archived is False for c in ours)
    first = ours[0]
    assert first.properties["email"] == f"seed7-{tag}@conformance.test"
    assert first.properties["firstname"] == "S7"
    assert first.created_at <= first.updated_at
    # Seeded records are dated in the past year, not at the seed call.
    assert first.created_at.year >= datetime.datetime.now().year - 1

    page = client.crm.contacts.basic_api.get_page(limit=500, after=expected[0])
    assert len(page.results) == 100, "limit is capped at 100"
    gone = client.crm.contacts.basic_api.get_page(limit=100, after=archived[0], archived=True)
    assert [c.id for c in gone.results[:7]] == archived
