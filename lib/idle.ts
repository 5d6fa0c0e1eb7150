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

/** How often lent sockets are checked for connections held long enough to be watched for leaks. */
const LEAK_SWEEP_MS = 1_000;

/** A pool's idle sockets, by key, and its lent ones. */
export class IdleIndex {
  readonly #stacks = new Map<string, IdleStack>();
  /** Sockets lent out, linked for the leak sweep. */
  #lent: PooledSocket | undefined = undefined;
  #sweeper: NodeJS.Timeout | undefined = undefined;

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

  lent(socket: PooledSocket): void {
    socket.nextLent = this.#lent;
    if (this.#lent !== undefined) this.#lent.prevLent = socket;
    this.#lent = socket;
    this.#sweeper ??= setInterval(this.#sweep, LEAK_SWEEP_MS).unref();
  }

  returned(socket: PooledSocket): void {
    if (socket.prevLent === undefined) this.#lent = socket.nextLent;
    else socket.prevLent.nextLent = socket.nextLent;
    if (socket.nextLent !== undefined) socket.nextLent.prevLent = socket.prevLent;
    socket.prevLent = socket.nextLent = undefined;
  }

  readonly #sweep = (): void => {
    for (let socket = this.#lent; socket !== undefined; socket = socket.nextLent) socket.age();
    if (this.#lent === undefined) {
      clearInterval(this.#sweeper);
      this.#sweeper = undefined;
    }
  };
}

/**
 * Notices connections dropped without put() or close() (E9). Registrations are
 * never withdrawn: one whose lease has ended is ignored.
 */
const leaks = new FinalizationRegistry<Lease>((lease) => lease.pooled.reclaimLeak(lease));

/**
 * One lending of a socket to a connection, made when the connection is
 * registered for leak detection. The registry holds it for the connection,
 * so a stale registration (the connection was put long ago, the socket lent
 * again since) is recognised and ignored (E9).
 */
export class Lease {
  constructor(
    readonly pooled: PooledSocket,
    /** Where the borrower got the socket, when leak tracing is on. */
    readonly trace: Error | undefined,
  ) {}
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
 *
 * While lent, the socket holds its connection strongly at first: most are
 * put back within moments, and watching each for leaks would cost every
 * get(). A connection still out after a full leak sweep is registered for
 * collection and from then on held only while it wants data (or has a
 * timeout set): if its user dropped it without put(), it is collected and
 * reported (E9). What arrives while the socket does not hold it is parked
 * here, the socket paused, until the next read: that is also the
 * connection's backpressure.
 */
export class PooledSocket extends Seat {
  /** The handle that last took the socket, which prefers it (E4). */
  owner: object | undefined = undefined;
  /** The current lending, once its connection is registered for leak detection. */
  lease: Lease | undefined = undefined;
  /** Lent and not yet put or closed by its user (who may hold it after an error closed the socket). */
  isOut = false;
  isIdle = false;
  /** Close instead of idling at the next put() (scheduleClose). */
  isDoomed = false;
  above: PooledSocket | undefined = undefined;
  below: PooledSocket | undefined = undefined;
  prevLent: PooledSocket | undefined = undefined;
  nextLent: PooledSocket | undefined = undefined;
  /** The connection: held from lending until it is watched for leaks, then while it wants data (or has a timeout set). */
  #user: Duplex | undefined = undefined;
  #isLent = false;
  /** Where the current borrower got the socket, when leak tracing is on. */
  #trace: Error | undefined = undefined;
  /** Lent, and its connection not yet registered for leak detection. */
  #isAnchored = false;
  /** A leak sweep has seen it anchored once: at the next it is registered. */
  #isSeenBySweep = false;
  /** The connection asked for data (_read) and has not had any since. */
  #isWanted = false;
  #isTimeoutPinned = false;
  /** Chunks, EOF and an error that arrived while the connection did not want data. */
  #parked: Buffer[] | undefined = undefined;
  #isEndParked = false;
  #parkedError: Error | undefined = undefined;
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
  lend(user: Duplex, owner: object, trace: Error | undefined): void {
    this.owner = owner;
    this.isOut = true;
    this.#user = user;
    this.#isLent = this.#isAnchored = true;
    this.#trace = trace;
    this.stack.index.lent(this);
    this.socket.ref();
  }

  /** The leak sweep: a connection out across a whole sweep is registered for collection. */
  age(): void {
    if (!this.#isAnchored) return;
    if (!this.#isSeenBySweep) {
      this.#isSeenBySweep = true;
      return;
    }
    this.#isAnchored = false;
    this.lease = new Lease(this, this.#trace);
    leaks.register(this.#user!, this.lease);
    if (!this.#isWanted && !this.#isTimeoutPinned) this.#user = undefined;
  }

  /**
   * The borrower wants data (its `_read()`): hands over what was parked, or
   * holds the borrower and lets the socket flow until the next chunk.
   */
  pull(user: Duplex): void {
    if (this.#parkedError !== undefined) {
      user.destroy(this.#parkedError);
      return;
    }
    const parked = this.#parked;
    if (parked !== undefined || this.#isEndParked) {
      this.#parked = undefined;
      if (parked !== undefined) for (const chunk of parked) user.push(chunk);
      if (this.#isEndParked) user.push(null);
      this.#isEndParked = false;
      return;
    }
    this.#user = user;
    this.#isWanted = true;
    if (this.socket.isPaused()) this.socket.resume();
  }

  /** Holds the borrower for good: it awaits 'timeout' events. */
  pinForTimeout(user: Duplex): void {
    this.#user = user;
    this.#isTimeoutPinned = true;
  }

  /**
   * Takes the socket back from its user: idle for re-use if `isReusable` and
   * the socket is clean (E2), else closed.
   */
  reclaim(isReusable: boolean): void {
    const isParkedClean = this.#parked === undefined && !this.#isEndParked && this.#parkedError === undefined;
    this.#unlend();
    const socket = this.socket;
    if (!isReusable || !isParkedClean || this.isDoomed || !isClean(socket) || !this.pool.keeps(this)) {
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

  /** The borrower of `lease` was collected while it held the socket: warn, close, free the slot (E9). */
  reclaimLeak(lease: Lease): void {
    if (this.lease !== lease) return;
    this.isOut = false;
    const where = lease.trace?.stack?.replace(/^.*\n/, '') ?? 'run with NODE_DEBUG=connpool or traceLeaks: true to see where';
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
    if (!this.#isLent) return;
    this.stack.index.returned(this);
    this.lease = this.#user = this.#trace = this.#parked = this.#parkedError = undefined;
    this.#isLent = this.#isAnchored = this.#isSeenBySweep = this.#isWanted = this.#isTimeoutPinned = this.#isEndParked = false;
  }

  /** Drops the socket if it is idle: the peer closed, reset or spoke out of turn (E1). */
  #drop(): void {
    if (this.isIdle) void this.pool.dispose(this, true);
  }

  readonly #onData = (chunk: Buffer): void => {
    if (this.#isWanted) {
      const user = this.#user!;
      this.#isWanted = false;
      if (!this.#isAnchored && !this.#isTimeoutPinned) this.#user = undefined;
      user.push(chunk);
    } else if (this.#isLent) {
      (this.#parked ??= []).push(chunk);
      this.socket.pause();
    } else {
      this.#drop();
    }
  };

  readonly #onEnd = (): void => {
    const user = this.#user;
    if (user !== undefined) user.push(null);
    else if (this.#isLent) this.#isEndParked = true;
    else this.#drop();
  };

  readonly #onError = (error: Error): void => {
    const user = this.#user;
    if (user !== undefined) user.destroy(error);
    else if (this.#isLent) this.#parkedError = error;
    else this.#drop();
  };

  readonly #onClose = (): void => {
    this.#isClosed = true;
    this.#resolveClosed?.();
    this.#onEnd();
  };

  readonly #onTimeout = (): void => {
    this.#user?.emit('timeout');
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
