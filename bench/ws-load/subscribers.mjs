// The load client of bench/subscriptions.py: holds COUNT graphql-transport-ws subscribers of one
// subscription, prints READY once every one is subscribed, and when its stdin closes prints each
// subscriber's arrival times (a JSON list of lists of seconds since the epoch) and exits.
//
// Node and `ws` rather than Python: the client shares the machine's cores with the server, and
// whatever it spends reading frames is inside the latencies measured; `ws` reads a frame for a
// small part of what Python's `websockets` needs.
//
//     node subscribers.mjs http://127.0.0.1:8000 5000 'subscription { postCreated { id } }'
import WebSocket from "ws";

const [url, countText, query] = process.argv.slice(2);
const count = Number(countText);
const arrivals = Array.from({ length: count }, () => []);
const sockets = [];
const now = () => (performance.timeOrigin + performance.now()) / 1000;

function subscribe(index) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${url.replace("http", "ws")}/graphql`, "graphql-transport-ws", {
      perMessageDeflate: false,
      handshakeTimeout: 60_000,
    });
    let acknowledged = false;
    ws.on("open", () => ws.send(JSON.stringify({ type: "connection_init" })));
    ws.on("message", () => {
      if (acknowledged) {
        arrivals[index].push(now());
        return;
      }
      acknowledged = true; // the first message is connection_ack
      ws.send(JSON.stringify({ id: "1", type: "subscribe", payload: { query } }));
      resolve();
    });
    ws.on("error", reject);
    ws.on("close", (code) => {
      if (!acknowledged) reject(new Error(`closed before connection_ack: ${code}`));
    });
    sockets.push(ws);
  });
}

// At most 100 handshakes at a time, as a crowd of browsers reconnecting would come.
let next = 0;
async function opener() {
  while (next < count) await subscribe(next++);
}
await Promise.all(Array.from({ length: Math.min(100, count) }, opener));
process.stdout.write("READY\n");

process.stdin.resume();
process.stdin.on("end", () => {
  for (const ws of sockets) ws.terminate();
  process.stdout.write(`${JSON.stringify(arrivals)}\n`, () => process.exit(0));
});
