// Stream helpers used identically on PooledConn and on raw sockets, so the
// two sides of each comparison run the same JavaScript.
import { once } from 'node:events';

/** Resolves once `count` bytes have been read from `stream` ('data' events). */
export function readBytes(stream, count) {
  return new Promise((resolve, reject) => {
    let got = 0;
    const onData = (chunk) => {
      got += chunk.length;
      if (got >= count) {
        cleanup();
        resolve();
      }
    };
    const onError = (error) => {
      cleanup();
      reject(error);
    };
    const onEnd = () => {
      cleanup();
      reject(new Error(`stream ended after ${got} of ${count} bytes`));
    };
    const cleanup = () => {
      stream.off('data', onData);
      stream.off('error', onError);
      stream.off('end', onEnd);
    };
    stream.on('data', onData);
    stream.on('error', onError);
    stream.on('end', onEnd);
  });
}

/** Writes `payload` and waits for as many bytes to come back (an echo round trip). */
export function roundTrip(stream, payload) {
  const reply = readBytes(stream, payload.length);
  stream.write(payload);
  return reply;
}

function header(op, length) {
  const buffer = Buffer.alloc(9);
  buffer[0] = op.charCodeAt(0);
  buffer.writeBigUInt64BE(BigInt(length), 1);
  return buffer;
}

/** Sends `length` bytes to the bulk server in `chunk`-sized writes, honouring backpressure; resolves on its ack. */
export async function upload(stream, length, chunk) {
  const ack = readBytes(stream, 1);
  stream.write(header('U', length));
  let left = length;
  while (left > 0) {
    const n = Math.min(left, chunk.length);
    left -= n;
    if (!stream.write(n === chunk.length ? chunk : chunk.subarray(0, n))) await once(stream, 'drain');
  }
  await ack;
}

/** Asks the bulk server for `length` bytes and reads them all. */
export function download(stream, length) {
  const body = readBytes(stream, length);
  stream.write(header('D', length));
  return body;
}
