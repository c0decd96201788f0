import type { ServerResponse } from "node:http";

/** Error codes of the OCI distribution spec ("Error Codes") that regcache answers with. */
export type RegistryErrorCode =
  | "BLOB_UNKNOWN"
  | "MANIFEST_UNKNOWN"
  | "NAME_INVALID"
  | "NAME_UNKNOWN"
  | "DIGEST_INVALID"
  | "TAG_INVALID"
  | "UNAUTHORIZED"
  | "DENIED"
  | "UNSUPPORTED"
  | "TOOMANYREQUESTS"
  | "UNAVAILABLE"
  | "RANGE_INVALID";

export function registryErrorBody(code: RegistryErrorCode, message: string, detail?: unknown): string {
  return JSON.stringify({ errors: [{ code, message, ...(detail === undefined ? {} : { detail }) }] });
}

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
