import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ResourcePool } from './pool.js';
import { channels } from './diagnostics.js';
import { Seat } from './seat.js';

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
    /** Where its sockets go, for diagnostics messages. */
    readonly origin: { readonly network: string; readonly address: string; readonly key: string },
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
  stack(key: string, network: string, address: string, dialerKey: string): IdleStack {
    let stack = this.#stacks.get(key);
    if (stack === undefined) {
      stack = new IdleStack(key, { network, address, key: dialerKey }, this);
      this.#stacks.set(key, stack);
    }
    return stack;
  }

  /** The most recently used idle socket of `key`, or undefined. */
  top(key: string): PooledSocket | undefined {
    return this.#stacks.get(key)?.top;
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
 * One lending of a socket to a connection, made when the connection is
 * registered for leak detection. The registry holds it for the connection,
 * so a stale registration (the connection was put long ago, the socket lent
 * again since) is recognised and ignored (E9).
 */
class Lease {
  constructor(
    readonly pooled: PooledSocket,
    /** Where the borrower got the socket, when leak tracing is on. */
    readonly trace: Error | undefined,
    /** The borrower, to tell it what becomes of its socket while it lives. */
    readonly borrower: WeakRef<Duplex>,
  ) {}
}

/** No read is pending. */
const NO_READ = 0;
/** A read is pending and its data is listened for: the socket holds the connection until it comes. */
const HELD_READ = 1;
/**
 * A read is pending that nobody listens for (a flowing stream whose
 * `once('data')` has fired): it does not keep the connection alive (E15).
 */
const UNHELD_READ = 2;

/**
 * A socket the pool owns, for its whole life: lent to one connection at a
 * time, idle in its key's stack in between, then closed.
 *
 * The socket stays in paused mode throughout and is read on demand (its
 * `'readable'` event, then `read()`), so its own buffer holds what the
 * connection has not asked for yet, that buffer is the backpressure, and its
 * `'end'` comes after its data (E10). Its listeners are installed once, at
 * dial, and dispatch on its state, so lending and reclaiming add and remove
 * none. While idle, any `'readable'` (bytes or EOF), error or close means the
 * peer closed, reset or spoke out of turn: the socket is dropped (E1).
 *
 * While lent, the socket holds its connection strongly at first: most are
 * put back within moments, and watching each for leaks would cost every
 * get(). A connection still out after a full leak sweep is registered for
 * collection, and from then on the socket references it only while a read
 * whose data someone listens for is pending, or a timeout is set: if its user
 * dropped it without put(), it is collected and reported (E9, E15). Until
 * then the socket reaches it weakly, to tell it of its peer's end, a reset or
 * a close even when no read is pending (E14).
 *
 * The socket never ends its own side when its peer ends (`allowHalfOpen`):
 * its connection does, or keeps it half-open if its handle asked to.
 */
export class PooledSocket extends Seat {
  /** The handle that last took the socket, which prefers it (E4). */
  owner: object | undefined = undefined;
  /** Lent and not yet put, closed or destroyed by its user. */
  isOut = false;
  /** Close instead of idling at the next put() (scheduleClose). */
  isDoomed = false;
  /** The current lending, once its connection is registered for leak detection. */
  lease: Lease | undefined = undefined;
  above: PooledSocket | undefined = undefined;
  below: PooledSocket | undefined = undefined;
  prevLent: PooledSocket | undefined = undefined;
  nextLent: PooledSocket | undefined = undefined;
  #isLent = false;
  /** The connection, from lending until a leak sweep registers it. */
  #anchor: Duplex | undefined = undefined;
  /** Whether a read is pending, and whether the socket holds its connection for it. */
  #read: typeof NO_READ | typeof HELD_READ | typeof UNHELD_READ = NO_READ;
  /** The connection, in `HELD_READ`. */
  #reader: Duplex | undefined = undefined;
  /** The connection while it has a timeout set, to hear `'timeout'`. */
  #timeoutListener: Duplex | undefined = undefined;
  /** Where the current borrower got the socket, when leak tracing is on. */
  #trace: Error | undefined = undefined;
  /** A leak sweep has seen it anchored once: at the next it is registered. */
  #isSeenBySweep = false;
  #closing: Promise<void> | undefined = undefined;
  #resolveClosed: (() => void) | undefined = undefined;
  /** Bytes handed to the current borrower: with what the socket holds unread, what it has received (`bytesRead`). */
  bytesDelivered = 0;

  constructor(
    readonly socket: Socket,
    readonly stack: IdleStack,
    readonly pool: ResourcePool,
  ) {
    super();
    stack.hold();
    socket.allowHalfOpen = true;
    socket.on('readable', this.#onEvent);
    socket.on('end', this.#onEvent);
    socket.on('error', this.#onEvent);
    socket.on('close', this.#onClose);
    socket.on('timeout', this.#onTimeout);
  }

  /** Lends the socket to `user` for `owner`; says whether it was lent before. */
  lend(user: Duplex, owner: object, trace: Error | undefined): boolean {
    const wasLent = this.owner !== undefined;
    this.owner = owner;
    this.isOut = this.#isLent = true;
    this.#anchor = user;
    this.#trace = trace;
    this.bytesDelivered = 0;
    this.stack.index.lent(this);
    this.socket.ref();
    return wasLent;
  }

  /** The leak sweep: a connection out across a whole sweep is registered for collection. */
  age(): void {
    const anchor = this.#anchor;
    if (anchor === undefined) return;
    if (!this.#isSeenBySweep) {
      this.#isSeenBySweep = true;
      return;
    }
    this.#anchor = undefined;
    this.lease = new Lease(this, this.#trace, new WeakRef(anchor));
    leaks.register(anchor, this.lease);
    // A read set pending while the anchor held the connection anyway was not checked.
    if (this.#read === HELD_READ && !isListenedTo(anchor)) {
      this.#read = UNHELD_READ;
      this.#reader = undefined;
    }
  }

  /**
   * The connection wants data (its `_read()`): hands it what the socket has
   * buffered, or EOF, or the socket's error; else waits for more, holding
   * the connection until it comes if anyone listens for it (E15).
   */
  pull(user: Duplex): void {
    const socket = this.socket;
    this.#read = NO_READ;
    this.#reader = undefined;
    for (let chunk: Buffer | null = socket.read(); chunk !== null; chunk = socket.read()) {
      this.bytesDelivered += chunk.length;
      if (!user.push(chunk)) return;
    }
    if (socket.errored !== null) user.destroy(socket.errored);
    else if (socket.readableEnded) user.push(null);
    else if (socket.destroyed) user.destroy(prematureClose());
    else if (this.#anchor !== undefined || isListenedTo(user)) {
      this.#read = HELD_READ;
      this.#reader = user;
    } else this.#read = UNHELD_READ;
  }

  /** Holds the borrower while a timeout is set on the socket, or lets go (`undefined`). */
  listenForTimeout(user: Duplex | undefined): void {
    this.#timeoutListener = user;
  }

  /**
   * Takes the socket back from its user: idle for re-use if `isReusable` and
   * the socket is clean (E2), else closed.
   */
  reclaim(isReusable: boolean): void {
    this.#unlend();
    const socket = this.socket;
    if (!isReusable || this.isDoomed || !isClean(socket) || !this.pool.keeps(this)) {
      void this.pool.dispose(this);
      return;
    }
    socket.unref();
    this.stack.push(this);
    this.pool.checkIn(this);
  }

  /** Closes the socket, in use; resolves once it is closed and its slot free. */
  retire(): Promise<void> {
    this.#unlend();
    return this.pool.dispose(this);
  }

  /** The borrower of `lease` was collected while it held the socket: warn, close, free the slot (E9). */
  reclaimLeak(lease: Lease): void {
    if (this.lease !== lease) return;
    this.isOut = false;
    this.pool.counters.leaks++;
    const stack = lease.trace?.stack?.replace(/^.*\n/, '');
    if (channels.leak.hasSubscribers) channels.leak.publish({ pool: this.pool, ...this.stack.origin, stack });
    const where = stack ?? 'create the pool with { traceLeaks: true } to see where';
    process.emitWarning(
      `a PooledConn of pool "${this.pool.name}" was garbage-collected without put() or close(); its socket was closed`,
      { code: 'CONNPOOL_LEAK', detail: `get() was called:\n${where}` },
    );
    void this.retire();
  }

  override unindex(): void {
    this.stack.remove(this);
  }

  shut(): Promise<void> {
    this.#unlend();
    if (this.#closing === undefined) {
      this.stack.unhold();
      if (channels.close.hasSubscribers) channels.close.publish({ pool: this.pool, ...this.stack.origin });
      const socket = this.socket;
      socket.destroy();
      // A plain TCP or unix socket's descriptor is closed by the time destroy()
      // returns ('close' only follows a turn later); any other kind of socket
      // (TLS, or wrapping a stream) counts as open until its 'close'.
      this.#closing =
        socket.closed || socket.constructor === Socket
          ? Promise.resolve()
          : new Promise<void>((resolve) => {
              this.#resolveClosed = resolve;
            });
    }
    return this.#closing;
  }

  #unlend(): void {
    if (!this.#isLent) return;
    this.stack.index.returned(this);
    this.lease = this.#anchor = this.#reader = this.#timeoutListener = this.#trace = undefined;
    this.#read = NO_READ;
    this.#isLent = this.#isSeenBySweep = false;
  }

  /** The connection the socket is lent to, while it lives. */
  #borrower(): Duplex | undefined {
    return this.#anchor ?? this.lease?.borrower.deref();
  }

  /**
   * Data, EOF or an error on the socket: the pending read gets it; an idle
   * socket is dropped (E1). A lent one without a pending read keeps data in
   * its own buffer for the next read, but its connection hears at once of
   * the end of the peer's data, an error or a close, as a `net.Socket`
   * would emit them (E14).
   */
  readonly #onEvent = (): void => {
    if (this.#read !== NO_READ) {
      const reader = this.#reader ?? this.#borrower();
      this.#read = NO_READ;
      this.#reader = undefined;
      if (reader === undefined) return;
      this.pull(reader);
      // As net.Socket after its EOF: a read(0) emits 'end' if nothing is
      // left to read, even when the pending read was a paused read() call.
      if (this.socket.readableEnded && !reader.destroyed) reader.read(0);
    } else if (this.isIdle) {
      void this.pool.dispose(this);
    } else if (this.#isLent) {
      const user = this.#borrower();
      if (user !== undefined && !user.destroyed) hangUp(this.socket, user);
    }
  };

  readonly #onClose = (): void => {
    this.#resolveClosed?.();
    this.#onEvent();
  };

  readonly #onTimeout = (): void => {
    this.#timeoutListener?.emit('timeout');
  };
}

/**
 * Notices connections dropped without put() or close() (E9). Registrations are
 * never withdrawn: one whose lease has ended is ignored.
 */
const leaks = new FinalizationRegistry<Lease>((lease) => lease.pooled.reclaimLeak(lease));

/** Whether anyone takes the data a read brings: a `'data'` listener (a pipe's too) or a `'readable'` one (`for await`). */
function isListenedTo(user: Duplex): boolean {
  return user.listenerCount('data') > 0 || user.listenerCount('readable') > 0;
}

/**
 * Tells a connection with no read pending that its socket's peer ended
 * (EOF, as `net.Socket` pushes it: `'end'` follows once its buffered data
 * is read), or that the socket failed or closed.
 */
function hangUp(socket: Socket, user: Duplex): void {
  if (socket.errored !== null) user.destroy(socket.errored);
  else if (socket.readableEnded) {
    user.push(null);
    user.read(0);
  } else if (socket.destroyed) user.destroy();
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

/** The socket closed under a pending read, with neither EOF nor an error. */
function prematureClose(): Error {
  return Object.assign(new Error('the socket closed before the end of its data'), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
}
