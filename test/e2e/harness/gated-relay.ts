import { connect, createServer, type AddressInfo, type Server, type Socket } from "node:net";

/**
 * A TCP relay to a port on 127.0.0.1 that can hold back what that port sends, for as long as a
 * test needs: the exchanges in flight stay in flight until release(). TLS passes through it
 * untouched (regcache verifies the registry behind it as usual).
 */
export class GatedRelay {
  port = 0;
  private server: Server | undefined;
  private held = false;
  private readonly waiting: { to: Socket; chunk: Buffer }[] = [];
  private readonly sockets = new Set<Socket>();

  constructor(private readonly targetPort: number) {}

  async start(): Promise<void> {
    this.server = createServer((client) => {
      const target = connect(this.targetPort, "127.0.0.1");
      for (const socket of [client, target]) {
        this.sockets.add(socket);
        socket.on("close", () => this.sockets.delete(socket));
        socket.on("error", () => undefined);
      }
      client.pipe(target);
      target.on("data", (chunk: Buffer) => {
        if (this.held) this.waiting.push({ to: client, chunk });
        else client.write(chunk);
      });
      target.on("end", () => (this.held ? this.waiting.push({ to: client, chunk: Buffer.alloc(0) }) : client.end()));
      client.on("close", () => target.destroy());
      target.on("close", () => (this.held ? undefined : client.destroy()));
    });
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }

  /** From now on, what the target sends waits here. */
  hold(): void {
    this.held = true;
  }

  /** Sends on what waited, in order, and everything after it at once. */
  release(): void {
    this.held = false;
    for (const { to, chunk } of this.waiting.splice(0)) {
      if (chunk.length > 0) to.write(chunk);
      else to.end();
    }
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => this.server?.close(resolve) ?? resolve(undefined));
  }
}
