// The example checkout service's payments through Stripe's official Node SDK (npm
// `stripe`), unchanged but for its host: the service (checkout_service.rs, --pay-with-stripe)
// runs this as a child and sends one JSON request per line on stdin; each answer is one
// JSON line on stdout with the request's id. Requests run concurrently.
//
//   {"id": 1, "op": "pay", "secret_key": "sk_test_rig_a", "order_id": "o-1",
//    "amount_cents": 1200, "idempotency_key": "pay:o-1"}
//     -> {"id": 1, "outcome": "authorized" | "declined" | "unknown", "detail": "..."}
//   {"id": 2, "op": "find", "secret_key": "...", "order_id": "o-1"}
//     -> {"id": 2, "outcome": "authorized" | "declined" | "none" | "unknown"}
//
//   NODE_PATH=DIR/node_modules node stripe_payer.js http://127.0.0.1:18097

'use strict';

const readline = require('readline');
const Stripe = require('stripe');

const base = new URL(process.argv[2] || 'http://127.0.0.1:18097');
const clients = new Map();

// One client per secret key: a one-second timeout and no retries of the SDK's own (the
// service retries, under the key it chooses: that choice is what a run judges).
function client(secretKey) {
  if (!clients.has(secretKey)) {
    clients.set(secretKey, new Stripe(secretKey, {
      host: base.hostname,
      port: Number(base.port || 80),
      protocol: base.protocol.replace(':', ''),
      maxNetworkRetries: 0,
      timeout: 1000,
    }));
  }
  return clients.get(secretKey);
}

async function pay(req) {
  try {
    const intent = await client(req.secret_key).paymentIntents.create({
      amount: req.amount_cents,
      currency: 'usd',
      payment_method: 'pm_card_visa',
      confirm: true,
      metadata: {order_id: req.order_id},
    }, {idempotencyKey: req.idempotency_key});
    return {outcome: intent.status === 'succeeded' ? 'authorized' : 'unknown', detail: intent.id};
  } catch (err) {
    if (err instanceof Stripe.errors.StripeCardError) {
      return {outcome: 'declined', detail: err.code};
    }
    return {outcome: 'unknown', detail: `${err.type || err.name}: ${err.message}`};
  }
}

async function find(req) {
  try {
    const found = await client(req.secret_key).paymentIntents.search({
      query: `metadata['order_id']:'${req.order_id}'`,
    });
    if (found.data.some((i) => i.status === 'succeeded')) return {outcome: 'authorized'};
    if (found.data.length > 0 && found.data.every((i) => ['requires_payment_method', 'canceled'].includes(i.status))) {
      return {outcome: 'declined'};
    }
    return {outcome: found.data.length === 0 ? 'none' : 'unknown'};
  } catch (err) {
    return {outcome: 'unknown', detail: `${err.type || err.name}: ${err.message}`};
  }
}

const lines = readline.createInterface({input: process.stdin});
lines.on('line', async (line) => {
  let req;
  try {
    req = JSON.parse(line);
  } catch (err) {
    process.stderr.write(`stripe_payer: not JSON: ${line}\n`);
    return;
  }
  const answer = req.op === 'find' ? await find(req) : await pay(req);
  process.stdout.write(JSON.stringify({id: req.id, ...answer}) + '\n');
});
// The service closing our stdin ends us.
lines.on('close', () => process.exit(0));
