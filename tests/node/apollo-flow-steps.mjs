// The frontend session of tests/test_node_clients.py, written once for every Apollo Client major
// it runs under: apollo-flow.mjs (3.x) and apollo4/flow.mjs (4.x) pass their own modules in.
// Prints one JSON object with what it saw; the Python test asserts on it.
import { createHash } from "node:crypto";
import { createClient } from "graphql-ws";
import WebSocket from "ws";

export async function flow(apollo, base) {
  const {
    ApolloClient, InMemoryCache, HttpLink, gql, split, setContext, createPersistedQueryLink,
    GraphQLWsLink, relayStylePagination, getMainDefinition,
  } = apollo;
  const REGISTER = gql`
    mutation Register($input: RegisterInput!) {
      register(input: $input) {
        __typename
        ... on AuthPayload { accessToken user { id username } }
        ... on ValidationError { fieldErrors { field message } }
        ... on ConflictError { field message }
      }
    }
  `;
  const LOGIN = gql`
    mutation Login($input: LoginInput!) {
      login(input: $input) {
        __typename
        ... on AuthPayload { accessToken refreshToken user { id username } }
        ... on AuthenticationRequiredError { message }
      }
    }
  `;
  const CREATE_POST = gql`
    mutation CreatePost($input: CreatePostInput!) {
      createPost(input: $input) {
        __typename
        ... on PostPayload { post { id title } }
        ... on ValidationError { fieldErrors { field message } }
      }
    }
  `;
  const UPDATE_POST = gql`
    mutation RenamePost($id: ID!, $title: String!) {
      updatePost(id: $id, input: { title: $title }) {
        __typename
        ... on PostPayload { post { id title } }
      }
    }
  `;
  const FEED = gql`
    query Feed($first: Int!, $after: String) {
      posts(first: $first, after: $after, orderBy: { field: ID, direction: ASC }) {
        edges { cursor node { id title author { id username } } }
        pageInfo { hasNextPage endCursor }
      }
    }
  `;
  const POST_CREATED = gql`
    subscription PostCreated {
      postCreated { id title author { username } }
    }
  `;

  let token = null;
  const auth = setContext((_, { headers }) => ({
    headers: { ...headers, ...(token ? { authorization: `Bearer ${token}` } : {}) },
  }));
  const http = new HttpLink({ uri: `${base}/graphql`, fetch });
  const ws = createClient({
    url: `${base.replace("http", "ws")}/graphql`,
    webSocketImpl: WebSocket,
    connectionParams: () => (token ? { authorization: `Bearer ${token}` } : {}),
    lazy: true,
  });
  const link = split(
    ({ query }) => getMainDefinition(query).operation === "subscription",
    new GraphQLWsLink(ws),
    auth.concat(http),
  );
  const cache = new InMemoryCache({ typePolicies: { Query: { fields: { posts: relayStylePagination() } } } });
  const client = new ApolloClient({ link, cache });

  const seen = {};
  const registered = await client.mutate({
    mutation: REGISTER,
    variables: { input: { username: "apollo", email: "apollo@example.com", password: "correct horse battery" } },
  });
  seen.register = registered.data.register.__typename;
  const taken = await client.mutate({
    mutation: REGISTER,
    variables: { input: { username: "apollo", email: "other@example.com", password: "correct horse battery" } },
  });
  seen.registerAgain = taken.data.register;

  const login = await client.mutate({
    mutation: LOGIN,
    variables: { input: { usernameOrEmail: "apollo", password: "correct horse battery" } },
  });
  token = login.data.login.accessToken;
  seen.login = login.data.login.__typename;

  // A subscriber (over graphql-ws, with the token in connection_init) sees the next post created.
  const event = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no postCreated event within 10 s")), 10000);
    const subscription = client.subscribe({ query: POST_CREATED }).subscribe({
      next: ({ data }) => {
        clearTimeout(timer);
        subscription.unsubscribe();
        resolve(data.postCreated);
      },
      error: reject,
    });
  });
  await new Promise((resolve) => setTimeout(resolve, 500)); // the subscription reaches the server

  const created = [];
  for (const title of ["First", "Second", "Third", "Fourth", "Fifth"]) {
    const result = await client.mutate({ mutation: CREATE_POST, variables: { input: { title, content: "..." } } });
    created.push(result.data.createPost.post);
  }
  seen.subscription = await event;
  const invalid = await client.mutate({ mutation: CREATE_POST, variables: { input: { title: "", content: "x" } } });
  seen.invalidPost = invalid.data.createPost;

  // Page 1, then fetchMore: the relayStylePagination policy merges the pages in the cache.
  const feed = client.watchQuery({ query: FEED, variables: { first: 2 } });
  let page = await new Promise((resolve, reject) => {
    feed.subscribe({ next: (result) => result.loading || resolve(result), error: reject });
  });
  seen.firstPage = page.data.posts.edges.map((edge) => edge.node.title);
  while (page.data.posts.pageInfo.hasNextPage) {
    page = await feed.fetchMore({ variables: { after: page.data.posts.pageInfo.endCursor } });
  }
  const merged = client.readQuery({ query: FEED, variables: { first: 2 } });
  seen.allPages = merged.posts.edges.map((edge) => edge.node.title);

  // Normalisation: one Post object per id; a mutation's payload updates the list without a refetch.
  seen.cacheKey = cache.identify({ __typename: "Post", id: created[0].id });
  await client.mutate({ mutation: UPDATE_POST, variables: { id: created[0].id, title: "First, renamed" } });
  seen.afterRename = client.readQuery({ query: FEED, variables: { first: 2 } }).posts.edges[0].node.title;
  seen.authorsInCache = Object.keys(cache.extract()).filter((key) => key.startsWith("User:")).length;

  // APQ: a second client sends hashes first, over GET, as a CDN-friendly app would.
  const sha256 = (text) => createHash("sha256").update(text).digest("hex");
  const requests = [];
  const recordingFetch = (uri, options) => {
    requests.push({ method: options.method, hasQuery: String(options.body ?? uri).includes("query=") || String(options.body ?? "").includes('"query"') });
    return fetch(uri, options);
  };
  const persisted = new ApolloClient({
    link: createPersistedQueryLink({ sha256, useGETForHashedQueries: true }).concat(
      new HttpLink({ uri: `${base}/graphql`, fetch: recordingFetch }),
    ),
    cache: new InMemoryCache(),
  });
  const viaHash = await persisted.query({ query: FEED, variables: { first: 5 }, fetchPolicy: "network-only" });
  const again = await persisted.query({ query: FEED, variables: { first: 5 }, fetchPolicy: "network-only" });
  seen.apq = {
    titles: viaHash.data.posts.edges.map((edge) => edge.node.title),
    same: JSON.stringify(again.data) === JSON.stringify(viaHash.data),
    requests,
  };

  await ws.dispose();
  client.stop();
  persisted.stop();
  console.log(JSON.stringify(seen));
}
