import { ADDED_HEADERS, type AllowedDifferenceId } from "./allowed-differences.js";
import type { Shape, ShapeAuth } from "./differential-corpus.js";
import { isIP } from "node:net";
import type { TLSSocket } from "node:tls";
import { ConnectionLost, exchange, KeptConnection, tlsDirect, tlsThroughProxy, type RawRequest, type RawResponse, type Trust } from "./raw-http.js";

/** The headers clients act on: these, the status and the body bytes are compared. */
export const COMPARED_HEADERS = ["content-type", "content-length", "docker-content-digest", "location", "range", "content-range", "www-authenticate", "link", "oci-subject"];
/** Headers about the connection, not the answer (RFC 9110 section 7.6.1): each hop sends its own. */
const HOP_BY_HOP = ["connection", "keep-alive", "transfer-encoding"];

/** One answer as the client saw it; a connection cut before the end is an answer too. */
export interface Answer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  cut?: string;
}

/** A registry under test: how to reach it directly and how its shapes authenticate. */
export interface RegistryUnderTest {
  /** The name clients use (regcache maps it to the registry's port). */
  host: string;
  port: number;
  corpus: Shape[];
  authorization(auth: ShapeAuth): string | undefined;
}

/** Where a relayed redirect or token realm leads: a host name and the loopback port that serves it. */
export interface Network {
  testCa: Trust;
  proxyPort: number;
  proxyCa: Trust;
  /** Direct ports of the names that answers point to (CDN hosts); token realms are loopback URLs. */
  ports: Record<string, number>;
}

export type Verdict =
  | { kind: "same"; uncompared: string[] }
  | { kind: "allowed"; rows: AllowedDifferenceId[]; uncompared: string[] }
  | { kind: "different"; fields: string[]; direct: Answer; through: Answer };

export interface ShapeResult {
  registry: string;
  shape: Shape;
  verdict: Verdict;
}

/** Replaces what differs between two identical requests: upload ids and state, signed URLs, multipart boundaries. */
function normalize(answer: Answer): Answer {
  const vary = (text: string): string =>
    text
      .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, "<uuid>")
      .replace(/_state=[^&"\s>]+/g, "_state=<state>")
      .replace(/expires=\d+&signature=[0-9a-f]+/g, "<signed>");
  const headers: Record<string, string> = {};
  for (const name of COMPARED_HEADERS) if (answer.headers[name] !== undefined) headers[name] = vary(answer.headers[name]!);
  let body = answer.body;
  const boundary = /boundary=([^;\s]+)/.exec(headers["content-type"] ?? "")?.[1];
  if (boundary) {
    headers["content-type"] = headers["content-type"]!.replace(boundary, "<boundary>");
    body = Buffer.from(body.toString("latin1").split(boundary).join("<boundary>"), "latin1");
  }
  return { status: answer.status, headers, body: Buffer.from(vary(body.toString("latin1")), "latin1"), cut: answer.cut };
}

/** The compared fields in which two normalized answers differ. */
function differingFields(a: Answer, b: Answer, skip: readonly string[] = []): string[] {
  const fields: string[] = [];
  if (a.status !== b.status) fields.push("status");
  if ((a.cut === undefined) !== (b.cut === undefined)) fields.push("cut");
  for (const name of COMPARED_HEADERS) if (a.headers[name] !== b.headers[name]) fields.push(`header:${name}`);
  if (!a.body.equals(b.body)) fields.push("body");
  return fields.filter((f) => !skip.includes(f));
}

/**
 * Headers regcache's answer has that upstream's lacks, other than the compared ones and those of
 * row "cache-headers": an added header is a difference too. (A cut answer has no headers to compare.)
 */
function addedHeaders(direct: Answer, through: Answer): string[] {
  if (direct.cut !== undefined || through.cut !== undefined) return [];
  return Object.keys(through.headers)
    .filter((h) => direct.headers[h] === undefined && !ADDED_HEADERS.includes(h) && !COMPARED_HEADERS.includes(h) && !HOP_BY_HOP.includes(h))
    .map((h) => `added:${h}`);
}

/** An independent statement of what regcache refuses (row "unsafe-refused"), from the request alone. */
function isUnsafePath(path: string): boolean {
  const p = path.split("?")[0]!;
  if (/(^|\/)\.{1,2}(\/|$)/.test(p) || /%(2e|2f|5c)|\\/i.test(p) || /%[01][0-9a-f]|%7f/i.test(p)) return true;
  const name = /^\/v2\/(.+)\/(manifests|blobs)\/[^/]*$/.exec(p)?.[1];
  return name !== undefined && name.length > 255;
}

function isRegcacheRefusal(answer: Answer): boolean {
  if (answer.status !== 400 || answer.headers["x-cache"] !== "BYPASS") return false;
  try {
    const error = (JSON.parse(answer.body.toString()) as { errors: { code: string; message: string }[] }).errors[0]!;
    return error.code === "NAME_INVALID" && error.message.length > 0;
  } catch {
    return false;
  }
}

type Via = "direct" | "through";

function answerOf(response: RawResponse): Answer {
  return { status: response.status, headers: response.headers, body: response.body };
}

function cutAnswer(err: unknown): Answer {
  return { status: 0, headers: {}, body: Buffer.alloc(0), cut: (err as Error).message };
}

/** One worker's kept-alive connections, per side and host: a TLS handshake per request would cost more than the request. */
class Connections {
  private readonly kept = new Map<string, KeptConnection>();

  constructor(private readonly open: (via: Via, host: string, port: number) => Promise<TLSSocket>) {}

  async send(via: Via, host: string, port: number, request: RawRequest, retried = false): Promise<Answer> {
    const key = `${via} ${host}:${port}`;
    try {
      let connection = this.kept.get(key);
      if (!connection?.usable) {
        connection = new KeptConnection(await this.open(via, host, port));
        this.kept.set(key, connection);
      }
      return answerOf(await connection.send(request, 20_000));
    } catch (err) {
      if (err instanceof ConnectionLost && !retried) return this.send(via, host, port, request, true);
      return cutAnswer(err);
    }
  }

  close(): void {
    for (const connection of this.kept.values()) connection.close();
  }
}

/** Sends shapes to registries directly and through regcache, and judges each pair of answers. */
export class DifferentialRun {
  constructor(private readonly net: Network) {}

  private connect(via: Via, host: string, port: number): Promise<TLSSocket> {
    return via === "direct" ? tlsDirect(port, "127.0.0.1", isIP(host) ? undefined : host, this.net.testCa) : tlsThroughProxy(this.net.proxyPort, `${host}:443`, host, this.net.proxyCa);
  }

  /** One request on a connection of its own (a client's token fetch or redirect). */
  async send(via: Via, host: string, port: number, request: RawRequest): Promise<Answer> {
    try {
      const [response] = await exchange(await this.connect(via, host, port), [request], 20_000);
      return answerOf(response!);
    } catch (err) {
      return cutAnswer(err);
    }
  }

  private request(registry: RegistryUnderTest, shape: Shape, authorization = registry.authorization(shape.auth)): RawRequest {
    const headers: [string, string][] = authorization ? [["Authorization", authorization], ...shape.headers] : [...shape.headers];
    return { method: shape.method, path: shape.path, host: registry.host, headers, body: shape.body };
  }

  /**
   * What a registry client ends with: an anonymous client fetches the token a Bearer challenge
   * offers and asks again; a redirect of a GET or HEAD is followed, without Authorization when
   * the host changes. `steps` names what happened ("token", "redirect").
   */
  async clientFinal(via: "direct" | "through", registry: RegistryUnderTest, shape: Shape, first: Answer): Promise<{ answer: Answer; steps: string[] }> {
    const steps: string[] = [];
    let answer = first;
    const challenge = /^Bearer realm="([^"]+)"(.*)$/i.exec(answer.headers["www-authenticate"] ?? "");
    if (answer.status === 401 && challenge && shape.auth === "anonymous") {
      const token = await this.anonymousToken(challenge[1]!, challenge[2]!);
      if (token) {
        steps.push("token");
        answer = await this.send(via, registry.host, registry.port, this.request(registry, shape, `Bearer ${token}`));
      }
    }
    for (let hop = 0; hop < 3 && answer.status >= 300 && answer.status < 400 && answer.headers.location && (shape.method === "GET" || shape.method === "HEAD"); hop++) {
      const next = new URL(answer.headers.location, `https://${registry.host}`);
      const port = this.net.ports[next.hostname];
      if (port === undefined) break;
      steps.push("redirect");
      const headers = shape.headers.filter(([name]) => name.toLowerCase() !== "authorization");
      answer = await this.send(via, next.hostname, port, { method: shape.method, path: `${next.pathname}${next.search}`, host: next.hostname, headers });
    }
    return { answer, steps };
  }

  private async anonymousToken(realm: string, params: string): Promise<string | undefined> {
    const url = new URL(realm);
    for (const [, key, value] of params.matchAll(/,\s*(\w+)="([^"]*)"/g)) url.searchParams.append(key!, value!);
    const answer = await this.send("direct", url.hostname, Number(url.port), { method: "GET", path: `${url.pathname}${url.search}`, host: url.host });
    if (answer.status !== 200) return undefined;
    return (JSON.parse(answer.body.toString()) as { token?: string }).token;
  }

  /** Asks one shape directly and through regcache (and, when they differ, directly again to see what varies by itself), and judges. */
  async judge(registry: RegistryUnderTest, shape: Shape, connections: Connections): Promise<Verdict> {
    const request = this.request(registry, shape);
    const directA = await connections.send("direct", registry.host, registry.port, request);
    const through = await connections.send("through", registry.host, registry.port, request);
    if (differingFields(normalize(directA), normalize(through)).length === 0 && addedHeaders(directA, through).length === 0) return { kind: "same", uncompared: [] };
    // Asked again directly: what differs from one direct answer to the next is not regcache's doing.
    const directB = await connections.send("direct", registry.host, registry.port, request);
    const uncompared = differingFields(normalize(directA), normalize(directB));
    const fields = [...differingFields(normalize(directA), normalize(through), uncompared), ...addedHeaders(directA, through)];
    if (fields.length === 0) return { kind: "same", uncompared };
    if (isUnsafePath(shape.path) && isRegcacheRefusal(through)) return { kind: "allowed", rows: ["unsafe-refused"], uncompared };
    const direct = await this.clientFinal("direct", registry, shape, directA);
    const proxied = await this.clientFinal("through", registry, shape, through);
    const rows: AllowedDifferenceId[] = [];
    if (direct.steps.includes("redirect") && !proxied.steps.includes("redirect") && shape.method === "GET" && /\/blobs\//.test(shape.path)) rows.push("cdn-redirect");
    if (direct.steps.includes("token") && !proxied.steps.includes("token")) rows.push("anonymous-public");
    // A CDN's answer has no registry headers; regcache's has (row "cdn-redirect").
    const skip = rows.includes("cdn-redirect") ? ["header:docker-content-digest", "added:docker-distribution-api-version"] : [];
    const finalFields = [...differingFields(normalize(direct.answer), normalize(proxied.answer), uncompared), ...addedHeaders(direct.answer, proxied.answer)].filter((f) => !skip.includes(f));
    if (rows.length > 0 && finalFields.length === 0) return { kind: "allowed", rows, uncompared };
    return { kind: "different", fields, direct: directA, through };
  }

  /** Judges every shape of every registry, `concurrency` at a time, the registries' shapes interleaved. */
  async run(registries: { name: string; registry: RegistryUnderTest }[], concurrency: number): Promise<ShapeResult[]> {
    const queue: { name: string; registry: RegistryUnderTest; shape: Shape }[] = [];
    const longest = Math.max(...registries.map((r) => r.registry.corpus.length));
    for (let i = 0; i < longest; i++) for (const r of registries) if (r.registry.corpus[i]) queue.push({ ...r, shape: r.registry.corpus[i]! });
    const results: ShapeResult[] = [];
    const worker = async (): Promise<void> => {
      const connections = new Connections((via, host, port) => this.connect(via, host, port));
      try {
        for (let next = queue.shift(); next; next = queue.shift()) results.push({ registry: next.name, shape: next.shape, verdict: await this.judge(next.registry, next.shape, connections) });
      } finally {
        connections.close();
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    return results;
  }
}

/** A difference as a failure message names it: the shape, the fields, and both answers in short. */
export function describeDifference(result: ShapeResult): string {
  if (result.verdict.kind !== "different") return "";
  const { fields, direct, through } = result.verdict;
  const show = (a: Answer): string => {
    const headers = Object.entries(a.headers)
      .filter(([h]) => COMPARED_HEADERS.includes(h) || h === "x-cache")
      .map(([h, v]) => `${h}: ${v.slice(0, 120)}`)
      .join("; ");
    return `${a.cut ? `cut (${a.cut}) ` : ""}${a.status} {${headers}} ${a.body.toString("latin1").slice(0, 160).replace(/\s+/g, " ")}`;
  };
  return `${result.registry} ${result.shape.id} [${result.shape.auth}] differs in ${fields.join(", ")}\n    direct:  ${show(direct)}\n    through: ${show(through)}`;
}
