// The seed's cluster HTTP program (the Node.js anchor of bench/http.c):
// a primary forks N workers, each answers 200 "123123\n" and tells the
// primary {cmd: 'notifyRequest'} per request; the primary counts them.
// Usage: node bench/http-seed.js [PORT] [WORKERS]
// (or PORT / WORKERS in the environment). The scheduling policy comes from
// NODE_CLUSTER_SCHED_POLICY (rr or none), as in Node itself. The seed's
// console.log per request and per second are left out: they would measure
// the terminal, not the cluster.
'use strict';
const cluster = require('cluster');
const http = require('http');
const os = require('os');

const port = Number(process.argv[2] || process.env.PORT || 8000);
const workers = Number(process.argv[3] || process.env.WORKERS ||
                       os.cpus().length);

if (cluster.isPrimary) {
  let numReqs = 0;
  function messageHandler(msg) {
    if (msg.cmd && msg.cmd === 'notifyRequest') {
      numReqs += 1;
    }
  }
  for (let i = 0; i < workers; i++) {
    cluster.fork();
  }
  for (const id in cluster.workers) {
    cluster.workers[id].on('message', messageHandler);
  }
  process.on('SIGTERM', () => {
    for (const id in cluster.workers) cluster.workers[id].process.kill();
    process.exit(0);
  });
} else {
  http.Server((req, res) => {
    res.writeHead(200);
    res.end('123123\n');
    process.send({ cmd: 'notifyRequest' });
  }).listen(port, '127.0.0.1');
}
