import type { SharedRecords } from "../cache/shared-records.js";
import type { FleetIndex } from "./fleet-index.js";

/**
 * Which of the local index's records the fleet shares: tag answers, public verdicts and the last
 * challenges always; credential confirmations only when every replica keys them with the same
 * secret (--instance-secret-file), since with per-replica secrets no other replica could read them.
 */
export class FleetRecords implements SharedRecords {
  constructor(
    private readonly index: FleetIndex,
    private readonly shareConfirmations: boolean,
  ) {}

  shares(key: string): boolean {
    if (key.startsWith("tag:") || key.startsWith("meta:public:") || key.startsWith("meta:challenge:")) return true;
    return this.shareConfirmations && key.startsWith("meta:auth:");
  }

  /** While the index is down, reads do not wait for it: the local copy answers (other calls notice its return). */
  async get<T>(key: string): Promise<T | undefined> {
    if (!this.index.available) return undefined;
    return this.index.getRecord<T>(key).catch(() => undefined);
  }

  put(key: string, value: unknown): void {
    this.index.putRecord(key, value).catch(() => undefined);
  }
}
