// A worker that never loads connpool: it starts a worker of threads-child.mjs
// (which does) with the workerData it was given, relays its messages, and
// says when it has exited. Used to check that a thread whose parent cannot
// give back its slots still leaves the line when it ends.
import { parentPort, Worker, workerData } from 'node:worker_threads';

const child = new Worker(new URL('./threads-child.mjs', import.meta.url), { workerData });
child.on('message', (message) => parentPort.postMessage(message));
child.once('exit', () => parentPort.postMessage({ type: 'nested exited' }));
