// Drives the provider's Stripe-compatible face through Stripe's official Node SDK (npm
// `stripe`), unchanged but for its host: every assertion is on the SDK's own types and
// errors. Exit 0 when all hold.
//
//   NODE_PATH=CACHE/node/node_modules node tests/conformance/stripe_node.js STRIPE_URL ADMIN_URL [PREFIX]
//
// STRIPE_URL is the face, ADMIN_URL the provider's native listener (its /admin/faults sets
// the rate limit). Order ids start with PREFIX (default: a random one).

'use strict';

const assert = require('assert');
const crypto = require('crypto');
const http = require('http');
const Stripe = require('stripe');

const [stripeUrl, adminUrl, prefix] = process.argv.slice(2);
const run = prefix || 'js-' + crypto.randomBytes(4).toString('hex');

function client(key = 'sk_test_rig_b', retries = 2) {
  const url = new URL(stripeUrl);
  return new Stripe(key, {
    host: url.hostname,
    port: Number(url.port),
    protocol: url.protocol.replace(':', ''),
    maxNetworkRetries: retries,
  });
}

async function faults(body) {
  const res = await fetch(adminUrl + '/admin/faults', {
    method: body ? 'POST' : 'DELETE',
    headers: {'content-type': 'application/json'},
    body: body ? JSON.stringify(body) : undefined,
  });
  assert.strictEqual(res.status, 200);
}

async function expectError(type, call) {
  try {
    await call();
  } catch (err) {
    assert.ok(err instanceof type, `expected ${type.name}, got ${err && err.constructor.name}: ${err && err.message}`);
    return err;
  }
  throw new assert.AssertionError({message: `expected ${type.name}`});
}

// An HTTP endpoint on a free loopback port: its URL and the deliveries it got.
async function webhookReceiver() {
  const received = [];
  let wake = () => {};
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      received.push([Buffer.concat(chunks).toString('utf8'), req.headers['stripe-signature']]);
      res.writeHead(200).end();
      wake();
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  server.unref();
  const next = () => new Promise((resolve) => { wake = resolve; });
  return {url: `http://127.0.0.1:${server.address().port}/hook`, received, next};
}

// Verifies each delivery with the SDK until every [type, intent id] wanted came.
async function waitForEvents(stripe, hooks, secret, wanted) {
  const events = new Map();
  const deadline = Date.now() + 30000;
  let seen = 0;
  while (!wanted.every(([t, id]) => events.has(`${t} ${id}`))) {
    while (seen < hooks.received.length) {
      const [body, signature] = hooks.received[seen++];
      const event = stripe.webhooks.constructEvent(body, signature, secret);
      assert.strictEqual(event.object, 'event');
      events.set(`${event.type} ${event.data.object.id}`, [body, signature]);
    }
    if (wanted.every(([t, id]) => events.has(`${t} ${id}`))) break;
    const left = deadline - Date.now();
    assert.ok(left > 0, `webhooks missing: ${JSON.stringify(wanted)}, got ${[...events.keys()]}`);
    await Promise.race([hooks.next(), new Promise((r) => setTimeout(r, Math.min(left, 500)))]);
  }
  return events;
}

async function main() {
  const stripe = client();
  const intents = stripe.paymentIntents;
  const hooks = await webhookReceiver();
  const endpoint = await stripe.webhookEndpoints.create({
    url: hooks.url,
    enabled_events: ['payment_intent.succeeded', 'payment_intent.payment_failed'],
  });
  assert.ok(endpoint.secret.startsWith('whsec_'), endpoint.secret);
  const order = `${run}-1`;
  const key = `${run}-key-1`;
  const params = {
    amount: 1200,
    currency: 'usd',
    payment_method: 'pm_card_visa',
    confirm: true,
    metadata: {order_id: order},
  };

  // Create and confirm at once.
  const pi = await intents.create(params, {idempotencyKey: key});
  assert.strictEqual(pi.object, 'payment_intent');
  assert.strictEqual(pi.status, 'succeeded');
  assert.strictEqual(pi.amount_received, 1200);
  assert.strictEqual(pi.metadata.order_id, order);
  assert.ok(pi.latest_charge.startsWith('ch_'), pi.latest_charge);

  // The same key again: the same object, replayed.
  const again = await intents.create(params, {idempotencyKey: key});
  assert.strictEqual(again.id, pi.id);
  assert.strictEqual(again.lastResponse.headers['idempotent-replayed'], 'true');

  // The key with another amount: the SDK's idempotency error.
  const mismatch = await expectError(Stripe.errors.StripeIdempotencyError, () =>
    intents.create({...params, amount: 1300}, {idempotencyKey: key}));
  assert.strictEqual(mismatch.statusCode, 400);

  // Declines are card errors, with the decline code and the intent.
  let failedId;
  for (const [method, decline] of [
    ['pm_card_visa_chargeDeclined', 'generic_decline'],
    ['pm_card_chargeDeclinedInsufficientFunds', 'insufficient_funds'],
  ]) {
    const err = await expectError(Stripe.errors.StripeCardError, () =>
      intents.create({...params, payment_method: method, metadata: {order_id: order + method}}));
    assert.strictEqual(err.statusCode, 402);
    assert.strictEqual(err.code, 'card_declined');
    assert.strictEqual(err.decline_code, decline);
    assert.strictEqual(err.raw.payment_intent.status, 'requires_payment_method');
    failedId = err.raw.payment_intent.id;
  }

  // Create, then confirm; manual capture; cancel.
  let two = await intents.create({amount: 2500, currency: 'usd', metadata: {order_id: `${order}-2`}});
  assert.strictEqual(two.status, 'requires_payment_method');
  two = await intents.confirm(two.id, {payment_method: 'pm_card_mastercard'});
  assert.strictEqual(two.status, 'succeeded');
  const twice = await expectError(Stripe.errors.StripeInvalidRequestError, () => intents.confirm(two.id));
  assert.strictEqual(twice.code, 'payment_intent_unexpected_state');
  let held = await intents.create({
    amount: 4900, currency: 'usd', payment_method: 'pm_card_visa', confirm: true, capture_method: 'manual',
  });
  assert.strictEqual(held.status, 'requires_capture');
  held = await intents.capture(held.id, {amount_to_capture: 4000});
  assert.strictEqual(held.status, 'succeeded');
  assert.strictEqual(held.amount_received, 4000);
  let dropped = await intents.create({amount: 900, currency: 'usd'});
  dropped = await intents.cancel(dropped.id, {cancellation_reason: 'abandoned'});
  assert.strictEqual(dropped.status, 'canceled');

  // Retrieve, search by order, list.
  const got = await intents.retrieve(pi.id);
  assert.strictEqual(got.status, 'succeeded');
  const found = await intents.search({query: `metadata['order_id']:'${order}'`});
  assert.deepStrictEqual(found.data.map((p) => p.id), [pi.id]);
  const listed = await intents.list({limit: 2});
  assert.strictEqual(listed.data.length, 2);
  assert.strictEqual(listed.has_more, true);
  const missing = await expectError(Stripe.errors.StripeInvalidRequestError, () => intents.retrieve('pi_missing'));
  assert.strictEqual(missing.statusCode, 404);

  // Refund: in part, the rest, then nothing is left.
  const part = await stripe.refunds.create({payment_intent: pi.id, amount: 200});
  assert.strictEqual(part.object, 'refund');
  assert.strictEqual(part.status, 'succeeded');
  assert.strictEqual(part.payment_intent, pi.id);
  const rest = await stripe.refunds.create({payment_intent: pi.id});
  assert.strictEqual(rest.amount, 1000);
  assert.strictEqual((await stripe.refunds.retrieve(part.id)).amount, 200);
  const empty = await expectError(Stripe.errors.StripeInvalidRequestError, () =>
    stripe.refunds.create({payment_intent: pi.id}));
  assert.strictEqual(empty.code, 'charge_already_refunded');

  // Webhooks: the succeeded and failed events, verified by the SDK's own function; a
  // tampered body or another secret fails its verification.
  const events = await waitForEvents(stripe, hooks, endpoint.secret, [
    ['payment_intent.succeeded', pi.id],
    ['payment_intent.payment_failed', failedId],
  ]);
  const [body, signature] = events.get(`payment_intent.succeeded ${pi.id}`);
  assert.throws(() => stripe.webhooks.constructEvent(body.replace('succeeded', 'canceled'), signature, endpoint.secret),
    Stripe.errors.StripeSignatureVerificationError);
  assert.throws(() => stripe.webhooks.constructEvent(body, signature, 'whsec_other'),
    Stripe.errors.StripeSignatureVerificationError);

  // A rate-limit fault: the SDK's rate-limit error.
  await faults({rate_limit_per_sec: 1});
  try {
    const limited = await expectError(Stripe.errors.StripeRateLimitError, async () => {
      for (let n = 0; n < 50; n++) {
        await intents.create({amount: 100, currency: 'usd', metadata: {order_id: `flood-${n}`}});
      }
    });
    assert.strictEqual(limited.statusCode, 429);
  } finally {
    await faults(null);
  }

  // A key the provider did not issue.
  const unknown = await expectError(Stripe.errors.StripeAuthenticationError, () =>
    client('sk_test_unknown').paymentIntents.retrieve(pi.id));
  assert.strictEqual(unknown.statusCode, 401);

  console.log('stripe-node: every check passed');
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
