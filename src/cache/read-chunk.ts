/**
 * Read size for serving clients: 64 KiB reads ran at half the TLS throughput of large ones,
 * but every concurrent stream holds about two chunks; 256 KiB keeps the throughput and
 * bounds memory (bench/: peak RSS with 8 concurrent pulls).
 */
export const CLIENT_READ_CHUNK = 256 * 1024;
