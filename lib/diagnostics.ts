import { channel } from 'node:diagnostics_channel';

/**
 * The `node:diagnostics_channel` channels connpool publishes on, only while
 * someone is subscribed (`hasSubscribers`), so they cost nothing otherwise.
 * Every message carries the `pool`; connection messages also carry
 * `network`, `address` and the dialer's `key`.
 */
export const channels = {
  /** A `get()` starts waiting for a slot: `{ pool }`. */
  wait: channel('connpool:wait'),
  /** A dial starts: `{ pool, network, address, key }`. */
  dialStart: channel('connpool:dial:start'),
  /** A dial made a connection: `{ pool, network, address, key, socket }`. */
  dialEnd: channel('connpool:dial:end'),
  /** A dial failed: `{ pool, network, address, key, error }`. */
  dialError: channel('connpool:dial:error'),
  /** A `get()` was served an idle connection, or a parked socket was unparked: `{ pool, network, address, key }`. */
  reuse: channel('connpool:reuse'),
  /** The least recently used idle resource is closed to make room: `{ pool }`. */
  eviction: channel('connpool:eviction'),
  /** A pooled connection's socket is closed: `{ pool, network, address, key }`. */
  close: channel('connpool:close'),
  /** A connection was garbage-collected while out: `{ pool, network, address, key, stack }`. */
  leak: channel('connpool:leak'),
};
