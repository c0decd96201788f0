/**
 * What decides upstream's answer to a tag HEAD: the registry and repository, the tag, the Accept
 * set (which manifest kind it names) and the credential scope ("anonymous", or the HMAC of the
 * client's Authorization: AccessControl.credentialKey). Requests that agree on all of them would
 * get the same answer; requests that differ in credentials never share one, so an answer upstream
 * gave one client never reaches another it would have refused (or answered differently).
 */
export interface RevalidationScope {
  host: string;
  port: number;
  name: string;
  tag: string;
  acceptSet: readonly string[];
  credentialScope: string;
}

/**
 * Tag revalidations in flight: requests for the same scope that arrive while one is asking
 * upstream share its answer, as content fills already do (BlobStore.fill). With --tag-ttl 0
 * every pod start revalidates; a burst of them for one image costs upstream one HEAD, and the
 * proxy one exchange instead of one each. Nothing is kept once the answer is in: the next
 * request asks again.
 */
export class TagRevalidations<T> {
  private readonly inFlight = new Map<string, Promise<T>>();

  /** `ask`'s answer, or that of the revalidation of this scope already in flight (`joined`). */
  share(scope: RevalidationScope, ask: () => Promise<T>): { answer: Promise<T>; joined: boolean } {
    const key = JSON.stringify([scope.host, scope.port, scope.name, scope.tag, scope.acceptSet, scope.credentialScope]);
    const pending = this.inFlight.get(key);
    if (pending) return { answer: pending, joined: true };
    const answer = ask().finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, answer);
    return { answer, joined: false };
  }
}
