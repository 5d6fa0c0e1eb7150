/**
 * What the demo measures with: many tasks run at once with their outcomes
 * counted, connections made the plain way (a new socket each time), HTTP
 * requests, the most connections a pool had open at once, and a table
 * printer. Nothing here is pooled by itself: the demo says which round
 * trips go through connpool.
 */
import diagnostics from 'node:diagnostics_channel';
import http from 'node:http';
import net from 'node:net';
import type { ResourcePool } from 'connpool';

/** How a batch of tasks ended. */
export interface TaskResults {
  /** Tasks that made all their round trips. */
  done: number;
  /** Tasks that failed, by error code (`EMFILE`, `ECONNRESET`, ...). */
  failed: Record<string, number>;
  /** Wall time of the whole batch. */
  seconds: number;
}

/** Starts `count` tasks at once and waits for all of them; a task fails at its first error. */
export async function runTasks(count: number, task: (id: number) => Promise<void>): Promise<TaskResults> {
  const failed: Record<string, number> = {};
  let done = 0;
  const startedAt = performance.now();
  await Promise.all(
    Array.from({ length: count }, async (_, id) => {
      try {
        await task(id);
        done++;
      } catch (error) {
        const code = errorCode(error);
        failed[code] = (failed[code] ?? 0) + 1;
      }
    }),
  );
  return { done, failed, seconds: (performance.now() - startedAt) / 1_000 };
}

/** Failures with this code, and with any other. */
export function countFailures(results: TaskResults, code: string): { withCode: number; other: number } {
  let other = 0;
  for (const [name, n] of Object.entries(results.failed)) if (name !== code) other += n;
  return { withCode: results.failed[code] ?? 0, other };
}

function errorCode(error: unknown): string {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : error instanceof Error ? error.name : String(error);
}

/**
 * Connections the usual way without a pool: `net.connect()` a new socket for
 * each use, close it after. Counts the sockets it opened and the most that
 * were open at once.
 */
export class PlainSockets {
  opened = 0;
  mostOpen = 0;
  #open = 0;

  /** Opens a socket to `address` (`host:port`), runs `fn` on it, then closes it. */
  async use<T>(address: string, fn: (socket: net.Socket) => Promise<T>): Promise<T> {
    const colon = address.lastIndexOf(':');
    const socket = net.connect({ host: address.slice(0, colon), port: Number(address.slice(colon + 1)), noDelay: true });
    socket.once('connect', () => {
      this.opened++;
      this.mostOpen = Math.max(this.mostOpen, ++this.#open);
      socket.once('close', () => this.#open--);
    });
    try {
      return await fn(socket);
    } finally {
      socket.destroy();
    }
  }
}

/**
 * Watches the most connections `pool` has open at once (in use + idle +
 * closing, from `pool.stats()`), read each time the pool starts a dial: the
 * only moment that number can grow. Uses the `connpool:dial:start`
 * diagnostics channel.
 */
export function watchMostOpen(pool: ResourcePool): { readonly most: number; stop(): void } {
  let most = 0;
  const onDial = (message: unknown): void => {
    if ((message as { pool: unknown }).pool !== pool) return;
    const { inUse, idle, releasing } = pool.stats();
    most = Math.max(most, inUse + idle + releasing);
  };
  diagnostics.subscribe('connpool:dial:start', onDial);
  return {
    get most() {
      return most;
    },
    stop: () => void diagnostics.unsubscribe('connpool:dial:start', onDial),
  };
}

/** GETs `url` with `agent`; resolves with the body of a 200 response, rejects otherwise. */
export function httpGet(url: string, agent: http.Agent): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    http
      .get(url, { agent }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('error', reject);
        res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`HTTP ${res.statusCode}`))));
      })
      .on('error', reject);
  });
}

/** 1,234 */
export const n = (value: number): string => value.toLocaleString('en-US');
/** 0.42 s */
export const secs = (value: number): string => `${value.toFixed(2)} s`;
/** 97% */
export const pct = (part: number, whole: number): string => `${whole === 0 ? 0 : Math.round((100 * part) / whole)}%`;

/** Prints a table: labels on the left, each column's values right-aligned under its heading. */
export function printTable(headings: string[], rows: Array<[string, ...Array<string | number>]>): void {
  const cells = rows.map(([label, ...values]) => [label, ...values.map((v) => (typeof v === 'number' ? n(v) : v))]);
  const labelWidth = Math.max(...cells.map((row) => row[0]!.length));
  const widths = headings.map((heading, i) => Math.max(heading.length, ...cells.map((row) => row[i + 1]?.length ?? 0)));
  const line = (label: string, values: string[]): string =>
    `   ${label.padEnd(labelWidth)}${values.map((value, i) => `   ${value.padStart(widths[i]!)}`).join('')}`;
  console.log(line('', headings));
  for (const [label, ...values] of cells) console.log(line(label!, values));
}
