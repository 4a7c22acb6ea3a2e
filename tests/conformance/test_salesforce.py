"""Conformance of the Salesforce sandbox with simple-salesforce 1.12.10, used unchanged.

Settings come from the environment:

* ``SALESFORCE_BASE_URL`` -- the sandbox, e.g. ``http://127.0.0.1:8765`` (required);
* ``SALESFORCE_CLIENT_ID`` / ``SALESFORCE_CLIENT_SECRET`` -- the connected app's credentials;
* ``SALESFORCE_EXTERNAL_ID_FIELD`` -- the Contact external id field (default ``SyncRoot_Id__c``).

Transport: simple-salesforce always builds ``https://`` URLs -- ``https://{domain}.salesforce.com``
for the token request and ``https://{instance}`` for REST, where ``instance`` is the
``instance_url`` from the token response minus its scheme. The sandbox serves plain HTTP, so the
tests pass the client a ``requests.Session`` whose ``https://`` adapter rewrites every URL's
scheme and host to ``SALESFORCE_BASE_URL`` and keeps path and query. Nothing else in the client
changes, and no TLS certificate has to be made or trusted.

Login uses the client-credentials flow as simple-salesforce implements it: ``consumer_key`` +
``consumer_secret`` + a My Domain ``domain`` (not ``login``/``test``), which POSTs
``grant_type=client_credentials`` with HTTP Basic client authentication to
``https://{domain}.salesforce.com/services/oauth2/token``.
"""

import csv
import datetime
import io
import os
import tempfile
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
from requests.adapters import HTTPAdapter
from simple_salesforce import (
    Salesforce,
    SalesforceMalformedRequest,
    SalesforceResourceNotFound,
)

BASE_URL = os.environ.get("SALESFORCE_BASE_URL", "").rstrip("/")
CLIENT_ID = os.environ.get("SALESFORCE_CLIENT_ID", "sandbox-sf-client-id")
CLIENT_SECRET = os.environ.get("SALESFORCE_CLIENT_SECRET", "sandbox-sf-client-secret")
EXT = os.environ.get("SALESFORCE_EXTERNAL_ID_FIELD", "SyncRoot_Id__c")
# The sandbox's own control API (not Salesforce's) needs the token syncroot-sandbox printed.
CONTROL_TOKEN = os.environ.get("SANDBOX_CONTROL_TOKEN", "")
API_VERSION = "62.0"
CLIENT_TAG = "syncroot-conformance"


class RewriteToSandbox(HTTPAdapter):
    """Sends every https:// request to the plain-HTTP sandbox, same path and query."""

    def __init__(self, base_url):
        super().__init__()
        self.base = urlsplit(base_url)

    def send(self, request, **kwargs):
        parts = urlsplit(request.url)
        request.url = urlunsplit((self.base.scheme, self.base.netloc, parts.path, parts.query, parts.fragment))
        return super().send(request, **kwargs)


def sandbox_session():
    session = requests.Session()
    session.trust_env = False  # a proxy from the environment must not capture loopback calls
    session.mount("https://", RewriteToSandbox(BASE_URL))
    session.headers["Sforce-Call-Options"] = f"client={CLIENT_TAG}"
    return session


def control(method, path, body=None):
    """The sandbox's /__sandbox control API (plain HTTP, its control token)."""
    resp = requests.request(method, f"{BASE_URL}/__sandbox/{path}", json=body, timeout=10,
                            headers={"X-Sandbox-Token": CONTROL_TOKEN})
    resp.raise_for_status()
    return resp.json() if resp.content else None


def login(version=API_VERSION):
    return Salesforce(
        consumer_key=CLIENT_ID,
        consumer_secret=CLIENT_SECRET,
        domain="syncroot-sandbox.my",
        session=sandbox_session(),
        version=version,
    )


def case_safe_id(id15):
    """The 18-character form of a 15-character id (Salesforce's published algorithm)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
    suffix = ""
    for chunk in (id15[0:5], id15[5:10], id15[10:15]):
        bits = sum(1 << i for i, c in enumerate(chunk) if c.isupper())
        suffix += alphabet[bits]
    return id15 + suffix


@pytest.fixture(scope="session", autouse=True)
def sandbox_is_reachable():
    if not BASE_URL:
        pytest.fail("SALESFORCE_BASE_URL is not set (e.g. http://127.0.0.1:8765)", pytrace=False)
    try:
        requests.get(f"{BASE_URL}/services/data/", timeout=5).raise_for_status()
    except requests.RequestException as exc:
        pytest.fail(f"Salesforce sandbox not reachable at {BASE_URL}: {exc}", pytrace=False)


@pytest.fixture(autouse=True)
def clean_org():
    control("POST", "reset")
    yield


@pytest.fixture
def sf():
    return login()


def test_client_credentials_login_returns_the_sandbox_as_instance(sf):
    assert sf.auth_type == "client-credentials"
    assert sf.sf_instance == urlsplit(BASE_URL).netloc
    assert sf.session_id.startswith("00D")
    versions = requests.get(f"{BASE_URL}/services/data/", timeout=5).json()
    assert {"label", "url", "version"} <= set(versions[-1])


def test_create_get_update_delete(sf):
    created = sf.Contact.create({"FirstName": "Ada", "LastName": "Lovelace", "Email": "ada@example.com"})
    assert created["success"] is True and created["errors"] == []
    contact_id = created["id"]
    assert len(contact_id) == 18 and contact_id.startswith("003")
    assert case_safe_id(contact_id[:15]) == contact_id

    record = sf.Contact.get(contact_id)
    assert record["attributes"]["type"] == "Contact"
    assert (record["Name"], record["Email"], record["IsDeleted"]) == ("Ada Lovelace", "ada@example.com", False)
    assert record["CreatedDate"].endswith(".000+0000")

    assert sf.Contact.update(contact_id, {"Title": "Countess"}) == 204
    assert sf.Contact.get(contact_id)["Title"] == "Countess"
    changes = control("GET", "state")["changes"]
    assert changes[-1]["client"] == CLIENT_TAG

    assert sf.Contact.delete(contact_id) == 204
    with pytest.raises(SalesforceResourceNotFound) as err:
        sf.Contact.get(contact_id)
    assert err.value.content[0]["errorCode"] == "ENTITY_IS_DELETED"


def test_upsert_by_external_id(sf):
    assert sf.Contact.upsert(f"{EXT}/abc", {"LastName": "Hopper", "Email": "grace@example.com"}) == 201
    assert sf.Contact.upsert(f"{EXT}/abc", {"Title": "Rear Admiral"}) == 200
    found = sf.Contact.get_by_custom_id(EXT, "abc")
    assert (found["LastName"], found["Title"], found[EXT]) == ("Hopper", "Rear Admiral", "abc")

    raw = sf.Contact.upsert(f"{EXT}/abc", {"Department": "Navy"}, raw_response=True)
    assert raw.json()["created"] is False and raw.json()["id"] == found["Id"]
    # Before API 46.0 an upsert that updates answers 204 without a body.
    assert login(version="45.0").Contact.upsert(f"{EXT}/abc", {"Department": "Computing"}) == 204


def test_query_by_email_and_paging(sf):
    sf.Contact.create({"LastName": "Lovelace", "Email": "ada@example.com"})
    sf.Contact.create({"LastName": "Hopper", "Email": "grace@example.com"})
    result = sf.query("SELECT Id, Email FROM Contact WHERE Email = 'ada@example.com'")
    assert result["totalSize"] == 1 and result["done"] is True
    assert result["records"][0]["Email"] == "ada@example.com"
    assert set(result["records"][0]) == {"attributes", "Id", "Email"}

    since = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    recent = sf.query(f"select Id from Contact where SystemModstamp > {since} order by SystemModstamp")
    assert recent["totalSize"] == 2

    for batch in range(11):
        records = [{"attributes": {"type": "Contact"}, "LastName": f"Bulk {batch}-{i}"} for i in range(200)]
        results = sf.restful("composite/sobjects", method="POST", json={"allOrNone": True, "records": records})
        assert all(r["success"] for r in results)
    everyone = sf.query_all("SELECT Id FROM Contact")
    assert everyone["totalSize"] == 2202 and len(everyone["records"]) == 2202
    first_page = sf.query("SELECT Id FROM Contact")
    assert first_page["done"] is False and "nextRecordsUrl" in first_page


def test_missing_last_name_is_a_malformed_request(sf):
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Contact.create({"FirstName": "NoLast"})
    assert err.value.status == 400
    assert err.value.content == [
        {"message": "Required fields are missing: [LastName]", "errorCode": "REQUIRED_FIELD_MISSING", "fields": ["LastName"]}
    ]
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.query("SELECT Id FROM Contact WHERE Email = 'a' OR Email = 'b'")
    assert err.value.content[0]["errorCode"] == "MALFORMED_QUERY"


def test_unknown_id_is_resource_not_found(sf):
    never_issued = case_safe_id("0038d0zzzzzzzzz")
    with pytest.raises(SalesforceResourceNotFound) as err:
        sf.Contact.get(never_issued)
    assert err.value.content[0]["errorCode"] == "NOT_FOUND"
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Contact.get("not-an-id")
    assert err.value.content[0]["errorCode"] == "MALFORMED_ID"


def test_collection_reports_per_item_failures(sf):
    control("POST", "counters/reset")
    body = {"allOrNone": False, "records": [
        {"attributes": {"type": "Contact"}, "LastName": "Johnson"},
        {"attributes": {"type": "Contact"}, "LastName": "Bad", "Email": "not-an-email"},
    ]}
    results = sf.restful("composite/sobjects", method="POST", json=body)
    assert results[0]["success"] is True
    assert results[1]["success"] is False
    assert results[1]["errors"][0]["statusCode"] == "INVALID_EMAIL_ADDRESS"
    counters = control("GET", "counters")
    assert counters["calls"]["POST /services/data/{version}/composite/sobjects"] == 1
    assert counters["records_written"] == 1


def test_expired_session_is_renewed_by_the_client(sf):
    before = control("GET", "counters")["token_requests"]
    control("POST", "expire-sessions")
    created = sf.Contact.create({"LastName": "AfterExpiry"})
    assert created["success"] is True
    assert control("GET", "counters")["token_requests"] == before + 1


def test_limits_and_usage_header(sf):
    control("PUT", "limits", {"daily_limit": 500, "used": 10})
    limits = sf.limits()
    assert limits["DailyApiRequests"] == {"Max": 500, "Remaining": 489}
    assert sf.api_usage["api-usage"].used == 11 and sf.api_usage["api-usage"].total == 500


def test_jwt_bearer_login():
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "syncroot-conformance")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256())
    )
    control("PUT", "jwt", {"certificate_pem": cert.public_bytes(serialization.Encoding.PEM).decode()})
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    sf = Salesforce(
        username="integration@syncroot.example", consumer_key=CLIENT_ID, privatekey=pem.decode(),
        domain="login", session=sandbox_session(), version=API_VERSION,
    )
    assert sf.auth_type == "jwt-bearer"
    assert sf.Contact.create({"LastName": "ViaJwt"})["success"] is True


def seed_population(count, deleted=0):
    """`count` Contacts seeded through the control API in one call, the first `deleted` then
    deleted by a person; returns the live ids."""
    records = [
        {"LastName": f"Seeded{i}", "Email": f"Seed{i}@Conformance.Test",
         "Title": 'Says "hi", then\nleaves' if i % 2 else None}
        for i in range(count)
    ]
    seeded = control("POST", "seed", records)
    assert seeded["created"] == count
    for record_id in seeded["ids"][:deleted]:
        control("DELETE", f"ui/contacts/{record_id}")
    return seeded["ids"][deleted:]


def test_query_all_follows_next_records_url_over_a_seeded_population(sf):
    live = seed_population(30_000, deleted=5)
    result = sf.query_all("SELECT Id, Email, Title FROM Contact")
    assert result["done"] is True
    assert result["totalSize"] == len(live)
    assert [r["Id"] for r in result["records"]] == live
    assert result["records"][1]["Email"] == "Seed6@Conformance.Test", "Salesforce keeps the address as entered"
    calls = control("GET", "counters")["calls"]
    assert calls["GET /services/data/{version}/query"] == 1
    assert calls["GET /services/data/{version}/query/{locator}"] == 14, "2,000 a page"


def bulk_rows(csv_sets):
    rows = []
    for text in csv_sets:
        rows.extend(csv.DictReader(io.StringIO(text)))
    return rows


def test_bulk2_query_returns_exactly_the_seeded_records_in_sets(sf):
    live = seed_population(12_345, deleted=3)
    sets = list(sf.bulk2.Contact.query("SELECT Id, Email, Title, SystemModstamp FROM Contact",
                                       max_records=5_000, wait=0.05))
    assert len(sets) == 3
    rows = bulk_rows(sets)
    assert [r["Id"] for r in rows] == live
    by_id = {r["Id"]: r for r in rows}
    assert by_id[live[0]]["Title"] == 'Says "hi", then\nleaves'
    assert by_id[live[1]]["Title"] == ""
    assert by_id[live[0]]["Email"] == "Seed3@Conformance.Test"
    assert by_id[live[0]]["SystemModstamp"].endswith(".000Z")
    calls = control("GET", "counters")["calls"]
    assert calls["POST /services/data/{version}/jobs/query"] == 1
    assert calls["GET /services/data/{version}/jobs/query/{jobId}/results"] == 3


def test_bulk2_download_writes_every_set_to_files(sf):
    live = seed_population(2_500)
    with tempfile.TemporaryDirectory() as path:
        results = sf.bulk2.Contact.download("SELECT Id FROM Contact", path=path, max_records=1_000, wait=0.05)
        assert [r["number_of_records"] for r in results] == [1_000, 1_000, 500]
        texts = []
        for r in results:
            with open(r["file"], encoding="utf-8") as f:
                texts.append(f.read())
    assert [r["Id"] for r in bulk_rows(texts)] == live


def test_bulk2_failed_job_raises_and_an_open_job_can_be_aborted(sf):
    seed_population(10)
    control("PUT", "bulk-query", {"polls_in_progress": 5, "fail": False})
    job = sf.bulk2.Contact._client.create_job("query", "SELECT Id FROM Contact")
    assert job["state"] == "UploadComplete" and job["jobType"] == "V2Query"
    aborted = sf.bulk2.Contact._client.abort_job(job["id"], True)
    assert aborted["state"] == "Aborted"
    control("PUT", "bulk-query", {"polls_in_progress": 0, "fail": True})
    with pytest.raises(Exception, match="Job failure"):
        list(sf.bulk2.Contact.query("SELECT Id FROM Contact", wait=0.05))
