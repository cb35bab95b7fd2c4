"""GraphQL documents and small helpers shared by the tests (what a client would send)."""

from __future__ import annotations

from typing import Any

from tests.conftest import GraphQLClient

_ERROR_DETAILS = {
    "ValidationError": "... on ValidationError { fieldErrors { field message } }",
    "ConflictError": "... on ConflictError { field }",
    "NotFoundError": "... on NotFoundError { id }",
    "PermissionDeniedError": "",
    "AuthenticationRequiredError": "... on AuthenticationRequiredError { reason }",
}


def errors(*kinds: str) -> str:
    """__typename, the message of any Error, and the details of the error types a result can hold."""
    return " ".join(["__typename ... on Error { message }", *(_ERROR_DETAILS[kind] for kind in kinds)])


V, C, N, P, A = (
    "ValidationError",
    "ConflictError",
    "NotFoundError",
    "PermissionDeniedError",
    "AuthenticationRequiredError",
)
AUTH = "... on AuthPayload { accessToken accessTokenExpiresAt refreshToken user { id username email isSuperuser } }"

REGISTER = f"mutation ($input: RegisterInput!) {{ register(input: $input) {{ {errors(V, C)} {AUTH} }} }}"
LOGIN = f"mutation ($input: LoginInput!) {{ login(input: $input) {{ {errors(A)} {AUTH} }} }}"
REFRESH = f"mutation ($refreshToken: String!) {{ refreshToken(refreshToken: $refreshToken) {{ {errors(A)} {AUTH} }} }}"
LOGOUT = f"mutation ($input: LogoutInput!) {{ logout(input: $input) {{ {errors(A)} ... on LogoutSuccess {{ message }} }} }}"
CHANGE_PASSWORD = (
    f"mutation ($input: ChangePasswordInput!) {{ changePassword(input: $input) {{ {errors(V, A)} {AUTH} }} }}"
)
UPDATE_ME = f"""mutation ($input: UpdateMeInput!) {{ updateMe(input: $input) {{ {errors(V, C, A)}
  ... on UserPayload {{ user {{ username email }} }} }} }}"""
DELETE_ME = f"""mutation ($input: DeleteMeInput!) {{ deleteMe(input: $input) {{ {errors(V, A)}
  ... on DeleteMeSuccess {{ deletedId }} }} }}"""
ME = "{ me { id username email } }"

POST_FIELDS = "id title content datePosted author { username }"
CREATE_POST = f"""mutation ($input: CreatePostInput!) {{ createPost(input: $input) {{ {errors(V, A)}
  ... on PostPayload {{ post {{ {POST_FIELDS} }} }} }} }}"""
UPDATE_POST = f"""mutation ($id: ID!, $input: UpdatePostInput!) {{ updatePost(id: $id, input: $input) {{ {errors(V, N, P, A)}
  ... on PostPayload {{ post {{ {POST_FIELDS} }} }} }} }}"""
DELETE_POST = f"""mutation ($id: ID!) {{ deletePost(id: $id) {{ {errors(N, P, A)}
  ... on DeletePostSuccess {{ deletedId }} }} }}"""

TASK_FIELDS = "id title status createdAt owner { username }"
CREATE_TASK = f"""mutation ($input: CreateTaskInput!) {{ createTask(input: $input) {{ {errors(V, A)}
  ... on TaskPayload {{ task {{ {TASK_FIELDS} }} }} }} }}"""
UPDATE_TASK = f"""mutation ($id: ID!, $input: UpdateTaskInput!) {{ updateTask(id: $id, input: $input) {{ {errors(V, N, A)}
  ... on TaskPayload {{ task {{ {TASK_FIELDS} }} }} }} }}"""
DELETE_TASK = f"""mutation ($id: ID!) {{ deleteTask(id: $id) {{ {errors(N, A)}
  ... on DeleteTaskSuccess {{ deletedId }} }} }}"""

NOTE_FIELDS = "id body createdAt task { id title }"
ADD_NOTE = f"""mutation ($taskId: ID!, $input: AddNoteInput!) {{ addNote(taskId: $taskId, input: $input) {{ {errors(V, N, A)}
  ... on NotePayload {{ note {{ {NOTE_FIELDS} }} }} }} }}"""
UPDATE_NOTE = f"""mutation ($id: ID!, $input: UpdateNoteInput!) {{ updateNote(id: $id, input: $input) {{ {errors(V, N, A)}
  ... on NotePayload {{ note {{ {NOTE_FIELDS} }} }} }} }}"""
DELETE_NOTE = f"""mutation ($id: ID!) {{ deleteNote(id: $id) {{ {errors(N, A)}
  ... on DeleteNoteSuccess {{ deletedId }} }} }}"""

COMMENT_FIELDS = "id body createdAt author { username } post { title }"
ADD_COMMENT = f"""mutation ($postId: ID!, $input: CommentInput!) {{ addComment(postId: $postId, input: $input) {{
  {errors(V, N, P, A)} ... on CommentPayload {{ comment {{ {COMMENT_FIELDS} }} }} }} }}"""
UPDATE_COMMENT = f"""mutation ($id: ID!, $input: CommentInput!) {{ updateComment(id: $id, input: $input) {{
  {errors(V, N, P, A)} ... on CommentPayload {{ comment {{ {COMMENT_FIELDS} }} }} }} }}"""
DELETE_COMMENT = f"""mutation ($id: ID!) {{ deleteComment(id: $id) {{ {errors(N, P, A)}
  ... on DeleteCommentSuccess {{ deletedId }} }} }}"""


async def mutate(
    gql: GraphQLClient, document: str, token: str | None = None, **variables: Any
) -> dict[str, Any]:
    """The single mutation field's payload."""
    data = (await gql(document, variables, token=token))["data"]
    [payload] = data.values()
    return payload


async def register(
    gql: GraphQLClient, username: str, password: str = "correct horse battery"
) -> dict[str, Any]:
    payload = await mutate(
        gql, REGISTER, input={"username": username, "email": f"{username}@example.com", "password": password}
    )
    assert payload["__typename"] == "AuthPayload", payload
    return payload


def without_keys(answer: Any, *keys: str) -> Any:
    """The answer without these keys at any depth (ids and times two writes cannot share)."""
    if isinstance(answer, dict):
        return {key: without_keys(value, *keys) for key, value in answer.items() if key not in keys}
    if isinstance(answer, list):
        return [without_keys(item, *keys) for item in answer]
    return answer
