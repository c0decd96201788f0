import { isIP } from "node:net";
import { createSecureContext } from "node:tls";
import { Agent, buildConnector, type Dispatcher } from "undici";
import { formatAuthority, type UpstreamRequest, type UpstreamResponse } from "./client.js";
import type { Dialer } from "./dialer.js";
import { finishPausedParserOnEnd } from "./paused-parser-fix.js";
import { withQuietBody } from "../util/quiet-body.js";
import { classifyUpstreamError, UpstreamError } from "./upstream-error.js";

export interface UpstreamTimeouts {
  connect: number;
  headers: number;
  body: number;
}

/**
 * Large reads through Node TLS measured at twice the throughput of the 64 KiB
 * default, and blobs are hundreds of megabytes.
 */
const BODY_HIGH_WATER_MARK = 1024 * 1024;

/**
 * The innermost Send: one keep-alive pool per origin (undici Agent), TLS verified against the
 * given CAs, connecting wherever the Dialer says while verifying the requested name.
 */
export class UpstreamTransport {
  private readonly agent: Agent;

  constructor(
    private readonly dialer: Dialer,
    trustedCas: string[],
    private readonly timeouts: UpstreamTimeouts,
  ) {
    // One context for all connections: built from ~300 CAs it costs ~100 ms of CPU, which undici
    // would otherwise spend again on every new upstream connection (given `ca`, tls.connect builds one).
    const secureContext = createSecureContext({ ca: trustedCas });
    const tlsConnect = buildConnector({ secureContext, timeout: timeouts.connect, rejectUnauthorized: true });
    this.agent = new Agent({
      keepAliveTimeout: 30_000,
      connections: 64,
      connect: (options, callback) => {
        const requested = options.hostname;
        const port = Number(options.port) || 443;
        this.dialer.target(requested, port).then(
          (target) =>
            tlsConnect(
              {
                ...options,
                hostname: target.address,
                port: String(target.port),
                servername: isIP(requested) ? undefined : requested,
              } as buildConnector.Options,
              (...args) => {
                if (args[1]) finishPausedParserOnEnd(args[1]);
                callback(...args);
              },
            ),
          (err: unknown) => callback(err as Error, null),
        );
      },
    });
  }

  readonly send = async (req: UpstreamRequest): Promise<UpstreamResponse> => {
    try {
      return withQuietBody(
        await this.agent.request({
          origin: `https://${formatAuthority(req.host, req.port)}`,
          path: req.path,
          method: req.method as Dispatcher.HttpMethod,
          headers: req.headers,
          body: req.body ?? null,
          signal: req.signal,
          headersTimeout: this.timeouts.headers,
          bodyTimeout: this.timeouts.body,
          highWaterMark: BODY_HIGH_WATER_MARK,
          // undici closes the connection after every HEAD unless told otherwise (nodejs/undici#258:
          // servers that send a body anyway), so each tag revalidation and access check cost a new
          // TCP and TLS handshake with the registry. Registries answer HEAD as HTTP says; Go's
          // client (containerd, Docker) keeps those connections too.
          reset: req.method === "HEAD" ? false : undefined,
        }),
      );
    } catch (err) {
      throw req.clientAborted?.() ? new UpstreamError("request", req.host, "the client went away while sending its request", { cause: err }) : classifyUpstreamError(err, req.host);
    }
  };

  /** Aborts whatever is still in flight: called after the shutdown grace period, when waiting is over. */
  async destroy(): Promise<void> {
    await this.agent.destroy();
  }
}
