// Node's side of bench/spawn.c: the same sequential loops with
// child_process, printing "<metric> <spawns per second> <spawns made>" lines.
//   node spawn.js [N] [max ms per loop] [metric]   (no metric: all of them)
'use strict';
const { spawn, execFile, exec, spawnSync } = require('child_process');

const N = Number(process.argv[2]) || 200;
const MAX_MS = Number(process.argv[3]) || 1000;
const only = process.argv[4];

// Returns "<spawns per second> <spawns made>".
async function rate(once) {
  const t0 = process.hrtime.bigint();
  let i = 0;
  let ms = 0;
  for (; i < N && ms < MAX_MS; i++) {
    await once();
    ms = Number(process.hrtime.bigint() - t0) / 1e6;
  }
  return `${i / (ms / 1000)} ${i}`;
}

function spawnOnce(options) {
  return () => new Promise((resolve, reject) => {
    const c = spawn('/bin/true', [], options);
    c.on('error', reject);
    c.on('close', (code) => (code === 0 ? resolve() : reject(new Error(code))));
  });
}

const metrics = {
  spawn: spawnOnce({}),
  spawn_ignore: spawnOnce({ stdio: 'ignore' }),
  exec_file: () => new Promise((resolve, reject) => {
    execFile('/bin/echo', ['hi'], (err, out) => {
      if (err || out !== 'hi\n') reject(err || new Error(out));
      else resolve();
    });
  }),
  exec: () => new Promise((resolve, reject) => {
    exec('echo hi', (err, out) => {
      if (err || out !== 'hi\n') reject(err || new Error(out));
      else resolve();
    });
  }),
  spawn_sync: async () => {
    const r = spawnSync('/bin/true');
    if (r.status !== 0) throw new Error('spawnSync failed');
  },
};

async function main() {
  for (const [name, once] of Object.entries(metrics)) {
    if (only && name !== only) continue;
    console.log(`${name} ${await rate(once)}`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
