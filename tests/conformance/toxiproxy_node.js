// Drives `rig toxiproxy` through toxiproxy-node-client (npm), unchanged: every operation the
// client offers, each answer asserted. Exit 0 when all hold.
//
//   NODE_PATH=CACHE/node_modules node tests/conformance/toxiproxy_node.js http://127.0.0.1:PORT
"use strict";

const net = require("net");
const assert = require("assert");
const { Toxiproxy } = require("toxiproxy-node-client");

function echoServer() {
  return new Promise((resolve) => {
    const server = net.createServer((socket) => socket.pipe(socket));
    server.listen(0, "127.0.0.1", () => {
      server.unref();
      resolve(`127.0.0.1:${server.address().port}`);
    });
  });
}

function roundTrip(listen, timeoutMs = 5000) {
  const [host, port] = [listen.slice(0, listen.lastIndexOf(":")), Number(listen.slice(listen.lastIndexOf(":") + 1))];
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const socket = net.connect(port, host, () => socket.write("ping"));
    let got = "";
    socket.setTimeout(timeoutMs, () => { socket.destroy(); reject(new Error("timeout")); });
    socket.on("data", (d) => {
      got += d.toString();
      if (got.length >= 4) { socket.end(); resolve([got, Date.now() - started]); }
    });
    socket.on("error", reject);
  });
}

function ok(what) { console.log(`ok: ${what}`); }

async function rejects(promise, what) {
  try { await promise; } catch (e) { ok(what); return e; }
  throw new Error(`expected a refusal: ${what}`);
}

async function main() {
  const toxiproxy = new Toxiproxy(process.argv[2]);
  const upstream = await echoServer();
  const version = await toxiproxy.getVersion();
  assert.match(version, /2\./); ok(`version ${version.trim()}`);
  await toxiproxy.reset(); ok("reset");
  for (const p of Object.values(await toxiproxy.getAll())) { await p.remove(); }
  assert.deepStrictEqual(Object.keys(await toxiproxy.getAll()), []); ok("empty list");

  const proxy = await toxiproxy.createProxy({ name: "node_basic", listen: "127.0.0.1:0", upstream });
  assert.strictEqual(proxy.name, "node_basic");
  assert.strictEqual(proxy.upstream, upstream);
  assert.strictEqual(proxy.enabled, true);
  assert.ok(!proxy.listen.endsWith(":0")); ok("create shows the bound port");
  await rejects(toxiproxy.createProxy({ name: "node_basic", listen: "127.0.0.1:0", upstream }), "a duplicate is refused");
  assert.deepStrictEqual(Object.keys(await toxiproxy.getAll()), ["node_basic"]); ok("list");
  assert.strictEqual((await toxiproxy.get("node_basic")).listen, proxy.listen); ok("get");
  assert.strictEqual((await roundTrip(proxy.listen))[0], "ping"); ok("data flows");

  const toxics = {
    latency: { latency: 300, jitter: 0 },
    bandwidth: { rate: 1000 },
    slow_close: { delay: 10 },
    timeout: { timeout: 1000 },
    slicer: { average_size: 64, size_variation: 8, delay: 100 },
    limit_data: { bytes: 4096 },
    reset_peer: { timeout: 100 },
  };
  for (const [type, attributes] of Object.entries(toxics)) {
    const toxic = await proxy.addToxic({ name: `t_${type}`, type, stream: "downstream", toxicity: 0.5, attributes });
    assert.strictEqual(toxic.type, type);
    assert.strictEqual(toxic.toxicity, 0.5);
    assert.deepStrictEqual(toxic.attributes, attributes);
    const read = await proxy.getToxic(`t_${type}`);
    assert.deepStrictEqual(read.attributes, attributes); ok(`toxic ${type} reads back as given`);
  }
  const latency = await proxy.getToxic("t_latency");
  const updated = await latency.update({ attributes: { latency: 150, jitter: 0 }, toxicity: 1 });
  assert.strictEqual(updated.attributes.latency, 150);
  assert.strictEqual(updated.toxicity, 1); ok("update a toxic");
  for (const type of Object.keys(toxics)) {
    if (type !== "latency") { await (await proxy.getToxic(`t_${type}`)).remove(); }
  }
  ok("remove toxics");
  await rejects(proxy.getToxic("t_slicer"), "a removed toxic is gone");
  const [, took] = await roundTrip(proxy.listen);
  assert.ok(took >= 150, `latency toxic delays data (${took} ms)`); ok(`latency toxic delays data (${took} ms)`);

  const down = await proxy.update({ enabled: false });
  assert.strictEqual(down.enabled, false); ok("disable");
  await rejects(roundTrip(proxy.listen, 1000), "a disabled proxy refuses connections");
  const up = await proxy.update({ enabled: true });
  assert.strictEqual(up.enabled, true); ok("enable");
  await toxiproxy.reset();
  await rejects(proxy.getToxic("t_latency"), "reset removed the toxics");

  const spaced = await toxiproxy.createProxy({ name: "node proxy", listen: "127.0.0.1:0", upstream });
  assert.strictEqual((await toxiproxy.get("node proxy")).name, "node proxy"); ok("a name with a space is read");
  await spaced.addToxic({ name: "l", type: "latency", stream: "downstream", toxicity: 1, attributes: { latency: 1, jitter: 0 } });
  ok("a name with a space takes toxics");
  await spaced.remove(); ok("a name with a space is deleted");

  const populated = await toxiproxy.populate([
    { name: "node_pop_a", listen: "127.0.0.1:0", upstream },
    { name: "node_pop_b", listen: "127.0.0.1:0", upstream },
  ]);
  assert.deepStrictEqual(Object.keys(populated).sort(), ["node_pop_a", "node_pop_b"]); ok("populate");
  await proxy.remove();
  await rejects(toxiproxy.get("node_basic"), "a deleted proxy is gone");
  for (const p of Object.values(await toxiproxy.getAll())) { await p.remove(); }
  assert.deepStrictEqual(Object.keys(await toxiproxy.getAll()), []); ok("every proxy removed");
  console.log("toxiproxy-node-client: every check passed");
}

main().catch((e) => { console.error(`FAIL: ${e.stack || e}`); process.exit(1); });
