import { isIP } from "node:net";
import type { Readable } from "node:stream";
import type { Dispatcher } from "undici";

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
 * One exchange with a registry. Each layer (layers.ts) is a Send that wraps another, as undici
 * composes interceptors around a dispatch; the outer layers classify what they catch, so the
 * composed client fails only with an UpstreamError.
 */
export type Send = (req: UpstreamRequest) => Promise<UpstreamResponse>;

/** What the registry handlers talk to: the transport with its layers (composed in regcache.ts). */
export interface UpstreamClient {
  request: Send;
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
