import type { IncomingMessage, ServerResponse } from "node:http";
import { errorReply, writeReply } from "../registry/reply.js";
import type { RegistryRequest } from "../registry/request-context.js";
import { parseConnectTarget, type ConnectTarget } from "./connect-policy.js";
import type { RequestRunner } from "./request-runner.js";

/**
 * Every request decrypted inside a CONNECT tunnel arrives here. Its upstream is
 * the CONNECT target and nothing else: a client that names another Host inside
 * the tunnel is refused, so one intercepted host cannot be used to reach another.
 */
export function createInterceptedRequestHandler(run: RequestRunner) {
  return (req: IncomingMessage, res: ServerResponse, connectTarget: string | undefined, isTls: boolean): void => {
    const target = connectTarget ? parseConnectTarget(connectTarget) : undefined;
    const rr: RegistryRequest = {
      req,
      res,
      host: target?.host ?? "",
      port: target?.port ?? 0,
      log: { host: target?.host ?? "", method: req.method ?? "", path: (req.url ?? "").slice(0, 512), client: req.socket.remoteAddress },
    };
    run(rr, () => admit(rr, target, isTls));
  };
}

/** Refuses what regcache cannot handle inside a tunnel; the rest goes to the registry handler. */
function admit(rr: RegistryRequest, target: ConnectTarget | undefined, isTls: boolean): boolean {
  const { req, res } = rr;
  if (!isTls || !target) {
    writeReply(res, errorReply(400, "UNSUPPORTED", "regcache intercepts TLS only; send HTTPS inside CONNECT"), req.method);
    return false;
  }
  const hostHeader = (req.headers.host ?? "").toLowerCase();
  const expected = target.port === 443 ? [target.host, `${target.host}:443`] : [`${target.host}:${target.port}`];
  if (!expected.includes(hostHeader) && !expected.includes(hostHeader.replace(/^\[(.*)\](:\d+)?$/, "$1$2"))) {
    writeReply(res, errorReply(421, "DENIED", `Host "${hostHeader.slice(0, 100)}" does not match the CONNECT target ${target.host}:${target.port}`), req.method);
    return false;
  }
  return true;
}
