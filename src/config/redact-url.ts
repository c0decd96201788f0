/** A URL as it may be shown in a log or an error: its password (if any) replaced. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "redacted";
    return parsed.toString();
  } catch {
    return "(an unparseable URL)";
  }
}
