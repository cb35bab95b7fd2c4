// Starts GraphiQL on the page web/graphiql.py serves. Requests go to the page's own /graphql;
// subscriptions over WebSocket carry the Authorization header typed into the Headers tab as the
// connection_init payload, which is where the server reads it (a browser WebSocket has no headers).
(function () {
  const endpoint = new URL("/graphql", window.location.href);
  const socket = new URL(endpoint);
  socket.protocol = endpoint.protocol === "https:" ? "wss:" : "ws:";

  const fetchers = new Map(); // one per Authorization value, so each opens its own WebSocket

  function fetcherFor(authorization) {
    if (!fetchers.has(authorization)) {
      fetchers.set(
        authorization,
        GraphiQL.createFetcher({
          url: endpoint.toString(),
          subscriptionUrl: socket.toString(),
          wsConnectionParams: authorization ? { authorization: authorization } : {},
        }),
      );
    }
    return fetchers.get(authorization);
  }

  function fetcher(params, options) {
    const headers = (options && options.headers) || {};
    const name = Object.keys(headers).find((key) => key.toLowerCase() === "authorization");
    return fetcherFor(name ? headers[name] : "")(params, options);
  }

  // The first tab a newcomer sees: one of each kind of operation, in the order to run them.
  const defaultQuery = `# Welcome to Quill. Put the cursor in an
# operation, press Ctrl-Enter (or pick it with ▶).
# The Explorer (the folder icon, left) builds
# queries by ticking fields.
#
# 1. Feed needs no login.
# 2. Login returns an accessToken (demo users of
#    \`make run\` share the password "demo-password";
#    or register your own). Put it into Headers:
#      {"Authorization": "Bearer <accessToken>"}
# 3. MyTaskChanges hears your tasks change (over a
#    WebSocket); run AddTask in another tab.

query Feed {
  posts(first: 5, orderBy: {field: DATE_POSTED, direction: DESC}) {
    edges { node { id title datePosted author { username } } }
    pageInfo { hasNextPage endCursor }
  }
}

mutation Login {
  login(input: {usernameOrEmail: "ada", password: "demo-password"}) {
    __typename
    ... on AuthPayload { accessToken user { username } }
    ... on Error { message }
  }
}

subscription MyTaskChanges {
  taskChanged { kind task { title status } }
}

mutation AddTask {
  createTask(input: {title: "Try Quill"}) {
    __typename
    ... on TaskPayload { task { id title status } }
    ... on Error { message }
  }
}
`;

  const root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: defaultQuery,
      defaultHeaders: '{"Authorization": ""}',
      plugins: [GraphiQLPluginExplorer.explorerPlugin()],
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: true,
      defaultEditorToolsVisibility: true,
    }),
  );
})();
