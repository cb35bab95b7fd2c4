// The session of ../apollo-flow.mjs under Apollo Client 4 (the current major), from this folder's
// own packages: Apollo Client 4 imports itself by name, so it cannot share node_modules with 3.
import { ApolloClient, InMemoryCache, HttpLink, gql, split } from "@apollo/client";
import { setContext } from "@apollo/client/link/context";
import { createPersistedQueryLink } from "@apollo/client/link/persisted-queries";
import { GraphQLWsLink } from "@apollo/client/link/subscriptions";
import { relayStylePagination, getMainDefinition } from "@apollo/client/utilities";
import { flow } from "../apollo-flow-steps.mjs";

await flow(
  { ApolloClient, InMemoryCache, HttpLink, gql, split, setContext, createPersistedQueryLink,
    GraphQLWsLink, relayStylePagination, getMainDefinition },
  process.argv[2],
);
