#!/usr/bin/env python3
"""HubSpot webhook signature vectors, produced by HubSpot's own Python SDK.

Writes tests/fixtures/hubspot/webhook_signatures.json, which the unit tests of
src/webhooks/verify.rs check our verifier against. The point is an independent check: the
signatures come from `hubspot.utils.signature.Signature.get_signature` in the official SDK
(`hubspot-api-client`), not from SyncRoot's code.

Regenerate, from the repository root (the project's virtualenv pins the SDK version in
tests/requirements.txt):

    . scripts/python.sh && "$PYBIN/python" scripts/hubspot_signature_vectors.py

or in any virtualenv with `pip install hubspot-api-client==12.0.0`. The inputs are fixed, so
the output only changes when the SDK's algorithm (or its version, named in each `note`) does.

The SDK signs the URI it is given and does not apply v3's percent-decoding step, so for v3
this script first decodes the URI as received with HubSpot's table (below) and signs that; the
fixture keeps the URI as received, which is what the receiver sees. v1 and v2 sign the URI
exactly as received. Bodies are text because the SDK takes `str` (it encodes them as UTF-8).

Fixture fields per vector: version, secret, method, uri (as received), body, timestamp
(epoch ms as the header string; null for v1/v2), signature (header value), note.
"""

import json
import re
from importlib.metadata import version as package_version
from pathlib import Path

from hubspot.utils.signature import Signature

OUT = Path(__file__).resolve().parent.parent / "tests/fixtures/hubspot/webhook_signatures.json"
SDK = f"hubspot-api-client {package_version('hubspot-api-client')}"

# https://developers.hubspot.com/docs/api/webhooks/validating-requests: v3 decodes only these
# escapes in the request URI; everything else (%20, %2B, %26, %3D, %25 ...) stays encoded.
V3_DECODED = ["3A", "2F", "3F", "40", "21", "24", "27", "28", "29", "2A", "2C", "3B"]
V3_ESCAPE = re.compile("%(" + "|".join(V3_DECODED) + ")", re.IGNORECASE)


def v3_uri(uri: str) -> str:
    return V3_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), uri)


EVENTS = (
    '[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,'
    '"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,'
    '"changeSource":"CRM","changeFlag":"NEW","appId":54321}]'
)
CHANGE = (
    '[{"eventId":907,"subscriptionId":77,"portalId":62515,"occurredAt":1700000000123,'
    '"subscriptionType":"contact.propertyChange","attemptNumber":2,"objectId":4711,'
    '"propertyName":"lastname","propertyValue":"Müller-Łukasiewicz ☃","changeSource":"CRM"}]'
)
SECRET_A = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
SECRET_B = "3b1f0c2e-9d4a-4e8b-a6f1-52c7d0e9b8a4"
SECRET_C = "s3cr3t with spaces & ünïcode"

# (note, version, secret, method, uri as received, body, timestamp)
CASES = [
    ("v1, HubSpot's published example body", "v1", SECRET_A, "POST",
     "https://sync.example.test/hooks/hubspot", EVENTS, None),
    ("v1, non-ASCII body and secret", "v1", SECRET_C, "POST",
     "https://sync.example.test/hooks/hubspot", CHANGE, None),
    ("v2, GET with query and empty body", "v2", SECRET_A, "GET",
     "https://sync.example.test/hooks/hubspot?portalId=62515&userEmail=a%40b.com", "", None),
    ("v2, POST: escapes stay as received (no decoding in v2)", "v2", SECRET_B, "POST",
     "https://sync.example.test:8443/hooks/card?x=%2Fy%20z&q=a%3Ab", '{"example_field":"example_value"}', None),
    ("v3, POST, plain URI", "v3", SECRET_A, "POST",
     "https://sync.example.test/hooks/hubspot?tenant=acme", EVENTS, "1700000000000"),
    ("v3, POST, every table escape (upper and lower case hex) decoded before signing", "v3", SECRET_B, "POST",
     "https://sync.example.test/hooks/hubspot?a=%3A%2F%3F%40%21%24%27%28%29%2A%2C%3B&b=%3a%2f%3f%40%2a%2c%3b",
     CHANGE, "1712345678901"),
    ("v3, GET, escapes outside the table stay encoded (%20 %2B %26 %3D %25)", "v3", SECRET_B, "GET",
     "https://sync.example.test/hooks/hubspot?q=a%20b%2Bc%26d%3De&pct=%253A&mail=x%40y.z", "", "1699999999999"),
    ("v3, PUT, port and encoded path segment", "v3", SECRET_C, "PUT",
     "http://127.0.0.1:8080/hooks/hubspot%2Fcards/(x)?v=1%2C2", CHANGE, "1735689600000"),
    ("v3, POST, short timestamp string used as received", "v3", SECRET_A, "POST",
     "https://sync.example.test/hooks/hubspot", '{"example_field":"example_value"}', "86400000"),
]


def main() -> None:
    vectors = []
    for note, version, secret, method, uri, body, timestamp in CASES:
        signed_uri = v3_uri(uri) if version == "v3" else uri
        signature = Signature.get_signature(
            client_secret=secret,
            request_body=body,
            signature_version=version,
            http_uri=signed_uri,
            http_method=method,
            timestamp=timestamp,
        )
        vectors.append({
            "version": version,
            "secret": secret,
            "method": method,
            "uri": uri,
            "body": body,
            "timestamp": timestamp,
            "signature": signature,
            "note": f"{note}; signed by {SDK} Signature.get_signature",
        })
    OUT.write_text(json.dumps(vectors, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{len(vectors)} vectors from {SDK} -> {OUT}")


if __name__ == "__main__":
    main()
