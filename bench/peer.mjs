// Starts and stops the child process that runs the benchmark servers (servers.mjs).
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

/**
 * Forks servers.mjs; `ready` resolves with its ports. Without `credentials`
 * it runs no TLS server.
 */
export function startServers(credentials) {
  const child = fork(join(here, 'servers.mjs'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const ready = new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`bench servers exited early with code ${code}`)));
    child.on('message', (message) => {
      if (message.type === 'ready') resolve(message.ports);
    });
  });
  const tls = credentials && { key: credentials.key.toString(), cert: credentials.cert.toString() };
  child.send({ type: 'start', tls });
  return { child, ready };
}

/**
 * What the child's fanout HTTP server saw since the last census: the
 * connections it accepted, the most open at once, and how many are open now.
 */
export function census(child) {
  return new Promise((resolve, reject) => {
    const onMessage = (message) => {
      if (message.type !== 'census') return;
      child.off('message', onMessage);
      resolve({ peak: message.peak, accepted: message.accepted, open: message.open });
    };
    child.on('message', onMessage);
    child.send({ type: 'census' }, (error) => {
      if (error) {
        child.off('message', onMessage);
        reject(error);
      }
    });
  });
}

/** Asks the child to close its servers and sockets, and waits for it to exit (kills it after 5 s). */
export async function stopServers(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  if (child.connected) child.send({ type: 'stop' });
  const timer = setTimeout(() => child.kill(), 5_000);
  await exited;
  clearTimeout(timer);
}
