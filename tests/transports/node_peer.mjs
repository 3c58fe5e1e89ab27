// A NATS client in JavaScript joining an agentcomm system from docs/wire-format.md alone.
// Run by tests/transports/test_foreign_client.py:
//   node node_peer.mjs NATS_URL NAMESPACE PEER_PUBLIC_KEY_BASE64 < OWN_PRIVATE_KEY_PEM
// It publishes an event, calls an agent, updates a blackboard entry with
// compare-and-set, then serves as the agent "node" and verifies the signature of the
// request it gets, answering with a response it signs with its own key. Each result is
// one JSON line on stdout.
import { readFileSync } from "node:fs";
import { createPrivateKey, createPublicKey, sign, verify } from "node:crypto";
import { connect, headers as natsHeaders } from "nats";

const [url, ns, publicKeyB64] = process.argv.slice(2);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const enc = new TextEncoder();
const dec = new TextDecoder();
let counter = 0;
const newId = () => `node-${process.pid}-${Date.now()}-${counter++}`;
const now = () => Date.now() / 1000;

const nc = await connect({ servers: url });
const js = nc.jetstream();

// CRC-32 (IEEE, as zlib's): an event's partition is crc32(key, or id) % 16.
const crc32 = (bytes) => {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return (c ^ 0xffffffff) >>> 0;
};
const partition = (key) => crc32(enc.encode(key)) % 16;

// 1. An event: an envelope appended to the namespace's EVENTS stream, under
// <partition>.<topic>.
const event = {
  id: newId(), kind: "event", sender: "node", topic: "orders.created", key: "o-17",
  payload: { order: "o-17", total: 42 }, created: now(),
};
const subject = `${ns}.s.EVENTS.${partition(event.key)}.orders.created`;
const ack = await js.publish(subject, enc.encode(JSON.stringify(event)), { msgID: event.id });
out({ step: "event", seq: ack.seq, subject });

// 2. A request to the agent "calc": its response is an envelope too.
const request = {
  id: newId(), kind: "request", sender: "node", recipient: "calc", handler: "add",
  payload: { a: 2, b: 3 }, created: now(), deadline: now() + 10,
};
const reply = await nc.request(`${ns}.a.calc.r`, enc.encode(JSON.stringify(request)),
  { timeout: 10000 });
const response = JSON.parse(dec.decode(reply.data));
out({ step: "request", kind: response.kind, correlation: response.correlation_id === request.id,
  payload: response.payload, error: response.error ?? null });

// 3. The blackboard: a JetStream KV bucket <ns>_blackboard; values are records.
const kv = await js.views.kv(`${ns}_blackboard`, { bindOnly: true });
const entry = await kv.get("shared.count");
const record = JSON.parse(dec.decode(entry.value));
const next = { created: record.created, updated: now(), author: "node", value: record.value + 1 };
const revision = await kv.update("shared.count", enc.encode(JSON.stringify(next)), entry.revision);
let staleRefused = false;
try {
  await kv.update("shared.count", enc.encode(JSON.stringify(next)), entry.revision);
} catch (err) {
  staleRefused = /wrong last sequence/i.test(String(err.message));
}
out({ step: "board", read: record.value, author: record.author, revision, staleRefused });

// 4. Signatures (docs/wire-format.md, "Signatures"): the header ac-sig holds the
// base64 Ed25519 signature of "agentcomm-envelope-sig-v1\n" + the envelope's
// canonical JSON: its members in the order of the field table, without "sequence",
// "headers" without "ac-sig" with its keys sorted (left out when empty), "v" left out
// when 1, time fields as floats ("created":5 is written 5.0), every other value byte
// for byte as it was sent. So we cut the raw text into members and reassemble them.
const FIELDS = ["id", "kind", "sender", "recipient", "topic", "handler", "payload", "schema",
  "correlation_id", "causation_id", "traceparent", "tracestate", "created", "deadline",
  "sequence", "key", "headers", "error", "reply_to", "v"];

function members(text) {
  // Top-level members of a JSON object as [key, rawValueText] pairs, in order.
  const found = [];
  let i = text.indexOf("{") + 1;
  const skipWs = () => { while (/\s/.test(text[i])) i++; };
  const readString = () => {
    const start = i++;
    while (text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
    i++;
    return text.slice(start, i);
  };
  const readValue = () => {
    const start = i;
    if (text[i] === '"') { readString(); return text.slice(start, i); }
    if (text[i] === "{" || text[i] === "[") {
      let depth = 0;
      do {
        if (text[i] === '"') { readString(); continue; }
        if (text[i] === "{" || text[i] === "[") depth++;
        if (text[i] === "}" || text[i] === "]") depth--;
        i++;
      } while (depth > 0);
      return text.slice(start, i);
    }
    while (i < text.length && !/[,}\s]/.test(text[i])) i++;
    return text.slice(start, i);
  };
  for (;;) {
    skipWs();
    if (text[i] === "}") break;
    const key = JSON.parse(readString());
    skipWs(); i++; skipWs(); // the colon
    found.push([key, readValue()]);
    skipWs();
    if (text[i] === ",") i++;
  }
  return found;
}

function canonical(text) {
  const raw = new Map(members(text));
  const parts = [];
  let sig = null;
  for (const key of FIELDS) {
    if (!raw.has(key) || key === "sequence") continue;
    let value = raw.get(key);
    if (value === "null") continue;
    if (key === "v" && value === "1") continue;
    if (key === "headers") {
      const h = JSON.parse(value);
      sig = h["ac-sig"] ?? null;
      delete h["ac-sig"];
      const keys = Object.keys(h).sort();
      if (keys.length === 0) continue;
      value = `{${keys.map((k) => `${JSON.stringify(k)}:${JSON.stringify(h[k])}`).join(",")}}`;
    }
    if ((key === "created" || key === "deadline") && /^-?\d+$/.test(value)) value += ".0";
    parts.push(`${JSON.stringify(key)}:${value}`);
  }
  return { bytes: Buffer.from(`agentcomm-envelope-sig-v1\n{${parts.join(",")}}`, "utf8"), sig };
}

const spki = Buffer.concat([Buffer.from("302a300506032b6570032100", "hex"),
  Buffer.from(publicKeyB64, "base64")]);
const publicKey = createPublicKey({ key: spki, format: "der", type: "spki" });
const privateKey = createPrivateKey(readFileSync(0, "utf8")); // PKCS#8 PEM on stdin

const sub = nc.subscribe(`${ns}.a.node.*`, { queue: "node" });
await nc.flush(); // the subscription has reached the server
out({ step: "ready" });
for await (const msg of sub) {
  const text = dec.decode(msg.data);
  const env = JSON.parse(text);
  const { bytes, sig } = canonical(text);
  const valid = sig !== null && verify(null, bytes, publicKey, Buffer.from(sig, "base64"));
  const tampered = Buffer.from(bytes.toString("utf8").replace('"sender":"py"', '"sender":"px"'));
  const tamperDetected = sig !== null && !verify(null, tampered, publicKey, Buffer.from(sig, "base64"));
  const answer = {
    id: newId(), kind: "response", sender: "node", recipient: env.sender,
    correlation_id: env.id, causation_id: env.id, payload: { valid, tamperDetected },
    created: now(),
  };
  // Signing is the same rule backwards: sign the canonical bytes, add the header.
  const unsigned = JSON.stringify(answer);
  const signature = sign(null, canonical(unsigned).bytes, privateKey).toString("base64");
  msg.respond(enc.encode(JSON.stringify({ ...answer, headers: { "ac-sig": signature } })));
  out({ step: "signed", valid, tamperDetected, handler: env.handler });
  break;
}
await nc.drain();
