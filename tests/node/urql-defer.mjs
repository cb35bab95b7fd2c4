// @defer through urql (@urql/core) over HTTP multipart/mixed: urql merges the parts by their
// pending ids. Usage: node urql-defer.mjs <base url>. Prints one JSON line.
import { Client, fetchExchange, gql } from "@urql/core";
import { authorWithThreePosts } from "./blog-setup.mjs";

const base = process.argv[2];

await authorWithThreePosts(base, "urql");

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
