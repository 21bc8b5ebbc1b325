"""Drives the provider's Stripe-compatible face through Stripe's official Python SDK (PyPI
`stripe`), unchanged but for its API host: every assertion is on the SDK's own types and
errors. Exit 0 when all hold.

    PYTHONPATH=CACHE/py python3 tests/conformance/stripe_python.py STRIPE_URL ADMIN_URL [PREFIX]

STRIPE_URL is the face (e.g. http://127.0.0.1:18097), ADMIN_URL the provider's native
listener (its /admin/faults sets the rate limit). Order ids start with PREFIX (default: a
random one), so a caller can find them in the ledger.
"""

import http.server
import json
import queue
import sys
import threading
import time
import urllib.request
import uuid

import stripe

STRIPE_URL, ADMIN_URL = sys.argv[1], sys.argv[2]
RUN = sys.argv[3] if len(sys.argv) > 3 else "py-" + uuid.uuid4().hex[:8]


def client(key="sk_test_rig_a", retries=2):
    return stripe.StripeClient(
        key, base_addresses={"api": STRIPE_URL}, max_network_retries=retries
    )


def faults(body):
    method = "POST" if body is not None else "DELETE"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        ADMIN_URL + "/admin/faults",
        data=data,
        method=method,
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200, resp.status


def expect(error_type, call):
    try:
        call()
    except error_type as err:
        return err
    raise AssertionError("expected %s" % error_type.__name__)


def webhook_receiver():
    """An HTTP endpoint on a free loopback port; returns (url, queue of (body, signature))."""
    received = queue.Queue()

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.put((body.decode(), self.headers.get("Stripe-Signature")))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return "http://127.0.0.1:%d/hook" % server.server_address[1], received


def wait_for_events(received, secret, wanted, limit=30.0):
    """Verifies every delivery with the SDK until each (type, intent id) in wanted came."""
    events = {}
    deadline = time.monotonic() + limit
    while not all(w in events for w in wanted):
        left = deadline - time.monotonic()
        assert left > 0, "webhooks missing: %s (got %s)" % (wanted, sorted(events))
        try:
            body, signature = received.get(timeout=left)
        except queue.Empty:
            continue
        event = stripe.Webhook.construct_event(body, signature, secret)
        assert isinstance(event, stripe.Event), type(event)
        events[(event.type, event.data.object.id)] = (body, signature)
    return events


def main():
    a = client()
    intents = a.v1.payment_intents
    hook_url, received = webhook_receiver()
    endpoint = a.v1.webhook_endpoints.create(
        params={"url": hook_url, "enabled_events": ["payment_intent.succeeded", "payment_intent.payment_failed"]}
    )
    assert endpoint.secret.startswith("whsec_"), endpoint
    order = "%s-1" % RUN
    key = "%s-key-1" % RUN
    params = {
        "amount": 1200,
        "currency": "usd",
        "payment_method": "pm_card_visa",
        "confirm": True,
        "metadata": {"order_id": order},
    }

    # Create and confirm at once.
    pi = intents.create(params=params, options={"idempotency_key": key})
    assert isinstance(pi, stripe.PaymentIntent), type(pi)
    assert pi.status == "succeeded", pi.status
    assert pi.amount == 1200 and pi.amount_received == 1200, pi
    assert pi.currency == "usd" and pi.metadata["order_id"] == order, pi
    assert pi.latest_charge.startswith("ch_"), pi.latest_charge

    # The same key again: the same object, replayed.
    again = intents.create(params=params, options={"idempotency_key": key})
    assert isinstance(again, stripe.PaymentIntent)
    assert again.id == pi.id, (again.id, pi.id)
    headers = {k.lower(): v for k, v in again.last_response.headers.items()}
    assert headers.get("idempotent-replayed") == "true", headers

    # The key with another amount: the SDK's idempotency error.
    other = dict(params, amount=1300)
    err = expect(
        stripe.IdempotencyError,
        lambda: intents.create(params=other, options={"idempotency_key": key}),
    )
    assert err.http_status == 400, err.http_status

    # Declines are card errors, with the decline code and the intent.
    for method, decline in [
        ("pm_card_visa_chargeDeclined", "generic_decline"),
        ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds"),
    ]:
        declined = dict(params, payment_method=method, metadata={"order_id": order + method})
        err = expect(stripe.CardError, lambda: intents.create(params=declined))
        assert err.http_status == 402 and err.code == "card_declined", (err.http_status, err.code)
        assert err.error.decline_code == decline, err.error.decline_code
        assert err.error.payment_intent.status == "requires_payment_method", err.error
    by_number = {
        "amount": 800,
        "currency": "usd",
        "confirm": True,
        "payment_method_data": {"type": "card", "card": {"number": "4000000000009995"}},
    }
    err = expect(stripe.CardError, lambda: intents.create(params=by_number))
    assert err.error.decline_code == "insufficient_funds", err.error
    failed_id = err.error.payment_intent.id

    # Create, then confirm; manual capture; cancel.
    two = intents.create(params={"amount": 2500, "currency": "usd", "metadata": {"order_id": order + "-2"}})
    assert two.status == "requires_payment_method", two.status
    two = intents.confirm(two.id, params={"payment_method": "pm_card_mastercard"})
    assert two.status == "succeeded", two.status
    err = expect(stripe.InvalidRequestError, lambda: intents.confirm(two.id))
    assert err.code == "payment_intent_unexpected_state", err.code
    held = intents.create(
        params={"amount": 4900, "currency": "usd", "payment_method": "pm_card_visa",
                "confirm": True, "capture_method": "manual"}
    )
    assert held.status == "requires_capture" and held.amount_capturable == 4900, held
    held = intents.capture(held.id, params={"amount_to_capture": 4000})
    assert held.status == "succeeded" and held.amount_received == 4000, held
    dropped = intents.create(params={"amount": 900, "currency": "usd"})
    dropped = intents.cancel(dropped.id, params={"cancellation_reason": "abandoned"})
    assert dropped.status == "canceled" and dropped.cancellation_reason == "abandoned", dropped

    # Retrieve, search by order, list.
    got = intents.retrieve(pi.id)
    assert isinstance(got, stripe.PaymentIntent) and got.status == "succeeded", got
    found = intents.search(params={"query": "metadata['order_id']:'%s'" % order})
    assert [p.id for p in found.data] == [pi.id], found
    listed = intents.list(params={"limit": 2})
    assert len(listed.data) == 2 and listed.has_more, listed
    err = expect(stripe.InvalidRequestError, lambda: intents.retrieve("pi_missing"))
    assert err.http_status == 404 and err.code == "resource_missing", err

    # Refund: in part, the rest, then nothing is left.
    refunds = a.v1.refunds
    part = refunds.create(params={"payment_intent": pi.id, "amount": 200})
    assert isinstance(part, stripe.Refund), type(part)
    assert part.status == "succeeded" and part.amount == 200 and part.payment_intent == pi.id, part
    rest = refunds.create(params={"payment_intent": pi.id})
    assert rest.amount == 1000, rest
    assert refunds.retrieve(part.id).amount == 200
    err = expect(stripe.InvalidRequestError, lambda: refunds.create(params={"payment_intent": pi.id}))
    assert err.code == "charge_already_refunded", err.code

    # Webhooks: the succeeded and failed events, verified by the SDK's own function; a
    # tampered body or another secret fails its verification.
    events = wait_for_events(
        received,
        endpoint.secret,
        [("payment_intent.succeeded", pi.id), ("payment_intent.payment_failed", failed_id)],
    )
    body, signature = events[("payment_intent.succeeded", pi.id)]
    expect(
        stripe.SignatureVerificationError,
        lambda: stripe.Webhook.construct_event(body.replace("succeeded", "canceled"), signature, endpoint.secret),
    )
    expect(
        stripe.SignatureVerificationError,
        lambda: stripe.Webhook.construct_event(body, signature, "whsec_other"),
    )

    # A rate-limit fault: the SDK's rate-limit error.
    faults({"rate_limit_per_sec": 1})
    try:
        def flood():
            for n in range(50):
                intents.create(params={"amount": 100, "currency": "usd", "metadata": {"order_id": "flood-%d" % n}})
        err = expect(stripe.RateLimitError, flood)
        assert err.http_status == 429, err.http_status
    finally:
        faults(None)

    # A key the provider did not issue.
    err = expect(stripe.AuthenticationError, lambda: client("sk_test_unknown").v1.payment_intents.retrieve(pi.id))
    assert err.http_status == 401

    print("stripe-python: every check passed")


if __name__ == "__main__":
    main()
