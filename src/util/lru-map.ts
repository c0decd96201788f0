export interface LruMapOptions<K, V> {
  /**
   * Whether an entry may go while the map is over capacity: the least recently used entry
   * that may is dropped; only when none may does the least recently used one go regardless.
   */
  evictable?: (value: V, key: K) => boolean;
  /** Called with each entry dropped for capacity (not for an overwrite). */
  onEvict?: (key: K, value: V) => void;
}

/**
 * A Map bounded to `capacity` entries: state keyed by something clients choose (a host
 * name, a repository) must not grow with what they send. get() and set() make an entry
 * the most recently used; peek() and iteration (oldest first) do not. The entry a
 * set() writes is never the one that set() drops.
 */
export class LruMap<K, V> {
  private readonly map = new Map<K, V>();

  constructor(
    private readonly capacity: number,
    private readonly options: LruMapOptions<K, V> = {},
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`LruMap capacity must be a positive integer, not ${capacity}`);
  }

  get(key: K): V | undefined {
    if (!this.map.has(key)) return undefined;
    const value = this.map.get(key) as V;
    this.map.delete(key);
    this.map.set(key, value);
    return value;
  }

  peek(key: K): V | undefined {
    return this.map.get(key);
  }

  set(key: K, value: V): this {
    this.map.delete(key);
    this.map.set(key, value);
    if (this.map.size > this.capacity) this.evictOne(key);
    return this;
  }

  delete(key: K): boolean {
    return this.map.delete(key);
  }

  values(): IterableIterator<V> {
    return this.map.values();
  }

  entries(): IterableIterator<[K, V]> {
    return this.map.entries();
  }

  private evictOne(newest: K): void {
    const evictable = this.options.evictable;
    let victim: [K, V] | undefined;
    for (const entry of this.map) {
      if (entry[0] === newest) continue;
      victim ??= entry;
      if (!evictable || evictable(entry[1], entry[0])) {
        victim = entry;
        break;
      }
    }
    // Capacity is at least 1 and the map holds capacity + 1 entries, so another entry exists.
    const [key, value] = victim!;
    this.map.delete(key);
    this.options.onEvict?.(key, value);
  }
}
