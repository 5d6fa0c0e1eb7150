type Listener = () => void;

/**
 * One `'abort'` listener per signal, fanning out to every waiter on it, so a
 * long-lived signal shared by many `get()` calls never trips Node's
 * MaxListenersExceededWarning and is left with no listener once they settle.
 */
class Fanout {
  readonly listeners = new Set<Listener>();
  constructor(readonly signal: AbortSignal) {}

  handleEvent(): void {
    fanouts.delete(this.signal);
    for (const listener of this.listeners) listener();
  }
}

const fanouts = new WeakMap<AbortSignal, Fanout>();

/**
 * Calls `listener` once when `signal` aborts. Disposing the result stops
 * listening; it is safe to dispose more than once or after the abort.
 */
export function onAbort(signal: AbortSignal, listener: Listener): Disposable {
  let fanout = fanouts.get(signal);
  if (fanout === undefined) {
    fanout = new Fanout(signal);
    fanouts.set(signal, fanout);
    signal.addEventListener('abort', fanout, { once: true });
  }
  const subscribed = fanout;
  subscribed.listeners.add(listener);
  return {
    [Symbol.dispose]() {
      if (!subscribed.listeners.delete(listener) || subscribed.listeners.size > 0) return;
      if (fanouts.get(signal) === subscribed) fanouts.delete(signal);
      signal.removeEventListener('abort', subscribed);
    },
  };
}
