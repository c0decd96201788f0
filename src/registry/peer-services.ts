import type { PeerServices } from "../cluster/peer-server.js";
import { parseDigest } from "../oci/digest.js";
import type { ContentHandler } from "./content-handler.js";
import type { RegistryRequest } from "./request-context.js";
import type { TagHandler } from "./tag-handler.js";

/** What this replica serves its peers, from the same handlers clients reach (peer-server.ts). */
export function peerServices(content: ContentHandler, tags: TagHandler): PeerServices {
  const target = (kind: "blob" | "manifest", name: string, digest: string) => ({ kind, name, digest: parseDigest(digest)! });
  return {
    fill: (rr, kind, name, digest) => content.handle(rr, target(kind, name, digest)),
    copy: (rr, kind, name, digest) => content.servePeerCopy(rr, target(kind, name, digest)),
    tag: (host, _port, name, tag, acceptSet) => tags.recordedAnswer(host, { name, tag }, acceptSet),
    replicate(from, host, port, kind, name, digest) {
      // No client waits: the request only carries where the copy is for (the repository it is linked to).
      const rr = { host, port, fromPeer: true, req: { headers: {} }, log: { host, method: "GET", path: "" } } as unknown as RegistryRequest;
      void content.keepCopy(rr, target(kind, name, digest), from);
    },
  };
}
