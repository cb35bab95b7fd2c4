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

  const defaultQuery = `# Ctrl-Enter runs the query. To see your tasks and use subscriptions,
# log in (the login mutation) and put this into Headers below:
# {"Authorization": "Bearer <accessToken>"}
query Feed {
  posts(first: 5, orderBy: {field: DATE_POSTED, direction: DESC}) {
    edges { node { id title datePosted author { username } } }
    pageInfo { hasNextPage endCursor }
  }
}
`;

  const root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: defaultQuery,
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: true,
      defaultEditorToolsVisibility: true,
    }),
  );
})();
