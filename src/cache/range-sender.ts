import type { RangeSource } from "./range-source.js";

/** What sendRange writes to: an http.ServerResponse, or any writable with the same contract. */
export interface ByteSink {
  write(chunk: Buffer, callback: (err?: Error | null) => void): boolean;
  end(): void;
  destroy(err?: Error): void;
  readonly destroyed: boolean;
  once(event: "drain" | "close", listener: () => void): unknown;
}

/**
 * Sends bytes [start, end] of a source, reading each chunk into one of two buffers that are
 * reused once the sink has written them out. Streams piping fresh buffers left the spent ones
 * for the garbage collector, which lets ~64 MB of them pile up before it runs: most of the
 * proxy's peak memory with many clients (bench/). At most one read and two chunks per response.
 *
 * A source that fails, or a read error, destroys the sink short of its Content-Length, so the
 * client sees a truncated body and never a complete wrong one.
 */
export function sendRange(source: RangeSource, start: number, end: number, sink: ByteSink): void {
  const spare: Buffer[] = [];
  let allocated = 0;
  const bufferSize = Math.min(source.chunkSize, end - start + 1);
  let position = start;
  let reading = false;
  let awaitingDrain = false;
  let cancelWait: (() => void) | undefined;
  let finished = false;

  const finish = (): void => {
    if (finished) return;
    finished = true;
    cancelWait?.();
    source.close();
  };
  const fail = (err: Error): void => {
    sink.destroy(err);
    finish();
  };
  const takeBuffer = (): Buffer | undefined => {
    const reused = spare.pop();
    if (reused || allocated === 2) return reused;
    allocated += 1;
    return Buffer.allocUnsafeSlow(bufferSize);
  };

  const step = (): void => {
    if (finished || reading || awaitingDrain) return;
    if (sink.destroyed) return finish();
    const available = Math.min(source.readableEnd, end + 1);
    // The end of a body whose length was unknown (no Content-Length upstream) is where the source ends.
    if (position > end || (position >= available && source.complete)) {
      sink.end();
      return finish();
    }
    // A growing source (a download, a file still being hashed) is read a whole chunk at a time,
    // not a piece per write that lands: small TLS records cost the first reader of a fill ~10%
    // more CPU per byte (bench/fleet.ts row, measured interleaved). The last piece waits for the
    // source to complete, and a failed source hands over what it has before failing the sink.
    const short = available - position < Math.min(bufferSize, end + 1 - position) && !source.complete && !source.failure;
    if (position >= available || short) {
      if (position >= available && source.failure) return fail(source.failure);
      if (!cancelWait) {
        cancelWait = source.onChange(() => {
          cancelWait = undefined;
          step();
        });
      }
      return;
    }
    const buffer = takeBuffer();
    if (!buffer) return;
    const length = Math.min(buffer.length, available - position);
    reading = true;
    source.read(buffer, length, position, (err, bytesRead) => {
      reading = false;
      if (finished) return;
      if (err || bytesRead === 0) return fail(err ?? new Error(`unexpected end of cached file at byte ${position}`));
      position += bytesRead;
      const drained = sink.write(bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead), () => {
        spare.push(buffer);
        step();
      });
      if (!drained) {
        awaitingDrain = true;
        sink.once("drain", () => {
          awaitingDrain = false;
          step();
        });
      }
      step();
    });
  };

  sink.once("close", finish);
  step();
}
