import { createSecureContext, type SecureContext } from "node:tls";

/**
 * The native context inside a SecureContext. setCert is what createSecureContext itself calls
 * for its `cert` option (Node's lib/internal/tls/secure-context.js, the same on Node 20 and 24:
 * SSL_CTX_use_certificate_chain); it is not public API, so its absence falls back to the
 * public path.
 */
interface NativeContext {
  setCert?(cert: string): void;
}

/** Contexts made ahead: enough for a burst of new hosts, each ~50 KB of OpenSSL memory. */
const SPARE_CONTEXTS = 4;
/**
 * Spares are made this long after one was taken, one per timer: made at once, the next would
 * block the event loop in the middle of the handshake it was taken for (measured: the new host's
 * handshake then took the time saved).
 */
const REFILL_DELAY_MS = 100;

/**
 * Server TLS contexts for leaves that all share one private key (LeafMinter's). Most of what a
 * context costs is not the host's certificate: creating the OpenSSL context and parsing the key
 * take about half of it (1.9 ms in all on Node 20 with OpenSSL 3.0, 0.8 ms on Node 24 with 3.5).
 * So a few contexts holding the key are made ahead, after the handshakes that used them, and a
 * new host's context then costs only its certificate chain (~1.0 ms on Node 20, ~0.3 ms on 24).
 */
export class ServerContextFactory {
  private spare: SecureContext[] = [];
  private keyPem: string | undefined;
  private refill: NodeJS.Timeout | undefined;

  /**
   * A context serving `chainPem` (leaf first) with `keyPem`, the key every leaf of this process
   * shares. The chain's leaf must be that key's: a spare takes the certificate after the key (Node
   * sets them the other way round), and OpenSSL then drops a key that does not match silently, so
   * a mismatch fails the handshake instead of throwing here.
   */
  contextFor(keyPem: string, chainPem: string): SecureContext {
    if (keyPem !== this.keyPem) {
      this.keyPem = keyPem;
      this.spare = [];
    }
    const context = this.spare.pop();
    this.refillSoon();
    const native = context?.context as NativeContext | undefined;
    if (!context || typeof native?.setCert !== "function") return createSecureContext({ key: keyPem, cert: chainPem });
    native.setCert(chainPem);
    return context;
  }

  close(): void {
    clearTimeout(this.refill);
    this.refill = undefined;
    this.spare = [];
  }

  private refillSoon(): void {
    if (this.refill || this.spare.length >= SPARE_CONTEXTS) return;
    this.refill = setTimeout(() => {
      this.refill = undefined;
      if (this.keyPem === undefined) return;
      try {
        this.spare.push(createSecureContext({ key: this.keyPem }));
      } catch {
        // A key OpenSSL refuses: contextFor's own createSecureContext throws it to its caller.
        this.spare = [];
        return;
      }
      this.refillSoon();
    }, REFILL_DELAY_MS);
    this.refill.unref();
  }
}
