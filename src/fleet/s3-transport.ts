import { buildQueryString } from "@smithy/core/protocols";
import { NodeHttpHandler } from "@smithy/node-http-handler";
import { Agent, type Dispatcher } from "undici";
import { withQuietBody } from "../util/quiet-body.js";

export interface TransportTimeouts {
  connectMs: number;
  /** The longest a request may go without a byte moving, before and after the answer began. */
  idleMs: number;
}

type NodeHandle = NodeHttpHandler["handle"];

/** undici's codes for what node:http reports as these. */
const BLIPS: Record<string, string> = {
  UND_ERR_CONNECT_TIMEOUT: "ETIMEDOUT",
  UND_ERR_HEADERS_TIMEOUT: "ETIMEDOUT",
  UND_ERR_BODY_TIMEOUT: "ETIMEDOUT",
  UND_ERR_SOCKET: "ECONNRESET",
};
type SdkRequest = Parameters<NodeHandle>[0];

/**
 * The S3 client's transport: reads (GET, HEAD) over undici, everything else over the SDK's own
 * node:http handler. A read from the object store is a whole fill's body, and node:http's client
 * spends about 1 CPU-s per GB more than undici to parse and hand it on (bench/fill-cpu.ts: first
 * read from the object store). Writes stay on node:http, whose socket timeout also bounds a body
 * the store stops reading; undici's timeouts start only once a request is sent.
 */
export class S3Transport {
  readonly metadata = { handlerProtocol: "http/1.1" };
  private readonly writes: NodeHttpHandler;
  private readonly agent: Agent;

  constructor(timeouts: TransportTimeouts) {
    this.writes = new NodeHttpHandler({ connectionTimeout: timeouts.connectMs, socketTimeout: timeouts.idleMs });
    // As many connections to the store as the SDK's node:http agent allows (50).
    this.agent = new Agent({ connections: 50, connect: { timeout: timeouts.connectMs }, headersTimeout: timeouts.idleMs, bodyTimeout: timeouts.idleMs });
  }

  async handle(request: SdkRequest, options: Parameters<NodeHandle>[1] = {}): ReturnType<NodeHandle> {
    if (request.method !== "GET" && request.method !== "HEAD") return this.writes.handle(request, options);
    // As the SDK's own handler writes it, which is what SigV4 signed.
    const query = request.query ? buildQueryString(request.query) : "";
    const answer = await this.read({
      origin: `${request.protocol}//${request.hostname}${request.port ? `:${request.port}` : ""}`,
      path: query ? `${request.path}?${query}` : request.path,
      method: request.method,
      headers: request.headers,
      // The SDK's type for it is the DOM's; what S3ObjectStore passes is Node's.
      signal: options.abortSignal as AbortSignal | undefined,
      highWaterMark: 1024 * 1024,
      // undici closes a connection after a HEAD unless told not to (nodejs/undici#258, servers that
      // answer a HEAD with a body): an object store answers them as HTTP says, and a HEAD per miss
      // would otherwise open a connection (and a TLS session) each.
      reset: false,
    });
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(answer.headers)) if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(", ") : value;
    return { response: { statusCode: answer.statusCode, headers, body: answer.body } as Awaited<ReturnType<NodeHandle>>["response"] };
  }

  /**
   * The SDK retries a request once (S3ObjectStore's MAX_ATTEMPTS) when node:http reports a blip
   * as ETIMEDOUT or ECONNRESET; undici names the same failures its own way, so they are renamed.
   * The SDK reads a listing's or an error document's body whole within its attempt, so a blip
   * while a body flows is renamed too (the body's reader sees the same error object, renamed).
   */
  private async read(options: Dispatcher.RequestOptions): Promise<Dispatcher.ResponseData> {
    try {
      const answer = withQuietBody(await this.agent.request(options));
      answer.body.on("error", renameBlip);
      return answer;
    } catch (err) {
      renameBlip(err as Error);
      throw err;
    }
  }

  updateHttpClientConfig(...args: Parameters<NodeHttpHandler["updateHttpClientConfig"]>): void {
    this.writes.updateHttpClientConfig(...args);
  }

  httpHandlerConfigs(): ReturnType<NodeHttpHandler["httpHandlerConfigs"]> {
    return this.writes.httpHandlerConfigs();
  }

  destroy(): void {
    this.writes.destroy();
    void this.agent.destroy();
  }
}

function renameBlip(err: Error & { code?: string }): void {
  const code = BLIPS[err.code ?? ""];
  if (code) err.code = code;
}
