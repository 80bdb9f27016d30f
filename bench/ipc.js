'use strict';
// The node<->node side of bench/ipc.c: `node ipc.js MODE N [SERIALIZATION]`
// forks itself (serialization 'json' by default, or 'advanced'), measures,
// and prints "value X" (msg/s, us per round trip, or handles/s).
const { fork } = require('child_process');
const net = require('net');

const [mode, nArg, serialization = 'json', role] = process.argv.slice(2);
const n = Number(nArg);

if (role === 'child') {
  if (mode === 'oneway') {
    for (let i = 0; i < n; i++) process.send({ cmd: 'notifyRequest', i });
  } else if (mode === 'pingpong') {
    process.on('message', (m) => process.send(m));
  } else {
    process.on('message', (m, handle) => {
      if (handle) handle.destroy();
      if (m === true) process.send('done');
    });
  }
  process.on('disconnect', () => process.exit(0));
} else {
  const child = fork(__filename, [mode, nArg, serialization, 'child'],
                     { serialization });
  let got = 0;
  let t0 = 0;
  const done = (value) => {
    console.log('value ' + value);
    child.disconnect();
  };
  if (mode === 'oneway') {
    child.on('message', () => {
      if (got === 0) t0 = process.hrtime.bigint();
      if (++got === n)
        done((n - 1) / (Number(process.hrtime.bigint() - t0) / 1e9));
    });
  } else if (mode === 'pingpong') {
    child.on('message', (m) => {
      if (got === 100) t0 = process.hrtime.bigint();
      if (++got === n + 100) {
        done(Number(process.hrtime.bigint() - t0) / 1e3 / n);
        return;
      }
      child.send(m);
    });
    child.send({ cmd: 'ping', i: 1 });
  } else {
    const srv = net.createServer((sock) => {
      t0 = process.hrtime.bigint();
      const sendNext = () => {
        const last = ++got === n;
        child.send(last, sock, { keepOpen: true }, (err) => {
          if (!err && !last) sendNext();
        });
      };
      child.on('message', () => {
        done(n / (Number(process.hrtime.bigint() - t0) / 1e9));
        sock.destroy();
        client.destroy();
        srv.close();
      });
      sendNext();
    });
    let client;
    srv.listen(0, '127.0.0.1', () => {
      client = net.connect(srv.address().port, '127.0.0.1');
    });
  }
}
