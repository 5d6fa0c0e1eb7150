import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { Seat, type ResourcePool } from './pool.js';

/**
 * The idle sockets of one key (network, address, dialer key), most recently
 * used on top. It lives while any socket of its key is open or an orphaned
 * dial may still join it.
 */
export class IdleStack {
  top: PooledSocket | undefined = undefined;
  /** Dials whose callers gave up, that may still finish and join (E3). */
  orphans = 0;
  #holds = 0;

  constructor(
    readonly key: string,
    readonly index: IdleIndex,
  ) {}

  push(socket: PooledSocket): void {
    socket.below = this.top;
    if (this.top !== undefined) this.top.above = socket;
    this.top = socket;
  }

  remove(socket: PooledSocket): void {
    if (socket.above === undefined) this.top = socket.below;
    else socket.above.below = socket.below;
    if (socket.below !== undefined) socket.below.above = socket.above;
    socket.above = socket.below = undefined;
  }

  hold(): void {
    this.#holds++;
  }

  unhold(): void {
    if (--this.#holds === 0) this.index.forget(this);
  }
}

/** A pool's idle sockets, by key. */
export class IdleIndex {
  readonly #stacks = new Map<string, IdleStack>();

  /** The stack of `key`, made if there is none. */
  stack(key: string): IdleStack {
    let stack = this.#stacks.get(key);
    if (stack === undefined) {
      stack = new IdleStack(key, this);
      this.#stacks.set(key, stack);
    }
    return stack;
  }

  /** The most recently used idle socket of `key`, unlinked; or undefined. */
  take(key: string): PooledSocket | undefined {
    const socket = this.#stacks.get(key)?.top;
    if (socket !== undefined) socket.unidle();
    return socket;
  }

  forget(stack: IdleStack): void {
    if (this.#stacks.get(stack.key) === stack) this.#stacks.delete(stack.key);
  }
}

/**
 * A socket the pool owns, for its whole life: lent to one connection at a
 * time, idle in its key's stack in between, then closed.
 *
 * Its listeners are installed once, at dial, and dispatch on its state, so
 * lending and reclaiming add and remove none. While idle the socket is
 * unref'd and kept flowing, so that a peer's FIN, a reset or unsolicited
 * bytes are seen at once and the socket is dropped (E1); its `'error'`
 * listener keeps such errors from crashing the process.
 */
export class PooledSocket extends Seat {
  /** The handle that last took the socket, which prefers it (E4). */
  owner: object | undefined = undefined;
  /** Lent and not yet put or closed by its user (who may hold it after an error closed the socket). */
  isOut = false;
  isIdle = false;
  /** Close instead of idling at the next put() (scheduleClose). */
  isDoomed = false;
  /** Where the current user got the socket, when leak tracing is on (E9). */
  trace: Error | undefined = undefined;
  above: PooledSocket | undefined = undefined;
  below: PooledSocket | undefined = undefined;
  /**
   * The connection the socket is lent to, held weakly so that a connection its
   * user dropped without put() can be collected and reported (E9)...
   */
  #user: WeakRef<Duplex> | undefined = undefined;
  /**
   * ...and strongly while it waits for data (or has a timeout set): a caller
   * awaiting a reply may hold it only through its own listeners.
   */
  #pinned: Duplex | undefined = undefined;
  #isTimeoutPinned = false;
  #isClosed = false;
  #closing: Promise<void> | undefined = undefined;
  #resolveClosed: (() => void) | undefined = undefined;

  constructor(
    readonly socket: Socket,
    readonly stack: IdleStack,
    readonly pool: ResourcePool,
  ) {
    super();
    stack.hold();
    socket.on('data', this.#onData);
    socket.on('end', this.#onEnd);
    socket.on('error', this.#onError);
    socket.on('close', this.#onClose);
    socket.on('timeout', this.#onTimeout);
  }

  /** Lends the socket to `user` for `owner`. */
  lend(user: Duplex, owner: object): void {
    this.#user = new WeakRef(user);
    this.owner = owner;
    this.isOut = true;
    this.socket.ref();
  }

  /** Holds the user strongly until the next chunk arrives (or for good, with a timeout set). */
  pin(user: Duplex, isTimeout = false): void {
    this.#pinned = user;
    this.#isTimeoutPinned ||= isTimeout;
  }

  /**
   * Takes the socket back from its user: idle for re-use if `isReusable` and
   * the socket is clean (E2), else closed.
   */
  reclaim(isReusable: boolean): void {
    this.#unlend();
    const socket = this.socket;
    if (!isReusable || this.isDoomed || !isClean(socket) || !this.pool.keeps(this)) {
      void this.pool.dispose(this, false);
      return;
    }
    socket.unref();
    if (socket.isPaused()) socket.resume();
    this.isIdle = true;
    this.stack.push(this);
    this.pool.checkIn(this);
  }

  /** Closes the socket, in use; resolves once it is closed and its slot free. */
  retire(): Promise<void> {
    this.#unlend();
    return this.pool.dispose(this, false);
  }

  /** The user was collected while it held the socket: warn, close, free the slot (E9). */
  reclaimLeak(): void {
    if (this.#user === undefined) return;
    this.isOut = false;
    const where = this.trace?.stack?.replace(/^.*\n/, '') ?? 'run with NODE_DEBUG=connpool or traceLeaks: true to see where';
    process.emitWarning(
      `a PooledConn of pool "${this.pool.name}" was garbage-collected without put() or close(); its socket was closed`,
      { code: 'CONNPOOL_LEAK', detail: `get() was called:\n${where}` },
    );
    void this.retire();
  }

  /** Leaves the idle stack for a caller; the pool moves the seat to in use. */
  unidle(): void {
    this.isIdle = false;
    this.stack.remove(this);
  }

  shut(): Promise<void> {
    this.#unlend();
    if (this.isIdle) this.unidle();
    if (this.#closing === undefined) {
      this.stack.unhold();
      this.#closing =
        this.#isClosed || this.socket.closed
          ? Promise.resolve()
          : new Promise<void>((resolve) => {
              this.#resolveClosed = resolve;
            });
      this.socket.destroy();
    }
    return this.#closing;
  }

  #unlend(): void {
    this.#user = this.#pinned = undefined;
    this.#isTimeoutPinned = false;
    this.trace = undefined;
  }

  /** Drops the socket if it is idle: the peer closed, reset or spoke out of turn (E1). */
  #drop(): void {
    if (this.isIdle) void this.pool.dispose(this, true);
  }

  readonly #onData = (chunk: Buffer): void => {
    const user = this.#pinned ?? this.#user?.deref();
    if (user === undefined) return this.#drop();
    if (!this.#isTimeoutPinned) this.#pinned = undefined;
    if (!user.push(chunk)) this.socket.pause();
  };

  readonly #onEnd = (): void => {
    const user = this.#pinned ?? this.#user?.deref();
    if (user === undefined) this.#drop();
    else user.push(null);
  };

  readonly #onError = (error: Error): void => {
    const user = this.#pinned ?? this.#user?.deref();
    if (user === undefined) this.#drop();
    else user.destroy(error);
  };

  readonly #onClose = (): void => {
    this.#isClosed = true;
    this.#resolveClosed?.();
    const user = this.#pinned ?? this.#user?.deref();
    if (user === undefined) this.#drop();
    else user.push(null);
  };

  readonly #onTimeout = (): void => {
    (this.#pinned ?? this.#user?.deref())?.emit('timeout');
  };
}

/** Nothing unread, nothing unsent, both directions open. */
function isClean(socket: Socket): boolean {
  return (
    !socket.destroyed &&
    socket.readable &&
    socket.writable &&
    socket.readableLength === 0 &&
    socket.writableLength === 0
  );
}
