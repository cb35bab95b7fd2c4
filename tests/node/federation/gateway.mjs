// A supergraph of two subgraphs behind a real Apollo gateway (tests/test_federation.py):
// Quill at QUILL_URL (FEDERATION=1), and "karma", a small subgraph started here that extends
// Quill's User entity with `karma` and names some users of its own (`featuredAuthors`). The
// gateway composes them from their `_service { sdl }` (IntrospectAndCompose) and forwards the
// client's Authorization header to the subgraphs. Prints "gateway <url>" once it serves; runs
// until it is stopped.
import { ApolloGateway, IntrospectAndCompose, RemoteGraphQLDataSource } from "@apollo/gateway";
import { ApolloServer } from "@apollo/server";
import { startStandaloneServer } from "@apollo/server/standalone";
import { buildSubgraphSchema } from "@apollo/subgraph";
import { parse } from "graphql";

const quillUrl = process.env.QUILL_URL;
const featured = JSON.parse(process.env.FEATURED_IDS ?? "[]");

// A user's karma: ten times the number in its global ID ("User:3" -> 30), so a test can check it.
const karmaOf = (id) => 10 * Number(Buffer.from(id, "base64").toString().split(":")[1]);

const karma = new ApolloServer({
  schema: buildSubgraphSchema([{
    typeDefs: parse(`
      extend schema @link(url: "https://specs.apollo.dev/federation/v2.3", import: ["@key"])
      type User @key(fields: "id") {
        id: ID!
        karma: Int!
      }
      type Query {
        featuredAuthors: [User!]!
      }
    `),
    resolvers: {
      Query: { featuredAuthors: () => featured.map((id) => ({ id })) },
      User: {
        __resolveReference: (reference) => ({ id: reference.id }),
        karma: (user) => karmaOf(user.id),
      },
    },
  }]),
});
const { url: karmaUrl } = await startStandaloneServer(karma, { listen: { host: "127.0.0.1", port: 0 } });

class Forwarding extends RemoteGraphQLDataSource {
  willSendRequest({ request, context }) {
    if (context.authorization) request.http.headers.set("authorization", context.authorization);
  }
}

const gateway = new ApolloGateway({
  supergraphSdl: new IntrospectAndCompose({
    subgraphs: [
      { name: "quill", url: quillUrl },
      { name: "karma", url: karmaUrl },
    ],
  }),
  buildService: ({ url }) => new Forwarding({ url }),
});
const server = new ApolloServer({ gateway });
const { url } = await startStandaloneServer(server, {
  listen: { host: "127.0.0.1", port: Number(process.env.GATEWAY_PORT ?? 0) },
  context: async ({ req }) => ({ authorization: req.headers.authorization }),
});
console.log(`gateway ${url}`);
