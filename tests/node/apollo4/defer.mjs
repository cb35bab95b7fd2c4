// @defer and @stream through Apollo Client 4 over HTTP (multipart/mixed), read with its
// GraphQL17Alpha9Handler (the format graphql-core 3.3 sends). Usage: node defer.mjs <base url>.
// Prints one JSON line: each result Apollo emitted for the deferred query, and the streamed list.
import { ApolloClient, InMemoryCache, HttpLink, gql } from "@apollo/client";
import { GraphQL17Alpha9Handler } from "@apollo/client/incremental";
import { authorWithThreePosts } from "../blog-setup.mjs";

const base = process.argv[2];

await authorWithThreePosts(base, "deferrer");

const client = new ApolloClient({
  link: new HttpLink({ uri: `${base}/graphql` }),
  cache: new InMemoryCache(),
  incrementalHandler: new GraphQL17Alpha9Handler(),
});

const DEFERRED = gql`
  query Deferred {
    posts(first: 3) {
      edges { node { id title ... @defer { author { id username } } } }
    }
  }
`;
const seen = [];
await new Promise((resolve, reject) => {
  const subscription = client.watchQuery({ query: DEFERRED, fetchPolicy: "network-only" }).subscribe({
    next(result) {
      if (!result.data) return;
      const edges = result.data.posts.edges;
      seen.push({ authors: edges.map((e) => e.node.author?.username ?? null), titles: edges.map((e) => e.node.title) });
      if (edges.every((e) => e.node.author)) {
        subscription.unsubscribe();
        resolve();
      }
    },
    error: reject,
  });
});

const STREAMED = gql`
  query Streamed {
    posts(first: 3) { edges @stream(initialCount: 1) { node { id title } } }
  }
`;
const streamed = await client.query({ query: STREAMED, fetchPolicy: "network-only" });
console.log(JSON.stringify({ deferred: seen, streamed: streamed.data.posts.edges.map((e) => e.node.title) }));
