'use strict';
// examples/threadpool-deflate in Node, the anchor of bench/threadpool.c: a
// cluster whose workers answer POST /deflate with zlib.deflate() of the body
// (on libuv's pool; zlib.deflateSync() on the loop with --on-loop) and
// anything else at once. Same options and the same first line on stdout:
//   node threadpool.js [-p PORT] [-w WORKERS] [-t THREADS] [--on-loop]
const cluster = require('cluster');
const http = require('http');
const os = require('os');
const zlib = require('zlib');
const { parseArgs } = require('util');

const { values: opts } = parseArgs({
  options: {
    port: { type: 'string', short: 'p', default: '8000' },
    workers: { type: 'string', short: 'w' },
    threads: { type: 'string', short: 't' },
    'on-loop': { type: 'boolean', default: false },
  },
});

if (cluster.isPrimary) {
  const n = Number(opts.workers || os.availableParallelism());
  // libuv reads UV_THREADPOOL_SIZE once, at the first use of the pool: it
  // must be in each worker's environment from the start.
  const env = opts.threads ? { UV_THREADPOOL_SIZE: opts.threads } : {};
  let printed = false;
  cluster.on('listening', (worker, address) => {
    if (printed) return;
    printed = true;
    console.log(`listening on port ${address.port}: ${n} workers`);
  });
  for (let i = 0; i < n; i++) cluster.fork(env);
  process.on('SIGTERM', () => cluster.disconnect(() => process.exit(0)));
} else {
  // With an explicit Content-Length, as herd's answers carry (Node would
  // otherwise answer writeHead() + end() chunked).
  const send = (res, type, body) => {
    res.writeHead(200, { 'Content-Type': type, 'Content-Length': body.length });
    res.end(body);
  };
  http.createServer((req, res) => {
    if (req.method === 'POST' && req.url === '/deflate') {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        if (opts['on-loop']) {
          send(res, 'application/octet-stream', zlib.deflateSync(body));
          return;
        }
        zlib.deflate(body, (err, out) => {
          if (err) {
            res.writeHead(500);
            res.end();
            return;
          }
          send(res, 'application/octet-stream', out);
        });
      });
      return;
    }
    send(res, 'text/plain', Buffer.from(`ok ${cluster.worker.id}\n`));
  }).listen(Number(opts.port));
}
