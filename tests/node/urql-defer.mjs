// @defer through urql (@urql/core) over HTTP multipart/mixed: urql merges the parts by their
// pending ids. Usage: node urql-defer.mjs <base url>. Prints one JSON line.
import { Client, fetchExchange, gql } from "@urql/core";

const base = process.argv[2];

async function post(query, variables, token) {
  const response = await fetch(`${base}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  return (await response.json()).data;
}

const registered = await post(
  `mutation ($input: RegisterInput!) { register(input: $input) { ... on AuthPayload { accessToken } } }`,
  { input: { username: "urql", email: "urql@example.com", password: "x".repeat(12) } },
);
const token = registered.register.accessToken;
for (const title of ["One", "Two", "Three"]) {
  await post(`mutation ($t: String!) { createPost(input: { title: $t, content: "c" }) { __typename } }`, { t: title }, token);
}

const client = new Client({ url: `${base}/graphql`, exchanges: [fetchExchange], preferGetMethod: false });
const DEFERRED = gql`
  query Deferred { posts(first: 3) { edges { node { id title ... @defer { author { username } } } } } }
`;
// Every result urql emits for a query, until the last part (hasNext false).
function results(query) {
  const seen = [];
  return new Promise((resolve, reject) => {
    const { unsubscribe } = client.query(query, {}, { requestPolicy: "network-only" }).subscribe((result) => {
      if (result.error) return reject(result.error);
      seen.push(result);
      if (!result.hasNext) {
        resolve(seen);
        setTimeout(() => unsubscribe(), 100); // once urql has read the response to its end
      }
    });
  });
}

const deferred = (await results(DEFERRED)).map((result) => ({
  authors: result.data.posts.edges.map((e) => e.node.author?.username ?? null),
  hasNext: result.hasNext,
}));
// Not @stream: urql 6.0.3 merges a stream's items of this format at index 0 of the list's parent
// (it expects the older format's path, which ended at the item's index); Apollo Client 4 reads them.
console.log(JSON.stringify({ deferred }));
