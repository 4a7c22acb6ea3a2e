#!/usr/bin/env python3
"""Signature vectors for SyncRoot's signed Salesforce webhook convention.

Writes tests/fixtures/salesforce/webhook_signatures.json, which the unit tests of
src/webhooks/verify.rs check our verifier against. The convention is SyncRoot's own
(docs/salesforce-webhooks.md, "Request"):

    X-Sync-Signature = base64(HMAC-SHA256(key = secret, data = X-Sync-Timestamp + "." + rawBody))

This script computes it with Python's standard library only (hmac, hashlib, base64), so the
check does not rest on SyncRoot's code or on the sandbox's signer.

Regenerate, from the repository root (standard library only, any Python 3):

    python3 scripts/salesforce_signature_vectors.py

Fixture fields per vector: secret, body, timestamp (the header string), signature, note.
"""

import base64
import hashlib
import hmac
import json
import platform
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tests/fixtures/salesforce/webhook_signatures.json"

EVENT = (
    '{"events":[{"ChangeEventHeader":{"entityName":"Contact","changeType":"UPDATE",'
    '"changeOrigin":"com/salesforce/api/rest/60.0","transactionKey":"0a1b2c3d-0000-4000-8000-000000000001",'
    '"sequenceNumber":1,"commitTimestamp":1709629200000,"recordIds":["003000000000001AAA"],'
    '"changedFields":["LastName"]},"LastName":"Müller ☃"}]}'
)
EMPTY_BATCH = '{"events":[]}'

# (note, secret, body, timestamp)
CASES = [
    ("update event, typical secret", "whsec_0f9e8d7c6b5a49382716", EVENT, "1709629200123"),
    ("empty batch, other secret", "another-secret-value", EMPTY_BATCH, "1700000000000"),
    ("empty body", "whsec_0f9e8d7c6b5a49382716", "", "1712345678901"),
    ("non-ASCII secret, short timestamp", "clé secrète ✓", EVENT, "5000"),
    ("body containing dots and the timestamp itself", "k", "1709629200123.{\"a\":\"b.c\"}", "1709629200123"),
]


def sign(secret: str, timestamp: str, body: str) -> str:
    data = timestamp.encode("utf-8") + b"." + body.encode("utf-8")
    return base64.b64encode(hmac.new(secret.encode("utf-8"), data, hashlib.sha256).digest()).decode("ascii")


def main() -> None:
    who = f"Python {platform.python_version()} hmac/hashlib/base64"
    vectors = [
        {
            "secret": secret,
            "body": body,
            "timestamp": timestamp,
            "signature": sign(secret, timestamp, body),
            "note": f"{note}; signed by {who}",
        }
        for note, secret, body, timestamp in CASES
    ]
    OUT.write_text(json.dumps(vectors, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{len(vectors)} vectors from {who} -> {OUT}")


if __name__ == "__main__":
    main()
