// A frontend's session with Apollo Client 3 against a running server (tests/test_node_clients.py):
// register, log in, create posts, page with fetchMore, see the cache normalise by id and
// __typename, subscribe over graphql-ws, and send a persisted query by hash (APQ, GET); the
// steps are apollo-flow-steps.mjs, which apollo4/flow.mjs runs under Apollo Client 4.
// The gql documents there are also what graphql-codegen generates types from (codegen.yml).
import { ApolloClient, InMemoryCache, HttpLink, gql, split } from "@apollo/client/core/index.js";
import { setContext } from "@apollo/client/link/context/index.js";
import { createPersistedQueryLink } from "@apollo/client/link/persisted-queries/index.js";
import { GraphQLWsLink } from "@apollo/client/link/subscriptions/index.js";
import { relayStylePagination, getMainDefinition } from "@apollo/client/utilities/index.js";
import { flow } from "./apollo-flow-steps.mjs";

await flow(
  { ApolloClient, InMemoryCache, HttpLink, gql, split, setContext, createPersistedQueryLink,
    GraphQLWsLink, relayStylePagination, getMainDefinition },
  process.argv[2],
);
