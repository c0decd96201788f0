import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import { createSecureContext } from "node:tls";
import type { Readable } from "node:stream";
import { Agent, buildConnector, type Dispatcher } from "undici";
import { checkDialAddress } from "./address-policy.js";
import type { ResolveMap } from "./resolve-map.js";
import type { UpstreamHealth } from "./health.js";
import type { ProxyCredentials } from "./proxy-credentials.js";
import { finishPausedParserOnEnd } from "./paused-parser-fix.js";
import { classifyUpstreamError, isUnavailableStatus, isUpstreamFault, UpstreamError } from "./upstream-error.js";

export interface UpstreamTimeouts {
  connect: number;
  headers: number;
  body: number;
}

export interface UpstreamRequest {
  host: string;
  port: number;
  method: string;
  path: string;
  headers: Record<string, string | string[]>;
  body?: Readable | null;
  signal?: AbortSignal;
  /** Never add proxy-held credentials (public-access probes must be truly anonymous). */
  anonymous?: boolean;
  /** Whether the client that sends `body` went away: a failure then is the client's, not the registry's. */
  clientAborted?: () => boolean;
}

export type UpstreamResponse = Dispatcher.ResponseData;

/**
 * Large reads through Node TLS measured at twice the throughput of the 64 KiB
 * default, and blobs are hundreds of megabytes.
 */
const BODY_HIGH_WATER_MARK = 1024 * 1024;

export interface DialTarget {
  address: string;
  port: number;
}

/**
 * Decides where a host:port is dialled: a --resolve rule, or DNS. The resolved
 * address, not the name, is checked against the address policy, so a name that
 * resolves to the metadata endpoint is refused however it is spelled (no DNS-rebinding bypass).
 */
export class Dialer {
  constructor(
    private readonly resolveMap: ResolveMap,
    private readonly denyPrivate: boolean,
  ) {}

  async target(host: string, port: number): Promise<DialTarget> {
    const mapped = this.resolveMap.lookup(host, port);
    if (mapped) return { address: mapped.host, port: mapped.port };
    const address = isIP(host) ? host : (await lookup(host)).address;
    const verdict = checkDialAddress(address, this.denyPrivate);
    if (!verdict.allowed) throw new UpstreamError("refused-address", host, verdict.reason);
    return { address, port };
  }
}

/**
 * One keep-alive pool per origin (undici Agent), TLS verified against the given
 * CAs, connecting wherever the Dialer says while verifying the requested name.
 */
export class UpstreamClient {
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

  /** Set once at wiring time; the client reports every outcome to it and fails fast while a host is down. */
  health: UpstreamHealth | undefined;
  /** Set once at wiring time when --credentials is given. */
  credentials: ProxyCredentials | undefined;
  /** Told of every upstream exchange (metrics). */
  observer: ((host: string, status: number | undefined, failure: string | undefined) => void) | undefined;

  async request(req: UpstreamRequest): Promise<UpstreamResponse> {
    const authority = formatAuthority(req.host, req.port);
    if (this.health?.isDown(authority)) {
      const rateLimited = this.health.isRateLimited(authority);
      throw new UpstreamError("circuit-open", req.host, `marked down after repeated ${rateLimited ? "429 answers" : "failures"}; waiting for the background probe`, { rateLimited });
    }
    let response: UpstreamResponse;
    try {
      response = this.credentials?.appliesTo(req) ? await this.credentials.send(req, (r) => this.send(r)) : await this.send(req);
    } catch (err) {
      const failure = req.clientAborted?.() ? new UpstreamError("request", req.host, "the client went away while sending its request", { cause: err }) : classifyUpstreamError(err, req.host);
      if (isUpstreamFault(failure.failure)) this.health?.recordFailure(authority, failure.message);
      this.observer?.(req.host, undefined, failure.failure);
      throw failure;
    }
    this.observer?.(req.host, response.statusCode, undefined);
    if (isUnavailableStatus(response.statusCode)) this.health?.recordFailure(authority, `HTTP ${response.statusCode}`, response.statusCode);
    else this.health?.recordSuccess(authority);
    return response;
  }

  /** Background health probe: any answer below 500 to GET /v2/ means the registry is back. */
  async probe(authority: string): Promise<boolean> {
    const response = await this.send({ ...parseAuthority(authority), method: "GET", path: "/v2/", headers: {} });
    await response.body.dump();
    return response.statusCode < 500;
  }

  private async send(req: UpstreamRequest): Promise<UpstreamResponse> {
    try {
      return await this.agent.request({
        origin: `https://${formatAuthority(req.host, req.port)}`,
        path: req.path,
        method: req.method as Dispatcher.HttpMethod,
        headers: req.headers,
        body: req.body ?? null,
        signal: req.signal,
        headersTimeout: this.timeouts.headers,
        bodyTimeout: this.timeouts.body,
        highWaterMark: BODY_HIGH_WATER_MARK,
      });
    } catch (err) {
      throw classifyUpstreamError(err, req.host);
    }
  }

  /** Aborts whatever is still in flight: called after the shutdown grace period, when waiting is over. */
  async destroy(): Promise<void> {
    await this.agent.destroy();
  }
}

export function formatAuthority(host: string, port: number): string {
  const h = isIP(host) === 6 ? `[${host}]` : host;
  return port === 443 ? h : `${h}:${port}`;
}

/** The inverse of formatAuthority. */
export function parseAuthority(authority: string): { host: string; port: number } {
  const url = new URL(`https://${authority}`);
  return { host: url.hostname.replace(/^\[|\]$/g, ""), port: Number(url.port) || 443 };
}
