// Runs one HTTP scenario whose outcome is seen at the process level (uncaught
// exceptions, a handler that throws), with Node's http.Agent ("stock") or
// connpool's HttpAgent ("pooled"), and prints what happened as JSON.
// Usage: node http-dropin-child.mjs SCENARIO stock|pooled
import http from 'node:http';
import net from 'node:net';
import { distIndex } from './dist-path.mjs';

const [scenario, kind] = process.argv.slice(2);
const { ResourcePool } = await import(distIndex);
const { HttpAgent } = await import(distIndex.replace(/index\.js$/, 'http/index.js'));
const pool = new ResourcePool({ max: 4 });
const makeAgent = (options = {}) => (kind === 'stock' ? new http.Agent({ keepAlive: true, ...options }) : new HttpAgent({ keepAlive: true, pool, ...options }));
const uncaught = [];
process.on('uncaughtException', (error) => uncaught.push(`${error.name}: ${error.message}`));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const listen = async (server) => {
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server.address().port;
};
const report = {};

if (scenario === 'destroy-before-socket') {
  const server = http.createServer((req, res) => res.end('hi'));
  const port = await listen(server);
  const agent = makeAgent();
  const events = [];
  const aborted = http.get({ host: '127.0.0.1', port, agent, signal: AbortSignal.abort() });
  aborted.on('error', (e) => events.push(`signal:error:${e.name}`)).on('close', () => events.push('signal:close'));
  const destroyed = http.get({ host: '127.0.0.1', port, agent });
  destroyed.on('error', (e) => events.push(`destroy:error:${e.code}`)).on('close', () => events.push('destroy:close'));
  destroyed.destroy();
  await sleep(300);
  report.events = events.sort();
  report.inUse = pool.stats().inUse;
  agent.destroy();
  server.close();
} else if (scenario === 'early-response-close') {
  const agent = makeAgent({ timeout: 5000 });
  const server = http.createServer((req, res) => {
    res.end('early answer');
    res.on('finish', () => req.socket.end());
  });
  const port = await listen(server);
  for (let i = 0; i < 3; i++) {
    await new Promise((resolve) => {
      const req = http.request({ method: 'POST', host: '127.0.0.1', port, agent, headers: { 'content-length': 2 } }, (res) => res.resume());
      req.on('error', () => {}).on('close', resolve);
      req.write('a');
      setTimeout(() => req.end('b'), 30);
    });
  }
  server.close();
  const deleteServer = http.createServer((req, res) => {
    req.resume();
    res.end('x');
  });
  const deletePort = await listen(deleteServer);
  await new Promise((resolve) => {
    const req = http.request({ method: 'DELETE', host: '127.0.0.1', port: deletePort, agent }, (res) => res.resume());
    req.on('error', () => {}).on('close', resolve);
    req.write('PUT / HTTP/1.1\r\n\r\n');
    req.end();
  });
  deleteServer.close();
  agent.destroy();
} else if (scenario === 'throw-in-handler') {
  const server = http.createServer((req, res) => res.end('bye'));
  server.keepAliveTimeout = 100;
  const port = await listen(server);
  const agent = makeAgent();
  let closed = false;
  const req = http.get({ host: '127.0.0.1', port, agent }, (res) => {
    res.resume();
    throw new Error('handler failed');
  });
  req.on('close', () => (closed = true)).on('error', () => {});
  for (let i = 0; i < 200 && !(closed && pool.stats().inUse === 0); i++) await sleep(10);
  report.closed = closed;
  report.inUse = pool.stats().inUse;
  server.close();
} else if (scenario === 'settimeout-after-close') {
  const server = net.createServer((s) => {
    s.on('error', () => {});
    s.on('data', (d) => {
      if (String(d).startsWith('GET /stray')) {
        s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
        setImmediate(() => s.write('HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nJUNK'));
      } else {
        s.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n');
      }
    });
  });
  const port = await listen(server);
  const agent = makeAgent();
  report.stray = await new Promise((resolve) => {
    http.get({ host: '127.0.0.1', port, path: '/stray', agent, timeout: 5000 }, (res) => {
      const t = Date.now();
      while (Date.now() - t < 5); // a busy moment before the body is read
      res.on('data', () => {}).on('end', () => resolve('end')).on('error', () => resolve('res error'));
    }).on('error', (e) => resolve(`req error ${e.code}`));
  });
  await new Promise((resolve) => {
    const controller = new AbortController();
    const req = http.get({ host: '127.0.0.1', port, path: '/chunked', agent, signal: controller.signal, timeout: 5000 }, (res) => {
      res.on('data', () => controller.abort()).on('error', () => {});
    });
    req.on('error', () => {}).on('close', resolve);
  });
  await sleep(50);
  agent.destroy();
  server.close();
}
report.uncaught = uncaught.filter((u) => u !== 'Error: handler failed');
console.log(JSON.stringify(report));
process.exit(0);
