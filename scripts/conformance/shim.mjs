// Preloaded with `--import` in the adapted runs: connpool's agents take the
// place of Node's, so `new http.Agent(opts)` builds an HttpAgent and requests
// without an agent go through connpool's global agents. The package comes
// from CONNPOOL_CONFORMANCE_HTTP (a file URL of its `http/index.js`).
import http from 'node:http';
import https from 'node:https';
import { syncBuiltinESMExports } from 'node:module';

const entry = process.env.CONNPOOL_CONFORMANCE_HTTP;
if (!entry) throw new Error('CONNPOOL_CONFORMANCE_HTTP is not set');

// Imported before the swap: the classes extend Node's own agents.
const { HttpAgent, HttpsAgent } = await import(entry);

// Node's Agent is a plain function that also builds an agent when called
// without `new` (`http.Agent({ keepAlive: true })`); a class cannot be
// called, so the stand-in forwards such calls to `new`. Subclassing,
// `instanceof` and `prototype` reach the class itself.
const callable = (Agent) => new Proxy(Agent, { apply: (target, _this, args) => Reflect.construct(target, args) });

http.Agent = callable(HttpAgent);
https.Agent = callable(HttpsAgent);
// The options of Node 20's own global agents (lib/_http_agent.js, lib/https.js).
http.globalAgent = new HttpAgent({ keepAlive: true, scheduling: 'lifo', timeout: 5000 });
https.globalAgent = new HttpsAgent({ keepAlive: true, scheduling: 'lifo', timeout: 5000 });
syncBuiltinESMExports();
