// What the @defer client scripts (apollo4/defer.mjs, urql-defer.mjs) start from: a new account
// and three posts of its own ("One", "Two", "Three"), made over plain HTTP.
export async function post(base, query, variables, token) {
  const response = await fetch(`${base}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query, variables }),
  });
  return (await response.json()).data;
}

export async function authorWithThreePosts(base, username) {
  const registered = await post(
    base,
    `mutation ($input: RegisterInput!) { register(input: $input) { ... on AuthPayload { accessToken } } }`,
    { input: { username, email: `${username}@example.com`, password: "x".repeat(12) } },
  );
  const token = registered.register.accessToken;
  for (const title of ["One", "Two", "Three"]) {
    await post(base, `mutation ($t: String!) { createPost(input: { title: $t, content: "c" }) { __typename } }`, { t: title }, token);
  }
  return token;
}
