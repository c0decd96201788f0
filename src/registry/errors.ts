import type { ServerResponse } from "node:http";
import { registryErrorBody, type RegistryErrorCode } from "../oci/error-body.js";

/** Writes a registry-style JSON error unless headers are already out, in which case the connection is cut. */
export function sendRegistryError(
  res: ServerResponse,
  status: number,
  code: RegistryErrorCode,
  message: string,
  extraHeaders: Record<string, string> = {},
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = registryErrorBody(code, message);
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(body),
    "docker-distribution-api-version": "registry/2.0",
    ...extraHeaders,
  });
  res.end(body);
}
