import { describe } from './address.js';
import { invalidArgType } from './errors.js';

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

/**
 * The `signal` argument of a `get()`: an `AbortSignal`, or none (`undefined`,
 * or `null` as Go's nil channel).
 * @throws {TypeError} `ERR_INVALID_ARG_TYPE` for anything else, such as a
 *   Go-style timeout passed where the signal goes.
 */
export function checkSignal(value: unknown): AbortSignal | undefined {
  if (value === undefined || value === null) return undefined;
  if (value instanceof AbortSignal) return value;
  const hint =
    typeof value === 'number'
      ? ': to bound the wait, pass AbortSignal.timeout(ms); to bound the dial, pass the timeout second, get(signal, ms)'
      : '';
  throw invalidArgType(`signal must be an AbortSignal or undefined, received ${describe(value)}${hint}`);
}
