'use strict';
// The node<->node side of bench/json.c: `node json.js N` forks itself; the
// child sends N fresh objects of the benchmark's shape, the parent counts
// 'message' events (each one JSON.parse()d by Node) and prints "value X"
// (msg/s).
const { fork } = require('child_process');

const [nArg, role] = process.argv.slice(2);
const n = Number(nArg);

function message(i) {
  return { cmd: 'notifyRequest', i, worker: { id: 2, pid: 4242 },
           path: '/api/items?page=3', ok: true, ms: 0.25, tags: ['a', 'b'] };
}

if (role === 'child') {
  for (let i = 0; i < n; i++) process.send(message(i));
  process.on('disconnect', () => process.exit(0));
} else {
  const child = fork(__filename, [nArg, 'child']);
  let got = 0;
  let t0 = 0n;
  let sum = 0;
  child.on('message', (m) => {
    if (got === 0) t0 = process.hrtime.bigint();
    sum += m.i + m.worker.id;
    if (++got === n) {
      const s = Number(process.hrtime.bigint() - t0) / 1e9;
      console.log('value ' + (sum > 0 ? (n - 1) / s : -1));
      child.disconnect();
    }
  });
}
