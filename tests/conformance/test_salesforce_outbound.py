"""Outbound Messages read by an XML parser that is not SyncRoot's: Python's xml.etree.

* the Contact fixture written to Salesforce's WSDL documentation reads, here, as the values
  SyncRoot's own parser test expects of it (src/webhooks/salesforce_outbound_tests.rs);
* SyncRoot's Ack (pinned to tests/fixtures/salesforce/outbound/ack.xml by a Rust test) is the
  ``notificationsResponse`` of the WSDL, with ``Ack`` true;
* the Salesforce sandbox's Outbound Messages (``SALESFORCE_BASE_URL``) are SOAP 1.1 envelopes
  of that WSDL, and an Ack built here, not by SyncRoot, is what the sandbox accepts.

WSDL: https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_om_outboundmessaging_wsdl.htm
"""

import http.server
import os
import pathlib
import queue
import threading
import time
import xml.etree.ElementTree as ET

import requests

BASE_URL = os.environ.get("SALESFORCE_BASE_URL", "").rstrip("/")
FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "salesforce" / "outbound"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
OM = "http://soap.sforce.com/2005/09/outbound"
SF = "urn:sobject.enterprise.soap.sforce.com"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
SANDBOX_ORG = "00D8d0000000001EAA"


def notifications(root):
    assert root.tag == f"{{{SOAP}}}Envelope"
    n = root.find(f"{{{SOAP}}}Body/{{{OM}}}notifications")
    assert n is not None, ET.tostring(root)
    return n


def test_the_documented_contact_fixture_reads_as_syncroot_reads_it():
    n = notifications(ET.parse(FIXTURES / "contact_two_notifications.xml").getroot())
    assert n.findtext(f"{{{OM}}}OrganizationId") == "00D5e000000KQ2eEAG"
    assert n.find(f"{{{OM}}}SessionId").get(f"{{{XSI}}}nil") == "true"
    got = [
        (
            x.findtext(f"{{{OM}}}Id"),
            x.find(f"{{{OM}}}sObject").get(f"{{{XSI}}}type"),
            x.findtext(f"{{{OM}}}sObject/{{{SF}}}Id"),
            x.findtext(f"{{{OM}}}sObject/{{{SF}}}LastModifiedById"),
        )
        for x in n.findall(f"{{{OM}}}Notification")
    ]
    assert got == [
        ("04l5e00000Gx7QzAAJ", "sf:Contact", "0035e00000ZkM3hAAF", "0055e000001AbCdAAK"),
        ("04l5e00000Gx7R0AAJ", "sf:Contact", "0035e00000ZkM3iAAF", "0055e000000IntgAAC"),
    ]
    title = n.findtext(f"{{{OM}}}Notification/{{{OM}}}sObject/{{{SF}}}Title")
    assert title == "CTO & founder"


def test_syncroot_answers_the_ack_of_the_wsdl():
    root = ET.parse(FIXTURES / "ack.xml").getroot()
    assert root.tag == f"{{{SOAP}}}Envelope"
    response = root.find(f"{{{SOAP}}}Body/{{{OM}}}notificationsResponse")
    assert response is not None
    assert [c.tag for c in response] == [f"{{{OM}}}Ack"]
    assert response.findtext(f"{{{OM}}}Ack") == "true"


class Receiver(http.server.BaseHTTPRequestHandler):
    """Queues each body and answers an Ack built with xml.etree."""

    bodies = queue.Queue()

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.bodies.put((self.headers.get("Content-Type"), body))
        env = ET.Element(f"{{{SOAP}}}Envelope")
        resp = ET.SubElement(ET.SubElement(env, f"{{{SOAP}}}Body"), f"{{{OM}}}notificationsResponse")
        ET.SubElement(resp, f"{{{OM}}}Ack").text = "true"
        out = ET.tostring(env, encoding="utf-8", xml_declaration=True)
        self.send_response(200)
        self.send_header("Content-Type", "text/xml; charset=utf-8")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


def test_the_sandbox_sends_wsdl_envelopes_and_accepts_an_independent_ack():
    assert BASE_URL, "SALESFORCE_BASE_URL must name the sandbox"
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    control = requests.Session()
    control.trust_env = False
    control.headers["X-Sandbox-Token"] = os.environ.get("SANDBOX_CONTROL_TOKEN", "")
    url = f"http://127.0.0.1:{server.server_address[1]}/om"
    try:
        target = control.put(f"{BASE_URL}/__sandbox/outbound-message",
                             json={"url": url, "fields": ["Email", "LastModifiedDate"]}).json()
        assert target["org_id"] == SANDBOX_ORG
        before = control.get(f"{BASE_URL}/__sandbox/counters").json()
        created = control.post(f"{BASE_URL}/__sandbox/ui/contacts",
                               json={"LastName": "Etree", "Email": "etree@example.com"}).json()
        # Writes of earlier tests may share the message (up to 100 notifications each).
        ours, messages = None, 0
        while ours is None:
            content_type, body = Receiver.bodies.get(timeout=10)
            messages += 1
            assert content_type.startswith("text/xml")
            n = notifications(ET.fromstring(body))
            assert n.findtext(f"{{{OM}}}OrganizationId") == SANDBOX_ORG
            for note in n.findall(f"{{{OM}}}Notification"):
                assert note.findtext(f"{{{OM}}}Id").startswith("04l")
                obj = note.find(f"{{{OM}}}sObject")
                assert obj.get(f"{{{XSI}}}type") == "sf:Contact"
                if obj.findtext(f"{{{SF}}}Id") == created["id"]:
                    ours = obj
        assert [c.tag for c in ours] == [f"{{{SF}}}Id", f"{{{SF}}}Email", f"{{{SF}}}LastModifiedDate"]
        assert ours.findtext(f"{{{SF}}}Email") == "etree@example.com"
        for _ in range(100):
            after = control.get(f"{BASE_URL}/__sandbox/counters").json()
            if after["outbound_messages_sent"] >= before["outbound_messages_sent"] + messages:
                break
            time.sleep(0.05)
        # Every message was acknowledged by the Ack built here: none failed.
        assert after["outbound_messages_sent"] >= before["outbound_messages_sent"] + messages
        assert after["outbound_message_failures"] == before["outbound_message_failures"]
    finally:
        control.put(f"{BASE_URL}/__sandbox/outbound-message", json={"url": None})
        server.shutdown()
