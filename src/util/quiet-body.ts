import type { Dispatcher } from "undici";

/**
 * undici's body emits an error when it is destroyed before its end, with or without a reason
 * (RequestAbortedError); a body given up unread (a refused fill, a manifest over the limit, a
 * client gone) has nobody listening, and an error nobody listens for ends the process. Whoever
 * reads the body still sees its errors: this listener only keeps an unread one from escaping.
 */
export function withQuietBody(response: Dispatcher.ResponseData): Dispatcher.ResponseData {
  response.body.on("error", ignore);
  return response;
}

function ignore(): void {}
