// The graphql-sse client (npm) against a running server (tests/test_node_clients.py), in both of
// the protocol's modes: distinct connections (a stream per operation) and single connection (one
// reserved stream carrying every operation). Prints what it saw as one JSON line.
import { createClient } from "graphql-sse";

const base = process.argv[2];
const url = `${base}/graphql`;

async function post(query, variables, token) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  return (await response.json()).data;
}

const REGISTER = `mutation ($input: RegisterInput!) { register(input: $input) {
  __typename ... on AuthPayload { accessToken } } }`;
const CREATE_TASK = `mutation ($title: String!) { createTask(input: { title: $title }) { __typename } }`;
const TASK_CHANGED = "subscription { taskChanged { kind task { title } } }";
const POST_CREATED = "subscription { postCreated { title } }";

async function register(username) {
  const data = await post(REGISTER, { input: { username, email: `${username}@example.com`, password: "x".repeat(12) } });
  return data.register.accessToken;
}

// The first `count` results of a subscription, then it is stopped (the client's `return()`).
async function firstResults(client, query, count, whileSubscribed) {
  const results = [];
  const iterator = client.iterate({ query })[Symbol.asyncIterator]();
  const pending = iterator.next();
  await new Promise((resolve) => setTimeout(resolve, 300)); // admitted and subscribed by then
  await whileSubscribed();
  let next = await pending;
  while (!next.done) {
    results.push(next.value);
    if (results.length === count) break;
    next = await iterator.next();
  }
  await iterator.return?.();
  return results;
}

async function once(client, query) {
  for await (const result of client.iterate({ query })) return result;
}

async function mode(singleConnection, username) {
  const token = await register(username);
  const client = createClient({
    url,
    singleConnection,
    retryAttempts: 0,
    headers: () => ({ authorization: `Bearer ${token}` }),
  });
  try {
    const me = await once(client, "{ me { username } }");
    const changes = await firstResults(client, TASK_CHANGED, 2, async () => {
      await post(CREATE_TASK, { title: `${username} one` }, token);
      await post(CREATE_TASK, { title: `${username} two` }, token);
    });
    // Two subscriptions at once: on one stream in single connection mode.
    const [tasks, posts] = await Promise.all([
      firstResults(client, TASK_CHANGED, 1, () => post(CREATE_TASK, { title: `${username} three` }, token)),
      firstResults(client, POST_CREATED, 1, () =>
        post(`mutation { createPost(input: { title: "${username} post", content: "c" }) { __typename } }`, {}, token),
      ),
    ]);
    // Distinct connections: the errors arrive as a result; single connection: the POST is refused.
    const invalid = await once(client, "{ nope }").catch((error) => ({ status: error.response?.status }));
    return {
      me: me.data.me.username,
      changes: changes.map((r) => r.data.taskChanged.task.title),
      together: [tasks[0].data.taskChanged.task.title, posts[0].data.postCreated.title],
      invalid: invalid.errors?.[0]?.extensions?.code ?? invalid.status ?? null,
    };
  } finally {
    client.dispose();
  }
}

async function badToken() {
  const client = createClient({ url, retryAttempts: 0, headers: { authorization: "Bearer not-a-token" } });
  try {
    const result = await once(client, "{ me { username } }");
    return result.errors[0].extensions.code;
  } finally {
    client.dispose();
  }
}

const seen = {
  distinct: await mode(false, "sse_distinct"),
  single: await mode(true, "sse_single"),
  badToken: await badToken(),
};
console.log(JSON.stringify(seen));
