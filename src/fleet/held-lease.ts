import type { Logger } from "../log/logger.js";
import type { FleetIndex } from "./fleet-index.js";

/** How long a lease lives unless renewed: a holder that dies stops blocking the fleet this soon. */
export const LEASE_TTL_MS = 30_000;
/** Renewed this often while held: two renewals may fail before it lapses. */
const RENEW_EVERY_MS = LEASE_TTL_MS / 3;

/**
 * A lease this replica holds in the fleet index, renewed in the background until released.
 * Losing it (Redis lost it, or it lapsed and another replica took it) is not an error: content
 * addressing makes the other holder's fetch a harmless duplicate, which `onLost` counts.
 */
export class HeldLease {
  private readonly timer: NodeJS.Timeout;
  private released = false;

  constructor(
    private readonly index: FleetIndex,
    readonly name: string,
    private readonly token: string,
    onLost: () => void,
    logger: Logger,
  ) {
    this.timer = setInterval(() => {
      this.index.renewLease(name, token, LEASE_TTL_MS).then(
        (still) => {
          if (still || this.released) return;
          clearInterval(this.timer);
          onLost();
          logger.warn({ lease: name }, "fleet lease lost while held; another replica may fetch the same content");
        },
        () => undefined,
      );
    }, RENEW_EVERY_MS);
    this.timer.unref();
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    clearInterval(this.timer);
    this.index.releaseLease(this.name, this.token).catch(() => undefined);
  }
}
