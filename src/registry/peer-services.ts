import type { PeerServices } from "../cluster/peer-server.js";
import { parseDigest } from "../oci/digest.js";
import type { ContentHandler } from "./content-handler.js";
import type { RegistryRequest } from "./request-context.js";
import type { TagPeers } from "./tag-peers.js";

/** A request no client waits on: it only carries where a copy is for (the repository it is linked to). */
function backgroundRequest(host: string, port: number): RegistryRequest {
  return { host, port, fromPeer: true, req: { headers: {} }, log: { host, method: "GET", path: "" } } as unknown as RegistryRequest;
}

/** What this replica serves its peers, from the same handlers clients reach (peer-server.ts). */
export function peerServices(content: ContentHandler, tags: TagPeers): PeerServices {
  const target = (kind: "blob" | "manifest", name: string, digest: string) => ({ kind, name, digest: parseDigest(digest)! });
  return {
    fill: (rr, kind, name, digest) => content.handle(rr, target(kind, name, digest)),
    copy: (rr, kind, name, digest) => content.servePeerCopy(rr, target(kind, name, digest)),
    tag: (host, _port, name, tag, acceptSet) => tags.answer(host, name, tag, acceptSet),
    replicate(from, host, port, kind, name, digest) {
      void content.keepCopy(backgroundRequest(host, port), target(kind, name, digest), from);
    },
    keepTag(from, answer) {
      void tags.receive(backgroundRequest(answer.host, answer.port), from, answer);
    },
  };
}
