// Compiles only if the generated types describe what the Apollo flow receives (tsc --strict).
import type { FeedQuery, CreatePostMutation, PostCreatedSubscription } from "./generated/graphql";

export function titles(feed: FeedQuery): string[] {
  return feed.posts.edges.map((edge) => edge.node.title);
}

export function createdId(result: CreatePostMutation): string | null {
  const payload = result.createPost;
  return payload.__typename === "PostPayload" ? payload.post.id : null;
}

export function fieldErrors(result: CreatePostMutation): string[] {
  const payload = result.createPost;
  return payload.__typename === "ValidationError" ? payload.fieldErrors.map((error) => error.field) : [];
}

export function author(event: PostCreatedSubscription): string {
  return event.postCreated.author.username;
}
