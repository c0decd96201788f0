import { DEFAULTS } from "../../../src/config/config.js";
import { parseDuration } from "../../../src/config/parse.js";

/** What a stop must allow regcache by default: --drain-delay, then --shutdown-grace, in seconds. */
export const DEFAULT_SHUTDOWN_SECONDS = (parseDuration(DEFAULTS.drainDelay) + parseDuration(DEFAULTS.shutdownGrace)) / 1000;
