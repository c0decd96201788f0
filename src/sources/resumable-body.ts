import { Readable } from "node:stream";

/**
 * The rest of the content from `offset` on, from the next source that can give it, or undefined
 * when none can. `cause`: why the source in use stopped.
 */
export type Continue = (offset: number, cause: Error) => Promise<Readable | undefined>;

/** Bytes buffered before the source in use is paused: as much as a download's sink takes at once (download.ts). */
const HIGH_WATER_MARK = 1024 * 1024;

/**
 * One body of `size` bytes read from a chain of sources: when the source in use fails or ends
 * before the last byte, the rest is asked of the next one (`next`, from the offset reached) and
 * its bytes carry on the same stream, so the fill that reads it (a Download, which hashes every
 * byte it is given and holds the last back until the digest checks) sees one uninterrupted body
 * and verifies it end to end. Only when no source can continue does the body fail, with the
 * first source's reason. A source that sends more than `size` bytes fails it at once: its bytes
 * are not the content, and no other source can mend that.
 */
export class ResumableBody extends Readable {
  private current: Readable | undefined;
  private received = 0;

  constructor(
    first: Readable,
    private readonly size: number,
    private readonly next: Continue,
  ) {
    super({ highWaterMark: HIGH_WATER_MARK });
    this.follow(first);
  }

  override _read(): void {
    this.current?.resume();
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    const current = this.current;
    this.current = undefined;
    current?.destroy();
    callback(err);
  }

  private follow(body: Readable): void {
    this.current = body;
    const onData = (chunk: Buffer): void => {
      this.received += chunk.length;
      if (this.received > this.size) {
        stop();
        this.destroy(new Error(`a source sent more than the ${this.size} bytes of the content`));
      } else if (!this.push(chunk)) {
        body.pause();
      }
    };
    const onEnd = (): void => {
      stop();
      if (this.received === this.size) this.push(null);
      else this.switchFrom(body, new Error(`the source ended after ${this.received} of ${this.size} bytes`));
    };
    const onError = (err: Error): void => {
      stop();
      this.switchFrom(body, err);
    };
    // A body destroyed without an error (a socket closed under it) ends neither way.
    const onClose = (): void => {
      stop();
      this.switchFrom(body, new Error(`the source closed after ${this.received} of ${this.size} bytes`));
    };
    const stop = (): void => {
      body.off("data", onData);
      body.off("end", onEnd);
      body.off("error", onError);
      body.off("close", onClose);
    };
    body.on("data", onData);
    body.on("end", onEnd);
    body.on("error", onError);
    body.on("close", onClose);
  }

  private switchFrom(body: Readable, cause: Error): void {
    if (this.destroyed || this.current !== body) return;
    this.current = undefined;
    body.destroy();
    if (this.received === this.size) {
      // Every byte arrived before the source failed: nothing is missing.
      this.push(null);
      return;
    }
    this.next(this.received, cause).then(
      (rest) => {
        if (this.destroyed) rest?.destroy();
        else if (rest) this.follow(rest);
        else this.destroy(cause);
      },
      () => this.destroy(cause),
    );
  }
}
